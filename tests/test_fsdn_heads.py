"""An FSDN with several heads (×2, ×3, ×4 on one low-resolution trunk): the model, its batches,
its training run and its weights file."""

import json

import numpy as np
import pytest

import asdn_tf
from asdn_tf.cli import train as train_cli
from asdn_tf.data import pipeline
from asdn_tf.data.imresize import imresize
from asdn_tf.inference.weights_io import load_model
from asdn_tf.data.config import DataConfig
from asdn_tf.nn.config import fsdn_scales, preset
from asdn_tf.training.config import TrainConfig
from asdn_tf.training import train_tf


def test_each_head_upscales_by_its_factor_from_one_trunk():
    fsdn = asdn_tf.build_fsdn("tiny", (2, 3, 4))
    lr = np.random.default_rng(0).random((1, 6, 7, 3), np.float32)
    for factor in (2, 3, 4):
        assert tuple(fsdn(lr, scale=factor).shape) == (1, 6 * factor, 7 * factor, 3)
    assert len(fsdn.trunk.weights) and fsdn.scale == (2, 3, 4)
    with pytest.raises(ValueError, match="name the scale"):
        fsdn(lr)
    with pytest.raises(ValueError, match="upscales by 2, 3, 4 only, not 5"):
        fsdn(lr, scale=5)


def test_a_head_taken_alone_gives_the_same_pixels():
    fsdn = asdn_tf.build_fsdn("tiny", (2, 3))
    for weight in fsdn.weights:  # away from the zero biases of a fresh build
        weight.assign(weight + 0.01)
    lr = np.random.default_rng(1).random((1, 5, 9, 3), np.float32)
    single = fsdn.at_scale(3)
    assert single.scale == 3 and single.count_params() < fsdn.count_params()
    np.testing.assert_allclose(single(lr), fsdn(lr, scale=3), atol=1e-6)


def test_some_heads_taken_together_give_the_same_pixels():
    """A photo FSDN ships the heads that gain (docs/training.md): ×3 and ×4 of a ×2/×3/×4
    network, without its ×2 head, so the plan runs ASDN there."""
    fsdn = asdn_tf.build_fsdn("tiny", (2, 3, 4))
    for weight in fsdn.weights:
        weight.assign(weight + 0.01)
    lr = np.random.default_rng(2).random((1, 5, 6, 3), np.float32)
    part = fsdn.at_scale((3, 4))
    assert part.scales == (3, 4) and part.count_params() < fsdn.count_params()
    for factor in (3, 4):
        np.testing.assert_allclose(part(lr, scale=factor), fsdn(lr, scale=factor), atol=1e-6)
    with pytest.raises(ValueError, match="upscales by 2, 3, 4 only, not 5"):
        fsdn.at_scale((3, 5))


def test_the_config_round_trips():
    fsdn = asdn_tf.build_fsdn("tiny", (2, 4))
    again = asdn_tf.FSDN.from_config(fsdn.get_config())
    assert again.scales == (2, 4) and again.model_config == fsdn.model_config


@pytest.mark.parametrize("scale", [(), (2, 2), (2, 1), ("2",), 2.0])
def test_bad_factors_are_refused(scale):
    with pytest.raises(ValueError, match="FSDN scale"):
        fsdn_scales(scale)


def test_batches_draw_one_factor_per_update(t91_subset):
    config = DataConfig(sources=(str(t91_subset),), patch_size=8, batch_size=2)
    batches = iter(pipeline.training_dataset(config, fixed_scale=(2, 3, 4), seed=0))
    seen = set()
    for _ in range(12):
        batch = next(batches)
        head = int(batch["level"][0])
        factor = (2, 3, 4)[head]
        seen.add(factor)
        assert batch["lr"].shape == (2, 8, 8, 3)
        assert batch["hr"].shape == (2, 8 * factor, 8 * factor, 3)
        np.testing.assert_allclose(batch["lr"], imresize(batch["hr"], scale=1 / factor),
                                   atol=1e-5)
    assert seen == {2, 3, 4}


def test_the_flag_takes_one_factor_or_several():
    assert train_cli.fsdn_scale(["3"]) == 3
    assert train_cli.fsdn_scale(["2", "3", "4"]) == (2, 3, 4)
    assert train_cli.fsdn_scale(None) is None
    with pytest.raises(ValueError, match="--scale takes integers"):
        train_cli.fsdn_scale(["x2"])


def test_training_several_heads_writes_a_file_that_loads_whole_or_by_factor(tmp_path, t91_subset):
    final = train_tf.train(preset("tiny"), DataConfig(sources=(str(t91_subset),), patch_size=8,
                                                      batch_size=2),
                           TrainConfig(steps=4, checkpoint_every=2, log_every=1,
                                       validate_every=0), tmp_path / "run", model="fsdn",
                           scale=(2, 3))
    sidecar = json.loads((tmp_path / "run" / "final.json").read_text())
    assert sidecar["model"] == "fsdn" and sidecar["scale"] == [2, 3]
    whole = load_model(final, precision="float32")
    assert whole.scales == (2, 3)
    third = load_model(final, fsdn_scale=3, precision="float32")
    lr = np.random.default_rng(2).random((1, 6, 6, 3), np.float32)
    np.testing.assert_allclose(third(lr), whole(lr, scale=3), atol=1e-6)
    with pytest.raises(ValueError, match=r"is an FSDN for x2, x3 \(its sidecar\), not x4"):
        load_model(final, fsdn_scale=4)


def test_an_interrupted_run_says_it_resumes_in_one_line(monkeypatch, capsys, tmp_path):
    """Ctrl+C during training: one line and status 130, no traceback."""
    from absl import flags

    def interrupted(values):
        raise KeyboardInterrupt

    values = flags.FlagValues()
    train_cli.define_flags(values)
    values(["train", f"--output_dir={tmp_path / 'run'}"])
    monkeypatch.setattr(train_cli, "run_from_flags", interrupted)
    monkeypatch.setattr(train_cli.flags, "FLAGS", values)
    with pytest.raises(SystemExit) as stopped:
        train_cli.main(["train"])
    assert stopped.value.code == 130
    assert capsys.readouterr().err == (
        f"train: interrupted; the same command resumes from the newest checkpoint in "
        f"{tmp_path / 'run'}\n")
