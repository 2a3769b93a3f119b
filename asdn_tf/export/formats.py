"""The export formats, one row each: what `python -m asdn_tf.export` offers, the flags each
takes, the function that runs it and what its output looks like.

    from asdn_tf.export.formats import FORMATS
    FORMATS["onnx"].flags      # frozenset({'output', 'weights', 'scale', ...})

`asdn_tf/cli/export.py` builds its usage, its check that a flag applies and its dispatch from
this table; each format's module holds its converter, its verification (through
`verification.py`), its `command` and its `output_problem`, which its writes pass to
`output_files` as their kind. A new format is one new module with those two functions and one
row here (and, for a new flag, its definition in asdn_tf/cli/export.py).
"""

import dataclasses
from typing import Callable

from asdn_tf.export import ncnn, onnx, saved_model, tflite


@dataclasses.dataclass(frozen=True)
class Format:
    """One export format.

    Attributes:
        name: str, the command's first argument.
        flags: frozenset of the flag names it takes; any other export flag is refused.
        command: command(options, choose_model, choose_fsdn): checks, converts, verifies and
            writes, from `options` (the flag values), choose_model(scale=None) (the float32
            model --weights and --preset choose, and the words that name it; without them, at
            a whole `scale` the bundled FSDN has, that FSDN's head for it) and choose_fsdn()
            (the float32 FSDN --fsdn chooses or None, and the words that name it).
        output: output(path): why an existing `path` is not an earlier export of the format
            (what --overwrite may replace), or None: the `kind` of `output_files`.
    """

    name: str
    flags: frozenset
    command: Callable
    output: Callable


FORMATS = {row.name: row for row in (
    Format("saved_model", frozenset({"output_dir", "weights", "preset", "fsdn", "max_scale",
                                     "max_output_pixels", "overwrite"}),
           saved_model.command, saved_model.output_problem),
    Format("tflite", frozenset({"output", "weights", "preset", "scale", "quantize",
                                "input_size", "images", "calibration_patches", "num_threads",
                                "overwrite"}),
           tflite.command, tflite.output_problem),
    Format("onnx", frozenset({"output", "weights", "preset", "fsdn", "scale", "any_scale",
                              "images", "layout", "input_size", "overwrite"}),
           onnx.command, onnx.output_problem),
    Format("ncnn", frozenset({"output", "weights", "preset", "scale", "images", "overwrite"}),
           ncnn.command, ncnn.output_problem),
)}
