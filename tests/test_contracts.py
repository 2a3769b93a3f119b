"""The contracts at every door (issue #28): hostile image sizes, sidecars and arrays refused in one
line before any work, the Keras floor past every loading advisory, and the small messages.

The bomb of the issue is a small JPEG whose frame header was patched to claim 10000×10000: the
decoders (Pillow's and TensorFlow's) fill in the missing data, so it must be refused from its
header and its byte count.
"""

import io
import json
import os
import pathlib
import re
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

import asdn_tf
from asdn_tf.cli.upscale import run_cli
from asdn_tf.export import saved_model
from asdn_tf.inference import engine as inference, weights_io
from asdn_tf.inference.files import upscale_file
from asdn_tf.io import errors, image_io
from asdn_tf.nn import config
from asdn_tf.data.config import DataConfig, DATA_RANGES
from asdn_tf.training.config import TrainConfig
from conftest import MEASURE_REQUESTS

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _jpeg_claiming(height, width, side=64):
    """A side×side JPEG of noise (4-5 KB) whose frame header (SOF0) says height×width."""
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    data = bytearray(buffer.getvalue())
    frame = data.index(b"\xff\xc0") + 5  # marker, length (2), precision (1), height, width
    data[frame:frame + 4] = struct.pack(">HH", height, width)
    return bytes(data)


def _png(pixels):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def _png_claiming(height, width, side=64):
    """A side×side PNG whose IHDR says height×width, its CRC made right again."""
    data = bytearray(_png(np.random.default_rng(0).integers(0, 256, (side, side, 3), np.uint8)))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@pytest.fixture(scope="module")
def weights(tmp_path_factory, tiny_model):
    path = tmp_path_factory.mktemp("weights") / "tiny.weights.h5"
    tiny_model.save_weights(path)
    return path


# ---------------------------------------------------------------- work bounded before decoding


@pytest.mark.slow
def test_the_issues_jpeg_bomb_is_refused_in_a_second_and_little_memory(tmp_path, weights):
    """A 4 KB JPEG claiming 10000×10000 at ×1.1 (121 M output pixels, under --max_pixels) ran
    300 s to 3.2 GB before; now both doors refuse it from its header."""
    (tmp_path / "bomb.jpg").write_bytes(_jpeg_claiming(10000, 10000))
    requests = [("cli", ["--input=bomb.jpg", "--output=out.png", "--scale=1.1",
                         f"--weights={weights}", "--preset=tiny"]),
                ("api", ["bomb.jpg", "out.png", 1.1])]
    done = subprocess.run([sys.executable, "-c", MEASURE_REQUESTS, json.dumps(requests)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("[")]
    assert len(results) == 2, done.stderr
    for result, seconds, extra_mb in results:
        assert seconds < 1 and extra_mb < 300, (result, seconds, extra_mb)
    assert results[0][0] == 1 and "truncated or its header altered" in results[1][0]
    ours = [line for line in done.stderr.splitlines() if line.startswith("upscale:")]
    assert ours == ["upscale: cannot read image bomb.jpg: its header claims 10000x10000 pixels "
                    f"in {(tmp_path / 'bomb.jpg').stat().st_size:,} bytes, more than a "
                    "complete JPEG holds (1,024 pixels a byte): the file is truncated or its "
                    "header altered"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.jpg"]


@pytest.mark.parametrize("data,image_format", [
    (_jpeg_claiming(3000, 3000), "JPEG"), (_png_claiming(3000, 3000, side=8), "PNG")])
def test_a_header_claiming_more_than_the_bytes_hold_is_refused_undecoded(tmp_path, data,
                                                                         image_format):
    """Under the input limit too: 3000×3000 in 4 KB is no complete JPEG, which Pillow filled in."""
    path = tmp_path / f"claim.{image_format.lower()}"
    path.write_bytes(data)
    for read in (image_io.read_header, image_io.read_image, image_io.check_decode_cost):
        with pytest.raises(ValueError, match=f"more than a complete {image_format} holds"):
            read(path)
    with pytest.raises(ValueError, match="cannot read the image data: its header claims"):
        image_io.check_decode_cost(data)


def test_an_image_that_decodes_short_is_an_error_not_filled_in(tmp_path, monkeypatch):
    """A PNG whose header claims 600×600 (plausible for its bytes) but whose data holds 64×64,
    and a JPEG cut in half: errors, even where another library told Pillow to fill them in."""
    short = tmp_path / "short.png"
    short.write_bytes(_png_claiming(600, 600))
    assert image_io.check_decode_cost(short).height == 600
    cut = tmp_path / "cut.jpg"
    whole = _jpeg_claiming(64, 64)
    cut.write_bytes(whole[:len(whole) // 2])
    for path in (short, cut):
        with pytest.raises(ValueError, match=f"cannot read image .*{path.name}"):
            image_io.read_image(path)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    for read in (image_io.read_image, image_io.read_image_and_profile):
        with pytest.raises(ValueError, match="LOAD_TRUNCATED_IMAGES is set in this process"):
            read(cut)


def test_inputs_above_the_input_pixel_limit_are_refused_from_the_header(capsys, tmp_path,
                                                                        weights):
    path = tmp_path / "in.png"
    path.write_bytes(_png(np.zeros((40, 50, 3), np.uint8)))
    assert image_io.check_decode_cost(path, max_pixels=2000).width == 50
    words = "has 50x40 = 2,000 pixels, more than the input limit of 1,999 (max_input_pixels)"
    with pytest.raises(ValueError, match=re.escape(words)):
        image_io.check_decode_cost(path.read_bytes(), max_pixels=1999)
    with pytest.raises(ValueError, match=re.escape(words)):
        upscale_file(path, tmp_path / "out.png", 2.0, max_input_pixels=1999)
    status = run_cli(["upscale", f"--input={path}", f"--output={tmp_path / 'out.png'}",
                      "--scale=2", "--max_input_pixels=1999", f"--weights={weights}",
                      "--preset=tiny"])
    err = capsys.readouterr().err
    assert status == 1 and err == f"upscale: image {path} {words}\n"
    assert not (tmp_path / "out.png").exists()
    assert image_io.MAX_INPUT_PIXELS == 8192 * 8192


@pytest.mark.slow
def test_the_saved_model_refuses_a_claim_its_bytes_cannot_hold(tiny_model, tmp_path):
    """With a raised max_output_pixels the header check alone let the bomb decode."""
    import tensorflow as tf
    path = saved_model.export_saved_model(tiny_model, tmp_path / "1", max_output_pixels=10**8)
    encoded = tf.saved_model.load(str(path)).signatures["upscale_encoded"]
    for data, words in [(_jpeg_claiming(3000, 3000), "more than a complete JPEG holds"),
                        (_png_claiming(3000, 3000, side=8), "more than a complete PNG holds")]:
        with pytest.raises(tf.errors.InvalidArgumentError, match=words):
            encoded(image_bytes=tf.constant(data), scale=tf.constant(1.1))
    image = np.random.default_rng(0).integers(0, 256, (8, 8, 3), np.uint8)
    out = encoded(image_bytes=tf.constant(_png(image)), scale=tf.constant(2.0))["png_bytes"]
    assert tf.io.decode_png(out).shape == (16, 16, 3)


# ---------------------------------------------------------------- sidecars and configs


@pytest.mark.parametrize("model_config,words", [
    ({"num_blocks": 10**12, "features": 10**9}, "num_blocks must be an integer in [1, 64], got "
                                                "1000000000000"),
    ({"features": 10**9}, "features must be an integer in [1, 1024], got 1000000000"),
    ({"num_levels": 10**6}, "num_levels must be an integer in [2, 64]"),
    ({"growth": True}, "growth must be an integer in [1, 1024], got True"),
    ({"num_blocks": 64, "num_layers": 32, "features": 1024, "growth": 1024},
     "this config builds 323,309,864,860 parameters and about 802,816 bytes of activations per "
     "output pixel; at most "
     "200,000,000 and 65,536 are accepted (the paper's: 22,438,684 and 13,312)"),
])
def test_a_sidecar_with_huge_sizes_is_one_line_before_anything_is_built(tmp_path, model_config,
                                                                        words):
    weights = tmp_path / "run.weights.h5"
    weights.write_bytes(b"")
    (tmp_path / "run.json").write_text(json.dumps({"model_config": model_config}))
    with pytest.raises(ValueError) as raised:
        weights_io.load_model(weights)
    message = str(raised.value)
    assert message.startswith(f"weights sidecar {tmp_path / 'run.json'} has a bad "), message
    assert words in message and "\n" not in message


def test_an_fsdn_sidecar_scale_is_range_checked(tmp_path):
    weights = tmp_path / "run.weights.h5"
    weights.write_bytes(b"")
    (tmp_path / "run.json").write_text(json.dumps({"model": "fsdn", "scale": 10**6}))
    with pytest.raises(ValueError, match=re.escape("an FSDN needs an integer scale in [2, 32]")):
        weights_io.load_model(weights)


def test_the_cost_is_computed_without_building(tiny_model):
    assert config.model_cost(config.preset("tiny"))[0] == tiny_model.count_params()
    assert config.PAPER_COST == (22_438_684, 13_312)
    assert config.model_cost(config.preset("default")) == (159_812, 2048)


@pytest.mark.parametrize("field,value", [("patch_size", 10**6), ("batch_size", 10**9)])
def test_data_config_sizes_are_range_checked(field, value):
    low, high = DATA_RANGES[field]
    with pytest.raises(ValueError, match=re.escape(f"{field} must be an integer in "
                                                   f"[{low}, {high}], got {value}")):
        DataConfig(**{field: value})


# ---------------------------------------------------------------- the Python API's inputs


def test_float_input_outside_0_1_is_refused_with_the_fix(tiny_model):
    image = np.random.default_rng(0).uniform(0, 255, (6, 7, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\], got values in .*divide 0-255 "
                                         r"values by 255"):
        asdn_tf.upscale(image, 2, model=tiny_model)
    with pytest.raises(ValueError, match="must be in .0, 1."):
        asdn_tf.upscale(image / 255 - 0.01, 2, model=tiny_model)
    slop = np.clip(image / 255, 0, 1) * (1 + 2 * inference.RANGE_SLOP / 3) - 5e-4
    assert asdn_tf.upscale(slop, 2, model=tiny_model).shape == (12, 14, 3)


def test_upscale_tensor_refuses_uint8_and_a_missing_batch_axis(tiny_model):
    image = np.random.default_rng(0).integers(0, 256, (1, 6, 7, 3), np.uint8)
    with pytest.raises(ValueError, match=r"^images must be float in \[0, 1\], got uint8; "
                                         r"divide by 255"):
        inference.upscale_tensor(tiny_model, image, 2.0)
    with pytest.raises(ValueError, match=re.escape("images must be a batch N×H×W×3, got shape "
                                                   "(6, 7, 3); add the batch axis with "
                                                   "images[None]")):
        inference.upscale_tensor(tiny_model, image[0] / 255, 2.0)
    with pytest.raises(ValueError, match="must be in .0, 1."):
        inference.upscale_tensor(tiny_model, image.astype(np.float32), 2.0)
    assert inference.upscale_tensor(tiny_model, image / 255, 2.0).shape == (1, 12, 14, 3)


# ---------------------------------------------------------------- the Keras floor


def test_keras_is_pinned_past_every_loading_advisory():
    import keras
    text = (ROOT / "requirements.txt").read_text()
    floor = re.search(r"^keras>=([\d.]+)", text, re.MULTILINE)[1]
    assert tuple(map(int, floor.split("."))) >= (3, 15, 1)
    assert tuple(map(int, keras.__version__.split(".")[:3])) >= (3, 15, 1)
    for advisory in ("CVE-2026-12479", "CVE-2026-12480", "CVE-2026-12481", "CVE-2026-1669",
                     "CVE-2026-1462", "CVE-2026-0897", "CVE-2025-1550"):
        assert advisory in text


# ---------------------------------------------------------------- the small ones


@pytest.mark.parametrize("scale", ["2e0", "1.5E0", ".5e1"])
def test_scales_are_plain_decimals_only(capsys, tmp_path, scale):
    path = tmp_path / "in.png"
    path.write_bytes(_png(np.zeros((8, 8, 3), np.uint8)))
    status = run_cli(["upscale", f"--input={path}", f"--output={tmp_path / 'o.png'}",
                      f"--scale={scale}"])
    assert status == 1 and capsys.readouterr().err == (
        f"upscale: --scale must be a number in (1, 32] written in decimal, e.g. 3.3, "
        f"got '{scale}'\n")
    with pytest.raises(ValueError, match="written in decimal"):
        upscale_file(path, tmp_path / "o.png", scale)


def test_tensorflow_op_text_is_not_part_of_a_message():
    error = Exception("{{function_node __wrapped__SaveV2_dtypes_4_device_/job:localhost/replica:0"
                      "/task:0/device:CPU:0}} /run/ckpt-1_temp/part.index; No space left on "
                      "device [Op:SaveV2]")
    assert errors.first_line(error) == "/run/ckpt-1_temp/part.index; No space left on device"


@pytest.mark.slow
def test_a_full_disk_in_training_is_one_plain_line(tmp_path, monkeypatch):
    import tensorflow as tf

    from asdn_tf.training import train_tf
    sources = tmp_path / "images"
    sources.mkdir()
    for index in range(2):
        pixels = np.random.default_rng(index).integers(0, 256, (32, 32, 3), np.uint8)
        Image.fromarray(pixels).save(sources / f"{index}.png")

    def full_disk(self, checkpoint_number=None, **kwargs):
        raise tf.errors.ResourceExhaustedError(
            None, None, "{{function_node __wrapped__SaveV2_dtypes_4_device_/job:localhost/"
            "replica:0/task:0/device:CPU:0}} ckpt-1_temp/part-00000-of-00001.index.tempstate1; "
            "No space left on device [Op:SaveV2]")

    monkeypatch.setattr(tf.train.CheckpointManager, "save", full_disk)
    with pytest.raises(train_tf.TrainingError) as raised:
        train_tf.train(config.preset("tiny"),
                    DataConfig(sources=(str(sources),), patch_size=8, batch_size=2),
                    TrainConfig(steps=2, checkpoint_every=1, log_every=1,
                                validate_every=0), tmp_path / "run")
    message = str(raised.value)
    assert "No space left on device" in message and "\n" not in message
    assert "function_node" not in message and "[Op:" not in message


def test_a_weights_mismatch_names_the_given_config_plainly(tmp_path, tiny_model):
    weights = tmp_path / "tiny.weights.h5"
    tiny_model.save_weights(weights)
    with pytest.raises(ValueError) as raised:
        weights_io.load_model(weights, config.ModelConfig(num_blocks=1))
    message = str(raised.value)
    assert f"do not fit the given config: the file holds 5,426 parameters, the config needs" \
           in message and "preset the given" not in message


def _export_command(*args):
    return subprocess.run([sys.executable, "-m", "asdn_tf.export", *args], capture_output=True,
                          text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.slow
def test_tflite_at_a_fractional_scale_is_a_plain_message(tmp_path, weights):
    done = _export_command("tflite", f"--weights={weights}", "--scale=1.5", "--images=.",
                           f"--output={tmp_path / 'm.tflite'}")
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        "export: a TFLite export is an FSDN, which upscales by one whole factor (2, 3, 4, ...), "
        "not 1.5; for any scale, export ASDN as a SavedModel (saved_model) or ONNX (onnx)")
    assert "int()" not in done.stderr and list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_the_output_pixel_limit_states_its_memory_cost():
    done = _export_command("--helpfull")
    help_text = " ".join(done.stdout.split())
    assert "--max_output_pixels: saved_model: the largest batch × height × width of an output. " \
           "Each output pixel costs about 2 KB of memory" in help_text


def test_the_limits_page_gives_every_default():
    page = (ROOT / "docs" / "limits.md").read_text()
    numbers = [f"{image_io.MAX_INPUT_PIXELS:,}", f"{config.MAX_PARAMETERS:,}",
               f"{config.MAX_ACTIVATION_BYTES_PER_PIXEL:,}", f"{saved_model.DEFAULT_MAX_OUTPUT_PIXELS:,}",
               f"{config.MAX_FSDN_SCALE}", "141,557,760", "2 KB"]
    numbers += [f"{limit:,}" for limit in image_io.MAX_PIXELS_PER_BYTE.values()]
    numbers += [f"`{name}` | {low} | {high}" for name, (low, high)
                in {**config.MODEL_RANGES, **DATA_RANGES}.items()]
    missing = [number for number in numbers if number not in page]
    assert not missing
