"""The damaged-checkpoint fallback of both backends: on resume, the newest checkpoint that can
be restored; the others that cannot are set aside with one warning, and when none can, the run
stops with nothing changed. The checkpoint format is the caller's (`tf_checkpoints`,
`jax_checkpoints`): it says how one step is restored and which files hold it."""

from absl import logging

from asdn_tf.training.errors import TrainingError
from asdn_tf.training.run_folder import CHECKPOINT_NAME, damaged_folder


def restore_first(folder, steps, restore, files_of, interrupted_after=None,
                  unreadable_state=None):
    """Restores the newest of `steps` that `restore(step)` can (it returns None, or why not);
    returns its step, or None when there is none to restore.

    A failed newest step newer than `interrupted_after` (the newest one the format's own record
    lists; None: no record) is a killed write's leftover: its files (`files_of(step)`) are
    removed. The others that fail are moved into `folder/damaged-<time>/`, with the file
    `unreadable_state` (the format's record, when unreadable) if given, and one warning.

    Raises:
        TrainingError: checkpoints exist and none can be restored; nothing was changed.
    """
    steps = sorted(steps, reverse=True)
    restored, interrupted, damaged = None, None, []
    for step in steps:
        reason = restore(step)
        if reason is None:
            restored = step
            break
        if step == steps[0] and interrupted_after is not None and step > interrupted_after:
            interrupted = step
        else:
            damaged.append((step, reason))
    if restored is None and damaged:
        listed = "; ".join(f"{CHECKPOINT_NAME}-{step}: {reason}" for step, reason in damaged)
        raise TrainingError(f"no checkpoint in {folder} can be restored ({listed}); nothing was "
                            "changed: rerun with --restart to move the run's files aside and "
                            "start from step 0, or use another --output_dir")
    if interrupted is not None:
        for path in files_of(interrupted):
            path.unlink()
        logging.info("removed %s-%d, a checkpoint whose writing was interrupted",
                     CHECKPOINT_NAME, interrupted)
    if damaged or unreadable_state is not None:
        _set_aside(folder, damaged, files_of, unreadable_state, restored)
    return restored


def _set_aside(folder, damaged, files_of, unreadable_state, restored):
    """Moves the `damaged` checkpoints, and `unreadable_state` if given, into
    `folder/damaged-<time>/` with one warning."""
    aside = damaged_folder(folder)
    for step, _ in damaged:
        for path in files_of(step):
            path.rename(aside / path.name)
    problems = [f"{CHECKPOINT_NAME}-{step} cannot be restored ({reason})"
                for step, reason in damaged]
    if unreadable_state is not None:
        if unreadable_state.exists():
            unreadable_state.rename(aside / unreadable_state.name)
        problems.append(f"the state file `{unreadable_state.name}` is unreadable")
    logging.warning("%s: %s; moved to %s; %s", folder, ", ".join(problems), aside,
                    "starting from step 0" if restored is None
                    else f"resuming from {CHECKPOINT_NAME}-{restored}")
