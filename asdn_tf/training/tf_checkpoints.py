"""The TensorFlow checkpoints of a training run (OUTPUT_DIR/checkpoints/, see run_folder): the
newest few kept, and on resume the newest that can be restored, damaged ones set aside. They
import TensorFlow only when they run."""

import contextlib
import gc
import logging as python_logging
import pathlib
import re
import tempfile

from absl import logging

from asdn_tf.io import errors, fileio
from asdn_tf.training import checkpoint_fallback
from asdn_tf.training.errors import TrainingError
from asdn_tf.training.run_folder import (CHECKPOINT_NAME, CHECKPOINTS, save_state,
                                         sweep_leftovers)

CHECKPOINT_INDEX = re.compile(rf"{CHECKPOINT_NAME}-(\d+)\.index")


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
                                f"{errors.first_line(error)}; {self.newest()}") from None

    def _save_copy(self, step):
        import tensorflow as tf
        folder = tempfile.mkdtemp(prefix="asdn-train-")
        try:
            tf.train.CheckpointManager(self.checkpoint, folder, max_to_keep=1).save(
                checkpoint_number=step)
        except (OSError, tf.errors.OpError) as error:
            raise TrainingError(f"{self.task} cannot write its checkpoint copy in {folder}: "
                                f"{errors.first_line(error)}") from None
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
    on_disk = {int(match[1]) for match in map(CHECKPOINT_INDEX.fullmatch,
                                               (path.name for path in folder.iterdir())) if match}
    restored = checkpoint_fallback.restore_first(
        folder, on_disk | (recorded or set()),
        lambda step: _restore(checkpoint, step_variable, folder, step),
        lambda step: _checkpoint_files(folder, step),
        interrupted_after=None if recorded is None else max(recorded, default=0),
        unreadable_state=folder / "checkpoint" if recorded is None else None)
    kept = sorted(step for step in on_disk if _checkpoint_files(folder, step))
    if restored is not None and (recorded != set(kept) or max(kept) != restored):
        _write_checkpoint_state(folder, kept)
    return restored


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
