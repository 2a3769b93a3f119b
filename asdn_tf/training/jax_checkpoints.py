"""The JAX trainer's checkpoints: `checkpoints/ckpt-<step>.npz` in the run folder (weights,
Adam state, step; written atomically), the newest few kept; on resume the newest that loads,
damaged ones set aside."""

import re

import numpy as np
from absl import logging

from asdn_tf.io import errors, fileio
from asdn_tf.training import checkpoint_fallback, run_folder
from asdn_tf.training.errors import TrainingError

# run_folder's checkpoint names, as numpy archives: TF's checkpoint format needs TensorFlow.
_CHECKPOINT = re.compile(rf"{run_folder.CHECKPOINT_NAME}-(\d+)\.npz")


class Checkpoints:
    """The checkpoints of a JAX run in `output_dir/checkpoints/`, the newest `keep` of them,
    each with state.json written after it (the interface of `tf_checkpoints.Checkpoints`).
    `step()` is the updates made, `values()` the update's (trainable, non_trainable, optimizer)
    values, and `assign(step, values)` takes restored ones."""

    def __init__(self, output_dir, keep, step, values, assign):
        self.output_dir, self.keep = output_dir, keep
        self.folder = output_dir / run_folder.CHECKPOINTS
        self.step, self.values, self.assign = step, values, assign

    def restore(self):
        """Restores the newest checkpoint that loads; returns its step, or None."""
        run_folder.sweep_leftovers(self.output_dir)
        step, state = restore_newest(self.folder, self.values())
        if step is not None:
            logging.info("resumed from %s at step %d", checkpoint_path(self.folder, step), step)
            self.assign(step, state)
        return step

    def newest(self):
        """What a stopped run can resume from, for its error message."""
        steps = checkpoint_steps(self.folder)
        if not steps:
            return "no checkpoint had been written yet"
        return f"the newest checkpoint, {checkpoint_path(self.folder, steps[-1])}, is intact"

    def save(self, state, elapsed):
        """Saves a checkpoint of the current step and then `state`, with `elapsed()` added to
        its training time."""
        try:
            save_checkpoint(self.folder, self.step(), self.values(), self.keep)
            state.seconds += elapsed()
            run_folder.save_state(self.output_dir, state)
        except OSError as error:
            raise TrainingError(f"cannot write a checkpoint in {self.output_dir}: "
                                f"{errors.first_line(error)}; {self.newest()}") from None


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
    shapes; (None, state) without one. Those that do not load are set aside
    (`checkpoint_fallback`); writes are atomic, so none is a killed write's leftover.

    Raises:
        TrainingError: checkpoints exist and none loads, or the newest that loads was written
            for another network.
    """
    restored = {}

    def restore(step):
        path = checkpoint_path(folder, step)
        try:
            with np.load(path) as arrays:
                values = tuple([arrays[f"{prefix}{i}"] for i in range(len(group))]
                               for prefix, group in zip("tno", state))
                stored_step = int(arrays["step"])
        except (OSError, ValueError, KeyError, EOFError) as error:
            return str(error).splitlines()[0] if str(error) else "unreadable"
        if stored_step != step or any(a.shape != tuple(b.shape)
                                      for group, ours in zip(values, state)
                                      for a, b in zip(group, ours)):
            raise TrainingError(f"{path} was written for another network or optimizer (other "
                                "model flags?): rerun with --restart, or use another "
                                "--output_dir")
        restored[step] = values
        return None

    step = checkpoint_fallback.restore_first(folder, checkpoint_steps(folder), restore,
                                             lambda step: [checkpoint_path(folder, step)])
    return (None, state) if step is None else (step, restored[step])
