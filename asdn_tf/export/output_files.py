"""Where an export may be written, and writing it so that nothing half-written is ever seen.

An output may not be written when it exists (without overwrite), when it is not an earlier
export (a SavedModel folder holds only saved_model.pb, variables/, assets/ and fingerprint.pb;
a TFLite model is a regular file starting with a TFLite header; an NCNN `.param` names its Input
layer `NCNN_MARK`, and a `.bin` is replaced only beside such a `.param`), when it is the working
folder or one that holds it, home or /, or when its folder cannot be written.
"""

import pathlib
import re

import tensorflow as tf

from asdn_tf.io import errors, fileio

# What TF writes into a SavedModel folder; --overwrite replaces a folder holding nothing else.
_SAVED_MODEL_FILES = {"saved_model.pb", "fingerprint.pb"}
_SAVED_MODEL_FOLDERS = {"variables", "assets"}
_VARIABLES_FILE = re.compile(r"^variables\.(index|data-\d{5}-of-\d{5})$")
_TFLITE_IDENTIFIER = b"TFL3"  # bytes 4 to 8 of a TFLite flatbuffer
# The metadata key an ONNX export of this project carries (its scale, or "any").
ONNX_MARK = "asdn_tf:scale"
# The name of the Input layer in an NCNN .param this project writes (tools read blob names only).
NCNN_MARK = "asdn_tf"
_NCNN_MAGIC = "7767517"  # the first line of an NCNN .param
_KINDS = ("saved_model", "tflite", "onnx", "ncnn")


def check_output(path, kind, overwrite=False):
    """Raises unless an export of `kind` ("saved_model", "tflite", "onnx" or "ncnn": one
    `.param` or `.bin` file) may be written at `path`.

    Run it before any work. `path` may be written when it does not exist, or, with `overwrite`,
    when it is an earlier export of that kind: a folder holding only what TF writes into a
    SavedModel (saved_model.pb, variables/ of checkpoint files, an empty assets/,
    fingerprint.pb), or a regular file with a TFLite header. The working folder, a folder holding
    it, home and / never are, nor a symbolic link. The folder it goes in (or the nearest one
    that exists) must be writable.

    Raises:
        FileExistsError: `path` exists and `overwrite` is False, or it is not such an export.
        ValueError: `path` is a folder no export may replace, or a symbolic link.
        OSError: the folder it goes in cannot be written.
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
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
    problem = {"saved_model": _saved_model_problem, "tflite": _tflite_problem,
               "onnx": _onnx_problem, "ncnn": _ncnn_problem}[kind](path)
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


def _saved_model_problem(path):
    """Why `path` is not a SavedModel folder as TF writes it, or None."""
    if not path.is_dir():
        return "it is not a folder, so not a SavedModel"
    names = {entry.name for entry in path.iterdir()}
    others = sorted(names - _SAVED_MODEL_FILES - _SAVED_MODEL_FOLDERS)
    if others:
        return f"it holds {_listing(others)}, which a SavedModel does not"
    for name in names:
        entry = path / name
        wanted = entry.is_dir if name in _SAVED_MODEL_FOLDERS else entry.is_file
        if entry.is_symlink() or not wanted():
            return f"its {name} is not what a SavedModel holds"
    if "saved_model.pb" not in names or "variables" not in names:
        return "it is not a SavedModel (no saved_model.pb and variables/)"
    stray = sorted(entry.name for entry in (path / "variables").iterdir()
                   if entry.is_symlink() or not entry.is_file()
                   or not _VARIABLES_FILE.match(entry.name))
    if stray:
        return f"its variables/ holds {_listing(stray)}, which a SavedModel does not"
    # This export has no assets: TF leaves assets/ empty.
    if "assets" in names and any((path / "assets").iterdir()):
        return "its assets/ is not empty, as it is in an export of this model"
    return None


def _tflite_problem(path):
    if path.is_dir():
        return "it is a folder, not a TFLite model"
    if not path.is_file():
        return "it is not a regular file"
    with open(path, "rb") as file:
        header = file.read(8)
    if header[4:8] != _TFLITE_IDENTIFIER:
        return "it is not a TFLite model"
    return None


def is_onnx_export(path):
    """True if `path` is a regular file holding an ONNX model that asdn_tf.export.onnx wrote."""
    try:
        import onnx
    except ImportError:
        raise ValueError("reading an ONNX file needs onnx: pip install 'asdn_tf[onnx]'") from None

    path = pathlib.Path(path)
    if path.is_symlink() or not path.is_file():
        return False
    try:
        proto = onnx.load(path, load_external_data=False)
    except Exception:  # protobuf raises DecodeError and others for a file that is not ONNX.
        return False
    return any(entry.key == ONNX_MARK for entry in proto.metadata_props)


def _onnx_problem(path):
    if path.is_dir():
        return "it is a folder, not an ONNX model"
    if not is_onnx_export(path):
        return "it is not an ONNX export of asdn_tf"
    return None


def is_ncnn_export(path):
    """True if `path` is a regular file holding an NCNN `.param` that asdn_tf.export.ncnn
    wrote (its Input layer is named `NCNN_MARK`)."""
    path = pathlib.Path(path)
    if path.is_symlink() or not path.is_file():
        return False
    with open(path, "rb") as file:
        lines = file.read(1 << 20).decode("utf-8", "replace").splitlines()
    return (bool(lines) and lines[0].strip() == _NCNN_MAGIC
            and any(line.split()[:2] == ["Input", NCNN_MARK] for line in lines[2:]))


def _ncnn_problem(path):
    if path.is_dir():
        return "it is a folder, not an NCNN file"
    if path.is_symlink() or not path.is_file():
        return "it is not a regular file"
    if path.suffix == ".bin":
        return None if is_ncnn_export(path.with_suffix(".param")) else (
            "its .param is not an NCNN export of asdn_tf")
    return None if is_ncnn_export(path) else "it is not an NCNN export of asdn_tf"


def _listing(names, shown=3):
    text = ", ".join(names[:shown])
    return text + (f" and {len(names) - shown} more" if len(names) > shown else "")


def write_export(path, write, kind, overwrite):
    """Writes a SavedModel or TFLite file (`kind`) in place of `path`: calls write(temporary
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
        for folder in made:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        if isinstance(error, (OSError, tf.errors.OpError)) and not isinstance(
                error, FileExistsError):
            reason = getattr(error, "strerror", None) or errors.first_line(error)
            raise OSError(f"cannot write {path}: {reason}") from None
        raise
