"""MATLAB-exact bicubic `imresize` in TensorFlow (../shared/docs/ASDN.md §7).

MATLAB semantics: Keys cubic kernel with a = -0.5; when downscaling the kernel is stretched by
1/s (antialiasing); the output size is ceil(in·s) when a scale is given; sampling positions come
from the nominal scale; borders are extended symmetrically. Each axis is resized by a dense
[out, in] weight matrix applied as a matrix product, so the op runs eagerly, inside
`Dataset.map`, and under `tf.function(jit_compile=True)` when the sizes are static.

Example:
    >>> lr = imresize(hr, scale=1 / 3)            # ceil(h / 3) × ceil(w / 3)
    >>> up = imresize(lr, scale=3, size=hr.shape[:2])
"""

import math

import tensorflow as tf


def _cubic(x):
    ax = tf.abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * tf.cast(ax <= 1.0, x.dtype)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * tf.cast((ax > 1.0) & (ax <= 2.0), x.dtype)
    return near + far


def _static_or_tensor(value, dtype):
    """Python numbers stay Python (static shapes, XLA friendly); anything else becomes a tensor."""
    if isinstance(value, (int, float)):
        return value
    return tf.cast(value, dtype)


def resize_matrix(in_size, out_size, scale, antialias=True):
    """The [out_size, in_size] float32 matrix MATLAB's `contributions` describes.

    Positions and weights are computed in float32, as the widely used Python reference
    (../shared/testvectors) does; float64 positions move some pixels by about 1e-5.

    Args:
        in_size: int or scalar tensor, input length along the axis.
        out_size: int or scalar tensor, output length.
        scale: float or scalar tensor, the nominal scale that sets the sampling positions.
        antialias: bool, stretch the kernel by 1/scale when downscaling.
    """
    dtype = tf.float32
    in_size = _static_or_tensor(in_size, tf.int32)
    out_size = _static_or_tensor(out_size, tf.int32)
    scale = _static_or_tensor(scale, dtype)
    if isinstance(scale, float) or isinstance(scale, int):
        stretch = antialias and scale < 1
        kernel_scale = float(scale) if stretch else 1.0
        taps = int(math.ceil(4.0 / kernel_scale)) + 2
    else:
        kernel_scale = tf.where(scale < 1.0, scale, 1.0) if antialias else tf.constant(1.0, dtype)
        taps = tf.cast(tf.math.ceil(4.0 / kernel_scale), tf.int32) + 2
    x = tf.range(1, tf.cast(out_size, dtype) + 1.0, dtype=dtype)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = tf.math.floor(u - 2.0 / kernel_scale)
    indices = left[:, None] + tf.range(tf.cast(taps, dtype), dtype=dtype)[None, :]
    weights = kernel_scale * _cubic(kernel_scale * (u[:, None] - indices))
    weights = weights / tf.reduce_sum(weights, axis=1, keepdims=True)
    # Symmetric extension: ..., 2, 1 | 1, 2, ..., n | n, n-1, ... (MATLAB's 'symmetric').
    period = 2 * tf.cast(in_size, tf.int64)
    zero_based = tf.math.floormod(tf.cast(indices, tf.int64) - 1, period)
    mirrored = tf.where(zero_based < tf.cast(in_size, tf.int64), zero_based,
                        period - 1 - zero_based)
    rows = tf.broadcast_to(tf.range(tf.cast(out_size, tf.int64))[:, None], tf.shape(mirrored,
                                                                              out_type=tf.int64))
    coords = tf.stack([tf.reshape(rows, [-1]), tf.reshape(mirrored, [-1])], axis=1)
    shape = tf.stack([tf.cast(out_size, tf.int64), tf.cast(in_size, tf.int64)])
    return tf.scatter_nd(coords, tf.reshape(weights, [-1]), shape)


def _output_length(in_size, scale):
    if isinstance(in_size, int) and isinstance(scale, (int, float)):
        return int(math.ceil(in_size * scale - 1e-9))
    return tf.cast(tf.math.ceil(tf.cast(in_size, tf.float64) * tf.cast(scale, tf.float64) - 1e-9),
                   tf.int32)


def _pair(value):
    if value is None:
        return None, None
    if isinstance(value, (int, float)):
        return value, value
    if isinstance(value, (tuple, list)):
        return value[0], value[1]
    value = tf.convert_to_tensor(value)
    if value.shape.rank == 0:
        return value, value
    return value[0], value[1]


def imresize(images, scale=None, size=None, antialias=True):
    """Resizes like MATLAB `imresize(images, scale, 'bicubic')`.

    Args:
        images: float tensor, H×W×C or N×H×W×C (any float dtype; computed in float32).
        scale: number, (sy, sx) pair or tensor. Sets the sampling positions, and the output size
            ceil(in·scale) when `size` is not given.
        size: (height, width) of the output. Without `scale`, the scale per axis is out / in.
        antialias: bool, MATLAB's default antialiasing when downscaling.

    Returns:
        The resized images, float32, same rank as `images`.
    """
    if scale is None and size is None:
        raise ValueError("imresize needs a scale or a size")
    images = tf.convert_to_tensor(images)
    if not images.dtype.is_floating:
        raise ValueError(f"imresize takes float images, got {images.dtype.name}")
    images = tf.cast(images, tf.float32)
    batched = images.shape.rank == 4
    if not batched:
        if images.shape.rank != 3:
            raise ValueError(f"imresize takes H×W×C or N×H×W×C images, got rank {images.shape.rank}")
        images = images[None]
    static = images.shape
    dynamic = tf.shape(images)
    in_h = static[1] if static[1] is not None else dynamic[1]
    in_w = static[2] if static[2] is not None else dynamic[2]
    scale_h, scale_w = _pair(scale)
    out_h, out_w = _pair(size)
    if out_h is None:
        out_h, out_w = _output_length(in_h, scale_h), _output_length(in_w, scale_w)
    if scale_h is None:
        scale_h = _ratio(out_h, in_h)
        scale_w = _ratio(out_w, in_w)
    matrix_h = resize_matrix(in_h, out_h, scale_h, antialias)
    matrix_w = resize_matrix(in_w, out_w, scale_w, antialias)
    resized = tf.einsum("oh,nhwc->nowc", matrix_h, images)
    resized = tf.einsum("pw,nowc->nopc", matrix_w, resized)
    return resized if batched else resized[0]


def _ratio(out_size, in_size):
    if isinstance(out_size, int) and isinstance(in_size, int):
        return out_size / in_size
    return tf.cast(out_size, tf.float64) / tf.cast(in_size, tf.float64)
