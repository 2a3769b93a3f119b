"""Export: ASDN as a SavedModel that serves every scale, FSDN as a TFLite model.

    python -m asdn_tf.export saved_model --output_dir=serving/artifacts/asdn/1 \\
        [--weights=training/cpu/best.weights.h5 --preset=default]
    python -m asdn_tf.export tflite --weights=fsdn_x2.weights.h5 --scale=2 --quantize=int8 \\
        --images=data/Set5 --output=serving/artifacts/fsdn_x2_int8.tflite

The exports themselves are in asdn_tf/export/ (saved_model.py, tflite.py).
"""

import pathlib
import re
import sys

from absl import app, flags

from asdn_tf.cli.model_flags import check_model_choice, define_model_flags, load_chosen_model
from asdn_tf.data import data_folders
from asdn_tf.export.output_files import check_output, write_export
from asdn_tf.export.saved_model import DEFAULT_MAX_OUTPUT_PIXELS, check_limits, export_saved_model
from asdn_tf.export.tflite import QUANTIZATIONS, convert_tflite, verification_images, verify_tflite
from asdn_tf.inference.weights_io import load_model
from asdn_tf.io import errors as cli
from asdn_tf.nn import config as config_lib
from asdn_tf.nn import lfr

_COMMAND_FLAGS = {
    "saved_model": {"output_dir", "weights", "preset", "max_scale", "max_output_pixels",
                    "overwrite"},
    "tflite": {"output", "weights", "preset", "scale", "quantize", "input_size", "images",
               "calibration_patches", "num_threads", "overwrite"},
}


def _define_flags():
    flags.DEFINE_string("output_dir", None, "saved_model: the SavedModel folder to write "
                        "(a numbered version folder for TF Serving, e.g. models/asdn/1).")
    flags.DEFINE_string("output", None, "tflite: the .tflite file to write.")
    define_model_flags(
        weights="saved_model: ASDN weights (.weights.h5 or .keras; default: the bundled "
                "weights). tflite: FSDN weights (required).",
        preset=f"Model preset when the weights have no sidecar: one of "
               f"{sorted(config_lib.PRESETS)}.")
    flags.DEFINE_float("max_scale", lfr.DEFAULT_MAX_SCALE,
                       "saved_model: the largest scale the signatures accept.")
    flags.DEFINE_integer("max_output_pixels", DEFAULT_MAX_OUTPUT_PIXELS,
                         "saved_model: the largest batch × height × width of an output. Each "
                         "output pixel costs about 2 KB of memory at a request's peak (default "
                         "preset): the default needs about 2 GB, 4194304 about 8 GB.")
    flags.DEFINE(_WholeScaleParser(), "scale", None,
                 "tflite: the FSDN's integer scale (2, 3, 4, 8, ...).",
                 serializer=flags.ArgumentSerializer())
    flags.DEFINE_enum("quantize", "none", list(QUANTIZATIONS), "tflite: weight/activation types.")
    flags.DEFINE_string("input_size", "dynamic",
                        "tflite: HEIGHTxWIDTH of a fixed input (e.g. 256x256), or 'dynamic'.")
    flags.DEFINE_string("images", None, "tflite: folder or glob of real images to verify on "
                        "(and to calibrate int8 on).")
    flags.DEFINE_integer("calibration_patches", 64, "tflite: int8 calibration patches.")
    flags.DEFINE_integer("num_threads", None, "tflite: interpreter threads while verifying.")
    flags.DEFINE_bool("overwrite", False, "Replace the output if it is an earlier export "
                      "(a SavedModel folder, a TFLite file); nothing else is ever replaced.")


class _WholeScaleParser(flags.IntegerParser):
    """tflite's --scale: digits only, and a plain word for anything else (int() would say
    "invalid literal for int() with base 10")."""

    def convert(self, argument):
        if isinstance(argument, str) and not re.fullmatch(r"\s*\d+\s*", argument):
            raise ValueError(f"a TFLite export is an FSDN, which upscales by one whole factor "
                             f"(2, 3, 4, ...), not {argument.strip()!r}; for any scale, export "
                             "ASDN as a SavedModel (saved_model)")
        return super().convert(argument)


def _parse_input_size(text):
    if text == "dynamic":
        return None
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--input_size must be HEIGHTxWIDTH (e.g. 256x256) or 'dynamic', "
                         f"got {text!r}") from None
    if height < 1 or width < 1:
        raise ValueError(f"--input_size must be positive, got {text!r}")
    return height, width


def _saved_model_command(flag_values):
    if not flag_values.output_dir:
        raise ValueError("--output_dir is required")
    check_limits(flag_values.max_scale, flag_values.max_output_pixels)
    check_model_choice(flag_values.weights, flag_values.preset)
    output_dir = pathlib.Path(flag_values.output_dir)
    check_output(output_dir, "saved_model", flag_values.overwrite)
    model = load_chosen_model(flag_values.weights, flag_values.preset, precision="float32")
    source = flag_values.weights or "the bundled default weights"
    export_saved_model(model, output_dir, flag_values.max_scale, flag_values.max_output_pixels,
                       flag_values.overwrite)
    size = sum(f.stat().st_size for f in output_dir.rglob("*") if f.is_file())
    print(f"wrote {output_dir} ({size / 1e6:.2f} MB) from {source}: signatures serving_default "
          f"(uint8), upscale_float, upscale_encoded; scale in (1, {flag_values.max_scale:g}], "
          f"at most {flag_values.max_output_pixels} output pixels")


def _tflite_command(flag_values):
    for name in ("weights", "scale", "output", "images"):
        if getattr(flag_values, name) in (None, ""):
            raise ValueError(f"--{name} is required for tflite")
    if not 2 <= flag_values.scale <= config_lib.MAX_FSDN_SCALE:
        raise ValueError(f"--scale must be an integer in [2, {config_lib.MAX_FSDN_SCALE}], "
                         f"got {flag_values.scale}")
    data_folders.require_sources([flag_values.images])
    if flag_values.calibration_patches < 1:
        raise ValueError(f"--calibration_patches must be positive, "
                         f"got {flag_values.calibration_patches}")
    input_size = _parse_input_size(flag_values.input_size)
    output = pathlib.Path(flag_values.output)
    check_output(output, "tflite", flag_values.overwrite)
    images = verification_images(flag_values.images, input_size)
    fsdn = load_model(flag_values.weights, flag_values.preset, fsdn_scale=flag_values.scale,
                      precision="float32")
    content = convert_tflite(fsdn, flag_values.quantize, input_size, flag_values.images,
                             flag_values.calibration_patches)
    result = verify_tflite(content, fsdn, images, flag_values.quantize, flag_values.num_threads)
    float_size = 4 * fsdn.count_params()
    shape = "dynamic HxW" if input_size is None else f"{input_size[0]}x{input_size[1]}"
    print(f"x{flag_values.scale} FSDN, quantize={flag_values.quantize}, input {shape}: "
          f"{len(content) / 1e6:.3f} MB (float32 weights {float_size / 1e6:.3f} MB)")
    print(f"vs Keras on {result['images']} image(s) from {flag_values.images}: "
          f"max abs {result['max_abs']:.3g}, PSNR {result['psnr']:.2f} dB, "
          f"median latency {result['latency_ms']:.1f} ms; requirement {result['requirement']}: "
          f"{'met' if result['ok'] else 'NOT met'}")
    if not result["ok"]:
        raise ValueError(f"the {flag_values.quantize} model misses its requirement "
                         f"({result['requirement']}); nothing written")
    write_export(output, lambda path: path.write_bytes(content), "tflite",
                      flag_values.overwrite)
    print(f"wrote {output}")


def main(argv):
    commands = {"saved_model": _saved_model_command, "tflite": _tflite_command}
    if len(argv) != 2 or argv[1] not in commands:
        print("export: usage: python -m asdn_tf.export saved_model|tflite [--flags]",
              file=sys.stderr)
        return 2
    command = argv[1]
    flag_values = flags.FLAGS
    stray = sorted(name for names in _COMMAND_FLAGS.values() for name in names
                   if name not in _COMMAND_FLAGS[command] and flag_values[name].present)
    if stray:
        print(f"export: --{stray[0]} does not apply to {command}", file=sys.stderr)
        return 2
    try:
        commands[command](flag_values)
    except (ValueError, OSError) as error:  # FileNotFoundError and FileExistsError included.
        print(f"export: {cli.first_line(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("export: interrupted; nothing written", file=sys.stderr)
        return 130
    return 0


def run():
    """`python -m asdn_tf.export`: flags are defined here, not at import, so importing the
    library defines none."""
    _define_flags()
    app.run(main, flags_parser=cli.one_line_flags_parser("export"))


if __name__ == "__main__":
    run()
