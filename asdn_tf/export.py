"""Export: ASDN as a SavedModel that serves every scale, FSDN as a TFLite model.

    python -m asdn_tf.export saved_model --output_dir=export/artifacts/asdn/1 \
        [--weights=runs/cpu/best.weights.h5 --preset=default]
    python -m asdn_tf.export tflite --weights=fsdn_x2.weights.h5 --scale=2 --quantize=int8 \
        --images=../shared/datasets/Set5 --output=export/artifacts/fsdn_x2_int8.tflite

SavedModel signatures; each takes `scale`, a float32 scalar in (1, max_scale]:

    serving_default   image uint8 [N, H, W, 3]  → image uint8 [N, round(s·H), round(s·W), 3]
    upscale_float     image float32 [N, H, W, 3] in [0, 1] → image float32 in [0, 1]
    upscale_encoded   image_bytes string scalar (PNG, JPEG, GIF, BMP, WebP) → png_bytes string scalar

The bicubic pre-upsampling, the Laplacian blend and the ×2 recursion all run inside the graph,
so one SavedModel serves every scale. A bad request (scale NaN, infinite, ≤ 1 or above
max_scale, an empty image, an output over max_output_pixels) fails with InvalidArgumentError
naming the problem before the network runs.

The TFLite model is an FSDN (one fixed integer scale, post-upsampling) with float32 input and
output N×H×W×3 in [0, 1]; the command verifies it with ai-edge-litert against the Keras model
on real images and prints the file size and the agreement.
"""

import os
import pathlib
import sys
import time
import warnings

import numpy as np
import tensorflow as tf
from absl import app, flags

from asdn_tf import config as config_lib
from asdn_tf import fileio, lfr
from asdn_tf.image_io import list_images, read_image
from asdn_tf.inference import upscale_tensor
from asdn_tf.pretrained import load_model, load_pretrained
from asdn_tf.model import ASDN, FSDN

# The default preset needs about 2.5 KB of activations per output pixel (asdn_tf/tiling.py), so
# 1024 × 1024 output pixels peak near 2.5 GB; a larger request is refused before anything is
# allocated. Raise it (--max_output_pixels) on a server with the memory for it.
DEFAULT_MAX_OUTPUT_PIXELS = 1024 * 1024
QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
# What each quantization must reach against the Keras FSDN, outputs in [0, 1] units.
REQUIREMENTS = {"none": ("max_abs", 1e-4), "float16": ("max_abs", 2e-3),
                "dynamic": ("psnr", 40.0), "int8": ("psnr", 35.0)}
CALIBRATION_PATCH = 64
VERIFY_MAX_SIDE = 256


# ---------------------------------------------------------------------------------------------
# SavedModel


def export_saved_model(model, output_dir, max_scale=lfr.DEFAULT_MAX_SCALE,
                       max_output_pixels=DEFAULT_MAX_OUTPUT_PIXELS, overwrite=False):
    """Writes `model` (an ASDN) as a SavedModel with the three upscaling signatures.

    The SavedModel is written to a temporary folder beside `output_dir` and renamed into place,
    so a failed export leaves nothing behind. TF Serving loads `output_dir` when it is a
    numbered version folder (models/asdn/1).

    Args:
        model: a built `ASDN`.
        output_dir: the SavedModel folder to create.
        max_scale: float, the largest scale the signatures accept.
        max_output_pixels: int, the largest batch × height × width of an output.
        overwrite: bool, replace an existing `output_dir`.

    Returns:
        The output folder as a `pathlib.Path`.

    Raises:
        FileExistsError: `output_dir` exists and `overwrite` is False.
        ValueError: `max_scale` or `max_output_pixels` is out of range.
    """
    if not isinstance(model, ASDN):
        raise ValueError(f"the SavedModel export takes an ASDN, got a {type(model).__name__}")
    max_scale, max_output_pixels = _check_limits(max_scale, max_output_pixels)
    output_dir = pathlib.Path(output_dir)
    _prepare_target(output_dir, overwrite)
    module = _servable(model, max_scale, max_output_pixels)
    signatures = {"serving_default": module.upscale_uint8,
                  "upscale_float": module.upscale_float,
                  "upscale_encoded": module.upscale_encoded}

    def write(path):
        tf.saved_model.save(module, os.fspath(path), signatures=signatures)

    _write_atomically(output_dir, write, overwrite)
    return output_dir


def _check_limits(max_scale, max_output_pixels):
    """Returns (float, int), or raises ValueError naming the bad limit."""
    if not isinstance(max_scale, (int, float)) or not 1 < max_scale < float("inf"):
        raise ValueError(f"max_scale must be a finite number above 1, got {max_scale!r}")
    if not isinstance(max_output_pixels, (int, np.integer)) or max_output_pixels < 1:
        raise ValueError(f"max_output_pixels must be a positive integer, got {max_output_pixels!r}")
    return float(max_scale), int(max_output_pixels)


def _servable(model, max_scale, max_output_pixels):
    """A tf.Module whose tf.functions are the signatures.

    It tracks the model's tf.Variables (`v.value`), not the Keras model: Keras 3 variables are
    not tf.Variables, and the session loader TF Serving uses only finds variables tracked so.
    """
    module = tf.Module(name="asdn_servable")
    module.model_variables = [variable.value for variable in model.variables]

    def upscale(images, scale):
        images, scale = _validated(images, scale, max_scale, max_output_pixels)
        return upscale_tensor(model, images, scale, max_scale=max_scale)

    def upscale_uint8(image, scale):
        return {"image": _to_uint8(upscale(tf.cast(image, tf.float32) / 255.0, scale))}

    def upscale_float(image, scale):
        finite = tf.debugging.Assert(tf.reduce_all(tf.math.is_finite(image)),
                                     ["image has NaN or infinite values"],
                                     name="check_image_finite")
        with tf.control_dependencies([finite]):
            image = tf.clip_by_value(image, 0.0, 1.0)
        return {"image": upscale(image, scale)}

    def upscale_encoded(image_bytes, scale):
        image = tf.io.decode_image(image_bytes, channels=3, dtype=tf.uint8,
                                   expand_animations=False)
        image = tf.ensure_shape(image, [None, None, 3])
        output = upscale(tf.cast(image, tf.float32)[None] / 255.0, scale)
        return {"png_bytes": tf.io.encode_png(_to_uint8(output)[0])}

    scale_spec = tf.TensorSpec([], tf.float32, name="scale")
    module.upscale_uint8 = tf.function(
        upscale_uint8, autograph=False,
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="image"), scale_spec])
    module.upscale_float = tf.function(
        upscale_float, autograph=False,
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="image"),
                         scale_spec])
    module.upscale_encoded = tf.function(
        upscale_encoded, autograph=False,
        input_signature=[tf.TensorSpec([], tf.string, name="image_bytes"), scale_spec])
    return module


def _validated(images, scale, max_scale, max_output_pixels):
    """Returns (images, scale) gated on asserts, so nothing downstream runs on a bad request.

    The checks run one after another (each depends on the previous), so a NaN scale is
    reported as not finite rather than as whichever check happened to run first, and the size
    check never sees a non-finite scale.
    """
    checks = []

    def check(name, condition_fn, message_fn):
        with tf.control_dependencies(checks[-1:]):
            checks.append(tf.debugging.Assert(condition_fn(), [message_fn()], name=name))

    limits = f"in (1, {max_scale:g}]"
    check("check_scale_finite", lambda: tf.math.is_finite(scale),
          lambda: tf.strings.format("scale must be a finite number " + limits + ", got {}", scale))
    check("check_scale_above_1", lambda: scale > 1.0,
          lambda: tf.strings.format(
              "scale must be greater than 1 (1 is not an upscaling), got {}", scale))
    check("check_scale_at_most_max", lambda: tf.cast(scale, tf.float64) <= max_scale,
          lambda: tf.strings.format(
              f"scale must be at most {max_scale:g} (the export's max_scale), got {{}}", scale))
    shape = tf.shape(images, out_type=tf.int64)
    check("check_image_not_empty", lambda: tf.reduce_all(shape[:3] > 0),
          lambda: tf.strings.format("image must not be empty, got shape {}", shape))

    def output_pixels():
        # round(h·s) × round(w·s), as upscale_tensor sizes the output.
        size = tf.math.floor(tf.cast(shape[1:3], tf.float64) * tf.cast(scale, tf.float64) + 0.5)
        return tf.cast(shape[0], tf.float64) * size[0] * size[1], tf.cast(size, tf.int64)

    def pixels_message():
        pixels, size = output_pixels()
        return tf.strings.format(
            "output of {} image(s) of {}x{} is {} pixels, over the limit of "
            f"{max_output_pixels} (max_output_pixels); use a smaller scale, image or batch",
            (shape[0], size[0], size[1], tf.cast(pixels, tf.int64)))

    check("check_output_pixels", lambda: output_pixels()[0] <= float(max_output_pixels),
          pixels_message)
    with tf.control_dependencies(checks):
        return tf.identity(images), tf.identity(scale)


def _to_uint8(images):
    return tf.cast(tf.round(tf.clip_by_value(images, 0.0, 1.0) * 255.0), tf.uint8)


# ---------------------------------------------------------------------------------------------
# TFLite


def convert_tflite(fsdn, quantize="none", input_size=None, representative_images=None,
                   calibration_patches=64):
    """Converts an FSDN to a TFLite flatbuffer.

    Args:
        fsdn: a built `FSDN`.
        quantize: "none" (float32), "float16" (float16 weights), "dynamic" (int8 weights,
            activations quantized at run time) or "int8" (int8 weights and activations,
            calibrated on `representative_images`; float32 input and output).
        input_size: (height, width) of a fixed input, or None for any height and width.
        representative_images: for "int8": a folder, glob or list of image paths whose random
            patches (the input size, or 64×64 for a dynamic model) calibrate the activations.
        calibration_patches: int, how many patches.

    Returns:
        The model as bytes.

    The channel-attention MLPs (a few hundred multiply-adds per image) stay float in "int8": a
    ReLU unit there that is zero on every calibration patch gets a zero range, whose degenerate
    scale XNNPACK (TFLite's default CPU delegate) refuses to run.
    """
    if not isinstance(fsdn, FSDN):
        raise ValueError(f"the TFLite export takes an FSDN, got a {type(fsdn).__name__}")
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {', '.join(QUANTIZATIONS)}, got {quantize!r}")
    if quantize == "int8" and representative_images is None:
        raise ValueError("int8 quantization needs representative images to calibrate on")
    height, width = (None, None) if input_size is None else _check_input_size(input_size)
    call = tf.function(lambda images: fsdn(images), autograph=False, input_signature=[
        tf.TensorSpec([1, height, width, 3], tf.float32, name="image")])
    # As for the SavedModel, the converter freezes only variables tracked as tf.Variables.
    holder = tf.Module()
    holder.model_variables = [variable.value for variable in fsdn.variables]
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [call.get_concrete_function()], holder)
    if quantize == "none":
        return converter.convert()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize != "int8":
        return converter.convert()
    patch = (height, width) if height is not None else (CALIBRATION_PATCH, CALIBRATION_PATCH)
    patches = representative_patches(representative_images, patch, calibration_patches)

    def dataset():
        for item in patches:
            yield [item[None]]

    converter.representative_dataset = dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                           tf.lite.OpsSet.TFLITE_BUILTINS]
    with warnings.catch_warnings():
        # The debugger runs tf.lite.Interpreter internally, which warns that it is deprecated.
        warnings.filterwarnings("ignore", r"\s*Warning: tf.lite.Interpreter is deprecated",
                                UserWarning)
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=dataset,
            debug_options=tf.lite.experimental.QuantizationDebugOptions(
                denylisted_ops=["FULLY_CONNECTED"]))
        return debugger.get_nondebug_quantized_model()


def export_tflite(fsdn, output, quantize="none", input_size=None, representative_images=None,
                  calibration_patches=64, overwrite=False):
    """Converts `fsdn` (see `convert_tflite`) and writes it to `output` atomically.

    Returns:
        The output path as a `pathlib.Path`.
    """
    output = pathlib.Path(output)
    _prepare_target(output, overwrite)
    content = convert_tflite(fsdn, quantize, input_size, representative_images,
                             calibration_patches)
    _write_atomically(output, lambda path: path.write_bytes(content), overwrite)
    return output


def representative_patches(images, size, count, seed=0):
    """`count` random float32 patches of `size` (height, width) in [0, 1] from image files.

    Args:
        images: a folder, a glob or a list of image paths.

    Raises:
        ValueError: no image is large enough for a patch.
    """
    sources = [image for image in _rgb_images(images)
               if image.shape[0] >= size[0] and image.shape[1] >= size[1]]
    if not sources:
        raise ValueError(f"no representative image is at least {size[0]}x{size[1]}")
    rng = np.random.default_rng(seed)
    patches = []
    for index in range(count):
        image = sources[index % len(sources)]
        top = rng.integers(0, image.shape[0] - size[0] + 1)
        left = rng.integers(0, image.shape[1] - size[1] + 1)
        patches.append(image[top:top + size[0], left:left + size[1]])
    return patches


def verification_images(images, input_size=None, max_side=VERIFY_MAX_SIDE):
    """Centre crops of real images to run through a TFLite model and the Keras model.

    A fixed-size model gets crops of exactly `input_size` (smaller images are left out); a
    dynamic one gets each image cropped to at most `max_side` on each side, so sizes vary.
    """
    crops = []
    for image in _rgb_images(images):
        if input_size is None:
            size = (min(image.shape[0], max_side), min(image.shape[1], max_side))
        else:
            size = tuple(input_size)
            if image.shape[0] < size[0] or image.shape[1] < size[1]:
                continue
        top = (image.shape[0] - size[0]) // 2
        left = (image.shape[1] - size[1]) // 2
        crops.append(image[top:top + size[0], left:left + size[1]])
    if not crops:
        raise ValueError(f"no verification image is at least {input_size[0]}x{input_size[1]}")
    return crops


def verify_tflite(model, fsdn, images, quantize=None, num_threads=None):
    """Runs a TFLite model with ai-edge-litert and compares it with the Keras FSDN.

    Args:
        model: the .tflite path or its bytes.
        fsdn: the Keras `FSDN` it was converted from.
        images: float32 H×W×3 arrays in [0, 1]; for a fixed-size model, of that size.
        quantize: optional, one of QUANTIZATIONS: adds whether its requirement is met.
        num_threads: int, interpreter threads (None: the interpreter's default).

    Returns:
        dict with "max_abs" (largest absolute difference of the outputs), "psnr" (dB, peak 1,
        the worst image), "latency_ms" (median invoke time), "images"; with `quantize` also
        "requirement" (text) and "ok" (bool).
    """
    from ai_edge_litert.interpreter import Interpreter

    source = {"model_path": os.fspath(model)} if isinstance(model, (str, os.PathLike)) else {
        "model_content": bytes(model)}
    interpreter = Interpreter(num_threads=num_threads, **source)
    input_detail = interpreter.get_input_details()[0]
    output_index = interpreter.get_output_details()[0]["index"]
    dynamic = bool(np.any(input_detail["shape_signature"] < 0))
    allocated = None
    max_abs, worst_psnr, latencies = 0.0, float("inf"), []
    for image in images:
        batch = np.asarray(image, np.float32)[None]
        if batch.shape != allocated:
            if dynamic:
                interpreter.resize_tensor_input(input_detail["index"], batch.shape)
            elif batch.shape != tuple(int(n) for n in input_detail["shape"]):
                raise ValueError(f"the TFLite model takes {tuple(int(n) for n in input_detail['shape'])}"
                                 f", got an image of {batch.shape}")
            interpreter.allocate_tensors()
            allocated = batch.shape
        interpreter.set_tensor(input_detail["index"], batch)
        start = time.perf_counter()
        interpreter.invoke()
        latencies.append(time.perf_counter() - start)
        output = interpreter.get_tensor(output_index)
        expected = np.asarray(fsdn(batch))
        difference = output.astype(np.float64) - expected
        max_abs = max(max_abs, float(np.max(np.abs(difference))))
        worst_psnr = min(worst_psnr, _psnr(difference))
    result = {"max_abs": max_abs, "psnr": worst_psnr,
              "latency_ms": 1e3 * float(np.median(latencies)), "images": len(latencies)}
    if quantize is not None:
        metric, bound = REQUIREMENTS[quantize]
        if metric == "max_abs":
            result.update(ok=max_abs <= bound, requirement=f"max abs ≤ {bound:g}")
        else:
            result.update(ok=worst_psnr >= bound, requirement=f"PSNR ≥ {bound:g} dB")
    return result


def _rgb_images(images):
    """Float32 H×W×3 arrays in [0, 1] read from a folder, glob or list of paths."""
    paths = list_images(images) if isinstance(images, (str, os.PathLike)) else list(images)
    if not paths:
        raise ValueError(f"no images found in {images}")
    arrays = []
    for path in paths:
        image = read_image(path)
        peak = 65535.0 if image.dtype == np.uint16 else 255.0
        image = image.astype(np.float32) / peak
        if image.ndim == 2:
            image = image[..., None]
        arrays.append(np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[..., :3])
    return arrays


def _psnr(difference):
    mse = float(np.mean(np.square(difference)))
    return float("inf") if mse == 0.0 else float(10.0 * np.log10(1.0 / mse))


def _check_input_size(input_size):
    try:
        height, width = (int(value) for value in input_size)
    except (TypeError, ValueError):
        raise ValueError(f"input_size must be (height, width), got {input_size!r}") from None
    if height < 1 or width < 1:
        raise ValueError(f"input_size must be positive, got {height}x{width}")
    return height, width


# ---------------------------------------------------------------------------------------------
# Files


def _prepare_target(path, overwrite):
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists (pass overwrite / --overwrite to replace it)")
    if not path.parent.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)


def _write_atomically(path, write, overwrite):
    """Calls write(temporary path) beside `path`, then renames the result into place, so TF
    Serving, which watches the model folder for numbered versions, never sees a half-written
    SavedModel."""
    _prepare_target(path, overwrite)
    with fileio.atomic_path(path) as temporary:
        write(temporary)
        fileio.remove(path)


# ---------------------------------------------------------------------------------------------
# Command line

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
    flags.DEFINE_string("weights", None, "saved_model: ASDN weights (.weights.h5 or .keras; "
                        "default: the bundled weights). tflite: FSDN weights (required).")
    flags.DEFINE_string("preset", None, "Model preset when the weights have no sidecar: "
                        f"one of {sorted(config_lib.PRESETS)}.")
    flags.DEFINE_float("max_scale", lfr.DEFAULT_MAX_SCALE,
                       "saved_model: the largest scale the signatures accept.")
    flags.DEFINE_integer("max_output_pixels", DEFAULT_MAX_OUTPUT_PIXELS,
                         "saved_model: the largest batch × height × width of an output.")
    flags.DEFINE_integer("scale", None, "tflite: the FSDN's integer scale (2, 3, 4, 8, ...).")
    flags.DEFINE_enum("quantize", "none", list(QUANTIZATIONS), "tflite: weight/activation types.")
    flags.DEFINE_string("input_size", "dynamic",
                        "tflite: HEIGHTxWIDTH of a fixed input (e.g. 256x256), or 'dynamic'.")
    flags.DEFINE_string("images", None, "tflite: folder or glob of real images to verify on "
                        "(and to calibrate int8 on).")
    flags.DEFINE_integer("calibration_patches", 64, "tflite: int8 calibration patches.")
    flags.DEFINE_integer("num_threads", None, "tflite: interpreter threads while verifying.")
    flags.DEFINE_bool("overwrite", False, "Replace an existing output.")


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
    _check_limits(flag_values.max_scale, flag_values.max_output_pixels)
    output_dir = pathlib.Path(flag_values.output_dir)
    _prepare_target(output_dir, flag_values.overwrite)
    if flag_values.weights:
        model = load_model(flag_values.weights, flag_values.preset)
        source = flag_values.weights
    else:
        if flag_values.preset:
            raise ValueError("--preset needs --weights (the bundled weights carry their config)")
        model = load_pretrained()
        source = "the bundled default weights"
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
    if flag_values.scale < 2:
        raise ValueError(f"--scale must be an integer >= 2, got {flag_values.scale}")
    if flag_values.calibration_patches < 1:
        raise ValueError(f"--calibration_patches must be positive, "
                         f"got {flag_values.calibration_patches}")
    input_size = _parse_input_size(flag_values.input_size)
    output = pathlib.Path(flag_values.output)
    _prepare_target(output, flag_values.overwrite)
    fsdn = load_model(flag_values.weights, flag_values.preset, fsdn_scale=flag_values.scale)
    images = verification_images(flag_values.images, input_size)
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
    _write_atomically(output, lambda path: path.write_bytes(content), flag_values.overwrite)
    print(f"wrote {output}")


def main(argv):
    commands = {"saved_model": _saved_model_command, "tflite": _tflite_command}
    if len(argv) != 2 or argv[1] not in commands:
        print("error: usage: python -m asdn_tf.export saved_model|tflite [--flags]",
              file=sys.stderr)
        return 2
    command = argv[1]
    flag_values = flags.FLAGS
    stray = sorted(name for names in _COMMAND_FLAGS.values() for name in names
                   if name not in _COMMAND_FLAGS[command] and flag_values[name].present)
    if stray:
        print(f"error: --{stray[0]} does not apply to {command}", file=sys.stderr)
        return 2
    try:
        commands[command](flag_values)
    except (ValueError, OSError) as error:  # FileNotFoundError and FileExistsError included.
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    # Flags are defined here, not at import, so importing the library defines none.
    _define_flags()
    app.run(main)
