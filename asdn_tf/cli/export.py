"""Export: ASDN as a SavedModel that serves every scale, FSDN as a TFLite model, either as ONNX.

    python -m asdn_tf.export saved_model --output_dir=serving/artifacts/asdn/1 \\
        [--weights=training/cpu/best.weights.h5 --preset=default]
    python -m asdn_tf.export tflite --weights=fsdn_x2.weights.h5 --scale=2 --quantize=int8 \\
        --images=data/Set5 --output=serving/artifacts/fsdn_x2_int8.tflite
    python -m asdn_tf.export onnx --scale=2.5 --output=asdn_x2.5.onnx
    python -m asdn_tf.export ncnn --scale=4 --output=runs/models

The exports themselves are in asdn_tf/export/ (saved_model.py, tflite.py, onnx.py, ncnn.py).
"""

import pathlib
import re
import sys

from absl import app, flags
from absl import logging as absl_logging

from asdn_tf.cli.model_flags import check_model_choice, define_model_flags, load_chosen_model
from asdn_tf.data import data_folders
from asdn_tf.export import ncnn as ncnn_export
from asdn_tf.export import onnx as onnx_export
from asdn_tf.export.output_files import check_output, write_export
from asdn_tf.export.saved_model import DEFAULT_MAX_OUTPUT_PIXELS, check_limits, export_saved_model
from asdn_tf.export.tflite import QUANTIZATIONS, convert_tflite, verification_images, verify_tflite
from asdn_tf.inference.weights_io import load_model
from asdn_tf.io import errors
from asdn_tf.nn import config as config_lib
from asdn_tf.nn import lfr
from asdn_tf.nn.model import ASDN

_COMMAND_FLAGS = {
    "saved_model": {"output_dir", "weights", "preset", "max_scale", "max_output_pixels",
                    "overwrite"},
    "tflite": {"output", "weights", "preset", "scale", "quantize", "input_size", "images",
               "calibration_patches", "num_threads", "overwrite"},
    "onnx": {"output", "weights", "preset", "scale", "any_scale", "images", "layout",
             "input_size", "overwrite"},
    "ncnn": {"output", "weights", "preset", "scale", "images", "overwrite"},
}


def _define_flags():
    flags.DEFINE_string("output_dir", None, "saved_model: the SavedModel folder to write "
                        "(a numbered version folder for TF Serving, e.g. models/asdn/1).")
    flags.DEFINE_string("output", None, "tflite: the .tflite file to write; onnx: the .onnx "
                        "file; ncnn: the folder to write NAME-xS.param and .bin into (upscayl "
                        "takes custom models from a folder named models).")
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
    flags.DEFINE(_PlainScaleParser(), "scale", None,
                 "tflite: the FSDN's whole scale (2, 3, 4, 8, ...); onnx: the scale the file "
                 "does (an ASDN: 1.1 to 32; an FSDN: its own); ncnn: 2, 3, 4 or 8.",
                 serializer=flags.ArgumentSerializer())
    flags.DEFINE_enum("layout", "nhwc", list(onnx_export.LAYOUTS),
                      "onnx: the input and output layout, N×H×W×3 or N×3×H×W.")
    flags.DEFINE_bool("any_scale", False, "onnx: instead of --scale, a graph with a second "
                      "input, scale (float64), that serves every scale in (1, 32].")
    flags.DEFINE_enum("quantize", "none", list(QUANTIZATIONS), "tflite: weight/activation types.")
    flags.DEFINE_string("input_size", "dynamic",
                        "tflite, onnx: HEIGHTxWIDTH of a fixed input (e.g. 256x256), or "
                        "'dynamic' (OpenCV 4.x loads only ONNX files with a fixed input).")
    flags.DEFINE_string("images", None, "tflite: folder or glob of real images to verify on "
                        "(and to calibrate int8 on); onnx, ncnn: the same, by default the quick "
                        "start's photograph.")
    flags.DEFINE_integer("calibration_patches", 64, "tflite: int8 calibration patches.")
    flags.DEFINE_integer("num_threads", None, "tflite: interpreter threads while verifying.")
    flags.DEFINE_bool("overwrite", False, "Replace the output if it is an earlier export "
                      "(a SavedModel folder, a TFLite file); nothing else is ever replaced.")


class _PlainScaleParser(flags.FloatParser):
    """--scale: a plain decimal (2, 2.5), and a plain word for anything else."""

    def convert(self, argument):
        if isinstance(argument, str) and not re.fullmatch(r"\s*\d+(\.\d+)?\s*", argument):
            raise ValueError(f"--scale must be a plain decimal such as 2 or 2.5, not "
                             f"{argument.strip()!r}")
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


def _chosen_model(flag_values):
    """(the model --weights and --preset choose in float32, the words that name it)."""
    return (load_chosen_model(flag_values.weights, flag_values.preset, precision="float32"),
            flag_values.weights or "the bundled default weights")


def _saved_model_command(flag_values):
    if not flag_values.output_dir:
        raise ValueError("--output_dir is required")
    check_limits(flag_values.max_scale, flag_values.max_output_pixels)
    output_dir = pathlib.Path(flag_values.output_dir)
    check_output(output_dir, "saved_model", flag_values.overwrite)
    check_model_choice(flag_values.weights, flag_values.preset)
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
    if not flag_values.scale.is_integer():
        raise ValueError(f"a TFLite export is an FSDN, which upscales by one whole factor "
                         f"(2, 3, 4, ...), not {flag_values.scale:g}; for any scale, export "
                         "ASDN as a SavedModel (saved_model) or ONNX (onnx)")
    scale = int(flag_values.scale)
    if not 2 <= scale <= config_lib.MAX_FSDN_SCALE:
        raise ValueError(f"--scale must be an integer in [2, {config_lib.MAX_FSDN_SCALE}], "
                         f"got {scale}")
    data_folders.require_sources([flag_values.images])
    if flag_values.calibration_patches < 1:
        raise ValueError(f"--calibration_patches must be positive, "
                         f"got {flag_values.calibration_patches}")
    input_size = _parse_input_size(flag_values.input_size)
    output = pathlib.Path(flag_values.output)
    check_output(output, "tflite", flag_values.overwrite)
    images = verification_images(flag_values.images, input_size)
    fsdn = load_model(flag_values.weights, flag_values.preset, fsdn_scale=scale,
                      precision="float32")
    content = convert_tflite(fsdn, flag_values.quantize, input_size, flag_values.images,
                             flag_values.calibration_patches)
    result = verify_tflite(content, fsdn, images, flag_values.quantize, flag_values.num_threads)
    float_size = 4 * fsdn.count_params()
    shape = "dynamic HxW" if input_size is None else f"{input_size[0]}x{input_size[1]}"
    print(f"x{scale} FSDN, quantize={flag_values.quantize}, input {shape}: "
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


def _onnx_command(flag_values):
    """The `onnx` subcommand: checks, converts, verifies, and only then writes."""
    if not flag_values.output:
        raise ValueError("--output is required for onnx")
    if (flag_values.scale is None) == (not flag_values.any_scale):
        raise ValueError("give --scale (a file for that scale) or --any_scale (a file with a "
                         "scale input), one of them")
    if flag_values.preset and not flag_values.weights:
        raise ValueError("--preset needs --weights (the bundled weights carry their config)")
    scale = None if flag_values.any_scale else lfr.check_scale(
        flag_values.scale, lfr.DEFAULT_MAX_SCALE, name="--scale")
    output = pathlib.Path(flag_values.output)
    if output.suffix != ".onnx":
        raise ValueError(f"--output must end in .onnx, got {output}")
    input_size = _parse_input_size(flag_values.input_size)
    if input_size is not None and scale is None:
        raise ValueError("--input_size is for fixed-scale files (--scale), not --any_scale")
    check_output(output, "onnx", flag_values.overwrite)
    images = onnx_export.read_verification_images(flag_values.images)
    model, source = _chosen_model(flag_values)
    if scale is None and not isinstance(model, ASDN):
        raise ValueError(f"--any_scale needs an ASDN; {source} holds an x{model.scale} FSDN")
    onnx_export.check_model_scale(model, scale)
    name = f"{type(model).__name__} from {source}"
    content = onnx_export.convert_onnx(model, scale, flag_values.layout, name, input_size)
    cases = onnx_export.verification_cases(images, scale, input_size)
    result = onnx_export.verify_onnx(content, model, cases, flag_values.layout)
    what = "any scale (input 'scale')" if scale is None else f"x{scale:g}"
    shape = "dynamic HxW" if input_size is None else f"input {input_size[0]}x{input_size[1]}"
    print(f"{what} {name}, {flag_values.layout.upper()} float32 [0, 1], {shape}: "
          f"{len(content) / 1e6:.3f} MB")
    scales = "" if scale else f" at scales {', '.join(map(str, onnx_export.ANY_SCALE_CHECKS))}"
    print(f"ONNX Runtime vs Keras on {result['images']} crops{scales} of "
          f"{flag_values.images or onnx_export.quick_start_image().name}: "
          f"max abs {result['max_abs']:.3g} "
          f"({result['grey_levels']} grey level(s) in 8 bits), PSNR {result['psnr']:.2f} dB; "
          f"requirement max abs <= {onnx_export.MAX_ABS_DIFFERENCE:.3g}: "
          f"{'met' if result['ok'] else 'NOT met'}")
    if not result["ok"]:
        raise ValueError("ONNX Runtime and Keras disagree; nothing written")
    write_export(output, lambda path: path.write_bytes(content), "onnx", flag_values.overwrite)
    print(f"wrote {output}")


def _ncnn_command(flag_values):
    """The `ncnn` subcommand: checks, converts (ONNX, then pnnx), verifies in ncnn, and only
    then writes the two files."""
    if not flag_values.output:
        raise ValueError("--output (a folder) is required for ncnn")
    if flag_values.preset and not flag_values.weights:
        raise ValueError("--preset needs --weights (the bundled weights carry their config)")
    scale = ncnn_export.check_scale(flag_values.scale)
    ncnn_export.pnnx_binary()
    folder = pathlib.Path(flag_values.output)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--output must be a folder, and {folder} is a file")
    images = onnx_export.read_verification_images(flag_values.images)
    model, source = _chosen_model(flag_values)
    model = ncnn_export.fixed_scale_model(model, scale)
    name = ncnn_export.model_name(model, scale)
    for suffix in (".param", ".bin"):
        check_output(folder / f"{name}{suffix}", "ncnn", flag_values.overwrite)
    description = f"{type(model).__name__} from {source}"
    param, weights = ncnn_export.convert_ncnn(model, scale, description)
    cases = onnx_export.verification_cases(images, scale)
    result = ncnn_export.verify_ncnn(param, weights, model, cases)
    print(f"x{scale} {description}: {name}.param, {name}.bin ({len(weights) / 1e6:.3f} MB, "
          f"float32), blobs {ncnn_export.INPUT_BLOB} -> {ncnn_export.OUTPUT_BLOB}, RGB in [0, 1]")
    print(f"ncnn vs Keras on {result['images']} crops of "
          f"{flag_values.images or onnx_export.quick_start_image().name}: "
          f"max abs {result['max_abs']:.3g} ({result['grey_levels']} grey level(s) in 8 bits), "
          f"PSNR {result['psnr']:.2f} dB; requirement max abs <= "
          f"{onnx_export.MAX_ABS_DIFFERENCE:.3g}: {'met' if result['ok'] else 'NOT met'}")
    if not result["ok"]:
        raise ValueError("ncnn and Keras disagree; nothing written")
    paths = ncnn_export.write_ncnn(folder, name, param, weights, flag_values.overwrite)
    print(f"wrote {paths[0]} and {paths[1]}")
    if folder.resolve().name != "models":
        print(f"note: upscayl loads custom models only from a folder named models, not "
              f"{folder.resolve().name}")


def main(argv):
    commands = {"saved_model": _saved_model_command, "tflite": _tflite_command,
                "onnx": _onnx_command, "ncnn": _ncnn_command}
    if len(argv) != 2 or argv[1] not in commands:
        print("export: usage: python -m asdn_tf.export saved_model|tflite|onnx|ncnn [--flags]",
              file=sys.stderr)
        return 2
    command = argv[1]
    flag_values = flags.FLAGS
    stray = sorted(name for names in _COMMAND_FLAGS.values() for name in names
                   if name not in _COMMAND_FLAGS[command] and flag_values[name].present)
    if stray:
        print(f"export: --{stray[0]} does not apply to {command}", file=sys.stderr)
        return 2
    # TensorFlow's SavedModel writer logs INFO lines through absl (every signature's input
    # names, the fingerprint: 12 KB for one export); the command prints its own summary.
    absl_logging.set_verbosity(absl_logging.WARNING)
    try:
        commands[command](flag_values)
    except (ValueError, OSError) as error:  # FileNotFoundError and FileExistsError included.
        print(f"export: {errors.first_line(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("export: interrupted; nothing written", file=sys.stderr)
        return 130
    return 0


def run():
    """`python -m asdn_tf.export`: flags are defined here, not at import, so importing the
    library defines none."""
    _define_flags()
    app.run(main, flags_parser=errors.one_line_flags_parser("export"))


if __name__ == "__main__":
    run()
