"""Where an export may be written, and writing it so that nothing half-written is ever seen.

An output may not be written when it exists (without overwrite), when it is not an earlier
export of its format (each format says what its output looks like: the `output` of its row in
`asdn_tf.export.formats.FORMATS`, which its command passes here as `kind`), when it is the
working folder or one that holds it, home or /, or when its folder cannot be written.
"""

import pathlib

from asdn_tf.io import errors, fileio


def check_output(path, kind, overwrite=False):
    """Raises unless an export of `kind` may be written at `path`.

    Run it before any work; it needs no TensorFlow. `kind` is the format's output check (one of
    `output_kinds`: a row's `output` in `formats.FORMATS`): a function that says why an existing `path` is not an earlier export
    of the format, or returns None. `path` may be written when it does not exist, or, with
    `overwrite`, when it is such an export. The working folder, a folder holding it, home and /
    never are, nor a symbolic link. The folder it goes in (or the nearest one that exists)
    must be writable.

    Raises:
        FileExistsError: `path` exists and `overwrite` is False, or it is not such an export.
        ValueError: `path` is a folder no export may replace, or a symbolic link.
        OSError: the folder it goes in cannot be written.
    """
    path = pathlib.Path(path)
    _check_replaceable(path, kind, overwrite)
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise OSError(f"cannot write {path}: {folder} is not a folder")
    fileio.check_writable(folder)


def _check_replaceable(path, kind, overwrite):
    protected = _protected(path)
    if protected:
        raise ValueError(f"refusing to write an export at {path}: it is {protected}")
    if path.is_symlink():
        raise ValueError(f"refusing to replace {path}: it is a symbolic link")
    if not path.exists():
        return
    if not overwrite:
        raise FileExistsError(f"{path} already exists (pass overwrite / --overwrite to replace "
                              "an earlier export)")
    problem = kind(path)
    if problem:
        raise FileExistsError(f"refusing to replace {path}: {problem}; overwrite replaces only "
                              "an earlier export, so nothing was touched")


def _protected(path):
    """What `path` is if no export may ever replace it, else None."""
    target = path.resolve()
    working = pathlib.Path.cwd().resolve()
    if target == working:
        return "the working folder"
    if target in working.parents:
        return f"a folder holding the working folder {working}"
    if target == pathlib.Path.home().resolve():
        return "the home folder"
    return None


def write_export(path, write, kind, overwrite):
    """Writes an export of `kind` (see `check_output`) in place of `path`: calls write(temporary
    path) beside it (`fileio.atomic_path`), then renames the result into place, so TF Serving,
    which watches the model folder for numbered versions, never sees a half-written SavedModel.
    What `path` is is checked again just before it is replaced, and a failed write (a full disk
    included) leaves nothing behind, not even the folders made for it.

    Raises:
        OSError: the write failed (one line naming `path` and the reason).
    """
    check_output(path, kind, overwrite)
    made = [folder for folder in [path.parent, *path.parent.parents] if not folder.exists()]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with fileio.atomic_path(path) as temporary:
            write(temporary)
            _check_replaceable(path, kind, overwrite)
            if path.is_dir():
                fileio.remove(path)
    except BaseException as error:
        import tensorflow as tf  # loaded by `write` already; check_output runs without it

        for folder in made:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        if isinstance(error, (OSError, tf.errors.OpError)) and not isinstance(
                error, FileExistsError):
            reason = getattr(error, "strerror", None) or errors.first_line(error)
            raise OSError(f"cannot write {path}: {reason}") from None
        raise
