"""What a training run keeps in its folder (--output_dir), and how it is written and read back.

    OUTPUT_DIR/
      checkpoints/        ckpt-<step>.index and .data-*, TF's `checkpoint` state file; the
                          newest keep_checkpoints of them (`Checkpoints`); under JAX
                          ckpt-<step>.npz instead (`asdn_tf.train_jax`)
        damaged-<time>/   checkpoints that could not be restored, set aside
      state.json          `RunState`: training time and best PSNR, as of the newest checkpoint
      validation.csv      the validation curve: step, then mean Y-PSNR per scale (x2, x1.5, ...)
      best.weights.h5     the weights of the best mean validation PSNR so far,
      best.json           and their `WeightsSidecar`
      final.weights.h5    the weights at the last step,
      final.json          and theirs
      logs/               TensorBoard
      previous-<time>/    an earlier run's files, moved aside by --restart
      *.bad-<time>        a state.json or validation.csv that could not be read, set aside

Every file is written through a temporary and a rename (`fileio.atomic_path`), so a kill never
leaves half of one; the temporaries a kill leaves are swept when the run resumes. Only the
checkpoint parts import TensorFlow, when they run.
"""

import contextlib
import csv
import dataclasses
import gc
import io
import json
import logging as python_logging
import math
import pathlib
import re
import tempfile
import time

import numpy as np
from absl import logging

from asdn_tf import cli, fileio
from asdn_tf import config as config_lib
from asdn_tf.weights_io import read_sidecar, sidecar_path

CHECKPOINTS = "checkpoints"
STATE = "state.json"
VALIDATION_CURVE = "validation.csv"
BEST_WEIGHTS = "best.weights.h5"
FINAL_WEIGHTS = "final.weights.h5"
LOGS = "logs"
# What --restart moves aside: every file a run writes.
RUN_FILES = (CHECKPOINTS, STATE, VALIDATION_CURVE, BEST_WEIGHTS, sidecar_path(BEST_WEIGHTS).name,
             FINAL_WEIGHTS, sidecar_path(FINAL_WEIGHTS).name, LOGS)
# Checkpoints are CHECKPOINT_NAME-<step>.*, as tf.train.CheckpointManager names them.
CHECKPOINT_NAME = "ckpt"
_CHECKPOINT_INDEX = re.compile(rf"{CHECKPOINT_NAME}-(\d+)\.index")
# What TF's checkpoint writer leaves when it is killed: the shard folder of an unfinished save
# and the temporary of the `checkpoint` state file (tf.io's atomic write).
_CHECKPOINT_LEFTOVER = re.compile(rf"{CHECKPOINT_NAME}-\d+_temp|checkpoint\.tmp[0-9a-f]{{32}}")


class TrainingError(Exception):
    """A failure a user can act on; `python -m asdn_tf.train` prints it as one line."""


@dataclasses.dataclass
class RunState:
    """state.json: what a resumed run needs besides its checkpoint.

    Args:
        seconds: float, training time of all sessions, up to the newest checkpoint.
        best_psnr: float, the best mean validation PSNR so far (-inf before the first).
        latest_validation: dict of str to float, the last validation's PSNR per scale ("2").
    """

    seconds: float = 0.0
    best_psnr: float = -math.inf
    latest_validation: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class WeightsSidecar:
    """The JSON beside best.weights.h5 and final.weights.h5: how to build the network for the
    weights (`weights_io.load_model` reads model, scale and model_config) and the run that made
    them.

    Args:
        model: str, "asdn" or "fsdn".
        scale: int or None, an FSDN's scale.
        preset: str or None, the preset the model config started from.
        model_config: ModelConfig.
        data_config: DataConfig.
        train_config: TrainConfig.
        steps: int, updates made.
        training_seconds: float, training time up to the newest checkpoint.
        validation_psnr: dict of str to float, the last validation's PSNR per scale ("2").
        backend: str or None, what trained them when it was not TensorFlow, e.g.
            "jax 0.4.30 (gpu, 8 devices)" (`asdn_tf.train_jax`); left out of the JSON when None.
    """

    model: str
    scale: int | None
    preset: str | None
    model_config: config_lib.ModelConfig
    data_config: config_lib.DataConfig
    train_config: config_lib.TrainConfig
    steps: int
    training_seconds: float
    validation_psnr: dict[str, float]
    backend: str | None = None

    def to_json(self):
        values = dataclasses.asdict(self)
        if self.backend is None:  # TensorFlow's sidecars keep the keys they had before JAX's
            del values["backend"]
        return json.dumps(values, indent=2) + "\n"


def mean_psnr(psnr_by_scale):
    """The number validations are ranked by: the mean over the scales."""
    return float(np.mean(list(psnr_by_scale.values())))


# ---- the folder --------------------------------------------------------------------------------

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
def output_folder(output_dir):
    """Creates `output_dir`; when the block fails before a checkpoint, weights or state were
    written (TensorBoard logs aside), removes the folders it created, and only those."""
    created = _missing_folders(output_dir)
    _check_writable(output_dir)
    try:
        yield
    except BaseException:
        wrote = any(path.is_file() and path.relative_to(output_dir).parts[0] != LOGS
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


def damaged_folder(checkpoints):
    """Creates `checkpoints/damaged-<time>/`, for checkpoints that cannot be restored."""
    folder = _aside(checkpoints, "damaged")
    folder.mkdir()
    return folder


def sweep_leftovers(output_dir):
    """Removes what killed writes left in a run folder and its checkpoints: `fileio`'s
    temporaries and TF's checkpoint writer's (`ckpt-N_temp/`, `checkpoint.tmp<hex>`), nothing
    else; logs how many."""
    checkpoints = output_dir / CHECKPOINTS
    count = fileio.sweep_temporaries(output_dir) + fileio.sweep_temporaries(checkpoints)
    if checkpoints.is_dir():
        for entry in checkpoints.iterdir():
            if _CHECKPOINT_LEFTOVER.fullmatch(entry.name):
                fileio.remove(entry)
                count += 1
    if count:
        logging.info("removed %d temporary files of interrupted writes in %s", count, output_dir)


def set_aside_run(output_dir):
    """Moves the files an earlier run wrote in `output_dir` into `output_dir/previous-<time>/`
    (--restart) and says so in a warning; returns that folder, or None when there was nothing
    to move."""
    present = [output_dir / name for name in RUN_FILES if (output_dir / name).exists()]
    folder = None
    if present:
        folder = _aside(output_dir, "previous")
        folder.mkdir()
        for path in present:
            path.rename(folder / path.name)
    logging.warning("--restart: %s; starting from step 0",
                    f"moved the earlier run's files to {folder}" if folder
                    else f"{output_dir} holds no earlier run")
    return folder


# ---- state, weights, validation curve ----------------------------------------------------------

def load_state(output_dir):
    """The run's state.json (a fresh RunState before the first checkpoint). A file that cannot
    be read is set aside with one warning and its best PSNR taken from best.json, so that the
    best weights are only replaced by better ones."""
    path = output_dir / STATE
    if not path.exists():
        return RunState()
    try:
        values = json.loads(path.read_text())
        numbers = [values.get(key, 0.0) for key in ("seconds", "best_psnr")]
        if (all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in numbers)
                and isinstance(values.get("latest_validation", {}), dict)):
            return RunState(**{field.name: values[field.name]
                               for field in dataclasses.fields(RunState) if field.name in values})
    except (ValueError, AttributeError):  # not JSON, or JSON but not an object
        pass
    aside = set_aside(path)
    state = RunState()
    best = output_dir / BEST_WEIGHTS
    try:
        psnr = read_sidecar(best).get("validation_psnr") if best.exists() else None
    except ValueError:
        psnr = None
    if psnr:
        state.best_psnr = mean_psnr(psnr)
    logging.warning("%s is unreadable; moved to %s; the best PSNR so far is %s", path, aside,
                    f"{state.best_psnr:.2f} dB (from best.json)" if psnr
                    else "unknown: the next validation writes best.weights.h5")
    return state


def save_state(output_dir, state):
    fileio.write_atomically(output_dir / STATE, json.dumps(dataclasses.asdict(state), indent=2) + "\n")


def save_weights(network, path, sidecar):
    """Writes `path` (.weights.h5) and its `WeightsSidecar` through temporary files and
    renames."""
    with fileio.atomic_path(path) as temporary:
        network.save_weights(temporary)
    fileio.write_atomically(sidecar_path(path), sidecar.to_json())


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


# ---- checkpoints -------------------------------------------------------------------------------

class Checkpoints:
    """The checkpoints of `network` and `optimizer` in `output_dir/checkpoints/`: the newest
    `keep` of them, each with state.json written after it.

    With several workers only the chief (`chief`) keeps them; the others (`task` names this
    one) save their copies into temporary folders that they remove at once (TF's multi-worker
    rule: a save may take part in collective ops, so every worker saves).
    """

    def __init__(self, output_dir, network, optimizer, keep, chief=True, task="this process"):
        import tensorflow as tf
        self.output_dir = pathlib.Path(output_dir)
        self.folder = self.output_dir / CHECKPOINTS
        self.checkpoint = tf.train.Checkpoint(network=network, optimizer=optimizer)
        self.step_variable = optimizer.iterations
        self.keep, self.chief, self.task = keep, chief, task
        self.manager = None

    def restore(self):
        """Restores the newest checkpoint that can be restored (`restore_newest`) and starts
        keeping them; returns its step, or None when there is none (the chief only)."""
        import tensorflow as tf
        step = restore_newest(self.checkpoint, self.step_variable, self.folder)
        sweep_leftovers(self.output_dir)
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.folder),
                                                  max_to_keep=self.keep,
                                                  checkpoint_name=CHECKPOINT_NAME)
        if step is not None:
            logging.info("resumed from %s at step %d", self.manager.latest_checkpoint, step)
        return step

    def newest(self):
        """What a stopped run can resume from, for its error message."""
        if not self.chief:
            return "the chief's newest checkpoint"
        if not self.manager.latest_checkpoint:
            return "no checkpoint had been written yet"
        return f"the newest checkpoint, {self.manager.latest_checkpoint}, is intact"

    def resume_point(self):
        """Where the same command resumes from, in a few words."""
        if not self.chief:
            return "the chief's newest checkpoint"
        return self.manager.latest_checkpoint or "step 0"

    def save(self, state, elapsed):
        """Saves a checkpoint of the current step and then `state`, with `elapsed()` (the
        seconds since the last save) added to its training time (the chief); a worker's
        throwaway copy (the others)."""
        import tensorflow as tf
        step = int(self.step_variable.numpy())
        if not self.chief:
            self._save_copy(step)
            return
        try:
            self.manager.save(checkpoint_number=step)
            state.seconds += elapsed()
            save_state(self.output_dir, state)
        except (OSError, tf.errors.OpError) as error:
            latest = self.manager.latest_checkpoint
            if not latest or pathlib.Path(latest).name != f"{CHECKPOINT_NAME}-{step}":
                for path in [*_checkpoint_files(self.folder, step),
                             self.folder / f"{CHECKPOINT_NAME}-{step}_temp"]:
                    fileio.remove(path)  # half-written
            raise TrainingError(f"cannot write a checkpoint in {self.output_dir}: "
                                f"{cli.first_line(error)}; {self.newest()}") from None

    def _save_copy(self, step):
        import tensorflow as tf
        folder = tempfile.mkdtemp(prefix="asdn-train-")
        try:
            tf.train.CheckpointManager(self.checkpoint, folder, max_to_keep=1).save(
                checkpoint_number=step)
        except (OSError, tf.errors.OpError) as error:
            raise TrainingError(f"{self.task} cannot write its checkpoint copy in {folder}: "
                                f"{cli.first_line(error)}") from None
        finally:
            fileio.remove(folder)


@contextlib.contextmanager
def _quiet_tensorflow():
    """Hides TF's Python warnings, which repeat in several lines what this module says in one."""
    logger = python_logging.getLogger("tensorflow")  # tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        yield
    finally:
        logger.setLevel(level)


def _recorded_steps(folder):
    """The steps TF's `checkpoint` state file lists: a set, empty when there is no file, None
    when the file cannot be read."""
    import tensorflow as tf
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
        match = re.fullmatch(rf"{CHECKPOINT_NAME}-(\d+)", pathlib.Path(path).name)
        if not match:
            return None
        steps.add(int(match[1]))
    return steps


def _checkpoint_files(folder, step):
    prefix = f"{CHECKPOINT_NAME}-{step}"
    return sorted(path for path in folder.glob(f"{prefix}.*")
                  if path.name == f"{prefix}.index" or path.name.startswith(f"{prefix}.data-"))


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
        checkpoint.restore(str(folder / f"{CHECKPOINT_NAME}-{step}")).assert_consumed()
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
    restored, interrupted, damaged = _restore_first(checkpoint, step_variable, folder,
                                                    sorted(on_disk | (recorded or set()),
                                                           reverse=True), recorded)
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
        _set_aside_damaged(folder, damaged, recorded is None, restored)
    kept = sorted(step for step in on_disk if _checkpoint_files(folder, step))
    if restored is not None and (recorded != set(kept) or max(kept) != restored):
        _write_checkpoint_state(folder, kept)
    return restored


def _restore_first(checkpoint, step_variable, folder, candidates, recorded):
    """(step restored or None, the interrupted newest step or None, [(step, why)] of damaged
    ones) after trying `candidates` in turn until one restores."""
    interrupted, damaged = None, []
    for step in candidates:
        reason = _restore(checkpoint, step_variable, folder, step)
        if reason is None:
            return step, interrupted, damaged
        if step == candidates[0] and recorded is not None and step > max(recorded, default=0):
            interrupted = step
        else:
            damaged.append((step, reason))
    return None, interrupted, damaged


def _set_aside_damaged(folder, damaged, state_unreadable, restored):
    """Moves the `damaged` checkpoints, and the state file if unreadable, into
    `folder/damaged-<time>/` with one warning."""
    aside = damaged_folder(folder)
    for step, _ in damaged:
        for path in _checkpoint_files(folder, step):
            path.rename(aside / path.name)
    if state_unreadable and (folder / "checkpoint").exists():
        (folder / "checkpoint").rename(aside / "checkpoint")
    problems = [f"ckpt-{step} cannot be restored ({reason})" for step, reason in damaged]
    if state_unreadable:
        problems.append("the state file `checkpoint` is unreadable")
    logging.warning("%s: %s; moved to %s; %s", folder, ", ".join(problems), aside,
                    "starting from step 0" if restored is None
                    else f"resuming from ckpt-{restored}")


def _write_checkpoint_state(folder, steps):
    """Writes TF's `checkpoint` state file listing `folder/ckpt-<step>` for `steps` (increasing),
    as CheckpointManager does: it keeps the newest keep_checkpoints of them and deletes the
    others as it saves."""
    times = [(folder / f"{CHECKPOINT_NAME}-{step}.index").stat().st_mtime for step in steps]
    fileio.write_atomically(folder / "checkpoint", "".join(
        [f'model_checkpoint_path: "{CHECKPOINT_NAME}-{steps[-1]}"\n']
        + [f'all_model_checkpoint_paths: "{CHECKPOINT_NAME}-{step}"\n' for step in steps]
        + [f"all_model_checkpoint_timestamps: {when!r}\n" for when in times]
        # The manager only deletes checkpoints newer than this.
        + [f"last_preserved_timestamp: {min(times) - 1!r}\n"]))
