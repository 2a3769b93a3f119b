"""Export: ASDN (with its FSDN for the integer part of a scale) as a SavedModel that serves
every scale, FSDN as a TFLite model, either as ONNX or NCNN.

    python -m asdn_tf.export saved_model --output_dir=serving/artifacts/asdn/1 \\
        [--weights=training/cpu/best.weights.h5 --preset=default] [--fsdn=auto|none|FILE]
    python -m asdn_tf.export tflite --scale=2 --quantize=int8 \\
        --images=data/Set5 --output=serving/artifacts/fsdn_x2_int8.tflite
    python -m asdn_tf.export onnx --scale=2.5 --output=asdn_x2.5.onnx
    python -m asdn_tf.export ncnn --scale=4 --output=runs/models

Without --weights an export holds the bundled default model (`EXPORT_MODEL`), and a
fixed-scale export at a whole scale its FSDN has (×2, ×3, ×4) holds that FSDN's head for it.
The exports themselves are in asdn_tf/export/ (saved_model.py, tflite.py, onnx.py, ncnn.py).
What a command line asks that cannot be done (a flag, the output, a missing weights file) is
refused in one line before TensorFlow loads. `run_cli` runs the command in this process.
"""

import re
import sys

from absl import app, flags
from absl import logging as absl_logging

from asdn_tf.cli.model_flags import (check_fsdn_choice, check_model_choice, define_model_flags,
                                     load_chosen_fsdn, load_chosen_model)
from asdn_tf.export.command_checks import DEFAULT_MAX_OUTPUT_PIXELS, LAYOUTS, QUANTIZATIONS
from asdn_tf.export.formats import FORMATS
from asdn_tf.inference import weights_io
from asdn_tf.io import errors
from asdn_tf.nn import config as config_lib
from asdn_tf.nn import lfr

# The bundled model an export holds without --weights: the benchmark's, not `asdn-upscale`'s.
EXPORT_MODEL = "default"


def _define_flags(flag_values=flags.FLAGS):
    def define(kind, *args, **kwargs):
        return getattr(flags, f"DEFINE_{kind}")(*args, flag_values=flag_values, **kwargs)

    define("string", "output_dir", None, "saved_model: the SavedModel folder to write (a "
           "numbered version folder for TF Serving, e.g. models/asdn/1).")
    define("string", "output", None, "tflite: the .tflite file to write; onnx: the .onnx file; "
           "ncnn: the folder to write NAME-xS.param and .bin into (upscayl takes custom models "
           "from a folder named models).")
    define_model_flags(
        weights="saved_model: ASDN weights (.weights.h5 or .keras; default: the bundled "
                "default model). tflite: FSDN weights (default: the bundled default model's "
                "FSDN, x2, x3 or x4). onnx, ncnn: ASDN or FSDN weights (default: the bundled "
                "FSDN at a scale it has, else the bundled default model).",
        preset=f"Model preset when the weights have no sidecar: one of "
               f"{sorted(config_lib.PRESETS)}.",
        fsdn=True, flag_values=flag_values)
    define("float", "max_scale", lfr.DEFAULT_MAX_SCALE,
           "saved_model: the largest scale the signatures accept.")
    define("integer", "max_output_pixels", DEFAULT_MAX_OUTPUT_PIXELS,
           "saved_model: the largest batch × height × width of an output. Each output pixel "
           "costs about 2 KB of memory at a request's peak (default preset): the default needs "
           "about 2 GB, 4194304 about 8 GB.")
    flags.DEFINE(_PlainScaleParser(), "scale", None,
                 "tflite: the FSDN's whole scale (2, 3, 4, 8, ...); onnx: the scale the file "
                 "does (an ASDN: 1.1 to 32; an FSDN: its own); ncnn: 2, 3, 4 or 8.",
                 serializer=flags.ArgumentSerializer(), flag_values=flag_values)
    define("enum", "layout", "nhwc", list(LAYOUTS),
           "onnx: the input and output layout, N×H×W×3 or N×3×H×W.")
    define("bool", "any_scale", False, "onnx: instead of --scale, a graph with a second input, "
           "scale (float64), that serves every scale in (1, 32].")
    define("enum", "quantize", "none", list(QUANTIZATIONS), "tflite: weight/activation types.")
    define("string", "input_size", "dynamic", "tflite, onnx: HEIGHTxWIDTH of a fixed input (e.g. "
           "256x256), or 'dynamic' (OpenCV 4.x loads only ONNX files with a fixed input).")
    define("string", "images", None, "tflite: folder or glob of real images to verify on (and "
           "to calibrate int8 on); onnx, ncnn: the same, by default the quick start's "
           "photograph.")
    define("integer", "calibration_patches", 64, "tflite: int8 calibration patches.")
    define("integer", "num_threads", None, "tflite: interpreter threads while verifying.")
    define("bool", "overwrite", False, "Replace the output if it is an earlier export (a "
           "SavedModel folder, a TFLite file); nothing else is ever replaced.")


class _PlainScaleParser(flags.FloatParser):
    """--scale: a plain decimal (2, 2.5), and a plain word for anything else."""

    def convert(self, argument):
        if isinstance(argument, str) and not re.fullmatch(r"\s*\d+(\.\d+)?\s*", argument):
            raise ValueError(f"--scale must be a plain decimal such as 2 or 2.5, not "
                             f"{argument.strip()!r}")
        return super().convert(argument)


def chosen_model(flag_values, scale=None):
    """(the float32 model the flags choose, the words that name it): --weights with --preset;
    without them, at a whole `scale` the bundled model's FSDN has, that FSDN's head for it
    (`FSDN.at_scale`), else the bundled model."""
    check_model_choice(flag_values.weights, flag_values.preset)
    if not flag_values.weights and scale is not None:
        fsdn = load_chosen_fsdn("auto", name=EXPORT_MODEL, precision="float32")
        if fsdn is not None and float(scale) in fsdn.scales:
            return fsdn.at_scale(int(scale)), _bundled_fsdn_words()
    name = None if flag_values.weights else EXPORT_MODEL
    return (load_chosen_model(flag_values.weights, flag_values.preset, name, "float32"),
            flag_values.weights or f"the bundled {EXPORT_MODEL} weights")


def chosen_fsdn(flag_values):
    """(the float32 FSDN --fsdn chooses, or None, the words that name it)."""
    fsdn = load_chosen_fsdn(flag_values.fsdn, flag_values.weights, EXPORT_MODEL, "float32")
    words = _bundled_fsdn_words() if flag_values.fsdn == "auto" else flag_values.fsdn
    return fsdn, None if fsdn is None else words


def _bundled_fsdn_words():
    return f"the bundled {weights_io.BUNDLED_FSDN[EXPORT_MODEL]} weights"


def main(argv, flag_values=flags.FLAGS):
    """The command on parsed flags: exit status 2 for a format it does not know or a flag that
    does not apply, 1 for what the format refuses, 0 once it has written the export."""
    if len(argv) != 2 or argv[1] not in FORMATS:
        print(f"export: usage: python -m asdn_tf.export {'|'.join(FORMATS)} [--flags]",
              file=sys.stderr)
        return 2
    row = FORMATS[argv[1]]
    # A flag is refused where its format's row does not name it.
    stray = sorted(name for other in FORMATS.values() for name in other.flags
                   if name not in row.flags and flag_values[name].present)
    if stray:
        print(f"export: --{stray[0]} does not apply to {row.name}", file=sys.stderr)
        return 2
    # TensorFlow's SavedModel writer logs INFO lines through absl (every signature's input
    # names, the fingerprint: 12 KB for one export); the command prints its own summary.
    absl_logging.set_verbosity(absl_logging.WARNING)
    try:
        # What can be refused is, before TensorFlow loads (the row's command loads it).
        row.check(flag_values)
        if "fsdn" in row.flags:
            check_fsdn_choice(flag_values.fsdn)
        check_model_choice(flag_values.weights, flag_values.preset)
        row.command(flag_values, lambda scale=None: chosen_model(flag_values, scale),
                    lambda: chosen_fsdn(flag_values))
    except (ValueError, OSError) as error:  # FileNotFoundError and FileExistsError included.
        print(f"export: {errors.first_line(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("export: interrupted; nothing written", file=sys.stderr)
        return 130
    return 0


def run_cli(argv):
    """Runs the command line `argv` (argv[0] is the program) in this process; returns the exit
    status. Uses its own flag registry, so it can run many times and beside other absl
    programs; a bad flag is one line, as in `run`."""
    flag_values = flags.FlagValues()
    _define_flags(flag_values)
    try:
        arguments = flag_values(argv)
    except flags.Error as error:
        print(f"export: {error}", file=sys.stderr)
        return 1
    return main(arguments, flag_values)


def run():
    """`python -m asdn_tf.export`: flags are defined here, not at import, so importing the
    library defines none."""
    _define_flags()
    app.run(main, flags_parser=errors.one_line_flags_parser("export"))


if __name__ == "__main__":
    run()
