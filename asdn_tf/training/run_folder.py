"""What a training run keeps in its folder (--output_dir), and how it is written and read back.

    OUTPUT_DIR/
      checkpoints/        ckpt-<step>.index and .data-*, TF's `checkpoint` state file; the
                          newest keep_checkpoints of them (`tf_checkpoints`); under JAX
                          ckpt-<step>.npz instead (`jax_checkpoints`)
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
leaves half of one; the temporaries a kill leaves are swept when the run resumes. The loop that
writes them is asdn_tf/training/loop.py, the same for both backends.
"""

import contextlib
import csv
import dataclasses
import io
import json
import math
import re
import time

import numpy as np
from absl import logging

from asdn_tf.io import fileio
from asdn_tf.data.config import DataConfig
from asdn_tf.nn import config as config_lib
from asdn_tf.inference.weights_io import read_sidecar, sidecar_path
from asdn_tf.training.config import TrainConfig
from asdn_tf.training.errors import TrainingError

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
# A checkpoint's files in either backend's format: ckpt-<step>.index and .data-* (TF), .npz (JAX).
_CHECKPOINT_FILE = re.compile(rf"{CHECKPOINT_NAME}-\d+[.].+")
# What only a run that has written a checkpoint leaves: state.json follows every checkpoint and
# the final weights the last one.
_AFTER_A_CHECKPOINT = (STATE, FINAL_WEIGHTS, sidecar_path(FINAL_WEIGHTS).name)
# What TF's checkpoint writer leaves when it is killed: the shard folder of an unfinished save
# and the temporary of the `checkpoint` state file (tf.io's atomic write).
_CHECKPOINT_LEFTOVER = re.compile(rf"{CHECKPOINT_NAME}-\d+_temp|checkpoint\.tmp[0-9a-f]{{32}}")


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
        scale: int, tuple of int or None, an FSDN's scale (or scales: one head each).
        preset: str or None, the preset the model config started from.
        model_config: ModelConfig.
        data_config: DataConfig.
        train_config: TrainConfig.
        steps: int, updates made.
        training_seconds: float, training time up to the newest checkpoint.
        validation_psnr: dict of str to float, the last validation's PSNR per scale ("2").
        backend: str or None, what trained them when it was not TensorFlow, e.g.
            "jax 0.4.30 (gpu, 8 devices)" (`training.train_jax`); left out of the JSON when None.
    """

    model: str
    scale: int | tuple[int, ...] | None
    preset: str | None
    model_config: config_lib.ModelConfig
    data_config: DataConfig
    train_config: TrainConfig
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


def has_checkpoint(output_dir):
    """True when `output_dir/checkpoints/` holds a checkpoint's file, restorable or not."""
    folder = output_dir / CHECKPOINTS
    return folder.is_dir() and any(_CHECKPOINT_FILE.fullmatch(path.name)
                                   for path in folder.iterdir())


def check_no_earlier_run(output_dir):
    """For a run about to start from step 0 in `output_dir` without --restart: refuses when the
    folder holds what an earlier run wrote after one of its checkpoints (state.json, the final
    weights, or best weights validated past that run's first checkpoint, or of no run of
    this trainer), since starting over would replace them. A run killed before its first
    checkpoint leaves none of these, so the same command starts it again.

    Raises:
        TrainingError: one line naming the file; nothing was changed.
    """
    found = [name for name in _AFTER_A_CHECKPOINT if (output_dir / name).exists()]
    best = output_dir / BEST_WEIGHTS
    if not found and (best.exists() or sidecar_path(best).exists()) \
            and not _validated_before_first_checkpoint(best):
        found = [BEST_WEIGHTS]
    if found:
        raise TrainingError(f"{output_dir} holds an earlier run's {found[0]} but no checkpoint "
                            "to resume that run from; nothing was changed: rerun with --restart "
                            "to move the run's files aside and start from step 0, or use "
                            "another --output_dir")


def _validated_before_first_checkpoint(best):
    """True when the sidecar of the best weights `best` says that they were validated at or
    before the first checkpoint of the run that wrote them (which validates before it saves)."""
    try:
        sidecar = read_sidecar(best)
    except ValueError:
        return False
    train_config = sidecar.get("train_config")
    numbers = [sidecar.get("steps"), *(train_config.get(key) for key in
                                       ("checkpoint_every", "steps"))] \
        if isinstance(train_config, dict) else []
    if len(numbers) != 3 or not all(isinstance(n, int) and not isinstance(n, bool)
                                    for n in numbers):
        return False
    step, checkpoint_every, steps = numbers
    return step <= min(checkpoint_every, steps)


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
    except (ValueError, AttributeError, RecursionError):  # not JSON, not an object, too deep
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
