"""The weights bundled in the package: they load, say where they come from, and beat bicubic."""

import json

import keras
import numpy as np
import pytest

import asdn_tf
from asdn_tf.evaluation import benchmark
from asdn_tf.inference import weights_io


def test_bundled_weights_load_with_their_sidecar():
    model = asdn_tf.load_pretrained()
    assert model.model_config == asdn_tf.preset("default")
    sidecar = json.loads(weights_io.sidecar_path(weights_io.PACKAGE_WEIGHTS).read_text())
    assert sidecar["preset"] == "default"
    assert sidecar["command"] == "python -m asdn_tf.train --flagfile=configs/cpu.txt"
    assert sidecar["steps"] > 0 and sidecar["training_seconds"] > 0
    assert set(sidecar["validation_psnr"]) >= {"2", "3", "4"}


@pytest.mark.slow
def test_bundled_weights_beat_bicubic_on_set5(datasets_dir):
    images = {"Set5": benchmark.load_set(datasets_dir / "Set5")}
    scales = [2, 3.3]
    bicubic = benchmark.evaluate(images, scales, "bicubic")
    model = benchmark.evaluate(images, scales, "asdn", asdn_tf.load_pretrained())
    for ours, theirs in zip(model, bicubic):
        assert ours["psnr"] >= theirs["psnr"] + 0.5, (ours, theirs)
        assert ours["ssim"] > theirs["ssim"]


# Issue #7's floors (SRCNN's scores; the README's table has the bundled model's).
FLOORS = {("Set5", 2.0): 37.0, ("Set5", 3.0): 32.8, ("Set5", 4.0): 30.4, ("Set14", 2.0): 32.5}


@pytest.mark.slow
def test_bundled_weights_clear_the_srcnn_floors(datasets_dir):
    model = asdn_tf.load_pretrained()
    for name in ("Set5", "Set14"):
        scales = sorted(scale for set_name, scale in FLOORS if set_name == name)
        images = {name: benchmark.load_set(datasets_dir / name)}
        for row in benchmark.evaluate(images, scales, "asdn", model):
            assert row["psnr"] >= FLOORS[name, row["scale"]], row


def test_the_bundled_model_does_not_hide_behind_a_missing_file(monkeypatch, tmp_path):
    monkeypatch.setattr(weights_io, "PACKAGE_WEIGHTS", tmp_path / "default.weights.h5")
    with pytest.raises(FileNotFoundError, match="no default weights are bundled"):
        asdn_tf.load_pretrained()


@pytest.mark.slow
def test_bfloat16_precision_keeps_the_quality(datasets_dir):
    images = {"Set5": benchmark.load_set(datasets_dir / "Set5")}
    model32 = asdn_tf.load_pretrained(precision="float32")
    model16 = asdn_tf.load_pretrained(precision="bfloat16")
    assert model16.dtype_policy.name == "mixed_bfloat16" and model32.dtype_policy.name == "float32"
    assert keras.mixed_precision.global_policy().name == "float32"  # not left behind
    for scale in (2, 3.3):
        psnr32, psnr16 = (benchmark.evaluate(images, [scale], "asdn", model)[0]["psnr"]
                          for model in (model32, model16))
        assert psnr16 != psnr32 and abs(psnr16 - psnr32) < 0.1, (scale, psnr32, psnr16)


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError,
                       match="precision must be one of auto, float32, bfloat16, got 'fp16'"):
        asdn_tf.load_pretrained(precision="fp16")


@pytest.mark.parametrize("sidecar,words", [
    ({"model_config": 5}, 'has "model_config": a number; expected an object of model config '
                          "fields"),
    ([1, 2], "must hold a JSON object, not a list"),
    ("tiny", "must hold a JSON object, not a string"),
    ({"model_config": {"num_blocks": 2, "bogus": 1}},
     "has a bad \"model_config\": unknown model config keys: ['bogus']"),
    ({"model_config": {"num_blocks": "four"}}, "num_blocks must be an integer in [1, 64]"),
    ({"model": 3}, 'has "model": 3; expected "asdn" or "fsdn"'),
    ({"model": "fsdn", "scale": "2"}, 'has "scale": "2"; an FSDN needs an integer scale in [2, 32]'),
])
def test_a_malformed_sidecar_is_one_line_naming_it(tmp_path, sidecar, words):
    weights = tmp_path / "run.weights.h5"
    weights.write_bytes(b"")
    (tmp_path / "run.json").write_text(json.dumps(sidecar))
    with pytest.raises(ValueError) as raised:
        weights_io.load_model(weights)
    message = str(raised.value)
    assert message.startswith(f"weights sidecar {tmp_path / 'run.json'} "), message
    assert words in message and "\n" not in message


def test_a_sidecar_may_carry_more_than_loading_reads(tmp_path, tiny_model):
    """The training run's record (steps, scores, a command) is metadata: it is not refused."""
    weights = tmp_path / "run.weights.h5"
    tiny_model.save_weights(weights)
    (tmp_path / "run.json").write_text(json.dumps({
        "model": "asdn", "scale": None, "model_config": tiny_model.model_config.to_dict(),
        "steps": 5, "validation_psnr": {"2": 30.0}, "command": "python -m asdn_tf.train"}))
    assert weights_io.load_model(weights).model_config == tiny_model.model_config


def test_keras_files_load_in_safe_mode(monkeypatch, tmp_path, tiny_model):
    calls = []
    monkeypatch.setattr(keras.saving, "load_model",
                        lambda path, **options: calls.append(options) or tiny_model)
    path = tmp_path / "model.keras"
    path.write_bytes(b"")
    assert weights_io.load_model(path, precision="float32") is tiny_model
    assert calls == [{"safe_mode": True}]


@pytest.mark.slow
def test_the_photo_model_is_bundled_and_upscales_by_default():
    photo = weights_io.load_pretrained("photo")
    sidecar = weights_io.read_sidecar(weights_io.bundled_weights("photo"))
    assert sidecar["data_config"]["degradation"] == "photo" and sidecar["steps"] > 0
    assert photo.model_config == weights_io.load_pretrained("default").model_config
    assert weights_io.UPSCALE_MODEL == "photo"
    shared = weights_io.shared_pretrained("float32")
    for mine, theirs in zip(shared.get_weights(), photo.get_weights()):
        np.testing.assert_array_equal(mine, theirs)
    with pytest.raises(ValueError, match="unknown model 'sharp'; the bundled models are "
                       "default, photo"):
        weights_io.load_pretrained("sharp")
