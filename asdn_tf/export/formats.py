"""The export formats, one row each: what `python -m asdn_tf.export` offers, the flags each
takes, what it refuses before any work, the function that runs it and what its output looks
like.

    from asdn_tf.export.formats import FORMATS
    FORMATS["onnx"].flags      # frozenset({'output', 'weights', 'scale', ...})

`asdn_tf/cli/export.py` builds its usage, its check that a flag applies and its dispatch from
this table. The table loads no TensorFlow: each row's `check` (`command_checks.py`) and
`output` (`output_kinds.py`) run without it, and its `command` imports the format's module
(its converter, its verification through `verification.py`) only when it runs, so a refused
command answers at once. A new format is one new module with its `command`, a check and an
output kind, and one row here (and, for a new flag, its definition in asdn_tf/cli/export.py).
"""

import dataclasses
from typing import Callable

from asdn_tf.export import command_checks, output_kinds


@dataclasses.dataclass(frozen=True)
class Format:
    """One export format.

    Attributes:
        name: str, the command's first argument.
        flags: frozenset of the flag names it takes; any other export flag is refused.
        check: check(options): raises ValueError or OSError (one line naming the flag) for
            what the flag values and the output ask that the format cannot do; without
            TensorFlow, before the command runs.
        command: command(options, choose_model, choose_fsdn), once `check` has passed:
            converts, verifies and writes, from `options` (the flag values),
            choose_model(scale=None) (the float32 model --weights and --preset choose, and the
            words that name it; without them, at a whole `scale` the bundled FSDN has, that
            FSDN's head for it) and choose_fsdn() (the float32 FSDN --fsdn chooses or None,
            and the words that name it).
        output: output(path): why an existing `path` is not an earlier export of the format
            (what --overwrite may replace), or None: the `kind` of `output_files`.
    """

    name: str
    flags: frozenset
    check: Callable
    command: Callable
    output: Callable


# Each format's module is imported when its command runs: all of them load TensorFlow.
def _saved_model(*args):
    from asdn_tf.export import saved_model
    saved_model.command(*args)


def _tflite(*args):
    from asdn_tf.export import tflite
    tflite.command(*args)


def _onnx(*args):
    from asdn_tf.export import onnx
    onnx.command(*args)


def _ncnn(*args):
    from asdn_tf.export import ncnn
    ncnn.command(*args)


FORMATS = {row.name: row for row in (
    Format("saved_model", frozenset({"output_dir", "weights", "preset", "fsdn", "max_scale",
                                     "max_output_pixels", "overwrite"}),
           command_checks.check_saved_model, _saved_model, output_kinds.saved_model_problem),
    Format("tflite", frozenset({"output", "weights", "preset", "scale", "quantize",
                                "input_size", "images", "calibration_patches", "num_threads",
                                "overwrite"}),
           command_checks.check_tflite, _tflite, output_kinds.tflite_problem),
    Format("onnx", frozenset({"output", "weights", "preset", "fsdn", "scale", "any_scale",
                              "images", "layout", "input_size", "overwrite"}),
           command_checks.check_onnx, _onnx, output_kinds.onnx_problem),
    Format("ncnn", frozenset({"output", "weights", "preset", "scale", "images", "overwrite"}),
           command_checks.check_ncnn, _ncnn, output_kinds.ncnn_problem),
)}
