"""Training on several machines: `--strategy=multiworker` with two real worker processes.

Each worker runs the same `python -m asdn_tf.train` command with its own TF_CONFIG; the
cluster is two free ports on 127.0.0.1 (found by binding to port 0), and both workers share
one --output_dir, as on a shared disk, so anything the second worker wrote there would show.
The tiny preset with two levels, 8-pixel patches and a global batch of 4 (2 per worker) keeps
the training to seconds: the start of each TensorFlow process costs most of the time.

The weights are compared with a single-process run of the same global batch and data order
(run here, through `run_from_flags` as the command line does): the pipeline gives any number of
workers the patches and levels of one process, cut in equal parts (data.training_dataset), so
the runs differ only by float rounding in the all-reduce.
"""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

import asdn_tf
from asdn_tf.data import pipeline as data_lib
from asdn_tf.cli import train
from asdn_tf.training import train_step
from asdn_tf.data.config import DataConfig
from conftest import make_run_data

ROOT = pathlib.Path(__file__).resolve().parents[1]

# The training command, SIGKILLing itself right after it logs update KILL_AT_STEP: a worker
# that dies mid-run at a known point.
DYING_WORKER = '''
import os
import signal

from asdn_tf.cli import train
from asdn_tf.training import common

kill_at = int(os.environ.get("KILL_AT_STEP", "0"))
progress = common.progress_line


def progress_then_die(step, *args):
    progress(step, *args)
    if step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)


common.progress_line = progress_then_die
train.run()
'''


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def _flags(data, output_dir, steps, **extra):
    args = {"preset": "tiny", "num_levels": 2, "sources": data / "train", "patch_size": 8,
            "batch_size": 4, "steps": steps, "checkpoint_every": 1, "keep_checkpoints": 2,
            "log_every": 1, "validate_every": 0, "output_dir": output_dir, **extra}
    return [f"--{name}={value}" for name, value in args.items()]


@pytest.fixture
def start_workers(tmp_path):
    """`start_workers(command, args, ports, kill=None)` starts one worker per port; any still
    running when the test ends are killed."""
    started = []

    def start(command, args, ports, kill=None):
        workers = _start_workers(command, args, ports, tmp_path, kill)
        started.extend(process for process, _ in workers)
        return workers

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def _start_workers(command, args, ports, folder, kill):
    """One worker per port: `command args --strategy=multiworker`, TF_CONFIG naming the cluster
    and its index, its own TMPDIR (folder/tmp<i>) and its stderr in folder/worker<i>.log.
    `kill` = (index, step): that worker SIGKILLs itself after the step (DYING_WORKER)."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    workers = []
    for index in range(len(ports)):
        temporary = folder / f"tmp{index}"
        temporary.mkdir(exist_ok=True)
        env = {**os.environ, "TMPDIR": str(temporary),
               "TF_CONFIG": json.dumps({"cluster": cluster,
                                        "task": {"type": "worker", "index": index}})}
        if kill and kill[0] == index:
            env["KILL_AT_STEP"] = str(kill[1])
        log = folder / f"worker{index}.log"
        with open(log, "w") as stderr:
            process = subprocess.Popen([*command, *args, "--strategy=multiworker"], cwd=ROOT,
                                       env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        workers.append((process, log))
    return workers


def _finish(workers, timeout=240):
    """(return code, stderr) of each worker once all have exited."""
    deadline = time.time() + timeout
    for process, _ in workers:
        process.wait(timeout=max(deadline - time.time(), 1))
    return [(process.returncode, log.read_text()) for process, log in workers]


def _train_here(args):
    """The command line's training, in this process (the default strategy: one replica)."""
    values = flags.FlagValues()
    train.define_flags(values)
    values(["train", *args])
    return train.run_from_flags(values)


def _max_difference(weights, other):
    first, second = (asdn_tf.load_model(path).get_weights() for path in (weights, other))
    return max(float(np.abs(a - b).max()) for a, b in zip(first, second))


def _checkpoint_steps(run):
    state = tf.train.get_checkpoint_state(str(run / "checkpoints"))
    return [int(path.rsplit("-", 1)[1]) for path in state.all_model_checkpoint_paths]


@pytest.fixture(scope="module")
def data(tmp_path_factory, datasets_dir):
    return make_run_data(tmp_path_factory.mktemp("multiworker_data"), datasets_dir, 4)


@pytest.mark.slow
def test_two_workers_train_one_model_as_one_process_does(data, tmp_path, start_workers):
    """Two workers, 4 updates with clipping, validation and checkpoints every 2: both exit 0,
    the run folder holds one run's files, written by the chief alone, and the weights are a
    single process's (same global batch, same data order) within float rounding."""
    run = tmp_path / "run"
    args = _flags(data, run, 4, checkpoint_every=2, validate_every=2,
                  validation_dir=data / "val", validation_scales=2, clip_norm=0.001)
    workers = start_workers([sys.executable, "-m", "asdn_tf.train"], args, _free_ports(2))
    reference = _train_here(_flags(data, tmp_path / "reference", 4, checkpoint_every=2,
                                   validate_every=2, validation_dir=data / "val",
                                   validation_scales=2, clip_norm=0.001))
    (chief_code, chief_log), (worker_code, worker_log) = _finish(workers)
    assert chief_code == 0, chief_log[-3000:]
    assert worker_code == 0, worker_log[-3000:]
    assert "4/4" in worker_log and "done: worker 1 (4 steps)" in worker_log
    assert sorted(path.name for path in run.iterdir()) == [
        "best.json", "best.weights.h5", "checkpoints", "final.json", "final.weights.h5", "logs",
        "state.json", "validation.csv"]
    assert sorted(path.name for path in (run / "checkpoints").iterdir()) == [
        "checkpoint", "ckpt-2.data-00000-of-00001", "ckpt-2.index",
        "ckpt-4.data-00000-of-00001", "ckpt-4.index"]
    assert len(list((run / "logs").iterdir())) == 1
    assert [line.split(",")[0] for line in
            (run / "validation.csv").read_text().splitlines()] == ["step", "2", "4"]
    assert json.loads((run / "final.json").read_text())["steps"] == 4
    assert not list((tmp_path / "tmp1").iterdir())  # the copies of checkpoints are gone
    difference = _max_difference(run / "final.weights.h5", reference)
    print(f"largest weight difference from one process: {difference:.2e}")
    assert difference < 1e-5


@pytest.mark.slow
def test_a_killed_worker_stops_the_other_and_the_same_commands_resume(data, tmp_path,
                                                                     start_workers):
    """Worker 1 dies (SIGKILL) after update 3 of 8: the chief stops with one line within 60 s;
    the same two commands resume from the chief's newest checkpoint and finish at step 8, with
    the weights of one process that trained to that checkpoint and then resumed."""
    run = tmp_path / "run"
    args = _flags(data, run, 8)
    ports = _free_ports(2)
    script = tmp_path / "dying_worker.py"
    script.write_text(DYING_WORKER)
    workers = start_workers([sys.executable, str(script)], args, ports, kill=(1, 3))
    (chief, chief_log), (dying, dying_log) = workers
    assert dying.wait(timeout=240) == -signal.SIGKILL, dying_log.read_text()[-3000:]
    killed = time.time()
    chief.wait(timeout=60)
    stopped_after = time.time() - killed
    stderr = chief_log.read_text()
    assert chief.returncode == 1, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith("train:")]
    assert len(lines) == 1 and stderr.rstrip().endswith(lines[0]), stderr[-3000:]
    assert "worker 1 of the cluster stopped" in lines[0] and "Traceback" not in stderr
    newest = max(_checkpoint_steps(run))
    assert newest >= 2 and lines[0].endswith(f"ckpt-{newest}")
    print(f"the chief stopped {stopped_after:.1f} s after worker 1 was killed")

    resumed = start_workers([sys.executable, "-m", "asdn_tf.train"], args, ports)
    reference = tmp_path / "reference"
    _train_here(_flags(data, reference, newest))
    reference_final = _train_here(_flags(data, reference, 8))
    (chief_code, chief_stderr), (worker_code, worker_stderr) = _finish(resumed)
    assert chief_code == 0, chief_stderr[-3000:]
    assert worker_code == 0, worker_stderr[-3000:]
    assert f"at step {newest}" in chief_stderr
    assert f"worker 1 starts at step {newest}, the chief's" in worker_stderr
    assert json.loads((run / "final.json").read_text())["steps"] == 8
    assert _checkpoint_steps(run) == [7, 8]
    difference = _max_difference(run / "final.weights.h5", reference_final)
    print(f"largest weight difference from one process, resumed: {difference:.2e}")
    assert difference < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("pipelines, replicas, degradation",
                         [(2, 4, "bicubic"), (1, 2, "bicubic"), (2, 2, "photo")])
def test_pipelines_cut_the_batches_of_one_process_in_equal_parts(data, pipelines, replicas,
                                                                  degradation):
    """What each worker's pipeline yields (a per-replica batch for each of its replicas in
    turn), put together in replica order, is the one-process batch: same patches, one level.
    Photo degradations draw one seed for all replicas, so only their targets and sizes match."""
    config = DataConfig(sources=(str(data / "train"),), patch_size=8, batch_size=8,
                        degradation=degradation)
    whole = list(data_lib.training_dataset(config, 2, seed=1).take(3))
    local = replicas // pipelines
    parts = [list(data_lib.training_dataset(
        config, 2, seed=1, input_context=tf.distribute.InputContext(pipelines, pipeline,
                                                                     replicas)).take(3 * local))
             for pipeline in range(pipelines)]
    for step, batch in enumerate(whole):
        pieces = [part[step * local + replica] for part in parts for replica in range(local)]
        assert all(len(piece["hr"]) == 8 // replicas for piece in pieces)
        assert {piece["x_up"].shape[1:] for piece in pieces} == {batch["x_up"].shape[1:]}
        np.testing.assert_array_equal(np.concatenate([p["level"] for p in pieces]),
                                      batch["level"])
        keys = ("hr", "x_up") if degradation == "bicubic" else ("hr",)
        for key in keys:
            np.testing.assert_allclose(np.concatenate([p[key] for p in pieces]), batch[key],
                                       atol=1e-6)


@pytest.mark.parametrize("tf_config, message", [
    ("", "needs TF_CONFIG set on each worker"),
    ("{cluster", "TF_CONFIG is not JSON"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}}', "TF_CONFIG needs a cluster and a task"),
    ('{"cluster": {"ps": ["127.0.0.1:1"]}, "task": {"type": "ps", "index": 0}}',
     "must list host:port addresses"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 1}}',
     "is not in its cluster"),
])
def test_tf_config_mistakes_are_one_line(monkeypatch, tf_config, message):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(train.TrainingError, match=message):
        train_step.make_strategy("multiworker")
