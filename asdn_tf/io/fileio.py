"""Writing files so that a failure or a kill never leaves a half-written one behind."""

import contextlib
import os
import pathlib
import re
import secrets
import shutil

# What `atomic_path` and `check_writable` leave behind when a process is killed mid-write.
_TEMPORARY = re.compile(r"^\.tmp-[0-9a-f]{8}-(?P<name>.+)$")


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; renames it over `path` when the block succeeds and
    removes it when the block raises (KeyboardInterrupt included).

    The temporary name is hidden, is not a number (TF Serving ignores it while it watches a model
    folder for versions) and keeps the file name's ending (Keras checks `.weights.h5`).

    Example:
        >>> with atomic_path("best.weights.h5") as temporary:
        ...     model.save_weights(temporary)
    """
    path = pathlib.Path(path)
    sweep_temporaries(path.parent, path.name)
    temporary = path.parent / f".tmp-{secrets.token_hex(4)}-{path.name}"
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        remove(temporary)
        raise


def write_atomically(path, content):
    """Writes `content` (str or bytes) to `path` through `atomic_path`, creating missing parent
    folders: a failure never leaves a half-written file."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        temporary.write_bytes(content.encode() if isinstance(content, str) else content)


def check_writable(folder):
    """Raises OSError naming `folder` unless a file can be created in it (the only test that
    holds for root and for read-only mounts)."""
    folder = pathlib.Path(folder)
    probe = folder / f".tmp-{secrets.token_hex(4)}-probe"
    try:
        with open(probe, "xb"):
            pass
    except OSError as error:
        raise OSError(f"cannot write to folder {folder}: {error.strerror or error}") from None
    probe.unlink()


def remove(path):
    """Removes a file or a folder tree if it exists."""
    path = pathlib.Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def is_temporary(path):
    """True for the hidden temporaries this module writes (`.tmp-<8 hex>-<name>`)."""
    return bool(_TEMPORARY.match(pathlib.Path(path).name))


def sweep_temporaries(folder, name=None):
    """Removes the temporaries a killed write left in `folder` (only those of `name` if given);
    returns how many. Nothing else is touched: only names this module itself makes match."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        return 0
    count = 0
    for entry in folder.iterdir():
        match = _TEMPORARY.match(entry.name)
        if match and (name is None or match["name"] == name):
            remove(entry)
            count += 1
    return count
