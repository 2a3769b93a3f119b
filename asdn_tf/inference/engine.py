"""The upscale engine: the ×2 recursion, each step pre-upsampling and one pass of the network.

`run` is the engine for one image: the recursion of `asdn_tf.inference.recursion`, every step
by one of two strategies, the whole image in one pass (`whole_image_step`, traced once per
model for every size and scale) or region by region (`asdn_tf.inference.tiled_step`), chosen per
step from a memory budget. `upscale` (numpy, for users), `upscale_file`, the command and
`evaluate` all go through it.

`upscale_tensor` is the whole-image strategy for a batch in a graph: the scale may be a tensor,
and the recursion the same plan as one `tf.while_loop` (`recursion.run_ops`), so the same step
runs eagerly, in a `tf.function` and inside a SavedModel. `compiled_upscaler` is that function
traced once per model.

Example:
    >>> model = asdn_tf.build_model("tiny")
    >>> asdn_tf.upscale(np.zeros((20, 30, 3), np.uint8), 3.3, model=model).shape
    (66, 99, 3)
"""

import math
import weakref

import numpy as np
import tensorflow as tf

from asdn_tf.inference import fsdn_step, recursion, tiled_step, tiling, weights_io
from asdn_tf.nn import lfr
from asdn_tf.io import pixels as pixels_lib
from asdn_tf.inference import precision as precision_lib
from asdn_tf.data.imresize import imresize

RANGE_SLOP = pixels_lib.RANGE_SLOP  # float pixels' tolerance outside [0, 1]


def _checked_scale(scale, max_scale):
    """`scale`, once it is known finite and in (1, max_scale]; in a graph the checks run, in
    this order, before anything that uses it."""
    checks = [
        lambda: tf.debugging.assert_equal(tf.math.is_finite(scale), True,
                                          message="scale must be a finite number"),
        lambda: tf.debugging.assert_greater(
            scale, tf.constant(1.0, tf.float64),
            message="scale must be greater than 1 (1 is not an upscaling)"),
        lambda: tf.debugging.assert_less_equal(scale, tf.constant(max_scale, tf.float64),
                                               message=f"scale must be at most {max_scale:g}"),
    ]
    for check in checks:
        with tf.control_dependencies([check()]):
            scale = tf.identity(scale)
    return scale


def upscale_tensor(model, images, scale, size=None, max_scale=lfr.DEFAULT_MAX_SCALE,
                   fsdn=None):
    """Upscales a batch by `scale` through ⌈log2 scale⌉ passes of `model`, or with `fsdn`
    through the plan of `asdn_tf.upscale` (`recursion.plan`).

    Args:
        model: an `ASDN`.
        images: float tensor N×H×W×3 in [0, 1]; eagerly, values outside it (by more than
            `RANGE_SLOP`) are refused.
        scale: number or float scalar tensor in (1, max_scale]; sets the recursion plan, the
            blend weights and the sampling positions of the pre-upsampling.
        size: optional (height, width) of the output; by default round(scale·h) × round(scale·w).
            Intermediate steps are round(h · product of the steps so far).
        max_scale: the largest accepted scale.
        fsdn: an `FSDN` for the integer part of the scale (its passes on whole images), or
            None: the model's ×2 recursion alone.

    Returns:
        float32 N×h_out×w_out×3, clipped to [0, 1].

    Raises:
        ValueError: a bad scale, integer images (divide uint8 by 255, or call `upscale`), a
            missing batch axis, or (eagerly) values outside [0, 1].
    """
    if isinstance(scale, (int, float)):
        lfr.check_scale(scale, max_scale)
    images = _checked_batch(images)
    scale = _checked_scale(tf.cast(scale, tf.float64), max_scale)
    if size is None:
        size = lfr.output_size_ops(tf.shape(images)[1], tf.shape(images)[2], scale)
    size = tf.cast(size[0], tf.int32), tf.cast(size[1], tf.int32)
    return recursion.run_ops(
        images, scale, size, lambda image, step, target: whole_image_step(model, image, step, target),
        lambda image, head: whole_image_fsdn_step(fsdn, image, head),
        () if fsdn is None else fsdn.scales)


def whole_image_fsdn_step(fsdn, images, head):
    """One integer step on whole images: `fsdn`'s head `head` (an index into its scales) on
    `images` (N×H×W×3 float32), clipped to [0, 1]."""
    return tf.clip_by_value(tf.cast(fsdn(images, level=head), tf.float32), 0.0, 1.0)


def whole_image_step(model, images, step, size):
    """One recursion step on whole images: the bicubic pre-upsampling of `images` (N×H×W×3
    float32) by `step` (float64) to `size`, then the network, clipped to [0, 1]."""
    x_up = imresize(images, scale=step, size=size)
    return tf.clip_by_value(tf.cast(model(x_up, scale=step), tf.float32), 0.0, 1.0)


def run(model, rgb, scale, size, tile=None, overlap=None, progress=None, dtype=np.float32,
        fsdn=None):
    """Upscales one image through the recursion, each step on the whole image or by regions.

    Args:
        model: an `ASDN`.
        rgb: float32 H×W×3 numpy array in [0, 1].
        scale: the factor, already checked; rounded to float32 as `compiled_upscaler` takes it.
        size: (height, width) of the output.
        tile: region side for every step (0: the whole image); None chooses per step from the
            memory budget (`tiling.choose_tile`).
        overlap: context around each region; by default `tiling.default_overlap`.
        progress: optional callable(done, total), after each pass (whole image or region).
        dtype: of the result: float32 in [0, 1], or uint8 / uint16 (rounded as the last step's
            output is kept, region by region).
        fsdn: an `FSDN` for the integer part of the scale (`recursion.plan`), or None: the
            model's ×2 recursion alone.

    Returns:
        size×3 numpy array of `dtype`.
    """
    fsdn_overlap = overlap = tiling.check_overlap(overlap)
    if overlap is None:
        overlap = tiling.default_overlap(model.model_config)
    scale = float(np.float32(scale))
    factors = fsdn.scales if fsdn is not None else ()
    steps = recursion.plan(*rgb.shape[:2], scale, size, factors)
    tiles = {target: tiling.choose_tile(target, tile, model.model_config)
             for step_scale, target in steps if not isinstance(step_scale, int)}
    inputs = [rgb.shape[:2], *(target for _, target in steps[:-1])]
    ticker = _Ticker(progress, sum(
        fsdn_step.count_passes(fsdn.model_config, source, step_scale, tile)
        if isinstance(step_scale, int) else
        tiling.count_regions(target, tiles[target]) if tiles[target] else 1
        for source, (step_scale, target) in zip(inputs, steps)))

    def fixed_step(image, factor, target, last):
        return fsdn_step.upscale_step(fsdn, image, factor, tile, fsdn_overlap, ticker.tick,
                                      dtype if last else np.float32)

    def step(image, step_scale, target, last):
        kept = dtype if last else np.float32
        if tiles[target]:
            return tiled_step.upscale_step(model, image, step_scale, target, tiles[target],
                                           overlap, ticker.tick, kept)
        output = traced_step(model)(tf.constant(image[None]),
                                    tf.constant(step_scale, tf.float64),
                                    tf.constant(target, tf.int32))[0].numpy()
        ticker.tick()
        return output if kept == np.float32 else pixels_lib.from_float(output, kept)

    return recursion.run(np.asarray(rgb, np.float32), scale, size, step, fixed_step, factors)


class _Ticker:
    """Counts passes for a progress callable(done, total)."""

    def __init__(self, progress, total):
        self.progress, self.total, self.done = progress, total, 0

    def tick(self):
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)


_STEPS = weakref.WeakKeyDictionary()


def traced_step(model):
    """`whole_image_step` for `model` as a `tf.function`, traced once for every size and step."""
    if model not in _STEPS:
        _STEPS[model] = tf.function(
            lambda images, step, size: whole_image_step(model, images, step, size),
            input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32),
                             tf.TensorSpec([], tf.float64), tf.TensorSpec([2], tf.int32)],
            autograph=False)
    return _STEPS[model]


_COMPILED = weakref.WeakKeyDictionary()


def compiled_upscaler(model, max_scale=lfr.DEFAULT_MAX_SCALE):
    """`upscale_tensor` for `model` as a `tf.function`(images N×H×W×3 float32, scale float32,
    size (height, width) int32), kept per model: its height, width and scale are dynamic, so it
    is traced once for every size, scale and number of recursion steps."""
    key = (max_scale,)
    cache = _COMPILED.setdefault(model, {})
    if key not in cache:
        cache[key] = tf.function(
            lambda images, scale, size: upscale_tensor(model, images, scale, size, max_scale),
            input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32),
                             tf.TensorSpec([], tf.float32), tf.TensorSpec([2], tf.int32)],
            autograph=False)
    return cache[key]


def _checked_batch(images):
    """`images` as a float32 tensor, once its dtype and shape (and, eagerly, range) fit."""
    dtype = getattr(images, "dtype", None)
    if dtype is not None and not tf.as_dtype(dtype).is_floating:
        raise ValueError(f"images must be float in [0, 1], got {tf.as_dtype(dtype).name}; "
                         "divide by 255 (or pass the uint8 image to asdn_tf.upscale)")
    images = tf.convert_to_tensor(images, tf.float32)
    shape = images.shape
    if shape.rank is not None and (shape.rank != 4 or shape[-1] not in (None, 3)):
        hint = "; add the batch axis with images[None]" if shape.rank == 3 else ""
        raise ValueError(f"images must be a batch N×H×W×3, got shape {tuple(shape)}{hint}")
    if tf.executing_eagerly() and tf.size(images) > 0:
        _check_range(float(tf.reduce_min(images)), float(tf.reduce_max(images)))
    return images


def _check_range(low, high):
    """Refuses float pixels outside [0, 1] (by more than RANGE_SLOP), and NaN or infinity."""
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("image has NaN or infinite values")
    if low < -RANGE_SLOP or high > 1 + RANGE_SLOP:
        raise ValueError(f"float pixels must be in [0, 1], got values in [{low:g}, {high:g}]; "
                         "divide 0-255 values by 255 (or pass uint8)")


def _check_layout(image):
    """Checks what the array's shape and type say; reads no pixel."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(image).__name__}")
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be H×W or H×W×C (2-D or 3-D), got shape {image.shape}")
    if image.size == 0:
        raise ValueError(f"image is empty (shape {image.shape})")
    if image.ndim == 3 and image.shape[2] not in (1, 3, 4):
        raise ValueError(f"image must have 1 (gray), 3 (RGB) or 4 (RGBA) channels, "
                         f"got {image.shape[2]}")
    if image.dtype not in (np.uint8, np.uint16) and not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"image dtype must be uint8, uint16 or float in [0, 1], "
                         f"got {image.dtype}")


def _check_size(size, height, width):
    try:
        out_h, out_w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (height, width), got {size!r}") from None
    if out_h < height or out_w < width or (out_h, out_w) == (height, width):
        raise ValueError(f"size {out_h}×{out_w} must be larger than the input {height}×{width}")
    return out_h, out_w


def upscale(image, scale=None, model=None, size=None, max_scale=lfr.DEFAULT_MAX_SCALE,
            tile=None, tile_overlap=None, progress=None, precision="auto", fsdn="auto"):
    """Upscales one image (numpy) by any scale in (1, max_scale], or to an explicit size.

    Args:
        image: H×W (gray), H×W×1, H×W×3 or H×W×4 (alpha is resized with bicubic); uint8,
            uint16 or float in [0, 1] (values outside it by more than `RANGE_SLOP` are
            refused: divide 0-255 floats by 255).
        scale: the factor; without it, the largest of the size ratios.
        model: an `ASDN` (computing in its own precision) or a bundled model's name, "default"
            or "photo" (by default `weights_io.UPSCALE_MODEL`, loaded once per process).
        size: optional (height, width) of the output.
        max_scale: the largest accepted scale.
        tile: run the network on regions of this side (`asdn_tf.inference.tiling`); 0 never
            tiles; None tiles the recursion steps whose pass would not fit
            `tiling.MEMORY_BUDGET`.
        tile_overlap: context around each region; by default `tiling.default_overlap`
            (70 % of the receptive radius).
        progress: optional callable(done, total), called after each network pass.
        precision: of the bundled model, when `model` is None: "auto" (bfloat16 where the
            hardware runs it fast, `precision.auto_precision`), "float32" or "bfloat16".
        fsdn: what runs the integer part of the scale (`recursion.plan`): "auto", the FSDN
            paired with a bundled model where the package ships one
            (`weights_io.shared_fsdn`); an `FSDN` of your own; or None, the model's ×2
            recursion alone (the paper's).

    Returns:
        uint8 array (uint16 for uint16 input) of the same layout as `image`.

    Every argument is checked before the pixels are read.
    """
    _check_layout(image)
    height, width = image.shape[:2]
    scale, size = _scale_and_size(height, width, scale, size, max_scale)
    tiling.check_tile(tile)
    tile_overlap = tiling.check_overlap(tile_overlap)
    precision_lib.check_precision(precision)
    _check_model(model)
    if np.issubdtype(image.dtype, np.floating):
        _check_range(float(image.min()), float(image.max()))
    pixels = pixels_lib.to_float(image)
    model, fsdn = _networks(model, _checked_fsdn(fsdn), precision)
    pixels = pixels.reshape(height, width, -1)
    channels = pixels.shape[2]
    dtype = np.uint16 if image.dtype == np.uint16 else np.uint8
    # Three channels come out as pixels straight from the last step: no float copy of it all.
    output = run(model, pixels_lib.to_rgb(pixels), scale, size, tile, tile_overlap, progress,
                 dtype if channels == 3 else np.float32, fsdn)
    if channels == 1:
        output = tf.reduce_mean(output, axis=-1, keepdims=True)
    elif channels == 4:
        alpha = imresize(pixels[..., 3:], scale=scale, size=size)
        output = tf.concat([output, tf.clip_by_value(alpha, 0.0, 1.0)], axis=-1)
    output = np.asarray(output)
    if image.ndim == 2:
        output = output[..., 0]
    return output if channels == 3 else pixels_lib.from_float(output, dtype)


def _networks(model, fsdn, precision):
    """(ASDN, FSDN or None) that run an upscale: a bundled model's, loaded once per process,
    when `model` is None or its name, paired with its FSDN when `fsdn` is "auto"."""
    if model is None or isinstance(model, str):
        if fsdn == "auto":
            fsdn = weights_io.shared_fsdn(precision, model)
        model = weights_io.shared_pretrained(precision, model)
    return model, None if fsdn == "auto" else fsdn


def _checked_fsdn(fsdn):
    """`fsdn` once it is "auto", None or an `FSDN`; raises TypeError in one line otherwise."""
    from asdn_tf.nn.model import FSDN
    if fsdn is None or isinstance(fsdn, FSDN) or (isinstance(fsdn, str) and fsdn == "auto"):
        return fsdn
    raise TypeError(f'fsdn must be "auto", None or an FSDN, got {fsdn!r:.60}')


def _check_model(model):
    """Raises ValueError for an unknown bundled model's name (naming the bundled ones), and a
    one-line TypeError for a `model` that is neither a name, None nor a Keras model."""
    if isinstance(model, str):
        weights_io.bundled_weights(model)
    elif model is not None and not isinstance(model, tf.keras.Model):
        raise TypeError(f"model must be an ASDN or a bundled model's name "
                        f"({', '.join(weights_io.BUNDLED)}), got {type(model).__name__}")


def _scale_and_size(height, width, scale, size, max_scale):
    """(scale, (height, width)) of the output from a scale, a size or both, checked."""
    if scale is not None:
        scale = lfr.check_scale(scale, max_scale)
    if size is not None:
        size = _check_size(size, height, width)
    if scale is None:
        if size is None:
            raise ValueError("upscale needs a scale or a size")
        scale = lfr.check_scale(max(size[0] / height, size[1] / width), max_scale)
    if size is None:
        size = lfr.output_size(height, width, scale)
    return scale, size
