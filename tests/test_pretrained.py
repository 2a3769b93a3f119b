"""The weights bundled in the package: they load, say where they come from, and beat bicubic."""

import json

import pytest

import asdn_tf
from asdn_tf import evaluate, pretrained


def test_bundled_weights_load_with_their_sidecar():
    model = asdn_tf.load_pretrained()
    assert model.model_config == asdn_tf.preset("default")
    sidecar = json.loads(pretrained.sidecar_path(pretrained.PACKAGE_WEIGHTS).read_text())
    assert sidecar["preset"] == "default"
    assert sidecar["command"] == "python -m asdn_tf.train --flagfile=configs/cpu.txt"
    assert sidecar["steps"] > 0 and sidecar["training_seconds"] > 0
    assert set(sidecar["validation_psnr"]) >= {"2", "3", "4"}


def test_bundled_weights_beat_bicubic_on_set5(datasets_dir):
    images = {"Set5": evaluate.load_set(datasets_dir / "Set5")}
    scales = [2, 3.3]
    bicubic = evaluate.evaluate(images, scales, "bicubic")
    model = evaluate.evaluate(images, scales, "asdn", asdn_tf.load_pretrained())
    for ours, theirs in zip(model, bicubic):
        assert ours["psnr"] >= theirs["psnr"] + 0.5, (ours, theirs)
        assert ours["ssim"] > theirs["ssim"]


def test_the_bundled_model_does_not_hide_behind_a_missing_file(monkeypatch, tmp_path):
    monkeypatch.setattr(pretrained, "PACKAGE_WEIGHTS", tmp_path / "default.weights.h5")
    with pytest.raises(FileNotFoundError, match="no default weights are bundled"):
        asdn_tf.load_pretrained()
