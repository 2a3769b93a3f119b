"""What every export does before it writes: run its file in the format's own runtime and the
Keras model on centre crops of real images (by default the quick start's photograph), measure
how far the two are apart (largest absolute difference, 8-bit grey levels, PSNR), and refuse
to write a file that is further apart than its format allows.

The formats differ only in how their file runs (`onnx.verify_onnx`, `ncnn.verify_ncnn`,
`tflite.verify_tflite`); each hands the (output, Keras output) pairs to `agreement`.
"""

import pathlib

import numpy as np
import tensorflow as tf

from asdn_tf.evaluation import metrics
from asdn_tf.export.command_checks import image_paths
from asdn_tf.inference.engine import compiled_upscaler, upscale_tensor
from asdn_tf.io import pixels
from asdn_tf.io.image_io import read_image
from asdn_tf.nn import lfr
from asdn_tf.nn.model import FSDN

# Largest |runtime − Keras| in [0, 1] units an ONNX or NCNN file may show: a fifth of a grey
# level, so its 8-bit output is within one grey level of `asdn_tf.upscale`'s.
MAX_ABS_DIFFERENCE = 0.2 / 255
# Verification crops are at most this side, and smaller at large scales so that an output stays
# near VERIFY_OUTPUT_SIDE pixels a side.
VERIFY_MAX_SIDE = 96
VERIFY_OUTPUT_SIDE = 1024
# The scales an any-scale file is checked at: a blend, a level, one recursion, three.
ANY_SCALE_CHECKS = (1.35, 2.0, 3.3, 7.3)


def quick_start_image():
    """The quick start's photograph (Grace Hopper, shipped with matplotlib)."""
    import matplotlib.cbook

    return pathlib.Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def read_verification_images(images=None):
    """Float32 RGB images in [0, 1] from a folder, glob or list of paths (default: the quick
    start's photograph)."""
    paths = [quick_start_image()] if images is None else image_paths(images)
    return [pixels.to_float_rgb(read_image(path)) for path in paths]


def centre_crop(image, height, width):
    """The `height`×`width` middle of `image` (H×W×C), the extra row or column at the end."""
    top, left = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
    return image[top:top + height, left:left + width]


def verification_cases(images, scale, input_size=None):
    """(crop, scale) pairs to check a file of `scale` on (None: ANY_SCALE_CHECKS): two centre
    crops of each image (float32 H×W×3 in [0, 1]) of different sizes, so the dynamic height
    and width are exercised, smaller at large scales so that an output stays near
    VERIFY_OUTPUT_SIDE a side. With a fixed `input_size`, one crop of that size an image."""
    if input_size is not None:
        return [(_fixed_crop(image, input_size), scale) for image in images]
    cases = []
    for each in ANY_SCALE_CHECKS if scale is None else (scale,):
        side = max(8, min(VERIFY_MAX_SIDE, int(VERIFY_OUTPUT_SIDE / each)))
        for image in images:
            for height, width in ((side, side), (side * 2 // 3 + 1, side - 3)):
                cases.append((centre_crop(image, min(height, image.shape[0]),
                                          min(width, image.shape[1])), each))
    return cases


def _fixed_crop(image, size):
    if image.shape[0] < size[0] or image.shape[1] < size[1]:
        raise ValueError(f"an input size of {size[0]}x{size[1]} needs verification images at "
                         f"least that large, got {image.shape[0]}x{image.shape[1]}")
    return centre_crop(image, *size)


def keras_reference(model, batch, scale, fsdn=None):
    """What the Keras model gives: for an ASDN, what `asdn_tf.upscale` runs (untiled): its
    graph, the scale as float32 and the output size from the float64 scale (at ×3.3 a side of
    65 gives 215 rows, where a float32 scale gives 214); with `fsdn`, its plan (the FSDN's
    integer steps first)."""
    if isinstance(model, FSDN):
        return tf.clip_by_value(model(batch), 0.0, 1.0)
    size = lfr.output_size(batch.shape[1], batch.shape[2], scale)
    if fsdn is not None:
        return upscale_tensor(model, batch, tf.constant(scale, tf.float32), size, fsdn=fsdn)
    return compiled_upscaler(model)(tf.constant(batch), tf.constant(scale, tf.float32),
                                    tf.constant(size, tf.int32))


def agreement(pairs, runtime):
    """How far a file's outputs are from Keras's over (output, expected) pairs of float arrays
    in [0, 1], each H×W×3 or a batch of one.

    Returns:
        dict: "max_abs" (largest |difference|, [0, 1] units), "grey_levels" (largest difference
        of the 8-bit outputs), "psnr" (dB, peak 1, the worst pair) and "images" (pairs).

    Raises:
        ValueError: a pair's shapes differ (naming `runtime`, what ran the file).
    """
    max_abs, grey_levels, worst_psnr, count = 0.0, 0, float("inf"), 0
    for output, expected in pairs:
        if output.shape != expected.shape:
            raise ValueError(f"{runtime} returned {output.shape}, Keras {expected.shape}")
        output, expected = (np.reshape(array, array.shape[-3:]) for array in (output, expected))
        max_abs = max(max_abs, float(np.max(np.abs(output.astype(np.float64) - expected))))
        grey_levels = max(grey_levels, int(np.max(np.abs(
            pixels.from_float(output).astype(int) - pixels.from_float(expected)))))
        worst_psnr = min(worst_psnr, metrics.psnr(output * metrics.PEAK,
                                                  expected * metrics.PEAK, crop_border=0,
                                                  test_y_channel=False))
        count += 1
    return {"max_abs": max_abs, "grey_levels": grey_levels, "psnr": worst_psnr, "images": count}


def within_bound(result):
    """`result` (`agreement`'s) with "ok": its max_abs within MAX_ABS_DIFFERENCE."""
    return {**result, "ok": result["max_abs"] <= MAX_ABS_DIFFERENCE}


def agreement_line(runtime, result, images, scales=()):
    """The line an ONNX or NCNN export prints: `runtime` against Keras on the crops of `images`
    (the --images flag; None: the quick start's photograph) at `scales` (an any-scale file's)."""
    at = f" at scales {', '.join(map(str, scales))}" if scales else ""
    return (f"{runtime} vs Keras on {result['images']} crops{at} of "
            f"{images or quick_start_image().name}: max abs {result['max_abs']:.3g} "
            f"({result['grey_levels']} grey level(s) in 8 bits), PSNR {result['psnr']:.2f} dB; "
            f"requirement max abs <= {MAX_ABS_DIFFERENCE:.3g}: "
            f"{'met' if result['ok'] else 'NOT met'}")


def require(result, refusal):
    """Raises ValueError(`refusal`; nothing written) unless `result["ok"]`: a file that
    disagrees with Keras is never written."""
    if not result["ok"]:
        raise ValueError(f"{refusal}; nothing written")
