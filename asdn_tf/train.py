"""Training: python -m asdn_tf.train --flagfile=configs/cpu.txt

Every update draws one LFR level, trains the trunk and that level's branch only (L1 loss,
Adam, the learning rate halved on a schedule), and the loss is divided by the number of
replicas. Restarting the same command resumes from the newest checkpoint in --output_dir that
can be restored; `--restart` starts again from step 0 and moves the earlier run's files aside.
With `--strategy=multiworker` the same command runs on every machine, each with its own
TF_CONFIG: the chief alone writes --output_dir and the others follow its checkpoints.
FSDN (`--model=fsdn --scale=S`) fine-tunes a fixed-scale network, usually from ASDN weights
(`--init_from`).

The flags mirror `ModelConfig`, `DataConfig` and `TrainConfig` (asdn_tf/config.py); `--preset`
picks the base model config and any model flag given explicitly overrides it.
"""

import contextlib
import csv
import dataclasses
import gc
import io
import json
import math
import os
import pathlib
import re
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags, logging

from asdn_tf import config as config_lib
from asdn_tf import data as data_lib
from asdn_tf import cli, evaluate, fileio, progress
from asdn_tf.model import ASDN, FSDN, build_fsdn, build_model, init_from_asdn
from asdn_tf.precision import dtype_policy
from asdn_tf.weights_io import (BUNDLED, WEIGHTS_FOLDER, bundled_weights, load_model, read_sidecar,
                                sidecar_path)

# What TF's checkpoint writer leaves when it is killed: the shard folder of an unfinished save
# and the temporary of the `checkpoint` state file (tf.io's atomic write).
_CHECKPOINT_LEFTOVER = re.compile(r"ckpt-\d+_temp|checkpoint\.tmp[0-9a-f]{32}")
_CHECKPOINT_INDEX = re.compile(r"ckpt-(\d+)\.index")
# Files a run writes in --output_dir; --restart moves them aside.
_RUN_FILES = ("checkpoints", "state.json", "validation.csv", "best.weights.h5", "best.json",
              "final.weights.h5", "final.json", "logs")


class _ExpectedRetracing(logging.logging.Filter):
    """The step is traced once per LFR level by design; TF's retracing warning says otherwise."""

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


class TrainingError(Exception):
    """A failure a user can act on; main prints it as one line."""


class Trainer(keras.Model):
    """Wraps ASDN or FSDN with the paper's train step.

    `train_step(batch, level)` takes the level as a Python int: the step is traced once per level
    and only the trunk and that branch are handed to the optimizer, so the other branches get
    neither gradient nor Adam's momentum.

    Args:
        network: the `ASDN` or `FSDN` being trained.
        patch_size: int, LR patch side (used when degradation runs in the step).
        clip_norm: float, clip the global norm of each update's gradient to this (0: no
            clipping).
    """

    def __init__(self, network, patch_size=48, clip_norm=0.0, **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self.patch_size = patch_size
        self.clip_norm = clip_norm
        self.is_fsdn = isinstance(network, FSDN)

    def call(self, inputs, level=None):
        return self.network(inputs) if self.is_fsdn else self.network(inputs, level=level)

    def step_variables(self, level):
        if self.is_fsdn:
            return self.network.trainable_variables
        return (self.network.trunk.trainable_variables
                + self.network.branches[level].trainable_variables)

    def train_step(self, batch, level=None):
        if self.is_fsdn:
            inputs, target = batch["lr"], batch["hr"]
        elif "x_up" in batch:
            inputs, target = batch["x_up"], batch["hr"]
        else:
            inputs, target = data_lib.training_pair(batch["hr"], level, self.patch_size,
                                                    self.network.num_levels)
        variables = self.step_variables(level)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            prediction = tf.cast(self(inputs, level=level, training=True), tf.float32)
            loss = tf.reduce_mean(tf.abs(target - prediction))
            scaled = self.optimizer.scale_loss(loss / replicas)
        gradients = tape.gradient(scaled, variables)
        if self.clip_norm:
            gradients = self._clip(gradients, replicas)
        self.optimizer.apply(gradients, variables)
        return loss

    def _clip(self, gradients, replicas):
        """Clips by the norm of the whole batch's gradient. (Keras's `global_clipnorm` clips
        each replica's share before the optimizer sums them: a different update.) With several
        replicas the sum is made here, and each replica hands the optimizer 1/replicas of it."""
        if replicas > 1:
            gradients = tf.distribute.get_replica_context().all_reduce(
                tf.distribute.ReduceOp.SUM, gradients)
        # float16 gradients are still multiplied by the loss scale, which the optimizer divides.
        limit = self.clip_norm * getattr(self.optimizer, "dynamic_scale", 1.0)
        gradients, _ = tf.clip_by_global_norm(gradients, limit)
        return [gradient / replicas for gradient in gradients]


def make_strategy(name):
    """tf.distribute strategy by name: default, mirrored, multiworker or tpu.

    multiworker reads the cluster from TF_CONFIG, must be made before any other TensorFlow
    work in the process, and returns once every worker of the cluster has started.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        task = _check_tf_config()
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except (tf.errors.OpError, RuntimeError, ValueError) as error:
            raise TrainingError(f"cannot start {task} of TF_CONFIG's cluster: "
                                f"{cli.first_line(error)}") from None
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise TrainingError(f"--strategy must be default, mirrored, multiworker or tpu, got {name!r}")


_TF_CONFIG_HELP = ('(JSON, e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                   '"task": {"type": "worker", "index": 0}}; README: Training on several '
                   'machines)')


def _check_tf_config():
    """Names this process's task in TF_CONFIG ("worker 1"); raises TrainingError when TF_CONFIG
    is missing or does not describe a cluster of chief and workers that holds the task."""
    text = os.environ.get("TF_CONFIG", "")
    if not text.strip():
        raise TrainingError(f"--strategy=multiworker needs TF_CONFIG set on each worker "
                            f"{_TF_CONFIG_HELP}")
    try:
        config = json.loads(text)
    except ValueError as error:
        raise TrainingError(f"TF_CONFIG is not JSON ({error}) {_TF_CONFIG_HELP}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise TrainingError(f"TF_CONFIG needs a cluster and a task {_TF_CONFIG_HELP}")
    jobs = {job: cluster.get(job) for job in ("chief", "worker") if job in cluster}
    others = sorted(set(cluster) - set(jobs))
    if others or not jobs or not all(isinstance(hosts, list) and hosts and all(
            isinstance(host, str) and ":" in host for host in hosts) for hosts in jobs.values()):
        raise TrainingError(f"TF_CONFIG's cluster must list host:port addresses under "
                            f"\"worker\" (and optionally one \"chief\"), got {cluster!r}")
    kind, index = task.get("type"), task.get("index", 0)
    if kind not in jobs or not isinstance(index, int) or not 0 <= index < len(jobs[kind]):
        raise TrainingError(f"TF_CONFIG's task {task!r} is not in its cluster {cluster!r}")
    return f"{kind} {index}"


def _worker_count(distribution):
    """How many processes train together: several with multiworker, else one."""
    resolver = getattr(distribution, "cluster_resolver", None)
    if not isinstance(distribution, tf.distribute.MultiWorkerMirroredStrategy) or not resolver:
        return 1
    spec = resolver.cluster_spec().as_dict()
    return len(spec.get("chief", ())) + len(spec.get("worker", ()))


def broadcast_from_chief(distribution, variables):
    """Gives every worker the chief's values of `variables` in one all-reduce: only the chief
    restores checkpoints and warm-starts (the run folder may be on its disk alone)."""

    groups = {}  # an all-reduce packs its tensors together: one per dtype
    for variable in variables:
        groups.setdefault(variable.dtype, []).append(variable)

    def chief_values():
        context = tf.distribute.get_replica_context()
        chief = tf.equal(context.replica_id_in_sync_group, 0)
        return [context.all_reduce(tf.distribute.ReduceOp.SUM, [
            tf.where(chief, variable, tf.zeros_like(variable)) for variable in group])
            for group in groups.values()]

    @tf.function
    def broadcast():
        values = distribution.experimental_local_results(distribution.run(chief_values))[0]
        for group, group_values in zip(groups.values(), values):
            for variable, value in zip(group, group_values):
                variable.assign(value)

    broadcast()


# TF's errors when a peer of a collective op stopped: its connection closed, or the
# coordination service missed its heartbeats.
_PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError,
                tf.errors.DeadlineExceededError)
_PEER_REASONS = (("stopped sending heartbeats", "its heartbeats stopped"),
                 ("Connection reset by peer", "its connection was reset"),
                 ("Connection refused", "it refused the connection"),
                 ("Socket closed", "its connection closed"))


def _lost_worker(error, own_task, resume_from):
    """The one line for a collective op that failed because another worker stopped."""
    text = str(error)
    tasks = [f"{kind} {index}" for kind, index in
             re.findall(r"/job:(\w+)/(?:replica:\d+/)?task:(\d+)", text)]
    who = next((task for task in tasks if task != own_task), "another worker")
    reason = next((words for key, words in _PEER_REASONS if key in text),
                  cli.first_line(error).removeprefix("Collective ops is aborted by: "))
    return TrainingError(f"{who} of the cluster stopped or cannot be reached ({reason}); "
                         f"{own_task} stops too: start the same command on every worker "
                         f"again to resume from {resume_from}")


def resolve_jit(value):
    """--jit_compile=auto|true|false; auto turns XLA on only with a GPU (it is slower on CPU)."""
    if value == "auto":
        return bool(tf.config.list_physical_devices("GPU"))
    if value in ("true", "false"):
        return value == "true"
    raise TrainingError(f"--jit_compile must be auto, true or false, got {value!r}")


def _check_writable(folder):
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fileio.check_writable(folder)
    except OSError as error:
        raise TrainingError(f"output dir {folder} is not writable: {error.strerror or error}") \
            from None


def _missing_folders(folder):
    """`folder` and those of its parents that do not exist yet, outermost first."""
    missing = []
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing.append(path)
    return missing[::-1]


@contextlib.contextmanager
def _output_folder(output_dir):
    """Creates `output_dir`; when the block fails before a checkpoint, weights or state were
    written (TensorBoard logs aside), removes the folders it created, and only those."""
    created = _missing_folders(output_dir)
    _check_writable(output_dir)
    try:
        yield
    except BaseException:
        wrote = any(path.is_file() and path.relative_to(output_dir).parts[0] != "logs"
                    for path in output_dir.rglob("*"))
        if created and not wrote:
            fileio.remove(created[0])
        raise


def _aside(folder, name):
    """A path `folder/name-<time>` that does not exist yet."""
    stem = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, count = folder / stem, 1
    while path.exists():
        count += 1
        path = folder / f"{stem}-{count}"
    return path


def set_aside(path):
    """Renames a file that cannot be read to `NAME.bad-<time>` beside it; returns the new path."""
    target = _aside(path.parent, f"{path.name}.bad")
    path.rename(target)
    return target


def sweep_leftovers(output_dir):
    """Removes what killed writes left in a run folder and its checkpoints: `fileio`'s
    temporaries and TF's checkpoint writer's (`ckpt-N_temp/`, `checkpoint.tmp<hex>`), nothing
    else; returns how many."""
    checkpoints = output_dir / "checkpoints"
    count = fileio.sweep_temporaries(output_dir) + fileio.sweep_temporaries(checkpoints)
    if checkpoints.is_dir():
        for entry in checkpoints.iterdir():
            if _CHECKPOINT_LEFTOVER.fullmatch(entry.name):
                fileio.remove(entry)
                count += 1
    return count


def set_aside_run(output_dir):
    """Moves the files an earlier run wrote in `output_dir` into `output_dir/previous-<time>/`
    (--restart); returns that folder, or None when there was nothing to move."""
    present = [output_dir / name for name in _RUN_FILES if (output_dir / name).exists()]
    if not present:
        return None
    folder = _aside(output_dir, "previous")
    folder.mkdir()
    for path in present:
        path.rename(folder / path.name)
    return folder


@contextlib.contextmanager
def _quiet_tensorflow():
    """Hides TF's Python warnings, which repeat in several lines what this module says in one."""
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        yield
    finally:
        logger.setLevel(level)


def _recorded_steps(folder):
    """The steps TF's `checkpoint` state file lists: a set, empty when there is no file, None
    when the file cannot be read."""
    if not (folder / "checkpoint").exists():
        return set()
    try:
        with _quiet_tensorflow():
            state = tf.train.get_checkpoint_state(str(folder))
    except (ValueError, tf.errors.OpError):  # UnicodeDecodeError for binary garbage
        return None
    if state is None or not state.model_checkpoint_path:
        return None
    steps = set()
    for path in (state.model_checkpoint_path, *state.all_model_checkpoint_paths):
        match = re.fullmatch(r"ckpt-(\d+)", pathlib.Path(path).name)
        if not match:
            return None
        steps.add(int(match[1]))
    return steps


def _checkpoint_files(folder, step):
    return sorted(path for path in folder.glob(f"ckpt-{step}.*")
                  if path.name == f"ckpt-{step}.index"
                  or path.name.startswith(f"ckpt-{step}.data-"))


# TF's words for a damaged checkpoint → ours.
_DAMAGE = (("Checksum does not match", "its data fails the checksum"),
           ("Read less bytes than requested", "a file is truncated"),
           ("Failed to find any matching files", "its index file is missing"),
           ("No such file or directory", "a data file is missing"),
           ("not an sstable", "its index file is corrupt"),
           ("block checksum mismatch", "its index file is corrupt"))
# TF's words for a checkpoint of another network or optimizer.
_OTHER_MODEL = ("incompatible tensor", "Unresolved object in checkpoint",
                "does not equal original dtype", "not found in checkpoint")


def _why(error):
    text = str(error)
    for words, reason in _DAMAGE:
        if words in text:
            return reason
    if any(words in text for words in _OTHER_MODEL):
        return ("it was written for another network or optimizer (other model flags or "
                "--mixed_precision?)")
    text = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", text.strip())
    return (text.splitlines() or [type(error).__name__])[0][:120]


def _restore(checkpoint, step_variable, folder, step):
    """Restores `folder/ckpt-<step>` into `checkpoint`'s objects; None when every object was
    matched and the step reads back, else why not."""
    try:
        checkpoint.restore(str(folder / f"ckpt-{step}")).assert_consumed()
        reason = None
    except Exception as error:  # TF raises OpError, IndexError, ValueError or AssertionError.
        reason = _why(error)
    if reason is not None:
        with _quiet_tensorflow():
            gc.collect()  # a failed restore's remains warn when collected, at exit if not now
        return reason
    if int(step_variable.numpy()) != step:
        return f"it holds step {int(step_variable.numpy())}"
    return None


def restore_newest(checkpoint, step_variable, folder):
    """Restores the newest checkpoint in `folder` that can be restored; returns its step, or
    None when there is none to restore.

    Every `ckpt-N.index` on disk and every step the `checkpoint` state file lists is tried,
    newest first. A failed restore may have set some variables; the next one sets all of them.
    The newest one, if it is newer than all the state file records and cannot be restored, is
    the leftover of a killed write and is removed; others that cannot be restored are moved
    into `folder/damaged-<time>/` with one warning, as is an unreadable state file, which is
    then written again from the files on disk.

    Raises:
        TrainingError: checkpoints exist and none can be restored; nothing was changed.
    """
    if not folder.is_dir():
        return None
    # Created now, the counter is restored at once; otherwise a failed restore leaves it a
    # pending restoration that warns in several lines when the process exits.
    checkpoint.save_counter
    recorded = _recorded_steps(folder)
    on_disk = {int(match[1]) for match in map(_CHECKPOINT_INDEX.fullmatch,
                                               (path.name for path in folder.iterdir())) if match}
    candidates = sorted(on_disk | (recorded or set()), reverse=True)
    interrupted, damaged, restored = None, [], None
    for step in candidates:
        reason = _restore(checkpoint, step_variable, folder, step)
        if reason is None:
            restored = step
            break
        if step == candidates[0] and recorded is not None and step > max(recorded, default=0):
            interrupted = step
        else:
            damaged.append((step, reason))
    if restored is None and damaged:
        listed = "; ".join(f"ckpt-{step}: {reason}" for step, reason in damaged)
        raise TrainingError(f"no checkpoint in {folder} can be restored ({listed}); nothing was "
                            "changed: rerun with --restart to move the run's files aside and "
                            "start from step 0, or use another --output_dir")
    if interrupted is not None:
        for path in _checkpoint_files(folder, interrupted):
            path.unlink()
        logging.info("removed ckpt-%d, a checkpoint whose writing was interrupted", interrupted)
    if damaged or recorded is None:
        aside = _aside(folder, "damaged")
        aside.mkdir()
        for step, _ in damaged:
            for path in _checkpoint_files(folder, step):
                path.rename(aside / path.name)
        if recorded is None and (folder / "checkpoint").exists():
            (folder / "checkpoint").rename(aside / "checkpoint")
        problems = [f"ckpt-{step} cannot be restored ({reason})" for step, reason in damaged]
        if recorded is None:
            problems.append("the state file `checkpoint` is unreadable")
        logging.warning("%s: %s; moved to %s; %s", folder, ", ".join(problems), aside,
                        "starting from step 0" if restored is None
                        else f"resuming from ckpt-{restored}")
    kept = sorted(step for step in on_disk if _checkpoint_files(folder, step))
    if restored is not None and (recorded != set(kept) or max(kept) != restored):
        _write_checkpoint_state(folder, kept)
    return restored


def _write_checkpoint_state(folder, steps):
    """Writes TF's `checkpoint` state file listing `folder/ckpt-<step>` for `steps` (increasing),
    as CheckpointManager does: it keeps the newest keep_checkpoints of them and deletes the
    others as it saves."""
    times = [(folder / f"ckpt-{step}.index").stat().st_mtime for step in steps]
    fileio.write_atomically(folder / "checkpoint", "".join(
        [f'model_checkpoint_path: "ckpt-{steps[-1]}"\n']
        + [f'all_model_checkpoint_paths: "ckpt-{step}"\n' for step in steps]
        + [f"all_model_checkpoint_timestamps: {when!r}\n" for when in times]
        # The manager only deletes checkpoints newer than this.
        + [f"last_preserved_timestamp: {min(times) - 1!r}\n"]))


def load_state(output_dir):
    """The run's state.json as a dict ({} before the first checkpoint). A file that cannot be
    read is set aside with one warning and its best PSNR taken from best.json, so that the
    best weights are only replaced by better ones."""
    path = output_dir / "state.json"
    if not path.exists():
        return {}
    try:
        state = json.loads(path.read_text())
        numbers = [state.get(key, 0.0) for key in ("seconds", "best_psnr")]
        if (all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in numbers)
                and isinstance(state.get("latest_validation", {}), dict)):
            return state
    except (ValueError, AttributeError):  # not JSON, or JSON but not an object
        pass
    aside = set_aside(path)
    state = {}
    best = output_dir / "best.weights.h5"
    try:
        psnr = read_sidecar(best).get("validation_psnr") if best.exists() else None
    except ValueError:
        psnr = None
    if psnr:
        state["best_psnr"] = float(np.mean(list(psnr.values())))
    logging.warning("%s is unreadable; moved to %s; the best PSNR so far is %s", path, aside,
                    f"{state['best_psnr']:.2f} dB (from best.json)" if state
                    else "unknown: the next validation writes best.weights.h5")
    return state


def save_weights(network, path, sidecar):
    """Writes `path` (.weights.h5) and its JSON sidecar through temporary files and renames."""
    with fileio.atomic_path(path) as temporary:
        network.save_weights(temporary)
    fileio.write_atomically(sidecar_path(path), json.dumps(sidecar, indent=2, default=str) + "\n")


def learning_rate_schedule(train_config):
    """The learning rate per update: multiplied by decay_factor from each of lr_milestones on,
    or every decay_every updates when there are none."""
    rate, factor = train_config.learning_rate, train_config.decay_factor
    milestones = train_config.lr_milestones
    if not milestones:
        return keras.optimizers.schedules.ExponentialDecay(rate, train_config.decay_every, factor,
                                                           staircase=True)
    # PiecewiseConstantDecay keeps values[k] while step <= boundaries[k]: m - 1 makes the new
    # rate start at update m, as the staircase above does.
    return keras.optimizers.schedules.PiecewiseConstantDecay(
        [m - 1 for m in milestones], [rate * factor ** k for k in range(len(milestones) + 1)])


def record_validation(path, step, psnr_by_scale):
    """Adds `step`'s validation PSNR to the curve in the CSV at `path` (rewritten atomically).

    Rows from `step` on are dropped first (a resumed run repeats them), and the columns are the
    union of the scales seen, so the curve survives resumes and changed validation scales.
    """
    columns, rows = read_validation_curve(path)
    rows = [row for row in rows if int(row["step"]) < step]
    row = {"step": step}
    for scale, value in psnr_by_scale.items():
        name = f"x{scale:g}"
        row[name] = f"{value:.4f}"
        if name not in columns:
            columns.append(name)
    out = io.StringIO()
    writer = csv.DictWriter(out, ["step", *columns], restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows([*rows, row])
    fileio.write_atomically(path, out.getvalue())


def read_validation_curve(path):
    """(scale columns, rows) of the CSV `record_validation` writes; ([], []) when there is none.
    A file that is not such a curve is set aside as `validation.csv.bad-<time>` with one
    warning, and the curve starts again."""
    if not path.exists():
        return [], []
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            names = reader.fieldnames or []
        if names[:1] != ["step"] or len(set(names)) != len(names):
            raise ValueError("no step column")
        for row in rows:
            if None in row or None in row.values():
                raise ValueError("a row does not fit the header")
            int(row["step"])
            for name, value in row.items():
                if name != "step" and value:
                    float(value)
    except (ValueError, csv.Error):  # UnicodeDecodeError is a ValueError
        aside = set_aside(path)
        logging.warning("%s is not a validation curve; moved to %s; the curve starts again",
                        path, aside)
        return [], []
    return names[1:], rows


def validate(network, images, scales):
    """Mean Y-PSNR per scale under the evaluation protocol (../shared/docs/ASDN.md §7)."""
    rows = evaluate.evaluate({"validation": images}, scales, "asdn", network)
    return {float(row["scale"]): row["psnr"] for row in rows}


def _sample_images(network, images, scale, count=3, crop=96):
    """Bicubic | SR | HR strips of a few validation crops, for TensorBoard."""
    samples = []
    for _, hr in images[:count]:
        hr = hr[:crop, :crop]
        hr, lr = evaluate.benchmark_pair(hr, scale)
        strip = [evaluate.super_resolve(lr.reshape(*lr.shape[:2], -1), scale, hr.shape[:2],
                                        method, network) for method in ("bicubic", "asdn")]
        strip.append(hr.reshape(*hr.shape[:2], -1).astype(np.float32) / 255.0)
        strip = [np.repeat(part, 3, axis=2) if part.shape[2] == 1 else part for part in strip]
        samples.append(np.concatenate(strip, axis=1))
    return np.clip(np.stack(samples), 0.0, 1.0)


def _format_eta(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def resolve_init_from(value):
    """The weights file --init_from names: a bundled model by name (weights_io.BUNDLED, e.g.
    "default"), or a path; a relative path not found from the working directory is looked up
    from the folder that holds the package (the repository root, or site-packages), so
    `asdn_tf/weights/...` works from anywhere.

    Raises:
        TrainingError: no such file.
    """
    if value in BUNDLED:
        path = bundled_weights(value)
        if not path.is_file():
            raise TrainingError(f"--init_from={value}: no {value} weights are bundled in this "
                                f"install ({path})")
        return path
    path = pathlib.Path(value)
    beside_package = WEIGHTS_FOLDER.parent.parent / path
    if not path.is_file() and not path.is_absolute() and beside_package.is_file():
        return beside_package
    if not path.is_file():
        raise TrainingError(f"--init_from weights not found: {value} (looked in "
                            f"{pathlib.Path.cwd()}; a bundled model is named by one of "
                            f"{', '.join(BUNDLED)})")
    return path


def _check_validation_dir(folder):
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise TrainingError(
            f"--validation_dir {folder} does not exist: make {folder.resolve()} and put the HR "
            "images of a benchmark set in it (Set5, Set14, ...: data/README.md says where each "
            "comes from), or pass --validate_every=0")


def train(model_config, data_config, train_config, output_dir, model="asdn", scale=None,
          init_from=None, strategy="default", jit_compile="auto", mixed_precision="none",
          preset_name=None, restart=False):
    """Trains (or resumes) and returns the path of the final weights (None on a worker that
    is not the chief).

    Resumes from the newest checkpoint in `output_dir` that can be restored (`restore_newest`);
    `restart` first moves the earlier run's files into `output_dir/previous-<time>/`.

    With several workers (`strategy="multiworker"`), `data_config.batch_size` is the global
    batch, split evenly over the replicas, each of which makes its own part of it. Only the
    chief touches `output_dir`: it restores, validates and writes checkpoints, state, curve,
    weights and logs, and sends the others its weights and optimizer state at the start; the
    others save their checkpoint copies (TF's multi-worker rule: every worker saves) into
    temporary folders that they remove at once. When a worker stops, the others stop with a
    TrainingError once TF's collective ops or coordination service notice.

    Raises:
        TrainingError, ValueError, FileNotFoundError: bad settings or data, or checkpoints
            none of which can be restored, stated in one line.
    """
    output_dir = pathlib.Path(output_dir)
    if not any(isinstance(f, _ExpectedRetracing) for f in tf.get_logger().filters):
        tf.get_logger().addFilter(_ExpectedRetracing())
    if model == "fsdn" and (scale is None or scale < 2):
        raise TrainingError("--model=fsdn needs --scale, an integer >= 2")
    if model not in ("asdn", "fsdn"):
        raise TrainingError(f"--model must be asdn or fsdn, got {model!r}")
    if mixed_precision not in ("none", "float16", "bfloat16"):
        raise TrainingError(f"--mixed_precision must be none, float16 or bfloat16, "
                            f"got {mixed_precision!r}")
    distribution = make_strategy(strategy)
    workers = _worker_count(distribution)
    chief = distribution.extended.should_checkpoint
    task = (f"{distribution.cluster_resolver.task_type} {distribution.cluster_resolver.task_id}"
            if workers > 1 else "this process")
    replicas = distribution.num_replicas_in_sync
    if data_config.batch_size % replicas:
        raise TrainingError(f"--batch_size={data_config.batch_size} is the global batch: it must "
                            f"split evenly over the {replicas} replicas training together")
    init_from = resolve_init_from(init_from) if init_from and chief else None
    use_jit = resolve_jit(jit_compile)
    validation_images = []
    if chief and train_config.validate_every and train_config.validation_dir:
        _check_validation_dir(train_config.validation_dir)
        validation_images = evaluate.load_set(train_config.validation_dir)
    keras.utils.set_random_seed(train_config.seed)
    batches = distribution.distribute_datasets_from_function(
        lambda input_context: data_lib.training_dataset(
            data_config, model_config.num_levels, seed=train_config.seed,
            fixed_scale=scale if model == "fsdn" else None, input_context=input_context))
    policy = "float32" if mixed_precision == "none" else f"mixed_{mixed_precision}"
    with distribution.scope():
        with dtype_policy(policy):  # the network keeps it; later builds in the process do not
            network = (build_fsdn(model_config, scale) if model == "fsdn"
                       else build_model(model_config))
        schedule = learning_rate_schedule(train_config)
        optimizer = keras.optimizers.Adam(schedule)
        if mixed_precision == "float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        trainer = Trainer(network, data_config.patch_size, train_config.clip_norm)
        trainer.compile(optimizer=optimizer)
        optimizer.build(network.trainable_variables)
    checkpoint = tf.train.Checkpoint(network=network, optimizer=optimizer)
    checkpoints = output_dir / "checkpoints"
    with _output_folder(output_dir) if chief else contextlib.nullcontext():
        manager, state, resumed = None, {}, None
        if chief:
            if restart:
                previous = set_aside_run(output_dir)
                logging.warning("--restart: %s; starting from step 0",
                                f"moved the earlier run's files to {previous}" if previous
                                else f"{output_dir} holds no earlier run")
            resumed = restore_newest(checkpoint, optimizer.iterations, checkpoints)
            swept = sweep_leftovers(output_dir)
            if swept:
                logging.info("removed %d temporary files of interrupted writes in %s", swept,
                             output_dir)
            manager = tf.train.CheckpointManager(checkpoint, str(checkpoints),
                                                 max_to_keep=train_config.keep_checkpoints)
            if resumed is not None:
                logging.info("resumed from %s at step %d", manager.latest_checkpoint, resumed)
            elif init_from:
                _warm_start(network, init_from, model_config, model)
            state = load_state(output_dir)
            read_validation_curve(output_dir / "validation.csv")  # sets a bad one aside now
        best_path = output_dir / "best.weights.h5"
        state_path = output_dir / "state.json"
        best_psnr = state.get("best_psnr", -math.inf)
        writer = (tf.summary.create_file_writer(str(output_dir / "logs")) if chief
                  else tf.summary.create_noop_writer())
        step_functions = {}

        def step_function(level):
            if level not in step_functions:
                def replica_step(batch):
                    return trainer.train_step(batch, level)

                def distributed_step(batch):
                    losses = distribution.run(replica_step, args=(batch,))
                    return distribution.reduce(tf.distribute.ReduceOp.MEAN, losses, axis=None)

                step_functions[level] = tf.function(distributed_step, jit_compile=use_jit)
            return step_functions[level]

        def sidecar(extra):
            return {"model": model, "scale": scale, "preset": preset_name,
                    "model_config": model_config.to_dict(),
                    "data_config": dataclasses.asdict(data_config),
                    "train_config": dataclasses.asdict(train_config),
                    "steps": int(optimizer.iterations.numpy()),
                    "training_seconds": round(state.get("seconds", 0.0), 1), **extra}

        def newest_checkpoint():
            if not chief:
                return "the chief's newest checkpoint"
            if not manager.latest_checkpoint:
                return "no checkpoint had been written yet"
            return f"the newest checkpoint, {manager.latest_checkpoint}, is intact"

        def save_checkpoint():
            step = int(optimizer.iterations.numpy())
            if not chief:
                # Every worker saves (TF's multi-worker rule: a save may take part in collective
                # ops); the others' copies go to a temporary folder, removed at once.
                folder = tempfile.mkdtemp(prefix="asdn-train-")
                try:
                    tf.train.CheckpointManager(checkpoint, folder, max_to_keep=1).save(
                        checkpoint_number=step)
                except (OSError, tf.errors.OpError) as error:
                    raise TrainingError(f"{task} cannot write its checkpoint copy in {folder}: "
                                        f"{cli.first_line(error)}") from None
                finally:
                    fileio.remove(folder)
                return
            try:
                manager.save(checkpoint_number=step)
                state["seconds"] = (state.get("seconds", 0.0)
                                    + time.time() - session_start[0])
                session_start[0] = time.time()
                state["best_psnr"] = best_psnr
                fileio.write_atomically(state_path, json.dumps(state, indent=2) + "\n")
            except (OSError, tf.errors.OpError) as error:
                latest = manager.latest_checkpoint
                if not latest or pathlib.Path(latest).name != f"ckpt-{step}":  # half-written
                    for path in [*_checkpoint_files(checkpoints, step),
                                 checkpoints / f"ckpt-{step}_temp"]:
                        fileio.remove(path)
                raise TrainingError(f"cannot write a checkpoint in {output_dir}: "
                                    f"{getattr(error, 'message', error)}; {newest_checkpoint()}") \
                    from None

        # FSDN is measured at its own scale only.
        validation_scales = (train_config.validation_scales if model == "asdn"
                             else (float(scale),))
        session_start = [time.time()]
        total = train_config.steps

        def collective(function, *args):
            """Runs `function`, which runs collective ops: another worker's failure there
            becomes one line."""
            try:
                return function(*args)
            except _PEER_ERRORS as error:
                if workers == 1:
                    raise
                raise _lost_worker(error, task, "the chief's newest checkpoint" if not chief
                                   else manager.latest_checkpoint or "step 0") from None

        if workers > 1:
            collective(broadcast_from_chief, distribution,
                       [*network.variables, *optimizer.variables])
            if not chief:
                logging.info("%s starts at step %d, the chief's", task,
                             int(optimizer.iterations.numpy()))
        first_step = int(optimizer.iterations.numpy())
        iterator = iter(batches)
        started = time.time()
        while int(optimizer.iterations.numpy()) < total:
            batch = collective(next, iterator)
            level = None
            if model == "asdn":
                level = int(distribution.experimental_local_results(batch.pop("level"))[0][0])
            loss_value = collective(lambda: float(step_function(level)(batch)))
            step = int(optimizer.iterations.numpy())
            if not math.isfinite(loss_value):
                raise TrainingError(f"loss became {loss_value} at step {step}; stopped without "
                                    f"saving; {newest_checkpoint()}")
            if step % train_config.log_every == 0 or step == total:
                with writer.as_default(step=step):
                    tf.summary.scalar("loss", loss_value)
                    tf.summary.scalar("learning_rate", float(schedule(step)))
                rate = (step - first_step) / max(time.time() - started, 1e-9)
                _progress(step, total, loss_value, float(schedule(step)), rate)
            # Only the chief validates, with no collective op: the others wait in the next update.
            if validation_images and (step % train_config.validate_every == 0 or step == total):
                latest_validation = validate(network, validation_images, validation_scales)
                mean_psnr = float(np.mean(list(latest_validation.values())))
                with writer.as_default(step=step):
                    for s, value in latest_validation.items():
                        tf.summary.scalar(f"validation/psnr_x{s:g}", value)
                    tf.summary.image("samples", _sample_images(
                        network, validation_images, validation_scales[0]), max_outputs=3)
                logging.info("step %d validation PSNR %s", step, ", ".join(
                    f"x{s:g} {v:.2f}" for s, v in latest_validation.items()))
                state["latest_validation"] = {f"{s:g}": v
                                              for s, v in latest_validation.items()}
                record_validation(output_dir / "validation.csv", step, latest_validation)
                if mean_psnr > best_psnr:
                    best_psnr = mean_psnr
                    save_weights(network, best_path,
                                 sidecar({"validation_psnr": state["latest_validation"]}))
            if step % train_config.checkpoint_every == 0 or step == total:
                save_checkpoint()
        writer.flush()
        sys.stderr.write("\n")
        if not chief:
            logging.info("done: %s (%d steps); the chief writes the weights", task,
                         int(optimizer.iterations.numpy()))
            return None
        final_path = output_dir / "final.weights.h5"
        save_weights(network, final_path,
                     sidecar({"validation_psnr": state.get("latest_validation", {})}))
        logging.info("done: %s (%d steps)", final_path, int(optimizer.iterations.numpy()))
        return final_path


def _warm_start(network, init_from, model_config, model):
    source = load_model(init_from, preset=None if read_sidecar(init_from) else model_config)
    if model == "fsdn" and isinstance(source, ASDN):
        init_from_asdn(network, source)
    else:
        network.set_weights(source.get_weights())
    logging.info("initialised from %s", init_from)


def _progress(step, total, loss, learning_rate, rate):
    eta = _format_eta((total - step) / rate) if rate > 0 else "?"
    progress.bar(log=True)(step, total, f"loss {loss:.4f} lr {learning_rate:.2e} "
                                        f"{rate:.2f} steps/s ETA {eta}")


# ---- command line -------------------------------------------------------------------------

_CONFIG_CLASSES = (config_lib.ModelConfig, config_lib.DataConfig, config_lib.TrainConfig)


def _field_help(cls):
    """Maps each field to its description in the class docstring's Args section."""
    helps = {}
    for match in re.finditer(r"^\s{8}(\w+): ([^\n]*(?:\n\s{12}[^\n]*)*)", cls.__doc__ or "", re.M):
        helps[match.group(1)] = " ".join(match.group(2).split())
    return helps


def define_flags(flag_values=flags.FLAGS):
    """Defines one flag per config field (the dataclass default and docstring) plus run flags."""
    fv = {"flag_values": flag_values}
    for cls in _CONFIG_CLASSES:
        helps = _field_help(cls)
        for field in dataclasses.fields(cls):
            default, text = field.default, helps.get(field.name, field.name)
            if isinstance(default, bool):
                flags.DEFINE_bool(field.name, default, text, **fv)
            elif isinstance(default, int):
                flags.DEFINE_integer(field.name, default, text, **fv)
            elif isinstance(default, float):
                flags.DEFINE_float(field.name, default, text, **fv)
            elif isinstance(default, tuple):
                flags.DEFINE_list(field.name, [str(v) for v in default], text, **fv)
            else:
                flags.DEFINE_string(field.name, default, text, **fv)
    flags.DEFINE_string("preset", "default",
                        f"Base model config: {sorted(config_lib.PRESETS)}.", **fv)
    flags.DEFINE_string("output_dir", "runs/default",
                        "Checkpoints, logs and weights go here.", **fv)
    flags.DEFINE_enum("model", "asdn", ["asdn", "fsdn"],
                      "Any-scale ASDN or fixed-scale FSDN.", **fv)
    flags.DEFINE_integer("scale", None, "FSDN's fixed integer scale.", **fv)
    flags.DEFINE_string("init_from", None,
                        "Warm-start weights (FSDN from ASDN): a .weights.h5 file, or the name "
                        f"of a model bundled in the package ({', '.join(BUNDLED)}).", **fv)
    flags.DEFINE_bool("restart", False,
                      "Start from step 0: the files of an earlier run in --output_dir "
                      "(checkpoints, state, curve, weights, logs) move to previous-<time>/ "
                      "there. Without it a run resumes, or stops when no checkpoint can be "
                      "restored.", **fv)
    flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multiworker", "tpu"],
                      "tf.distribute strategy.", **fv)
    flags.DEFINE_enum("mixed_precision", "none", ["none", "float16", "bfloat16"],
                      "Mixed-precision compute dtype.", **fv)
    flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"],
                      "XLA for the train step; auto: on only with a GPU.", **fv)


def configs_from_flags(values):
    """(ModelConfig, DataConfig, TrainConfig) from parsed flags; raises ValueError if invalid."""
    base = config_lib.preset(values.preset).to_dict()
    overrides = {f.name: values[f.name].value for f in dataclasses.fields(config_lib.ModelConfig)
                 if values[f.name].present}
    model_config = config_lib.ModelConfig(**{**base, **overrides})
    built = [model_config]
    for cls in _CONFIG_CLASSES[1:]:
        kwargs = {}
        for field in dataclasses.fields(cls):
            value = values[field.name].value
            if isinstance(field.default, tuple):
                value = tuple(_parse_list_item(field, item) for item in value)
            kwargs[field.name] = value
        built.append(cls(**kwargs))
    return tuple(built)


def _parse_list_item(field, item):
    kinds = {"validation_scales": (float, "numbers"), "lr_milestones": (int, "integers"),
             "level_weights": (float, "numbers")}
    if field.name in kinds:
        kind, words = kinds[field.name]
        try:
            return kind(item)
        except ValueError:
            raise ValueError(f"--{field.name} takes {words}, got {item!r}") from None
    return item


def run_from_flags(values):
    """Validates the parsed flags and trains; raises TrainingError, ValueError or OSError
    (a missing file, a full disk) with a one-line message for anything a user got wrong."""
    model_config, data_config, train_config = configs_from_flags(values)
    if not data_config.sources:
        raise TrainingError("--sources is empty: give image folders, globs or tfds:div2k")
    return train(model_config, data_config, train_config, values.output_dir, values.model,
                 values.scale, values.init_from, values.strategy, values.jit_compile,
                 values.mixed_precision, values.preset, values.restart)


def main(argv):
    if len(argv) > 1:
        sys.exit(f"train: unexpected arguments {argv[1:]}")
    try:
        run_from_flags(flags.FLAGS)
    except (TrainingError, ValueError, OSError) as error:
        sys.exit(f"train: {error}")


def run():
    define_flags()
    app.run(main, flags_parser=cli.one_line_flags_parser("train"))


if __name__ == "__main__":
    run()
