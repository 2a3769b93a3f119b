"""The one training loop (`training.loop`) and the damaged-checkpoint fallback
(`training.checkpoint_fallback`) that both backends share, driven here by a small backend of
plain Python: no network is trained, so the policy alone is under test."""

import math
import pathlib

import pytest

from asdn_tf.nn import config
from asdn_tf.data.config import DataConfig
from asdn_tf.training.config import TrainConfig
from asdn_tf.training import checkpoint_fallback, loop, run_folder
from asdn_tf.training.errors import TrainingError


class _Network:
    def save_weights(self, path):
        pathlib.Path(path).write_bytes(b"weights")


class _Backend:
    """Updates with the given losses; validation gives the given PSNR per validation."""

    def __init__(self, losses, psnrs):
        self.losses, self.psnrs, self.made = list(losses), list(psnrs), 0
        self.synced, self.summaries = [], []

    def step(self):
        return self.made

    def update(self):
        self.made += 1
        return self.losses.pop(0)

    def sync(self):
        self.synced.append(self.made)

    def validate(self, scales):
        return {scale: self.psnrs.pop(0) for scale in scales}

    def summarize(self, step, values, samples=False):
        self.summaries.append((step, sorted(values), samples))


class _Checkpoints:
    def __init__(self, backend):
        self.backend, self.saved = backend, []

    def newest(self):
        return f"the newest checkpoint, ckpt-{self.saved[-1]}, is intact" if self.saved else \
            "no checkpoint had been written yet"

    def save(self, state, elapsed):
        self.saved.append(self.backend.step())
        state.seconds += elapsed()


def _loop(tmp_path, backend, **train):
    train_config = TrainConfig(steps=6, log_every=2, validate_every=3,
                               checkpoint_every=2, validation_scales=(2.0,), **train)
    sidecar = run_folder.WeightsSidecar(
        model="asdn", scale=None, preset="tiny", model_config=config.preset("tiny"),
        data_config=DataConfig(), train_config=train_config, steps=0,
        training_seconds=0.0, validation_psnr={})
    checkpoints = _Checkpoints(backend)
    return loop.Loop(backend, checkpoints, _Network(), tmp_path, sidecar, ["an image"]), checkpoints


def test_the_loop_validates_saves_and_keeps_the_best_when_due(tmp_path):
    backend = _Backend([0.5] * 6, [30.0, 29.0])
    run, checkpoints = _loop(tmp_path, backend)
    run.run()
    assert checkpoints.saved == [2, 4, 6]
    assert backend.synced == [2, 3, 4, 6]  # the variables are current before each
    _, rows = run_folder.read_validation_curve(tmp_path / run_folder.VALIDATION_CURVE)
    assert [row["step"] for row in rows] == ["3", "6"]
    assert run.state.best_psnr == 30.0 and run.state.latest_validation == {"2": 29.0}
    best = (tmp_path / "best.json").read_text()
    assert '"steps": 3' in best  # the worse validation at step 6 kept step 3's weights
    assert run.finish() == tmp_path / run_folder.FINAL_WEIGHTS
    assert '"steps": 6' in (tmp_path / "final.json").read_text()


def test_a_non_finite_loss_stops_without_saving_and_names_what_resumes(tmp_path):
    backend = _Backend([0.5, 0.5, math.nan], [30.0])
    run, checkpoints = _loop(tmp_path, backend)
    with pytest.raises(TrainingError,
                       match=r"loss became nan at step 3; .*ckpt-2, is intact"):
        run.run()
    assert checkpoints.saved == [2]
    assert not (tmp_path / run_folder.VALIDATION_CURVE).exists()


def _files(folder, step):
    return sorted(folder.glob(f"ckpt-{step}.*"))


def _checkpoint_folder(tmp_path, steps):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for step in steps:
        (folder / f"ckpt-{step}.npz").write_bytes(b"x")
    return folder


def test_the_fallback_restores_the_newest_that_restores_and_sets_the_others_aside(tmp_path,
                                                                                  caplog):
    folder = _checkpoint_folder(tmp_path, [1, 2, 3])
    tried = []

    def restore(step):
        tried.append(step)
        return None if step == 1 else "a file is truncated"

    assert checkpoint_fallback.restore_first(folder, [1, 2, 3], restore,
                                             lambda step: _files(folder, step)) == 1
    assert tried == [3, 2, 1]
    assert [path.name for path in folder.iterdir() if path.is_file()] == ["ckpt-1.npz"]
    (aside,) = folder.glob("damaged-*")
    assert sorted(path.name for path in aside.iterdir()) == ["ckpt-2.npz", "ckpt-3.npz"]
    assert "ckpt-3 cannot be restored (a file is truncated)" in caplog.text
    assert "resuming from ckpt-1" in caplog.text


def test_the_fallback_removes_an_interrupted_newest_write(tmp_path):
    folder = _checkpoint_folder(tmp_path, [1, 2])
    restored = checkpoint_fallback.restore_first(
        folder, [1, 2], lambda step: None if step == 1 else "its index file is missing",
        lambda step: _files(folder, step), interrupted_after=1)
    assert restored == 1
    assert sorted(path.name for path in folder.iterdir()) == ["ckpt-1.npz"]


def test_when_none_restores_the_fallback_changes_nothing(tmp_path):
    folder = _checkpoint_folder(tmp_path, [1, 2])
    with pytest.raises(TrainingError,
                       match=r"no checkpoint in .* can be restored \(ckpt-2: bad; ckpt-1: bad\); "
                             "nothing was changed"):
        checkpoint_fallback.restore_first(folder, [1, 2], lambda step: "bad",
                                          lambda step: _files(folder, step))
    assert sorted(path.name for path in folder.iterdir()) == ["ckpt-1.npz", "ckpt-2.npz"]
