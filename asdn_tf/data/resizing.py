"""MATLAB's bicubic resampling, defined once: the [out, in] weight matrix of one axis (MATLAB's
`contributions`), built from Keys' cubic kernel (a = -0.5, asdn_tf/nn/cubic.py), with
`imresize` applying two of them with `keras.ops` on any Keras backend.

The other appliers are thin and use the same kernel: `asdn_tf.data.imresize` (TensorFlow, which
also takes sizes and scales that are tensors, inside `tf.data` and SavedModels),
`asdn_tf.data.photo_degradation` (numpy) and `asdn_tf.nn.layers.BicubicUpsample` (a fixed
transposed convolution). The weights are float32 step for step (positions, kernel stretched by
the scale when downscaling, symmetric borders), so every applier agrees with MATLAB to 1e-5.

Example:
    >>> lr = imresize(hr, scale=1 / 3)            # N×H×W×C or H×W×C, any backend tensor
    >>> up = imresize(lr, scale=3, size=hr.shape[-3:-1])
"""

import functools
import math

import keras
import numpy as np
from keras import ops

from asdn_tf.nn.cubic import cubic


# typed: a numpy float32 scale is computed in float32 (as a tensor scale is in imresize), a
# Python float in float64 first, so the two must not share a cache entry.
@functools.lru_cache(maxsize=256, typed=True)
def resize_matrix(in_size, out_size, scale, antialias=True):
    """The [out_size, in_size] float32 matrix of MATLAB's `contributions` (numpy, read-only).

    Args:
        in_size: int, input length along the axis.
        out_size: int, output length.
        scale: float or np.float32, the nominal scale that sets the sampling positions.
        antialias: bool, stretch the kernel by 1/scale when downscaling.
    """
    kernel_scale = np.float32(scale if antialias and scale < 1 else 1.0)
    taps = int(math.ceil(4.0 / float(kernel_scale))) + 2
    # float32, as the widely used Python reference (tests/testvectors) computes them:
    # float64 positions move some pixels by about 1e-5.
    x = np.arange(1, out_size + 1, dtype=np.float32)
    u = x / np.float32(scale) + np.float32(0.5 * (1.0 - 1.0 / scale))
    left = np.floor(u - np.float32(2.0) / kernel_scale)
    indices = left[:, None] + np.arange(taps, dtype=np.float32)[None, :]
    weights = kernel_scale * cubic(kernel_scale * (u[:, None] - indices))
    weights = weights / np.sum(weights, axis=-1, keepdims=True)
    # Symmetric extension: ..., 2, 1 | 1, 2, ..., n | n, n-1, ...
    period = 2 * in_size
    columns = np.mod(indices.astype(np.int64) - 1, period)
    columns = np.where(columns < in_size, columns, period - 1 - columns)
    matrix = np.zeros((out_size, in_size), np.float32)
    np.add.at(matrix, (np.repeat(np.arange(out_size), taps), columns.ravel()), weights.ravel())
    matrix.flags.writeable = False
    return matrix


def output_length(in_size, scale):
    """MATLAB's output length for a scale: ceil(in · scale)."""
    return int(math.ceil(in_size * scale - 1e-9))


def imresize(images, scale=None, size=None, antialias=True):
    """Resizes like MATLAB `imresize(images, scale, 'bicubic')`, with `keras.ops`.

    Args:
        images: float array or backend tensor, H×W×C or N×H×W×C with static H and W.
        scale: number or (sy, sx) numbers. Sets the sampling positions, and the output size
            ceil(in·scale) when `size` is not given.
        size: (height, width) ints of the output. Without `scale`, the scale per axis is
            out / in.
        antialias: bool, MATLAB's default antialiasing when downscaling.

    Returns:
        The resized images, float32 backend tensor, same rank as `images`.
    """
    if scale is None and size is None:
        raise ValueError("imresize needs a scale or a size")
    dtype = keras.backend.standardize_dtype(images.dtype)
    if not keras.backend.is_float_dtype(dtype):
        raise ValueError(f"imresize takes float images, got {dtype}")
    images = ops.cast(images, "float32")
    rank = len(images.shape)
    if rank not in (3, 4):
        raise ValueError(f"imresize takes H×W×C or N×H×W×C images, got rank {rank}")
    in_h, in_w = (int(side) for side in images.shape[-3:-1])
    scale_h, scale_w = (scale, scale) if isinstance(scale, (int, float)) else (scale or (None,) * 2)
    if size is None:
        out_h, out_w = output_length(in_h, scale_h), output_length(in_w, scale_w)
    else:
        out_h, out_w = (int(side) for side in size)
    if scale_h is None:
        scale_h, scale_w = out_h / in_h, out_w / in_w
    rows = resize_matrix(in_h, out_h, float(scale_h), antialias)
    columns = resize_matrix(in_w, out_w, float(scale_w), antialias)
    resized = ops.einsum("oh,...hwc->...owc", ops.convert_to_tensor(rows), images)
    return ops.einsum("pw,...owc->...opc", ops.convert_to_tensor(columns), resized)
