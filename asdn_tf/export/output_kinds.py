"""What each format's output looks like, read without TensorFlow: why an existing path is not an
earlier export of the format (what --overwrite may replace), or None. Each is the `output` of
its row in `asdn_tf.export.formats.FORMATS` and the `kind` of `output_files.check_output`.

    output_files.check_output(path, output_kinds.onnx_problem, overwrite=True)
"""

import pathlib
import re

# What TF writes into a SavedModel folder; --overwrite replaces a folder holding nothing else.
_SAVED_MODEL_FILES = {"saved_model.pb", "fingerprint.pb"}
_SAVED_MODEL_FOLDERS = {"variables", "assets"}
_VARIABLES_FILE = re.compile(r"^variables\.(index|data-\d{5}-of-\d{5})$")
_TFLITE_IDENTIFIER = b"TFL3"  # bytes 4 to 8 of a TFLite flatbuffer
# The metadata key an ONNX export of this project carries (its scale, or "any").
ONNX_MARK = "asdn_tf:scale"
# The name of the Input layer in an NCNN .param this project writes (tools read blob names only).
NCNN_MARK = "asdn_tf"
NCNN_MAGIC = "7767517"  # the first line of an NCNN .param


def saved_model_problem(path):
    """Why `path` is not a SavedModel folder as TF writes it, or None: what --overwrite may
    replace (`output_files.check_output`)."""
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


def _listing(names, shown=3):
    text = ", ".join(names[:shown])
    return text + (f" and {len(names) - shown} more" if len(names) > shown else "")


def tflite_problem(path):
    """Why `path` is not a TFLite model (a regular file with a TFLite header), or None: what
    --overwrite may replace (`output_files.check_output`)."""
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


def onnx_problem(path):
    """Why `path` is not an ONNX export of this project, or None: what --overwrite may replace
    (`output_files.check_output`)."""
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
    return (bool(lines) and lines[0].strip() == NCNN_MAGIC
            and any(line.split()[:2] == ["Input", NCNN_MARK] for line in lines[2:]))


def ncnn_problem(path):
    """Why `path` is not an NCNN `.param` of this project, or a `.bin` beside one, or None:
    what --overwrite may replace (`output_files.check_output`)."""
    if path.is_dir():
        return "it is a folder, not an NCNN file"
    if path.is_symlink() or not path.is_file():
        return "it is not a regular file"
    if path.suffix == ".bin":
        return None if is_ncnn_export(path.with_suffix(".param")) else (
            "its .param is not an NCNN export of asdn_tf")
    return None if is_ncnn_export(path) else "it is not an NCNN export of asdn_tf"
