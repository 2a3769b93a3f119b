"""MATLAB-exact bicubic `imresize` in TensorFlow (docs/protocol.md), with the kernel of
`asdn_tf.data.resizing`.

MATLAB semantics: Keys cubic kernel with a = -0.5; when downscaling the kernel is stretched by
1/s (antialiasing); the output size is ceil(in·s) when a scale is given; sampling positions come
from the nominal scale; borders are extended symmetrically.

Each axis is resized block by block: a block of `_BLOCK` output rows reads one short window of
input rows (gathered with the symmetric extension) and is one small matrix product. That is
the dense [out, in] product of `resizing.resize_matrix` without its zeros (about 5 times faster on a
2K image, bench/imresize_speed.py), and it is still made of gather and matmul only, so the op
runs eagerly, inside `Dataset.map`, and under `tf.function(jit_compile=True)` when the sizes
are static.

Example:
    >>> lr = imresize(hr, scale=1 / 3)            # ceil(h / 3) × ceil(w / 3)
    >>> up = imresize(lr, scale=3, size=hr.shape[:2])
"""

import math

import tensorflow as tf

from asdn_tf.nn.cubic import cubic

# Output rows per matrix product: small blocks waste few multiplications on zero weights, large
# ones re-read fewer overlapping input rows; 8 was fastest at 1/2, 1/3 and 1/4 on a 2K image.
_BLOCK = 8


def _static_or_tensor(value, dtype):
    """Python numbers stay Python (static shapes, XLA friendly); anything else becomes a tensor."""
    if isinstance(value, (int, float)):
        return value
    return tf.cast(value, dtype)


def _kernel(scale, antialias):
    """(kernel_scale, taps): the kernel stretch and MATLAB's taps per output, `ceil(4/k) + 2`."""
    if isinstance(scale, (int, float)):
        kernel_scale = float(scale) if antialias and scale < 1 else 1.0
        return kernel_scale, int(math.ceil(4.0 / kernel_scale)) + 2
    kernel_scale = tf.where(scale < 1.0, scale, 1.0) if antialias else tf.constant(1.0)
    return kernel_scale, tf.cast(tf.math.ceil(4.0 / kernel_scale), tf.int32) + 2


def _positions(count, scale, kernel_scale):
    """1-based input positions u of outputs 1..count, and the first tap floor(u - 2/k)."""
    x = tf.range(1, tf.cast(count, tf.float32) + 1.0, dtype=tf.float32)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    return u, tf.math.floor(u - 2.0 / kernel_scale)


def _weights(u, indices, kernel_scale):
    """Kernel weights of input `indices` for positions `u`, normalised over the last axis."""
    weights = kernel_scale * cubic(kernel_scale * (u - indices), tf.where)
    return weights / tf.reduce_sum(weights, axis=-1, keepdims=True)


def _mirror(indices, in_size):
    """1-based float indices → 0-based int32 with MATLAB's symmetric extension:
    ..., 2, 1 | 1, 2, ..., n | n, n-1, ...
    """
    period = 2 * in_size
    zero_based = tf.math.floormod(tf.cast(indices, tf.int32) - 1, period)
    return tf.where(zero_based < in_size, zero_based, period - 1 - zero_based)


def _resize_axis1(x, in_size, out_size, scale, antialias):
    """Resizes axis 1 of x (N×in×M) to out_size, one `_BLOCK`-row matrix product per block."""
    kernel_scale, taps = _kernel(scale, antialias)
    if isinstance(out_size, int) and isinstance(taps, int):
        blocks = -(-out_size // _BLOCK)
        # u grows by 1/scale per output, so a block's first taps span at most this many rows
        # (+1 for float32 rounding of u).
        window = int(math.ceil((_BLOCK - 1) / scale)) + taps + 1
    else:
        blocks = (out_size + _BLOCK - 1) // _BLOCK
        window = tf.cast(tf.math.ceil((_BLOCK - 1) / scale), tf.int32) + taps + 1
    u, left = _positions(blocks * _BLOCK, scale, kernel_scale)
    # Taps outside a row's kernel support get a zero weight, so each row of a block can use
    # the block's whole window.
    starts = left[::_BLOCK]
    indices = starts[:, None] + tf.range(tf.cast(window, tf.float32), dtype=tf.float32)[None, :]
    weights = _weights(tf.reshape(u, [blocks, _BLOCK, 1]), indices[:, None, :], kernel_scale)
    windows = tf.gather(x, _mirror(indices, in_size), axis=1)
    resized = tf.matmul(weights, windows)
    resized = tf.reshape(resized, [tf.shape(x)[0], blocks * _BLOCK, tf.shape(x)[2]])
    return resized[:, :out_size]


def _resize(images, in_h, in_w, out_h, out_w, scale_h, scale_w, antialias):
    """N×H×W×C float32 → N×out_h×out_w×C: rows first, then columns of the transposed image."""
    batch, channels = tf.shape(images)[0], tf.shape(images)[3]
    resized = _resize_axis1(tf.reshape(images, [batch, in_h, in_w * channels]), in_h, out_h,
                            scale_h, antialias)
    resized = tf.transpose(tf.reshape(resized, [batch, out_h, in_w, channels]), [0, 2, 1, 3])
    resized = _resize_axis1(tf.reshape(resized, [batch, in_w, out_h * channels]), in_w, out_w,
                            scale_w, antialias)
    resized = tf.transpose(tf.reshape(resized, [batch, out_w, out_h, channels]), [0, 2, 1, 3])
    return tf.ensure_shape(resized, [images.shape[0], _known(out_h), _known(out_w),
                                     images.shape[3]])


def _known(size):
    return size if isinstance(size, int) else None


_EAGER = {}


def _eager_resize(images, in_h, in_w, out_h, out_w, scale_h, scale_w, antialias):
    """`_resize` through one graph traced for every size: run op by op, its ~80 small ops
    cost more than the arithmetic on images below 2K."""
    if antialias not in _EAGER:
        size = tf.TensorSpec([], tf.int32)
        scale = tf.TensorSpec([], tf.float32)
        _EAGER[antialias] = tf.function(
            lambda *args: _resize(*args, antialias=antialias),
            input_signature=[tf.TensorSpec([None, None, None, None], tf.float32),
                             size, size, size, size, scale, scale])
    return _EAGER[antialias](images, in_h, in_w, out_h, out_w, scale_h, scale_w)


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


def _ratio(out_size, in_size):
    if isinstance(out_size, int) and isinstance(in_size, int):
        return out_size / in_size
    return tf.cast(out_size, tf.float64) / tf.cast(in_size, tf.float64)


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
    out_h, out_w = (_static_or_tensor(value, tf.int32) for value in (out_h, out_w))
    scale_h, scale_w = (_static_or_tensor(value, tf.float32) for value in (scale_h, scale_w))
    resize = _eager_resize if tf.executing_eagerly() else _resize
    resized = resize(images, in_h, in_w, out_h, out_w, scale_h, scale_w, antialias)
    return resized if batched else resized[0]
