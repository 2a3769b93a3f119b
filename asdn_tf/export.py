"""Export: ASDN as a SavedModel that serves every scale, FSDN as a TFLite model.

    python -m asdn_tf.export saved_model --output_dir=serving/artifacts/asdn/1 \
        [--weights=training/cpu/best.weights.h5 --preset=default]
    python -m asdn_tf.export tflite --weights=fsdn_x2.weights.h5 --scale=2 --quantize=int8 \
        --images=../shared/datasets/Set5 --output=serving/artifacts/fsdn_x2_int8.tflite
    python -m asdn_tf.export onnx --scale=2.5 --output=asdn_x2.5.onnx   # see asdn_tf.onnx_export

SavedModel signatures; each takes `scale`, a float32 scalar in (1, max_scale]:

    serving_default   image uint8 [N, H, W, 3]  → image uint8 [N, round(s·H), round(s·W), 3]
    upscale_float     image float32 [N, H, W, 3] in [0, 1] → image float32 in [0, 1]
    upscale_encoded   image_bytes string scalar (PNG or JPEG) → png_bytes string scalar

The bicubic pre-upsampling, the Laplacian blend and the ×2 recursion all run inside the graph,
so one SavedModel serves every scale. A bad request fails with InvalidArgumentError naming the
problem before anything large is allocated: the scale (NaN, infinite, ≤ 1 or above max_scale),
then the image (not [N, H, W, 3]; not a PNG or JPEG, or a malformed header), then the output
(empty, over max_output_pixels, or not larger than the input). `upscale_encoded` reads the size
from the PNG or JPEG header, so a small file that claims a huge image is refused undecoded; it
turns the image upright by its EXIF orientation, as `python -m asdn_tf.upscale` does.

The TFLite model is an FSDN (one fixed integer scale, post-upsampling) with float32 input and
output N×H×W×3 in [0, 1]; the command verifies it with ai-edge-litert against the Keras model
on real images and prints the file size and the agreement.

Both commands refuse, before loading anything, an output they may not write: one that exists
(without --overwrite), one that is not an earlier export (even with --overwrite: a SavedModel
folder holds only saved_model.pb, variables/, assets/ and fingerprint.pb; a TFLite model is a
regular file starting with a TFLite header), the working folder or one that holds it, home, /,
and one in a folder that cannot be written.
"""

import os
import pathlib
import re
import sys
import time
import warnings

import numpy as np
import tensorflow as tf
from absl import app, flags

from asdn_tf import cli, fileio, lfr, metrics, onnx_export, pixels
from asdn_tf import config as config_lib
from asdn_tf.image_io import list_images, read_image
from asdn_tf.inference import upscale_tensor
from asdn_tf.model import ASDN, FSDN
from asdn_tf.weights_io import load_model, load_pretrained

# A larger request is refused before anything is allocated (the memory of one pass). Raise it
# (--max_output_pixels) on a server with the memory for it.
DEFAULT_MAX_OUTPUT_PIXELS = config_lib.MAX_PASS_PIXELS
QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
# What each quantization must reach against the Keras FSDN, outputs in [0, 1] units.
REQUIREMENTS = {"none": ("max_abs", 1e-4), "float16": ("max_abs", 2e-3),
                "dynamic": ("psnr", 40.0), "int8": ("psnr", 35.0)}
CALIBRATION_PATCH = 64
VERIFY_MAX_SIDE = 256

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_START = b"\xff\xd8\xff"
_EXIF_ORIENTATION_TAG = 0x0112
# The JPEG segments or PNG chunks read looking for the EXIF orientation; metadata further in is
# not looked for (real files have a handful before it).
_MAX_METADATA_SEGMENTS = 256


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
        overwrite: bool, replace `output_dir` if it is an earlier SavedModel export.

    Returns:
        The output folder as a `pathlib.Path`.

    Raises:
        FileExistsError: `output_dir` exists and `overwrite` is False, or it is not a SavedModel.
        ValueError: `max_scale` or `max_output_pixels` is out of range, or `output_dir` is a
            folder no export may replace (the working folder or one holding it, home, /).
        OSError: `output_dir` cannot be written (read-only, disk full); nothing is left behind.
    """
    if not isinstance(model, ASDN):
        raise ValueError(f"the SavedModel export takes an ASDN, got a {type(model).__name__}")
    max_scale, max_output_pixels = _check_limits(max_scale, max_output_pixels)
    output_dir = pathlib.Path(output_dir)
    check_output(output_dir, "saved_model", overwrite)
    module = _servable(model, max_scale, max_output_pixels)
    signatures = {"serving_default": module.upscale_uint8,
                  "upscale_float": module.upscale_float,
                  "upscale_encoded": module.upscale_encoded}

    def write(path):
        tf.saved_model.save(module, os.fspath(path), signatures=signatures)

    _write_export(output_dir, write, "saved_model", overwrite)
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

    The batch signatures declare an image of any shape and check it themselves: a declared
    [None, None, None, 3] lets Grappler fold a rank check away, and neither loader enforces it.
    """
    module = tf.Module(name="asdn_servable")
    module.model_variables = [variable.value for variable in model.variables]

    def upscale(images, scale):
        return upscale_tensor(model, images, scale, max_scale=max_scale)

    def upscale_uint8(image, scale):
        image = _checked_batch(image, scale, max_scale, max_output_pixels)
        return {"image": pixels.to_uint8_ops(upscale(pixels.to_float_ops(image), scale))}

    def upscale_float(image, scale):
        image = _checked_batch(image, scale, max_scale, max_output_pixels)
        finite = tf.debugging.Assert(tf.reduce_all(tf.math.is_finite(image)),
                                     ["image has NaN or infinite values"],
                                     name="check_image_finite")
        with tf.control_dependencies([finite]):
            image = tf.clip_by_value(image, 0.0, 1.0)
        return {"image": upscale(image, scale)}

    def upscale_encoded(image_bytes, scale):
        image = _checked_decode(image_bytes, scale, max_scale, max_output_pixels)
        output = upscale(pixels.to_float_ops(image[None]), scale)
        return {"png_bytes": tf.io.encode_png(pixels.to_uint8_ops(output)[0])}

    scale_spec = tf.TensorSpec([], tf.float32, name="scale")
    module.upscale_uint8 = tf.function(
        upscale_uint8, autograph=False,
        input_signature=[tf.TensorSpec(None, tf.uint8, name="image"), scale_spec])
    module.upscale_float = tf.function(
        upscale_float, autograph=False,
        input_signature=[tf.TensorSpec(None, tf.float32, name="image"), scale_spec])
    module.upscale_encoded = tf.function(
        upscale_encoded, autograph=False,
        input_signature=[tf.TensorSpec([], tf.string, name="image_bytes"), scale_spec])
    return module


def _check(checks, name, condition, message):
    """Appends to `checks` an Assert that runs after the last one in it.

    `condition` and `message` are callables, so what they compute waits for the earlier checks
    too: a NaN scale is reported as not finite, never as whichever check happened to run first.
    """
    with tf.control_dependencies(checks[-1:]):
        checks.append(tf.debugging.Assert(condition(), [message()], name=name))


def _after(checks, tensor):
    """`tensor`, once every check has passed."""
    with tf.control_dependencies(checks):
        return tf.identity(tensor)


def _check_scale(checks, scale, max_scale):
    limits = f"in (1, {max_scale:g}]"
    _check(checks, "check_scale_finite", lambda: tf.math.is_finite(scale),
           lambda: tf.strings.format("scale must be a finite number " + limits + ", got {}",
                                     scale))
    _check(checks, "check_scale_above_1", lambda: scale > 1.0,
           lambda: tf.strings.format(
               "scale must be greater than 1 (1 is not an upscaling), got {}", scale))
    _check(checks, "check_scale_at_most_max", lambda: tf.cast(scale, tf.float64) <= max_scale,
           lambda: tf.strings.format(
               f"scale must be at most {max_scale:g} (the export's max_scale), got {{}}", scale))


def _check_output_size(checks, batch, height, width, scale, max_output_pixels):
    """Checks that the image is not empty, and that the output (round(h·s) × round(w·s), as
    `upscale_tensor` sizes it) is within max_output_pixels and larger than the input (one side
    at least grows, the rule and message of `python -m asdn_tf.upscale`). The sizes are int64
    scalars."""
    _check(checks, "check_image_not_empty", lambda: (batch > 0) & (height > 0) & (width > 0),
           lambda: tf.strings.format("image must not be empty, got {} image(s) of {}x{}",
                                     (batch, height, width)))

    def output_size():
        # float64: a header may claim 2^32 pixels a side, whose square overflows int64.
        size = lfr.output_size_ops(height, width, scale, dtype="float64")
        return size, tf.cast(batch, tf.float64) * size[0] * size[1]

    def pixels_message():
        size, count = output_size()
        return tf.strings.format(
            "output of {} image(s) of {}x{} is {} pixels, over the limit of "
            f"{max_output_pixels} (max_output_pixels); use a smaller scale, image or batch",
            (batch, tf.cast(size[0], tf.int64), tf.cast(size[1], tf.int64), count))

    _check(checks, "check_output_pixels", lambda: output_size()[1] <= float(max_output_pixels),
           pixels_message)

    def grows(value):
        size = tf.stack(lfr.output_size_ops(height, width, value, dtype="float64"))
        return tf.reduce_any(size > tf.cast(tf.stack([height, width]), tf.float64))

    def too_small_message():
        # To four decimals, the smallest scale that adds a pixel to the longer side.
        longer = tf.cast(tf.maximum(height, width), tf.float64)
        smallest = tf.math.ceil((1.0 + 0.5 / longer) * 1e4) / 1e4
        smallest = tf.where(grows(smallest), smallest, smallest + 1e-4)
        return tf.strings.join([
            tf.strings.format("scale {} is too small for a {}x{} image to grow by a pixel; ",
                              (scale, width, height)),
            "the smallest that does is ",
            tf.strings.regex_replace(tf.strings.as_string(smallest, precision=4), r"\.?0+$", "")])

    _check(checks, "check_output_larger", lambda: grows(tf.cast(scale, tf.float64)),
           too_small_message)


def _checked_batch(images, scale, max_scale, max_output_pixels):
    """`images`, an [N, H, W, 3] batch, gated on the checks of the scale, shape and output."""
    checks = []
    _check_scale(checks, scale, max_scale)
    shape = tf.shape(images, out_type=tf.int64)
    _check(checks, "check_image_shape",
           lambda: tf.equal(tf.size(shape), 4) & tf.reduce_all(tf.equal(shape[-1:], 3)),
           lambda: tf.strings.format(
               "image must be [batch, height, width, 3] (RGB), got shape {}", shape))
    images = tf.ensure_shape(_after(checks, images), [None, None, None, 3])
    shape = tf.shape(images, out_type=tf.int64)
    _check_output_size(checks, shape[0], shape[1], shape[2], scale, max_output_pixels)
    return _after(checks, images)


def _checked_decode(image_bytes, scale, max_scale, max_output_pixels):
    """The upright H×W×3 uint8 image of a PNG or JPEG, decoded only once the scale, the format
    and the size its header gives have passed the checks, so a small file that claims a huge
    image costs nothing."""
    checks = []
    _check_scale(checks, scale, max_scale)
    length = tf.cast(tf.strings.length(image_bytes), tf.int64)
    is_png = tf.equal(tf.strings.substr(image_bytes, 0, len(_PNG_SIGNATURE)), _PNG_SIGNATURE)
    is_jpeg = tf.equal(tf.strings.substr(image_bytes, 0, len(_JPEG_START)), _JPEG_START)
    _check(checks, "check_image_format", lambda: is_png | is_jpeg,
           lambda: "image_bytes must be a PNG or JPEG file (other formats are not accepted)")
    # A PNG starts with its IHDR chunk: length 13, "IHDR", width and height (big-endian).
    ihdr = _read(image_bytes, length, 8, 16)
    _check(checks, "check_png_header",
           lambda: ~is_png | ((length >= 33) & (_number(ihdr[:4]) == 13)
                              & tf.equal(_read_text(image_bytes, length, 12, 4), "IHDR")),
           lambda: "image_bytes is a PNG whose header (its IHDR chunk) is malformed")
    with tf.control_dependencies(checks):
        # The JPEG branch runs only for a JPEG; a malformed one fails there, undecoded.
        size = tf.cond(is_png, lambda: tf.stack([_number(ihdr[12:16]), _number(ihdr[8:12])]),
                       lambda: tf.image.extract_jpeg_shape(image_bytes, tf.int64)[:2])
    _check_output_size(checks, tf.constant(1, tf.int64), size[0], size[1], scale,
                       max_output_pixels)
    image_bytes = _after(checks, image_bytes)
    # INTEGER_ACCURATE is the IDCT Pillow uses: the pixels are those the CLI upscales.
    image = tf.cond(is_png, lambda: tf.io.decode_png(image_bytes, channels=3),
                    lambda: tf.io.decode_jpeg(image_bytes, channels=3,
                                              dct_method="INTEGER_ACCURATE"))
    image = tf.ensure_shape(image, [None, None, 3])
    return _upright(image, _exif_orientation(image_bytes, length, is_png))


def _read(data, length, position, count):
    """`count` bytes of the string scalar `data` (of `length` bytes) from `position`, as int64;
    zeros past its end."""
    position = tf.clip_by_value(tf.cast(position, tf.int64), 0, length)
    chunk = tf.strings.join([tf.strings.substr(data, position, tf.constant(count, tf.int64)),
                             "\0" * count])
    values = tf.io.decode_raw(tf.strings.substr(chunk, 0, count), tf.uint8)
    return tf.cast(tf.reshape(values, [count]), tf.int64)


def _read_text(data, length, position, count):
    """The `count` bytes of `data` from `position` as a string (shorter past its end)."""
    position = tf.clip_by_value(tf.cast(position, tf.int64), 0, length)
    return tf.strings.substr(data, position, tf.cast(count, tf.int64))


def _number(values, little_endian=False):
    """The unsigned integer whose bytes are the last axis of `values` (int64)."""
    count = values.shape[-1]
    weights = tf.constant([256 ** (count - 1 - index) for index in range(count)], tf.int64)
    big = tf.reduce_sum(values * weights, axis=-1)
    little = tf.reduce_sum(values * weights[::-1], axis=-1)
    return tf.where(little_endian, little, big)


def _exif_orientation(data, length, is_png):
    """The EXIF orientation (1 to 8; 1 when there is none) of a PNG or JPEG, where Pillow finds
    it: a JPEG's first APP1 "Exif" segment, a PNG's eXIf chunk (before IDAT, where the PNG
    specification puts it)."""

    def step(index, position, tiff, done):
        head = _read(data, length, position, 4)
        # A PNG chunk: length (4 bytes, big-endian), type (4), data, CRC (4).
        kind = _read_text(data, length, position + 4, 4)
        png_found = tf.equal(kind, "eXIf")
        png_done = png_found | tf.equal(kind, "IDAT") | tf.equal(kind, "IEND")
        png_next = position + 12 + _number(head)
        # A JPEG segment: 0xFF, marker, length (2 bytes, big-endian, counting itself), data;
        # 0xFF bytes may pad before a marker. The scan (SOS, 0xDA) ends the metadata.
        marker = head[1]
        jpeg_found = ((head[0] == 0xFF) & (marker == 0xE1)
                      & tf.equal(_read_text(data, length, position + 4, 6), "Exif\0\0"))
        jpeg_done = jpeg_found | (head[0] != 0xFF) | (marker == 0xDA) | (marker == 0xD9)
        jpeg_next = tf.where(marker == 0xFF, position + 1, position + 2 + _number(head[2:]))
        found = tf.where(is_png, png_found, jpeg_found)
        offset = tf.where(is_png, tf.constant(8, tf.int64), 10)  # to the TIFF header
        tiff = tf.where(found, position + offset, tiff)
        done = tf.where(is_png, png_done, jpeg_done) | (position + 4 > length)
        return index + 1, tf.where(is_png, png_next, jpeg_next), tiff, done

    start = tf.where(is_png, tf.constant(len(_PNG_SIGNATURE), tf.int64), 2)
    _, _, tiff, _ = tf.while_loop(
        lambda index, position, tiff, done: (index < _MAX_METADATA_SEGMENTS) & ~done, step,
        [tf.constant(0), start, tf.constant(-1, tf.int64), tf.constant(False)])
    return tf.where(tiff >= 0, _tiff_orientation(data, length, tf.maximum(tiff, 0)), 1)


def _tiff_orientation(data, length, start):
    """The orientation tag of the first IFD of the TIFF structure (EXIF) at `start`, or 1."""
    header = _read(data, length, start, 8)
    little = (header[0] == 0x49) & (header[1] == 0x49)  # "II"; "MM" is big-endian
    big = (header[0] == 0x4D) & (header[1] == 0x4D)
    directory = start + _number(header[4:], little)
    count = _number(_read(data, length, directory, 2), little)
    entries = _read_text(data, length, directory + 2, count * 12)
    whole = tf.strings.length(entries) // 12 * 12
    table = tf.reshape(tf.cast(tf.io.decode_raw(tf.strings.substr(entries, 0, whole), tf.uint8),
                               tf.int64), [-1, 12])
    # An entry: tag (2 bytes), type (2), count (4), value (4; a SHORT in its first 2).
    tags, types = _number(table[:, 0:2], little), _number(table[:, 2:4], little)
    values = tf.where(types == 4, _number(table[:, 8:12], little),
                      _number(table[:, 8:10], little))
    first = tf.concat([tf.boolean_mask(values, tf.equal(tags, _EXIF_ORIENTATION_TAG)),
                       tf.constant([1], tf.int64)], 0)[0]
    return tf.where(little | big, first, 1)


def _upright(image, orientation):
    """H×W×C `image` turned as Pillow's ImageOps.exif_transpose turns it for `orientation`."""
    branches = [
        lambda: image,                                                 # 1: upright
        lambda: tf.reverse(image, [1]),                                # 2: mirrored
        lambda: tf.reverse(image, [0, 1]),                             # 3: upside down
        lambda: tf.reverse(image, [0]),                                # 4: flipped
        lambda: tf.transpose(image, [1, 0, 2]),                        # 5: transposed
        lambda: tf.transpose(tf.reverse(image, [0]), [1, 0, 2]),       # 6: turned clockwise
        lambda: tf.transpose(tf.reverse(image, [0, 1]), [1, 0, 2]),    # 7: transversed
        lambda: tf.reverse(tf.transpose(image, [1, 0, 2]), [0]),       # 8: turned anticlockwise
    ]
    index = tf.where((orientation >= 1) & (orientation <= 8), orientation - 1, 0)
    return tf.switch_case(tf.cast(index, tf.int32), branches)


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

    `overwrite` replaces `output` only if it is an earlier TFLite export (see `check_output`).

    Returns:
        The output path as a `pathlib.Path`.
    """
    output = pathlib.Path(output)
    check_output(output, "tflite", overwrite)
    content = convert_tflite(fsdn, quantize, input_size, representative_images,
                             calibration_patches)
    _write_export(output, lambda path: path.write_bytes(content), "tflite", overwrite)
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
        expected = np.asarray(fsdn(batch))
        max_abs = max(max_abs, float(np.max(np.abs(output.astype(np.float64) - expected))))
        worst_psnr = min(worst_psnr, metrics.psnr(output[0] * metrics.PEAK,
                                                  expected[0] * metrics.PEAK, crop_border=0,
                                                  test_y_channel=False))
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
    return [pixels.to_float_rgb(read_image(path)) for path in paths]


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

# What TF writes into a SavedModel folder; --overwrite replaces a folder holding nothing else.
_SAVED_MODEL_FILES = {"saved_model.pb", "fingerprint.pb"}
_SAVED_MODEL_FOLDERS = {"variables", "assets"}
_VARIABLES_FILE = re.compile(r"^variables\.(index|data-\d{5}-of-\d{5})$")
_TFLITE_IDENTIFIER = b"TFL3"  # bytes 4 to 8 of a TFLite flatbuffer


def check_output(path, kind, overwrite=False):
    """Raises unless an export of `kind` ("saved_model" or "tflite") may be written at `path`.

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
    if kind not in ("saved_model", "tflite"):
        raise ValueError(f"kind must be 'saved_model' or 'tflite', got {kind!r}")
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
    problem = _saved_model_problem(path) if kind == "saved_model" else _tflite_problem(path)
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


def _listing(names, shown=3):
    text = ", ".join(names[:shown])
    return text + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _write_export(path, write, kind, overwrite):
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
            reason = getattr(error, "strerror", None) or cli.first_line(error)
            raise OSError(f"cannot write {path}: {reason}") from None
        raise


# ---------------------------------------------------------------------------------------------
# Command line

_COMMAND_FLAGS = {
    "saved_model": {"output_dir", "weights", "preset", "max_scale", "max_output_pixels",
                    "overwrite"},
    "tflite": {"output", "weights", "preset", "scale", "quantize", "input_size", "images",
               "calibration_patches", "num_threads", "overwrite"},
    "onnx": onnx_export.COMMAND_FLAGS,
}


def _define_flags():
    flags.DEFINE_string("output_dir", None, "saved_model: the SavedModel folder to write "
                        "(a numbered version folder for TF Serving, e.g. models/asdn/1).")
    flags.DEFINE_string("output", None, "tflite: the .tflite file to write; onnx: the .onnx file.")
    flags.DEFINE_string("weights", None, "saved_model: ASDN weights (.weights.h5 or .keras; "
                        "default: the bundled weights). tflite: FSDN weights (required).")
    flags.DEFINE_string("preset", None, "Model preset when the weights have no sidecar: "
                        f"one of {sorted(config_lib.PRESETS)}.")
    flags.DEFINE_float("max_scale", lfr.DEFAULT_MAX_SCALE,
                       "saved_model: the largest scale the signatures accept.")
    flags.DEFINE_integer("max_output_pixels", DEFAULT_MAX_OUTPUT_PIXELS,
                         "saved_model: the largest batch × height × width of an output.")
    flags.DEFINE_float("scale", None, "tflite: the FSDN's integer scale (2, 3, 4, 8, ...); "
                       "onnx: the scale the file does (an ASDN: 1.1 to 32; an FSDN: its own).")
    flags.DEFINE_enum("layout", "nhwc", list(onnx_export.LAYOUTS),
                      "onnx: the input and output layout, N×H×W×3 or N×3×H×W.")
    flags.DEFINE_bool("any_scale", False, "onnx: instead of --scale, a graph with a second "
                      "input, scale (float32), that serves every scale in (1, 32].")
    flags.DEFINE_enum("quantize", "none", list(QUANTIZATIONS), "tflite: weight/activation types.")
    flags.DEFINE_string("input_size", "dynamic",
                        "tflite: HEIGHTxWIDTH of a fixed input (e.g. 256x256), or 'dynamic'.")
    flags.DEFINE_string("images", None, "tflite: folder or glob of real images to verify on "
                        "(and to calibrate int8 on); onnx: the same, by default the quick "
                        "start's photograph.")
    flags.DEFINE_integer("calibration_patches", 64, "tflite: int8 calibration patches.")
    flags.DEFINE_integer("num_threads", None, "tflite: interpreter threads while verifying.")
    flags.DEFINE_bool("overwrite", False, "Replace the output if it is an earlier export "
                      "(a SavedModel folder, a TFLite file); nothing else is ever replaced.")


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
    if flag_values.preset and not flag_values.weights:
        raise ValueError("--preset needs --weights (the bundled weights carry their config)")
    output_dir = pathlib.Path(flag_values.output_dir)
    check_output(output_dir, "saved_model", flag_values.overwrite)
    if flag_values.weights:
        model = load_model(flag_values.weights, flag_values.preset, precision="float32")
        source = flag_values.weights
    else:
        model = load_pretrained(precision="float32")
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
    if flag_values.scale < 2 or not flag_values.scale.is_integer():
        raise ValueError(f"--scale must be an integer >= 2, got {flag_values.scale:g}")
    scale = int(flag_values.scale)
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
    _write_export(output, lambda path: path.write_bytes(content), "tflite",
                      flag_values.overwrite)
    print(f"wrote {output}")


def main(argv):
    commands = {"saved_model": _saved_model_command, "tflite": _tflite_command,
                "onnx": onnx_export.onnx_command}
    if len(argv) != 2 or argv[1] not in commands:
        print("export: usage: python -m asdn_tf.export saved_model|tflite|onnx [--flags]",
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
