"""What upscaling promises about images, kept (issue 36): only the promised decoders run, with a
Pillow past their advisories; 32-bit TIFF samples are read as they are meant or refused; a link
at the output is not replaced; refusals that need no model come before TensorFlow loads; the
bundled models are taken by name; messages say what the user typed; folder runs and --size say
what they do.

The helpers and the tiny-weights fixtures are conftest's.
"""

import io
import json
import os
import re
import struct

import numpy as np
import pytest
from PIL import Image

import asdn_tf
from asdn_tf.inference import files, weights_io
from asdn_tf.inference import request as upscale_request
from asdn_tf.io import image_io, image_write
from conftest import BLOCK_TENSORFLOW, ROOT, _cli, _files, _pixels, _process, _save

UNIDENTIFIED = "cannot identify image file as PNG, JPEG, BMP, WebP or TIFF"


def _fits():
    """A 16×16 gray FITS image (Pillow reads FITS but cannot write it)."""
    cards = ["SIMPLE  =                    T", "BITPIX  =                    8",
             "NAXIS   =                    2", "NAXIS1  =                   16",
             "NAXIS2  =                   16", "END"]
    header = "".join(card.ljust(80) for card in cards).ljust(2880).encode()
    return header + bytes(range(256)).ljust(2880, b"\0")


def _encoded(image_format):
    if image_format == "FITS":
        return _fits()
    stream = io.BytesIO()
    Image.fromarray(_pixels((16, 16, 3))).save(stream, format=image_format)
    return stream.getvalue()


# ---------------------------------------------------------------- decoders and the Pillow floor


@pytest.mark.parametrize("image_format", ["PPM", "PCX", "TGA", "SGI", "ICO", "IM", "DDS", "QOI",
                                          "FITS", "GIF", "JPEG2000", "SPIDER"])
def test_only_the_promised_decoders_run(tmp_path, tiny_model, image_format):
    """A file of another format named .png is refused by every reader (the page reads uploads
    through the same `read_header`), though Pillow could decode it."""
    data = _encoded(image_format)
    assert Image.open(io.BytesIO(data)).format == image_format
    path = tmp_path / "photo.png"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=f"^cannot read the image data: {UNIDENTIFIED}$"):
        image_io.read_header(data)
    for read in ("read_header", "read_image", "check_pixels"):
        with pytest.raises(ValueError, match=f"^cannot read image {path}: {UNIDENTIFIED}$"):
            getattr(image_io, read)(path)
    with pytest.raises(ValueError, match=UNIDENTIFIED):
        asdn_tf.upscale_file(path, tmp_path / "out.png", 2, model=tiny_model)
    assert _files(tmp_path) == ["photo.png"]


@pytest.mark.parametrize("extension", [".png", ".jpg", ".bmp", ".webp", ".tif"])
def test_the_promised_formats_still_read(tmp_path, extension):
    path = _save(tmp_path / f"in{extension}")
    assert image_io.read_image(path).shape == (24, 32, 3)
    image_io.check_pixels(path)


def test_pillow_is_pinned_past_every_advisory_in_what_is_reached():
    import PIL
    text = (ROOT / "requirements.txt").read_text()
    floor = re.search(r"^pillow>=([\d.]+)$", text, re.MULTILINE)[1]
    assert tuple(map(int, floor.split("."))) >= (13, 0, 0)
    assert tuple(map(int, PIL.__version__.split(".")[:3])) >= (13, 0, 0)
    for advisory in ("CVE-2023-4863", "CVE-2026-25990", "CVE-2026-4775", "CVE-2026-96639",
                     "GHSA-5x8w-8jj5-q52h", "CVE-2026-96643"):
        assert advisory in text


# ---------------------------------------------------------------- 32-bit TIFF samples


def _tiff(path, values, mode):
    Image.fromarray(np.asarray(values), mode).save(path)
    return path


def test_32_bit_tiff_samples_are_read_as_meant_or_refused(tmp_path):
    inside = _tiff(tmp_path / "inside.tif", np.int32([[0, 5], [1000, 65535]]), "I")
    assert image_io.read_image(inside).dtype == np.uint16
    np.testing.assert_array_equal(image_io.read_image(inside), [[0, 5], [1000, 65535]])
    grey = _tiff(tmp_path / "grey.tif", np.full((4, 4), 0.5, np.float32), "F")
    np.testing.assert_array_equal(image_io.read_image(grey), np.full((4, 4), 32768, np.uint16))
    refused = {
        "wraps.tif": (np.int32([[70000, -5]]), "I",
                      "its integer pixels lie in [-5, 70000], beyond 16 bits (0..65535)"),
        "bright.tif": (np.float32([[0.5, 3.0]]), "F",
                       "its float pixels lie in [0.5, 3], not in [0, 1]"),
        "nan.tif": (np.float32([[0.5, np.nan]]), "F", "its float pixels include NaN"),
    }
    for name, (values, mode, words) in refused.items():
        path = _tiff(tmp_path / name, values, mode)
        for read in (image_io.read_image, image_io.check_pixels):
            with pytest.raises(ValueError, match=re.escape(f"cannot read image {path}: {words}")):
                read(path)


def test_a_float_tiff_of_half_comes_out_half_grey(tmp_path):
    """It came out almost black: Pillow's float-to-RGB conversion clips to 0..255."""
    source = _tiff(tmp_path / "grey.tif", np.full((16, 16), 0.5, np.float32), "F")
    model = weights_io.load_pretrained("default", "float32")
    path = asdn_tf.upscale_file(source, tmp_path / "big.png", 2, model=model)
    result = image_io.read_image(path)
    assert result.shape == (32, 32) and result.dtype == np.uint16
    assert abs(result.mean() / 65535 - 0.5) < 0.01, result.mean()


# ---------------------------------------------------------------- links and overwrite


def test_a_dangling_link_at_the_output_is_not_replaced(capsys, tmp_path, weights, quick_model,
                                                      tiny_model):
    source = _save(tmp_path / "in.png")
    link = tmp_path / "out.png"
    os.symlink(tmp_path / "nowhere.png", link)
    model = [f"--weights={weights}", "--preset=tiny"]
    status, _, err = _cli(capsys, f"--input={source}", f"--output={link}", "--scale=2", *model)
    assert (status, err) == (1, f"upscale: {source}: {link} already exists; not replaced "
                                "without --overwrite\n")
    assert os.readlink(link) == str(tmp_path / "nowhere.png")
    with pytest.raises(image_write.OutputExistsError,
                       match=f"^{link} already exists; not replaced without overwrite=True$"):
        asdn_tf.upscale_file(source, link, 2, model=tiny_model)
    assert issubclass(image_write.OutputExistsError, FileExistsError)
    assert os.path.islink(link) and not (tmp_path / "nowhere.png").exists()

    folder, out = tmp_path / "folder", tmp_path / "big"
    folder.mkdir()
    out.mkdir()
    _save(folder / "a.png")
    os.symlink(tmp_path / "elsewhere.png", out / "a.png")
    status, stdout, _ = _cli(capsys, f"--input={folder}", f"--output={out}", "--scale=2", *model)
    assert status == 0 and "; 1 skipped (their outputs exist" in stdout
    assert os.path.islink(out / "a.png")

    status, _, err = _cli(capsys, f"--input={source}", f"--output={link}", "--scale=2",
                          "--overwrite", *model)
    assert (status, err) == (0, "")
    assert not os.path.islink(link) and image_io.read_image(link).shape == (48, 64, 3)
    assert not (tmp_path / "nowhere.png").exists()


# ---------------------------------------------------------------- refusals before TensorFlow


def _forged_bmp(path, side):
    """A BMP whose header claims side×side pixels and holds those of a 41×30 image."""
    stream = io.BytesIO()
    Image.fromarray(np.zeros((30, 41, 3), np.uint8)).save(stream, "BMP")
    data = bytearray(stream.getvalue())
    struct.pack_into("<ii", data, 18, side, side)
    path.write_bytes(bytes(data))
    return path


def _refusal_inputs(folder):
    """{name: (flags, the refusal's words)} with the files they name written into `folder`."""
    good = _save(folder / "good.png")
    data = good.read_bytes()
    (folder / "truncated.png").write_bytes(data[:len(data) // 2])
    corrupt = bytearray(data)
    start = corrupt.index(b"IDAT") + 40
    corrupt[start:start + 40] = bytes(value ^ 0x5A for value in corrupt[start:start + 40])
    (folder / "corrupt.png").write_bytes(bytes(corrupt))
    _save(folder / "whole.jpg")
    jpeg = (folder / "whole.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(jpeg[:len(jpeg) // 2])
    _forged_bmp(folder / "claims.bmp", 8000)
    _tiff(folder / "wraps.tif", np.int32([[70000, -5]]), "I")
    (folder / "ppm.png").write_bytes(_encoded("PPM"))
    image = ["--output=out.png", "--scale=2"]
    return {
        "truncated png": (["--input=truncated.png", *image], "cannot read image truncated.png"),
        "corrupt png": (["--input=corrupt.png", *image], "broken data stream"),
        "truncated jpeg": (["--input=truncated.jpg", *image], "cannot read image truncated.jpg"),
        "bmp claiming 8000x8000": (["--input=claims.bmp", *image],
                                   "its header claims 8000x8000 pixels, 192,000,054 bytes "
                                   "uncompressed, in 3,774 bytes"),
        "int32 tiff": (["--input=wraps.tif", *image], "beyond 16 bits"),
        "ppm named png": (["--input=ppm.png", *image], UNIDENTIFIED),
        "unknown model": (["--input=good.png", *image, "--model=bogus"],
                          "unknown model 'bogus'; the bundled models are default, photo"),
        "negative tile": (["--input=good.png", *image, "--tile=-1"],
                          "--tile must be 0 (no tiling) or an integer >= 8, got -1"),
        "negative overlap": (["--input=good.png", *image, "--tile_overlap=-1"],
                             "--tile_overlap must be an integer >= 0, got -1"),
        "missing weights": (["--input=good.png", *image, "--weights=missing.weights.h5"],
                            "weights file not found: missing.weights.h5"),
        "unknown preset": (["--input=good.png", *image, "--weights=good.png", "--preset=huge"],
                           "unknown preset 'huge'"),
    }


# Runs each command line with TensorFlow blocked: a refusal that waited for it would fail.
REFUSE_WITHOUT_TENSORFLOW = BLOCK_TENSORFLOW + """
import contextlib, io, json, sys
from asdn_tf.cli.upscale import run_cli
for args in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = run_cli(["upscale", *args])
    print(json.dumps([status, err.getvalue()]), flush=True)
"""


def test_refusals_come_before_tensorflow_and_the_model(tmp_path):
    """Each was refused only after 6-10 s and 0.8 GB of TensorFlow and model loading."""
    cases = _refusal_inputs(tmp_path)
    done = _process(["-c", REFUSE_WITHOUT_TENSORFLOW,
                     json.dumps([args for args, _ in cases.values()])], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(results) == len(cases)
    for (name, (_, words)), (status, err) in zip(cases.items(), results):
        lines = err.splitlines()
        assert status == 1 and len(lines) == 1 and lines[0].startswith("upscale: "), (name, err)
        assert words in lines[0], (name, err)
    assert not (tmp_path / "out.png").exists()


# ---------------------------------------------------------------- the bundled models by name


def test_the_bundled_models_are_taken_by_name(tmp_path):
    image = _pixels((12, 16, 3))
    by_name = asdn_tf.upscale(image, 2, model="default")  # with the FSDN paired with it
    np.testing.assert_array_equal(
        by_name, asdn_tf.upscale(image, 2, model=weights_io.load_pretrained("default", "float32"),
                                 fsdn=weights_io.shared_fsdn("float32", "default")))
    with pytest.raises(ValueError, match="^unknown model 'bogus'; the bundled models are "
                                         "default, photo$"):
        asdn_tf.upscale(image, 2, model="bogus")
    with pytest.raises(TypeError, match=r"^model must be an ASDN or a bundled model's name "
                                        r"\(default, photo\), got PosixPath$"):
        asdn_tf.upscale(image, 2, model=tmp_path)
    source = _save(tmp_path / "in.png", image)
    with pytest.raises(ValueError, match="unknown model 'bogus'"):
        asdn_tf.upscale_file(source, tmp_path / "out.png", 2, model="bogus")
    assert not (tmp_path / "out.png").exists()
    path = asdn_tf.upscale_file(source, tmp_path / "out.png", 2, model="default")
    np.testing.assert_array_equal(image_io.read_image(path), by_name)


# ---------------------------------------------------------------- messages and requests


def test_a_scale_is_said_as_typed(capsys, tmp_path):
    source = _save(tmp_path / "in.png")
    status, _, err = _cli(capsys, f"--input={source}", f"--output={tmp_path}/o.png",
                          "--scale=1.0000001")
    assert (status, err) == (1, f"upscale: {source}: scale 1.0000001 is too small for a 32x24 "
                                "image to grow by a pixel; the smallest that does is 1.0157\n")
    with pytest.raises(ValueError, match=r"^scale 1\.0000001 is too small"):
        upscale_request.target_size((24, 32), scale=1.0000001)


def test_a_folder_run_reports_the_images_a_width_cannot_reach(capsys, tmp_path, weights,
                                                              quick_model):
    """The README's folder example asks for a width: an image too small for it at ×32 is said
    in a line of its own, with the width it can reach, and the others are upscaled."""
    folder, out = tmp_path / "photos", tmp_path / "big"
    folder.mkdir()
    _save(folder / "small.png", _pixels((4, 5, 3)))
    _save(folder / "large.png", _pixels((30, 40, 3)))
    status, stdout, err = _cli(capsys, f"--input={folder}", f"--output={out}", "--width=200",
                               f"--weights={weights}", "--preset=tiny")
    assert status == 1
    assert err == (f"upscale: {folder}/small.png: the scale that width asks for must be at most "
                   "32, got 40: this 5x4 image grows to 160x128 at most\n")
    assert "upscaled 1 of 2 files" in stdout and "; 1 failed" in stdout
    assert _files(out) == ["large.png"]
    assert image_io.read_image(out / "large.png").shape == (150, 200, 3)


def test_a_size_that_stretches_the_image_says_so(capsys, tmp_path, weights, quick_model,
                                                tiny_model):
    source = _save(tmp_path / "in.png")
    model = [f"--weights={weights}", "--preset=tiny"]
    status, _, err = _cli(capsys, f"--input={source}", f"--output={tmp_path}/a.png",
                          "--size=80x50", *model)
    assert (status, err) == (0, f"upscale: warning: {source}: the output 80x50 stretches the "
                                "32x24 input (aspect ratio 1.33 to 1.6); a width or a height "
                                "alone keeps it\n")
    assert image_io.read_image(tmp_path / "a.png").shape == (50, 80, 3)
    status, _, err = _cli(capsys, f"--input={source}", f"--output={tmp_path}/b.png",
                          "--size=80x60", *model)
    assert (status, err) == (0, "")
    with pytest.warns(upscale_request.StretchWarning, match="stretches the 32x24 input"):
        files.upscale_file(source, tmp_path / "c.png", size=(50, 80), model=tiny_model)
