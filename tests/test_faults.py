"""Faults in training: kills at chosen and random moments, and damaged run folders.

A killed run, rerun with the same command, resumes and finishes with the right step count. A
damaged checkpoint, `checkpoint` state file, state.json or validation.csv costs one warning line
and a resume from the newest checkpoint that restores; when none restores, training stops with
one line and changes nothing until `--restart`. Never a traceback, never a silent restart.

The runs are the tiny preset with two levels, 8-pixel patches and a one-crop validation set;
the damage cases copy one trained folder and run in this process through the same code path as
the command line (`run_from_flags`, whose one-line errors `main` prints), and two of them also
run as commands.
"""

import contextlib
import logging
import json
import os
import pathlib
import random
import re
import select
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

import asdn_tf
from conftest import leftovers, make_run_data, train_in_process

ROOT = pathlib.Path(__file__).resolve().parents[1]

# A server of training runs. It imports TensorFlow and the training code once, then per line
# "FAULT<tab>LOG" on stdin forks a run of asdn_tf.train with this script's arguments, whose stderr
# goes to LOG and which SIGKILLs itself the N-th time it reaches the point FAULT=point:N names
# ("-": none): windows inside writes and validation that a kill from outside rarely hits. It
# prints the run's pid, then its exit code once it has ended. Each run is a process of its own,
# killed and resumed as the command's would be; only the imports before `train.run()` are shared.
FAULTY_TRAIN = '''
import os
import pathlib
import signal
import sys

import keras  # noqa: F401 (imported before the fork, as everything the runs import)
from tensorflow.python.ops import gen_io_ops

from asdn_tf.cli import train
from asdn_tf.evaluation import benchmark
from asdn_tf.io import fileio
from asdn_tf.training import train_tf  # noqa: F401

fault = {"point": None, "left": 0}


def reached(point, before_kill=lambda: None):
    if point == fault["point"]:
        fault["left"] -= 1
        if fault["left"] == 0:
            before_kill()
            os.kill(os.getpid(), signal.SIGKILL)


merge = gen_io_ops.merge_v2_checkpoints


def merge_or_die(prefixes, destination, **kwargs):
    reached("checkpoint shards")  # ckpt-N_temp/ written, ckpt-N.* not yet
    result = merge(prefixes, destination, **kwargs)
    # TF moves the data file to ckpt-N.data-* and then writes ckpt-N.index in place: a kill
    # meanwhile leaves the index short.
    index = pathlib.Path(destination.numpy().decode() + ".index")
    reached("checkpoint index", lambda: index.write_bytes(index.read_bytes()[:1000]))
    return result


gen_io_ops.merge_v2_checkpoints = merge_or_die
super_resolve = benchmark.super_resolve


def super_resolve_or_die(*args, **kwargs):
    reached("validation")
    return super_resolve(*args, **kwargs)


benchmark.super_resolve = super_resolve_or_die


def write_or_die(path, text):
    with fileio.atomic_path(path) as temporary:
        temporary.touch()
        reached(f"write {path.name}")
        temporary.write_text(text)


fileio.write_atomically = write_or_die
for line in sys.stdin:
    point_and_nth, log = line.rstrip("\\n").split("\\t")
    pid = os.fork()
    if pid == 0:  # the run: it ends, through SystemExit, where the command would
        point, _, nth = point_and_nth.partition(":")
        fault.update(point=point, left=int(nth or 1))
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # stdout is the test's to read
        os.dup2(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
        train.run()
    print(pid, flush=True)
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
'''


def _flags(data, output_dir, steps):
    """The command a user reruns: a checkpoint every step, a validation every third."""
    return ["--preset=tiny", "--num_levels=2", f"--sources={data / 'train'}", "--patch_size=8",
            "--batch_size=2", f"--steps={steps}", "--checkpoint_every=1", "--keep_checkpoints=3",
            "--log_every=1", "--validate_every=3", f"--validation_dir={data / 'val'}",
            "--validation_scales=2", f"--output_dir={output_dir}"]


def _cli(args, **kwargs):
    return subprocess.run([sys.executable, "-m", "asdn_tf.train", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, **kwargs)


def _files(folder):
    return {str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def _steps(run):
    return json.loads((run / "final.json").read_text())["steps"]


def _warnings(caplog):
    return [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]


@pytest.fixture(scope="module")
def data(tmp_path_factory, datasets_dir):
    return make_run_data(tmp_path_factory.mktemp("fault_data"), datasets_dir, 3)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """Four steps: checkpoints 2, 3 and 4, validations at 3 and 4 (best.weights.h5, the curve)."""
    run = tmp_path_factory.mktemp("trained") / "run"
    assert train_in_process(_flags(data, run, 4)) is None
    assert sorted(path.name for path in (run / "checkpoints").glob("*.index")) == [
        "ckpt-2.index", "ckpt-3.index", "ckpt-4.index"]
    return run


@pytest.fixture
def run(trained, tmp_path):
    shutil.copytree(trained, tmp_path / "run")
    return tmp_path / "run"


@pytest.mark.slow
def test_killed_at_any_moment_the_same_command_resumes_and_finishes(data, tmp_path, caplog):
    run, steps = tmp_path / "run", 30
    script = tmp_path / "faulty_train.py"
    script.write_text(FAULTY_TRAIN)
    server = subprocess.Popen([sys.executable, str(script), *_flags(data, run, steps)], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    running = []  # the pid of the run that has not ended yet

    def answer(timeout):
        assert select.select([server.stdout], [], [], timeout)[0], "the run took too long"
        line = server.stdout.readline()
        assert line, "the server of runs died (its traceback is in the captured stderr)"
        return int(line)

    def launch(fault, log):
        server.stdin.write(f"{fault or '-'}\t{log}\n".encode())
        running.append(answer(240))
        return running[-1]

    def ended(log, timeout):
        code = answer(timeout)
        running.pop()
        return code, log.read_text()

    def recorded_step():
        state = tf.train.get_checkpoint_state(str(run / "checkpoints"))
        return int(state.model_checkpoint_path.rsplit("-", 1)[1]) if state else 0

    # Each fault is hit by the run that resumes from the previous one.
    windows = {"checkpoint shards:2": lambda: list((run / "checkpoints").glob("ckpt-*_temp")),
               "checkpoint index:2": lambda: [
                   path for path in (run / "checkpoints").glob("*.index")
                   if int(path.name[5:-6]) > recorded_step()],
               "validation:1": lambda: True,
               "write validation.csv:1": lambda: [
                   path for path in leftovers(run) if path.name.endswith("-validation.csv")
                   and path.stat().st_size == 0]}
    try:
        # The kill's moment is seeded: ASDN_FAULT_SEED replays a failure's seed (the message names it).
        seed = int(os.environ.get("ASDN_FAULT_SEED", "20261206"))
        pid = launch("", tmp_path / "random.log")
        deadline = time.time() + 240
        while not (run / "checkpoints" / "ckpt-1.index").exists() and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(random.Random(seed).uniform(0.0, 1.0))
        os.kill(pid, signal.SIGKILL)
        code, stderr = ended(tmp_path / "random.log", 60)
        assert code == -signal.SIGKILL, f"seed {seed}: {stderr[-2000:]}"

        logs = []
        for number, (fault, left_behind) in enumerate(windows.items()):
            before = recorded_step()
            log = tmp_path / f"fault{number}.log"
            launch(fault, log)
            code, stderr = ended(log, 300)
            logs.append(stderr)
            assert code == -signal.SIGKILL, f"{fault}: {stderr[-2000:]}"
            assert "Traceback" not in stderr, stderr
            resumed = re.search(r"resumed from \S+ at step (\d+)", stderr)
            assert resumed and int(resumed[1]) >= before, f"{fault}: {stderr[-2000:]}"
            assert left_behind(), f"{fault}: the kill did not land in its window"
    finally:
        for pid in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        server.stdin.close()
        server.wait(timeout=60)

    caplog.set_level("INFO")
    assert train_in_process(_flags(data, run, steps)) is None  # the last rerun, in this process for speed
    logs.append(caplog.text)
    # The short index is removed as a killed write's, not reported as damage.
    assert re.search(r"removed ckpt-\d+, a checkpoint whose writing was interrupted", "".join(logs))
    assert "cannot be restored" not in "".join(logs)
    assert _steps(run) == steps and recorded_step() == steps
    assert json.loads((run / "state.json").read_text())["best_psnr"] > 0
    assert not leftovers(run)
    # Kills are not damage: nothing was set aside.
    assert not list(run.rglob("damaged-*")) and not list(run.rglob("*.bad-*"))
    curve = (run / "validation.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in curve] == ["step", *map(str, range(3, steps + 1, 3))]


def _flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DATA_4 = "checkpoints/ckpt-4.data-00000-of-00001"
INDEX_4 = "checkpoints/ckpt-4.index"
# case: (damage, the file whose bytes must survive it, step resumed from, words of the warning)
DAMAGE = {
    "truncated data file": (lambda run: _truncate(run / DATA_4), DATA_4, 3, "truncated"),
    "deleted index": (lambda run: (run / INDEX_4).unlink(), DATA_4, 3, "index file is missing"),
    "bit-flipped data file": (lambda run: _flip(run / DATA_4), DATA_4, 3, "fails the checksum"),
    "garbage checkpoint file": (
        lambda run: (run / "checkpoints" / "checkpoint").write_bytes(b"\x00\xffmodel: ckpt"),
        "checkpoints/checkpoint", 4, "`checkpoint` is unreadable"),
    "garbage state.json": (lambda run: (run / "state.json").write_text('{"best_psnr": 3'),
                           "state.json", 4, "state.json is unreadable"),
    "garbage validation.csv": (lambda run: (run / "validation.csv").write_text("garbage\n1,2\n"),
                               "validation.csv", 4, "is not a validation curve"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", DAMAGE)
def test_damage_costs_a_warning_and_resumes_from_the_newest_intact_checkpoint(
        case, run, data, caplog):
    damage, kept, step, words = DAMAGE[case]
    damage(run)
    damaged = (run / kept).read_bytes()
    caplog.set_level("INFO")
    assert train_in_process(_flags(data, run, step + 1)) is None
    assert f"resumed from {run / 'checkpoints' / f'ckpt-{step}'} at step {step}" in caplog.text
    [warning] = _warnings(caplog)
    assert words in warning and "\n" not in warning
    assert _steps(run) == step + 1
    # Set aside, not destroyed: the damaged bytes are still in the run folder.
    assert damaged in _files(run).values()
    curve = (run / "validation.csv").read_text().splitlines()
    assert curve[0] == "step,x2" and curve[-1].startswith(f"{step + 1},")


@pytest.mark.slow
def test_garbage_state_keeps_the_best_psnr_of_best_json(run, data, caplog):
    best = json.loads((run / "best.json").read_text())["validation_psnr"]["2"]
    (run / "state.json").write_text("[]")
    caplog.set_level("INFO")
    assert train_in_process(_flags(data, run, 5)) is None
    assert f"the best PSNR so far is {best:.2f} dB (from best.json)" in caplog.text
    # Step 5's validation replaces best.weights.h5 only if it beats the rebuilt best.
    now = json.loads((run / "best.json").read_text())["validation_psnr"]["2"]
    assert now >= best
    assert json.loads((run / "state.json").read_text())["best_psnr"] == pytest.approx(now)


@pytest.fixture(scope="module")
def resumed_from_3(trained, data, tmp_path_factory):
    """The weights of ckpt-3, as a resume from it (with nothing newer on disk) saves them; the
    same for every damage of ckpt-4, so made once."""
    reference = tmp_path_factory.mktemp("reference") / "run"
    shutil.copytree(trained, reference)
    for path in [*(reference / "checkpoints").glob("ckpt-4.*"),
                 reference / "checkpoints" / "checkpoint"]:
        path.unlink()
    assert train_in_process(_flags(data, reference, 3)) is None
    return asdn_tf.load_model(reference / "final.weights.h5").get_weights()


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["bit flip", "another network"])
def test_a_failed_restore_leaves_no_variable_of_it_behind(damage, run, resumed_from_3, data,
                                                          tmp_path, caplog):
    if damage == "bit flip":
        _flip(run / DATA_4)
    else:
        # ckpt-4 of a three-level network: restoring it sets all but one of this network's
        # variables before it fails; the restore of ckpt-3 must set every one of them again.
        other = tmp_path / "three_levels"
        assert train_in_process(_flags(data, other, 4) + ["--num_levels=3"]) is None
        for path in (run / "checkpoints").glob("ckpt-4.*"):
            shutil.copy(other / "checkpoints" / path.name, path)
    caplog.set_level("INFO")
    assert train_in_process(_flags(data, run, 3)) is None  # resumes at 3 and saves what it restored
    assert "at step 3" in caplog.text and "ckpt-4 cannot be restored" in caplog.text
    restored = asdn_tf.load_model(run / "final.weights.h5").get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(resumed_from_3, restored, strict=True))


@pytest.mark.slow
def test_when_no_checkpoint_restores_it_stops_and_changes_nothing_until_restart(
        run, data, caplog):
    for path in (run / "checkpoints").glob("*.data-*"):
        _flip(path)
    before = _files(run)
    error = train_in_process(_flags(data, run, 6))
    assert error.startswith(f"no checkpoint in {run / 'checkpoints'} can be restored")
    assert "--restart" in error and "\n" not in error
    assert _files(run) == before
    caplog.set_level("INFO")
    assert train_in_process(_flags(data, run, 2) + ["--restart"]) is None
    assert "resumed from" not in caplog.text and "--restart: moved" in caplog.text
    assert _steps(run) == 2
    [previous] = run.glob("previous-*")
    assert _files(previous) == before


@pytest.mark.slow
def test_a_checkpoint_of_another_model_stops_with_one_line(run, data):
    error = train_in_process(_flags(data, run, 6) + ["--features=16"])
    assert "ckpt-4: it was written for another network" in error and "\n" not in error


@pytest.mark.slow
def test_the_command_says_one_line_and_no_traceback(run, data, tmp_path):
    flipped = tmp_path / "flipped"
    shutil.copytree(run, flipped)
    _flip(flipped / DATA_4)
    resumed = _cli(_flags(data, flipped, 5))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Traceback" not in resumed.stderr and "at step 3" in resumed.stderr
    assert sum("cannot be restored" in line for line in resumed.stderr.splitlines()) == 1
    for path in (run / "checkpoints").glob("*.data-*"):
        _flip(path)
    before = _files(run)
    stopped = _cli(_flags(data, run, 6))
    assert stopped.returncode != 0 and "Traceback" not in stopped.stderr
    lines = stopped.stderr.strip().splitlines()
    assert lines[-1].startswith("train: no checkpoint in") and sum(
        line.startswith("train:") for line in lines) == 1, stopped.stderr[-3000:]
    assert not any("WARNING:tensorflow" in line for line in lines), stopped.stderr[-3000:]
    assert _files(run) == before


@pytest.fixture(autouse=True)
def _info_lines_are_captured(caplog):
    """The resume lines are INFO records of absl's logger, whose level an earlier test in the
    session may have raised (absl's --verbosity); caplog sees them only at INFO."""
    caplog.set_level(logging.INFO, logger="absl")
