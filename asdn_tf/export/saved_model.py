"""Export: ASDN as a SavedModel that serves every scale, FSDN as a TFLite model.

    python -m asdn_tf.export saved_model --output_dir=serving/artifacts/asdn/1 \\
        [--weights=training/cpu/best.weights.h5 --preset=default]
    python -m asdn_tf.export tflite --weights=fsdn_x2.weights.h5 --scale=2 --quantize=int8 \\
        --images=data/Set5 --output=serving/artifacts/fsdn_x2_int8.tflite

SavedModel signatures; each takes `scale`, a float32 scalar in (1, max_scale]:

    serving_default   image uint8 [N, H, W, 3]  → image uint8 [N, round(s·H), round(s·W), 3]
    upscale_float     image float32 [N, H, W, 3] in [0, 1] → image float32 in [0, 1]
    upscale_encoded   image_bytes string scalar (PNG or JPEG) → png_bytes string scalar

The bicubic pre-upsampling, the Laplacian blend and the ×2 recursion all run inside the graph,
so one SavedModel serves every scale. With an FSDN (the command's --fsdn: by default the one
paired with the bundled model) the graph runs the plan of `asdn_tf.upscale`: the FSDN's integer
steps first, then ASDN's recursion for the rest (×3.3 = FSDN ×3 then ASDN ×1.1; docs/method.md). A bad request fails with InvalidArgumentError naming the
problem before anything large is allocated: the scale (NaN, infinite, ≤ 1 or above max_scale),
then the image (not [N, H, W, 3]; not a PNG or JPEG, or a malformed header), then the output
(empty, over max_output_pixels, or not larger than the input). `upscale_encoded` reads the size
from the PNG or JPEG header, so a small file that claims a huge image is refused undecoded, and so
is one that claims more pixels than its bytes can hold (`image_io.MAX_PIXELS_PER_BYTE`: a
truncated file or an altered header, which the decoder would fill in); it turns the image
upright by its EXIF orientation, as `asdn-upscale` does.

The request checks are in asdn_tf/export/request_checks.py, the PNG and JPEG header reading in
asdn_tf/export/encoded_image.py, and what may be overwritten in asdn_tf/export/output_files.py
(with `output_kinds.saved_model_problem`: what a SavedModel folder holds).

The TFLite model (asdn_tf/export/tflite.py) is an FSDN (one fixed integer scale,
post-upsampling) with float32 input and output N×H×W×3 in [0, 1]; the command verifies it with
ai-edge-litert against the Keras model on real images and prints the file size and the
agreement.

Both commands refuse, before loading anything, an output they may not write: one that exists
(without --overwrite), one that is not an earlier export (even with --overwrite: a SavedModel
folder holds only saved_model.pb, variables/, assets/ and fingerprint.pb; a TFLite model is a
regular file starting with a TFLite header), the working folder or one that holds it, home, /,
and one in a folder that cannot be written.
"""

import os
import pathlib

import tensorflow as tf

from asdn_tf.export.command_checks import DEFAULT_MAX_OUTPUT_PIXELS, check_limits
from asdn_tf.export.encoded_image import checked_decode
from asdn_tf.export.output_files import check_output, write_export
from asdn_tf.export.output_kinds import saved_model_problem
from asdn_tf.export.request_checks import checked_batch
from asdn_tf.inference.engine import upscale_tensor
from asdn_tf.io import pixels
from asdn_tf.nn import lfr
from asdn_tf.nn.model import ASDN, FSDN

def export_saved_model(model, output_dir, max_scale=lfr.DEFAULT_MAX_SCALE,
                       max_output_pixels=DEFAULT_MAX_OUTPUT_PIXELS, overwrite=False, fsdn=None):
    """Writes `model` (an ASDN), with `fsdn` for the integer part of each scale, as a SavedModel
    with the three upscaling signatures.

    The SavedModel is written to a temporary folder beside `output_dir` and renamed into place,
    so a failed export leaves nothing behind. TF Serving loads `output_dir` when it is a
    numbered version folder (models/asdn/1).

    Args:
        model: a built `ASDN`.
        output_dir: the SavedModel folder to create.
        max_scale: float, the largest scale the signatures accept.
        max_output_pixels: int, the largest batch × height × width of an output. Each costs
            about 2 KB of memory at the peak of a request (default preset), so the default
            1048576 needs about 2 GB, 4194304 about 8 GB.
        overwrite: bool, replace `output_dir` if it is an earlier SavedModel export.
        fsdn: a built `FSDN` whose factors run first (`recursion.plan`), or None: the model's
            ×2 recursion alone.

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
    if fsdn is not None and not isinstance(fsdn, FSDN):
        raise ValueError(f"the SavedModel export's fsdn must be an FSDN or None, got a "
                         f"{type(fsdn).__name__}")
    max_scale, max_output_pixels = check_limits(max_scale, max_output_pixels)
    output_dir = pathlib.Path(output_dir)
    check_output(output_dir, saved_model_problem, overwrite)
    module = _servable(model, fsdn, max_scale, max_output_pixels)
    signatures = {"serving_default": module.upscale_uint8,
                  "upscale_float": module.upscale_float,
                  "upscale_encoded": module.upscale_encoded}

    def write(path):
        tf.saved_model.save(module, os.fspath(path), signatures=signatures)

    write_export(output_dir, write, saved_model_problem, overwrite)
    return output_dir


def command(options, choose_model, choose_fsdn):
    """`python -m asdn_tf.export saved_model`: `options` holds the flags of its row in
    `formats.FORMATS`; choose_model() gives (the float32 model --weights and --preset choose,
    the words that name it), choose_fsdn() (the float32 FSDN --fsdn chooses or None, the
    words that name it). It runs once `command_checks.check_saved_model` has passed."""
    output_dir = pathlib.Path(options.output_dir)
    fsdn, fsdn_source = choose_fsdn()
    model, source = choose_model()
    export_saved_model(model, output_dir, options.max_scale, options.max_output_pixels,
                       options.overwrite, fsdn)
    size = sum(f.stat().st_size for f in output_dir.rglob("*") if f.is_file())
    plan = ("ASDN's x2 recursion alone" if fsdn is None else
            f"x{', x'.join(map(str, fsdn.scales))} by the FSDN from {fsdn_source}, then ASDN")
    print(f"wrote {output_dir} ({size / 1e6:.2f} MB) from {source}; plan: {plan}; "
          "signatures serving_default "
          f"(uint8), upscale_float, upscale_encoded; scale in (1, {options.max_scale:g}], "
          f"at most {options.max_output_pixels} output pixels")


def _servable(model, fsdn, max_scale, max_output_pixels):
    """A tf.Module whose tf.functions are the signatures.

    It tracks the models' tf.Variables (`v.value`), not the Keras models: Keras 3 variables are
    not tf.Variables, and the session loader TF Serving uses only finds variables tracked so.

    The batch signatures declare an image of any shape and check it themselves: a declared
    [None, None, None, 3] lets Grappler fold a rank check away, and neither loader enforces it.
    """
    module = tf.Module(name="asdn_servable")
    module.model_variables = [variable.value for variable in model.variables]
    if fsdn is not None:
        module.fsdn_variables = [variable.value for variable in fsdn.variables]

    def upscale(images, scale):
        return upscale_tensor(model, images, scale, max_scale=max_scale, fsdn=fsdn)

    def upscale_uint8(image, scale):
        image = checked_batch(image, scale, max_scale, max_output_pixels)
        return {"image": pixels.to_uint8_ops(upscale(pixels.to_float_ops(image), scale))}

    def upscale_float(image, scale):
        image = checked_batch(image, scale, max_scale, max_output_pixels)
        finite = tf.debugging.Assert(tf.reduce_all(tf.math.is_finite(image)),
                                     ["image has NaN or infinite values"],
                                     name="check_image_finite")
        with tf.control_dependencies([finite]):
            image = tf.clip_by_value(image, 0.0, 1.0)
        return {"image": upscale(image, scale)}

    def upscale_encoded(image_bytes, scale):
        image = checked_decode(image_bytes, scale, max_scale, max_output_pixels)
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
