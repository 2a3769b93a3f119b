"""An FSDN (one fixed integer scale, post-upsampling) as a TFLite model, float32 input and
output N×H×W×3 in [0, 1], verified with ai-edge-litert against the Keras model on real images.
The command takes the FSDN from --weights, by default the bundled default model's FSDN (its
head for ×2, ×3 or ×4)."""

import os
import pathlib
import time
import warnings

import numpy as np
import tensorflow as tf

from asdn_tf.export import verification
from asdn_tf.export.command_checks import QUANTIZATIONS, parse_input_size
from asdn_tf.export.output_files import check_output, write_export
from asdn_tf.export.output_kinds import tflite_problem
from asdn_tf.inference.weights_io import load_model
from asdn_tf.nn.model import FSDN

# What each quantization must reach against the Keras FSDN, outputs in [0, 1] units.
REQUIREMENTS = {"none": ("max_abs", 1e-4), "float16": ("max_abs", 2e-3),
                "dynamic": ("psnr", 40.0), "int8": ("psnr", 35.0)}
CALIBRATION_PATCH = 64
VERIFY_MAX_SIDE = 256


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
    return _convert_int8(converter, representative_patches(representative_images, patch,
                                                           calibration_patches))


def _convert_int8(converter, patches):
    """The model with int8 weights and activations calibrated on `patches`, the
    channel-attention MLPs (FULLY_CONNECTED) left float."""

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


def command(options, choose_model, choose_fsdn):
    """`python -m asdn_tf.export tflite`: checks, converts, verifies, and only then writes.
    `options` holds the flags of its row in `formats.FORMATS`; the FSDN comes from --weights,
    else choose_model(scale) (the bundled FSDN's head for a scale it has). It runs once
    `command_checks.check_tflite` has passed."""
    del choose_fsdn  # --fsdn is the SavedModel's
    scale = int(options.scale)
    input_size = parse_input_size(options.input_size)
    output = pathlib.Path(options.output)
    images = verification_images(options.images, input_size)
    fsdn, source = _chosen_fsdn(options, scale, choose_model)
    content = convert_tflite(fsdn, options.quantize, input_size, options.images,
                             options.calibration_patches)
    result = verify_tflite(content, fsdn, images, options.quantize, options.num_threads)
    shape = "dynamic HxW" if input_size is None else f"{input_size[0]}x{input_size[1]}"
    print(f"x{scale} FSDN from {source}, quantize={options.quantize}, input {shape}: "
          f"{len(content) / 1e6:.3f} MB (float32 weights {4 * fsdn.count_params() / 1e6:.3f} MB)")
    print(f"vs Keras on {result['images']} image(s) from {options.images}: "
          f"max abs {result['max_abs']:.3g}, PSNR {result['psnr']:.2f} dB, "
          f"median latency {result['latency_ms']:.1f} ms; requirement {result['requirement']}: "
          f"{'met' if result['ok'] else 'NOT met'}")
    verification.require(result, f"the {options.quantize} model misses its requirement "
                                 f"({result['requirement']})")
    write_export(output, lambda path: path.write_bytes(content), tflite_problem,
                 options.overwrite)
    print(f"wrote {output}")


def _chosen_fsdn(options, scale, choose_model):
    """(the float32 FSDN for `scale`: --weights, else the bundled one, the words that name it);
    ValueError when the bundled models have none for `scale`."""
    if options.weights:
        return (load_model(options.weights, options.preset, fsdn_scale=scale,
                           precision="float32"), options.weights)
    fsdn, source = choose_model(scale)
    if not isinstance(fsdn, FSDN):
        raise ValueError(f"the bundled models have no FSDN for x{scale}; pass --weights=FILE, "
                         f"an FSDN for x{scale}")
    return fsdn, source


def export_tflite(fsdn, output, quantize="none", input_size=None, representative_images=None,
                  calibration_patches=64, overwrite=False):
    """Converts `fsdn` (see `convert_tflite`) and writes it to `output` atomically.

    `overwrite` replaces `output` only if it is an earlier TFLite export (see `check_output`).

    Returns:
        The output path as a `pathlib.Path`.
    """
    output = pathlib.Path(output)
    check_output(output, tflite_problem, overwrite)
    content = convert_tflite(fsdn, quantize, input_size, representative_images,
                             calibration_patches)
    write_export(output, lambda path: path.write_bytes(content), tflite_problem, overwrite)
    return output


def representative_patches(images, size, count, seed=0):
    """`count` random float32 patches of `size` (height, width) in [0, 1] from image files.

    Args:
        images: a folder, a glob or a list of image paths.

    Raises:
        ValueError: no image is large enough for a patch.
    """
    sources = [image for image in verification.read_verification_images(images)
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
    for image in verification.read_verification_images(images):
        if input_size is None:
            size = (min(image.shape[0], max_side), min(image.shape[1], max_side))
        else:
            size = tuple(input_size)
            if image.shape[0] < size[0] or image.shape[1] < size[1]:
                continue
        crops.append(verification.centre_crop(image, *size))
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
        dict with "max_abs" (largest absolute difference of the outputs), "grey_levels" and
        "psnr" (dB, peak 1, the worst image) as `verification.agreement`, "latency_ms" (median
        invoke time), "images"; with `quantize` also "requirement" (text) and "ok" (bool).
    """
    from ai_edge_litert.interpreter import Interpreter

    source = {"model_path": os.fspath(model)} if isinstance(model, (str, os.PathLike)) else {
        "model_content": bytes(model)}
    interpreter = Interpreter(num_threads=num_threads, **source)
    latencies = []

    def pairs():
        input_detail = interpreter.get_input_details()[0]
        output_index = interpreter.get_output_details()[0]["index"]
        dynamic = bool(np.any(input_detail["shape_signature"] < 0))
        allocated = None
        for image in images:
            batch = np.asarray(image, np.float32)[None]
            if batch.shape != allocated:
                if dynamic:
                    interpreter.resize_tensor_input(input_detail["index"], batch.shape)
                elif batch.shape != (expected := tuple(int(n) for n in input_detail["shape"])):
                    raise ValueError(f"the TFLite model takes {expected}, "
                                     f"got an image of {batch.shape}")
                interpreter.allocate_tensors()
                allocated = batch.shape
            interpreter.set_tensor(input_detail["index"], batch)
            start = time.perf_counter()
            interpreter.invoke()
            latencies.append(time.perf_counter() - start)
            output = interpreter.get_tensor(output_index)
            yield output, np.asarray(fsdn(batch))

    result = verification.agreement(pairs(), "TFLite")
    result["latency_ms"] = 1e3 * float(np.median(latencies))
    if quantize is not None:
        metric, bound = REQUIREMENTS[quantize]
        if metric == "max_abs":
            result.update(ok=result["max_abs"] <= bound, requirement=f"max abs ≤ {bound:g}")
        else:
            result.update(ok=result["psnr"] >= bound, requirement=f"PSNR ≥ {bound:g} dB")
    return result


def _check_input_size(input_size):
    try:
        height, width = (int(value) for value in input_size)
    except (TypeError, ValueError):
        raise ValueError(f"input_size must be (height, width), got {input_size!r}") from None
    if height < 1 or width < 1:
        raise ValueError(f"input_size must be positive, got {height}x{width}")
    return height, width
