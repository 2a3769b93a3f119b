"""What `python -m asdn_tf.export` refuses before it loads TensorFlow: each format's flags, its
output (`output_files.check_output` with the format's `output_kinds`), the verification images
and, for NCNN, the converter. A refused command answers at once, in one line, having written
nothing; each function here is the `check` of its format's row in `formats.FORMATS`, and the
row's `command` runs only after it has passed.

    command_checks.check_onnx(options)   # ValueError or OSError naming the flag
"""

import importlib.util
import os
import pathlib
import platform

import numpy as np

from asdn_tf.data import data_folders
from asdn_tf.export import output_kinds
from asdn_tf.export.output_files import check_output
from asdn_tf.io.image_io import list_images
from asdn_tf.nn import config as config_lib
from asdn_tf.nn import lfr

LAYOUTS = ("nhwc", "nchw")
QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
# The most output pixels the SavedModel gives one request unless its export raises the limit
# (--max_output_pixels): one pass of the network over them all (the default preset holds about
# 2.5 KB of activations per output pixel, so 1024 × 1024 pixels peak near 2.5 GB). In-process,
# `asdn_tf.upscale` tiles larger outputs instead (asdn_tf/inference/tiling.py).
DEFAULT_MAX_OUTPUT_PIXELS = 1024 * 1024
# The scales upscayl-bin reads from a model's name ("x2" or "2x" ...). It looks for "x1" first,
# so a name with x16 reads as x1; its GUI knows x2, x3 and x4 (anything else shows as x4).
NCNN_SCALES = (2, 3, 4, 8)
# The pnnx wheel names torch as a dependency; its converter binary does not use it.
PNNX_INSTALL = 'pip install --no-deps "pnnx>=20261020"'


def check_saved_model(options):
    if not options.output_dir:
        raise ValueError("--output_dir is required")
    check_limits(options.max_scale, options.max_output_pixels)
    check_output(pathlib.Path(options.output_dir), output_kinds.saved_model_problem,
                 options.overwrite)


def check_tflite(options):
    for name in ("scale", "output", "images"):
        if getattr(options, name) in (None, ""):
            raise ValueError(f"--{name} is required for tflite")
    if not options.scale.is_integer():
        raise ValueError(f"a TFLite export is an FSDN, which upscales by one whole factor "
                         f"(2, 3, 4, ...), not {options.scale:g}; for any scale, export "
                         "ASDN as a SavedModel (saved_model) or ONNX (onnx)")
    if not 2 <= int(options.scale) <= config_lib.MAX_FSDN_SCALE:
        raise ValueError(f"--scale must be an integer in [2, {config_lib.MAX_FSDN_SCALE}], "
                         f"got {int(options.scale)}")
    data_folders.require_sources([options.images])
    if options.calibration_patches < 1:
        raise ValueError(f"--calibration_patches must be positive, "
                         f"got {options.calibration_patches}")
    parse_input_size(options.input_size)
    check_output(pathlib.Path(options.output), output_kinds.tflite_problem, options.overwrite)


def check_onnx(options):
    if not options.output:
        raise ValueError("--output is required for onnx")
    if (options.scale is None) == (not options.any_scale):
        raise ValueError("give --scale (a file for that scale) or --any_scale (a file with a "
                         "scale input), one of them")
    if options.preset and not options.weights:
        raise ValueError("--preset needs --weights (the bundled weights carry their config)")
    if not options.any_scale:
        lfr.check_scale(options.scale, lfr.DEFAULT_MAX_SCALE, name="--scale")
    output = pathlib.Path(options.output)
    if output.suffix != ".onnx":
        raise ValueError(f"--output must end in .onnx, got {output}")
    if parse_input_size(options.input_size) is not None and options.any_scale:
        raise ValueError("--input_size is for fixed-scale files (--scale), not --any_scale")
    if not options.any_scale and options["fsdn"].present:
        raise ValueError("--fsdn is for --any_scale files; a fixed-scale file holds --weights, "
                         "or the bundled FSDN at a scale it has")
    check_output(output, output_kinds.onnx_problem, options.overwrite)
    if options.images is not None:
        image_paths(options.images)


def check_ncnn(options):
    """The NCNN files' names depend on the model (asdn-x4, fsdn-x2): the command checks them
    once it has loaded it."""
    if not options.output:
        raise ValueError("--output (a folder) is required for ncnn")
    if options.preset and not options.weights:
        raise ValueError("--preset needs --weights (the bundled weights carry their config)")
    ncnn_scale(options.scale)
    pnnx_binary()
    folder = pathlib.Path(options.output)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--output must be a folder, and {folder} is a file")
    if options.images is not None:
        image_paths(options.images)


def check_limits(max_scale, max_output_pixels):
    """The SavedModel's limits as (float, int), or ValueError naming the bad one."""
    if not isinstance(max_scale, (int, float)) or not 1 < max_scale < float("inf"):
        raise ValueError(f"max_scale must be a finite number above 1, got {max_scale!r}")
    if not isinstance(max_output_pixels, (int, np.integer)) or max_output_pixels < 1:
        raise ValueError(f"max_output_pixels must be a positive integer, got {max_output_pixels!r}")
    return float(max_scale), int(max_output_pixels)


def parse_input_size(text):
    """--input_size: (height, width) of a file's fixed input, what it is verified at, or None
    for 'dynamic'."""
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


def image_paths(images):
    """The image files of --images (a folder, a glob, a file or a list of paths); ValueError
    when there are none."""
    paths = list_images(images) if isinstance(images, (str, os.PathLike)) else list(images)
    if not paths:
        raise ValueError(f"no images found in {images}")
    return paths


def ncnn_scale(scale):
    """`scale` as an int if the NCNN files can be written at it; else ValueError."""
    if scale is None or not float(scale).is_integer() or int(scale) not in NCNN_SCALES:
        shown = "none" if scale is None else f"{scale:g}"
        raise ValueError(f"--scale must be one of {', '.join(map(str, NCNN_SCALES))} for NCNN, "
                         f"got {shown}: upscayl and realesrgan-ncnn-vulkan tile by a whole scale "
                         "they read from the model's name")
    return int(scale)


def pnnx_binary():
    """The path of the pnnx converter in the installed `pnnx` wheel, found without importing
    the package (its `__init__` imports torch); ValueError naming the install if missing."""
    spec = importlib.util.find_spec("pnnx")
    name = "pnnx.exe" if platform.system() == "Windows" else "pnnx"
    locations = (spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = pathlib.Path(folder) / name
        if path.is_file():
            return path
    raise ValueError(f"the NCNN export needs the pnnx converter: {PNNX_INSTALL}")
