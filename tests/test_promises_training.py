"""Promises of training and weights files that an audit found broken (issue 36):

- a rerun into a folder whose checkpoints are gone, or that holds someone else's run, stops with
  one line and changes nothing (docs/training.md), under both trainers (`training.loop.resume`
  is theirs alike); `--restart` still starts over, moving the old files aside;
- a sidecar or state.json nested beyond what Python's JSON parser recurses through is a
  one-line ValueError (or a set-aside state.json), never a RecursionError;
- a .weights.h5 whose numbers live outside the file is refused with the reason, not with
  "holds N parameters, the preset needs N".
"""

import json
import logging
import os
import shutil

import h5py
import numpy as np
import pytest

import asdn_tf
from asdn_tf.inference import weights_io
from asdn_tf.training import loop, run_folder
from asdn_tf.training.errors import TrainingError
from conftest import (BLOCK_TENSORFLOW, ONE_LEVEL, make_run_data, run_jax, train_in_process,
                      upscale_command)

DEEP = "[" * 200_000


def _files(folder):
    return {str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def _sidecar(steps, checkpoint_every, total):
    return json.dumps({"model": "asdn", "steps": steps, "train_config": {
        "checkpoint_every": checkpoint_every, "steps": total}})


# ---- what a rerun without checkpoints may replace ----------------------------------------------

@pytest.mark.parametrize("written, named", [
    ({"state.json": "{}"}, "state.json"),
    ({"final.weights.h5": "weights", "final.json": _sidecar(40, 10, 40)}, "final.weights.h5"),
    ({"final.json": _sidecar(40, 10, 40)}, "final.json"),
    # best weights validated past their run's first checkpoint (at 10): it had checkpoints
    ({"best.weights.h5": "weights", "best.json": _sidecar(20, 10, 40)}, "best.weights.h5"),
    # best weights of no run of this trainer: no sidecar, a sidecar without the run, or garbage
    ({"best.weights.h5": "weights"}, "best.weights.h5"),
    ({"best.weights.h5": "weights", "best.json": json.dumps({"model": "asdn"})},
     "best.weights.h5"),
    ({"best.weights.h5": "weights", "best.json": DEEP}, "best.weights.h5"),
])
def test_an_earlier_runs_files_without_checkpoints_are_refused(tmp_path, written, named):
    for name, text in written.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "validation.csv").write_text("step,x2\n10,30.0\n20,31.0\n")
    before = _files(tmp_path)
    with pytest.raises(TrainingError) as error:
        run_folder.check_no_earlier_run(tmp_path)
    assert str(error.value) == (
        f"{tmp_path} holds an earlier run's {named} but no checkpoint to resume that run from; "
        "nothing was changed: rerun with --restart to move the run's files aside and start "
        "from step 0, or use another --output_dir")
    assert _files(tmp_path) == before


@pytest.mark.parametrize("written", [
    {},
    {"validation.csv": "step,x2\n5,30.0\n"},
    # killed after validating at or before the first checkpoint, before it was saved: the same
    # command starts the run again
    {"best.weights.h5": "weights", "best.json": _sidecar(10, 10, 40),
     "validation.csv": "step,x2\n5,29.0\n10,30.0\n"},
    {"best.weights.h5": "weights", "best.json": _sidecar(3, 1000, 6)},
])
def test_a_run_killed_before_its_first_checkpoint_starts_again(tmp_path, written):
    for name, text in written.items():
        (tmp_path / name).write_text(text)
    run_folder.check_no_earlier_run(tmp_path)


class _Checkpoints:
    """A backend's checkpoints as `loop.resume` sees them: files on disk in `folder`; restore
    gives the newest step, or None, and records that it ran (it may change the folder)."""

    def __init__(self, folder, restores=True):
        self.folder, self.restores, self.restored = folder, restores, False

    def restore(self):
        self.restored = True
        steps = sorted(int(path.name[5:-4]) for path in self.folder.glob("checkpoints/ckpt-*.npz"))
        return steps[-1] if steps and self.restores else None


def test_resume_refuses_before_restoring_or_warm_starting(tmp_path):
    (tmp_path / "state.json").write_text(json.dumps({"seconds": 5.0, "best_psnr": 30.0}))
    (tmp_path / "best.weights.h5").write_text("someone's weights")
    checkpoints, started = _Checkpoints(tmp_path), []
    with pytest.raises(TrainingError, match="earlier run's state.json"):
        loop.resume(tmp_path, False, checkpoints, lambda: started.append(True))
    assert not checkpoints.restored and not started


def test_resume_goes_on_from_a_checkpoint_or_restarts_when_told(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "ckpt-10.npz").write_bytes(b"x")
    (tmp_path / "state.json").write_text(json.dumps({"seconds": 5.0, "best_psnr": 30.0}))
    assert loop.resume(tmp_path, False, _Checkpoints(tmp_path), lambda: None).best_psnr == 30.0
    # Checkpoint files that do not restore (a killed write's, removed): the run's state stays.
    with pytest.raises(TrainingError, match="earlier run's state.json"):
        loop.resume(tmp_path, False, _Checkpoints(tmp_path, restores=False), lambda: None)
    started = []
    state = loop.resume(tmp_path, True, _Checkpoints(tmp_path), lambda: started.append(True))
    assert started and state.best_psnr == -np.inf
    [previous] = tmp_path.glob("previous-*")
    assert sorted(path.name for path in previous.iterdir()) == ["checkpoints", "state.json"]


@pytest.fixture(scope="module")
def data(tmp_path_factory, datasets_dir):
    return make_run_data(tmp_path_factory.mktemp("promise_data"), datasets_dir, 3)


def _flags(data, output_dir, steps):
    return ["--preset=tiny", "--num_levels=2", f"--sources={data / 'train'}", "--patch_size=8",
            "--batch_size=2", f"--steps={steps}", "--checkpoint_every=2", "--log_every=2",
            "--validate_every=2", f"--validation_dir={data / 'val'}", "--validation_scales=2",
            f"--output_dir={output_dir}"]


@pytest.mark.slow
def test_a_rerun_without_the_checkpoints_stops_and_changes_nothing(data, tmp_path):
    """The audit's case under TensorFlow: 6 steps, the checkpoints removed, 2 steps again."""
    run = tmp_path / "run"
    assert train_in_process(_flags(data, run, 6)) is None
    shutil.rmtree(run / "checkpoints")
    shutil.rmtree(run / "logs")
    before = _files(run)
    assert len((run / "validation.csv").read_text().splitlines()) == 4
    error = train_in_process(_flags(data, run, 2))
    assert error.startswith(f"{run} holds an earlier run's state.json but no checkpoint")
    assert "--restart" in error and "\n" not in error
    assert _files(run) == before
    # Someone's best weights and state in the --output_dir: the same.
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    for name in ("best.weights.h5", "best.json", "state.json"):
        shutil.copy(run / name, theirs / name)
    kept = _files(theirs)
    assert "holds an earlier run's state.json" in train_in_process(_flags(data, theirs, 2))
    assert _files(theirs) == kept
    # --restart starts over, the old files moved aside.
    assert train_in_process(_flags(data, run, 2) + ["--restart"]) is None
    [previous] = run.glob("previous-*")
    assert _files(previous) == before
    assert json.loads((run / "final.json").read_text())["steps"] == 2


# Trains the tiny preset under JAX into argv[2] for 2 steps, removes its checkpoints, prints
# {file: bytes as hex} of the run folder and reruns it for 1 step, printing its TrainingError:
# both runs in one process (one JAX start-up), as the TensorFlow case runs them in the test's.
JAX_TRAIN = BLOCK_TENSORFLOW + f"""
import json
import pathlib
import shutil
import sys
from asdn_tf.nn import config
from asdn_tf.data.config import DataConfig
from asdn_tf.training.config import TrainConfig
from asdn_tf.training import train_jax
from asdn_tf.training.errors import TrainingError
data_config = DataConfig(sources=(sys.argv[1],), patch_size=8, batch_size=2,
                         level_weights={ONE_LEVEL})
run = pathlib.Path(sys.argv[2])
for steps in (2, 1):
    train_config = TrainConfig(steps=steps, checkpoint_every=1, validate_every=0, log_every=1)
    try:
        train_jax.train(config.preset("tiny"), data_config, train_config, run,
                        preset_name="tiny")
    except TrainingError as error:
        print("refused:", error)
    if steps == 2:
        shutil.rmtree(run / "checkpoints")
        print(json.dumps({{str(path.relative_to(run)): path.read_bytes().hex()
                          for path in sorted(run.rglob("*")) if path.is_file()}}))
"""


@pytest.mark.slow
def test_the_jax_trainer_keeps_the_promise_too(image_folder, tmp_path):
    run = tmp_path / "run"
    lines = run_jax(JAX_TRAIN, image_folder, run).stdout.splitlines()
    before = json.loads(next(line for line in lines if line.startswith("{")))
    assert before and not any(name.startswith("checkpoints") for name in before)
    [refused] = [line for line in lines if line.startswith("refused")]  # the rerun, only
    assert refused.startswith(f"refused: {run} holds an earlier run's state.json")
    assert {name: data.hex() for name, data in _files(run).items()} == before


# ---- JSON nested beyond the parser's recursion -------------------------------------------------

def test_a_deeply_nested_sidecar_is_a_value_error(tmp_path, weights):
    shutil.copy(weights, tmp_path / "w.weights.h5")
    for text in (DEEP, '{"model": ' + "[" * 5000 + "]" * 5000 + "}"):
        (tmp_path / "w.json").write_text(text)
        with pytest.raises(ValueError, match=r"sidecar .*w\.json: its JSON is nested too deeply"):
            weights_io.read_sidecar(tmp_path / "w.weights.h5")
        with pytest.raises(ValueError, match="nested too deeply"):
            asdn_tf.load_model(tmp_path / "w.weights.h5")


def test_the_command_says_one_line_for_a_deeply_nested_sidecar(tmp_path, weights, capsys):
    shutil.copy(weights, tmp_path / "w.weights.h5")
    (tmp_path / "w.json").write_text(DEEP)
    image = tmp_path / "in.png"
    from PIL import Image
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    status = upscale_command.run_cli(["upscale", f"--weights={tmp_path / 'w.weights.h5'}",
                                      f"--input={image}", f"--output={tmp_path / 'out.png'}",
                                      "--scale=2"])
    err = capsys.readouterr().err
    assert status != 0 and "Traceback" not in err and "RecursionError" not in err
    assert err.strip().splitlines()[-1].endswith("its JSON is nested too deeply")
    assert not (tmp_path / "out.png").exists()


def test_a_deeply_nested_state_file_is_set_aside(tmp_path, caplog):
    (tmp_path / "state.json").write_text(DEEP)
    (tmp_path / "best.json").write_text(DEEP)
    (tmp_path / "best.weights.h5").write_text("weights")
    with caplog.at_level(logging.WARNING):
        state = run_folder.load_state(tmp_path)
    assert state == run_folder.RunState()
    assert not (tmp_path / "state.json").exists() and list(tmp_path.glob("state.json.bad-*"))
    assert "unreadable" in caplog.text


# ---- weights stored outside the file -----------------------------------------------------------

def _rewritten(weights, path, external=None, link=None):
    """A copy of the .weights.h5 `weights` at `path`, its largest dataset's numbers stored in
    the raw file `external`, or replaced by a soft link to another dataset (`link`)."""
    with h5py.File(weights, "r") as source:
        datasets = []
        source.visititems(lambda name, item: datasets.append(name)
                          if isinstance(item, h5py.Dataset) else None)
        largest = max(datasets, key=lambda name: source[name].size)
        with h5py.File(path, "w") as target:
            for name in source:
                source.copy(source[name], target, name)
            for key, value in source.attrs.items():
                target.attrs[key] = value
            values = np.ascontiguousarray(source[largest][()])
            del target[largest]
            if external:
                values.tofile(external)
                target.create_dataset(largest, shape=values.shape, dtype=values.dtype,
                                      external=[(os.fsencode(external), 0, values.nbytes)])
            else:
                other = next(name for name in datasets if name != largest)
                target[largest] = h5py.SoftLink("/" + other)
    return largest


def test_a_weight_stored_in_an_external_file_is_refused_with_the_reason(tmp_path, weights):
    path = tmp_path / "external.weights.h5"
    largest = _rewritten(weights, path, external=tmp_path / "numbers.bin")
    with pytest.raises(ValueError) as error:
        asdn_tf.load_model(path, preset="tiny")
    message = str(error.value)
    assert f"its dataset /{largest} is stored in the external file" in message
    assert "numbers.bin" in message and "parameters" not in message and "\n" not in message


def test_a_link_in_a_weights_file_is_refused_with_the_reason(tmp_path, weights):
    path = tmp_path / "linked.weights.h5"
    largest = _rewritten(weights, path, link=True)
    with pytest.raises(ValueError, match=f"/{largest} is a link; Keras reads only numbers"):
        asdn_tf.load_model(path, preset="tiny")


def test_a_weights_file_of_another_network_still_names_the_counts(tmp_path, weights):
    with pytest.raises(ValueError, match=r"do not fit preset default: the file holds [\d,]+ "
                                         r"parameters, the preset needs 159,812"):
        asdn_tf.load_model(weights, preset="default")
