"""The JAX trainer's checkpoints: `checkpoints/ckpt-<step>.npz` in the run folder (weights,
Adam state, step; written atomically), the newest few kept; on resume the newest that loads,
damaged ones set aside."""

import re

import numpy as np
from absl import logging

from asdn_tf.io import fileio
from asdn_tf.training import run_folder
from asdn_tf.training.run_folder import TrainingError

# run_folder's checkpoint names, as numpy archives: TF's checkpoint format needs TensorFlow.
_CHECKPOINT = re.compile(rf"{run_folder.CHECKPOINT_NAME}-(\d+)\.npz")


def checkpoint_path(folder, step):
    return folder / f"{run_folder.CHECKPOINT_NAME}-{step}.npz"


def save_checkpoint(folder, step, state, keep):
    """Writes `folder/ckpt-<step>.npz` atomically and removes all but the newest `keep`."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"step": np.int64(step)}
    for prefix, values in zip("tno", state):
        arrays.update({f"{prefix}{i}": np.asarray(value) for i, value in enumerate(values)})
    with fileio.atomic_path(checkpoint_path(folder, step)) as temporary:
        with open(temporary, "wb") as file:
            np.savez(file, **arrays)
    for old in checkpoint_steps(folder)[:-keep]:
        checkpoint_path(folder, old).unlink()


def checkpoint_steps(folder):
    """The steps of the checkpoints in `folder`, oldest first."""
    if not folder.is_dir():
        return []
    return sorted(int(match[1]) for match in map(_CHECKPOINT.fullmatch,
                                                 (path.name for path in folder.iterdir()))
                  if match)


def restore_newest(folder, state):
    """(step, state) from the newest checkpoint in `folder` that loads and fits `state`'s
    shapes; (None, state) without one. Checkpoints that do not load are named in a warning
    and moved to `folder/damaged-<time>/`.

    Raises:
        TrainingError: checkpoints exist and none fits.
    """
    damaged = []
    for step in reversed(checkpoint_steps(folder)):
        path = checkpoint_path(folder, step)
        try:
            with np.load(path) as arrays:
                restored = tuple([arrays[f"{prefix}{i}"] for i in range(len(values))]
                                 for prefix, values in zip("tno", state))
                stored_step = int(arrays["step"])
        except (OSError, ValueError, KeyError, EOFError) as error:
            damaged.append((path, str(error).splitlines()[0] if str(error) else "unreadable"))
            continue
        if stored_step != step or any(
                a.shape != tuple(b.shape) for group, values in zip(restored, state)
                for a, b in zip(group, values)):
            raise TrainingError(f"{path} was written for another network or optimizer (other "
                                "model flags?): rerun with --restart, or use another "
                                "--output_dir")
        if damaged:
            aside = run_folder.damaged_folder(folder)
            for bad, _ in damaged:
                bad.rename(aside / bad.name)
            logging.warning("%s; moved to %s; resuming from ckpt-%d",
                            "; ".join(f"{p.name} cannot be read ({why})" for p, why in damaged),
                            aside, step)
        return step, restored
    if damaged:
        raise TrainingError(f"no checkpoint in {folder} can be restored ("
                            + "; ".join(f"{p.name}: {why}" for p, why in damaged)
                            + "): rerun with --restart, or use another --output_dir")
    return None, state
