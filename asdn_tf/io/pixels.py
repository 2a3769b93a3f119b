"""Pixel values: integer images ↔ float in [0, 1], gray/RGBA → RGB, 16 → 8 bits, 32-bit gray
samples → 16 bits.

One convention everywhere (the command line, `asdn_tf.upscale`, the SavedModel, the benchmark):
an integer image is divided by its peak (255 for uint8, 65535 for uint16), and a float image
goes back by clipping to [0, 1], multiplying by the peak and rounding halves away from zero, as
MATLAB's round (and so im2uint8 and the benchmark protocol's PNGs) does; numpy's and
TensorFlow's round would take halves to even and disagree by one grey level. The arithmetic is
float32 in both forms, so the numpy form and the tensor form (`*_ops`, `keras.ops`) give the
same bytes.

Example:
    >>> to_uint8(np.float32([0.5 / 255, 1.5 / 255]))
    array([1, 2], dtype=uint8)
"""

import numpy as np

PEAKS = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535}
# How far float pixels may stray outside [0, 1] (rounding in the caller's arithmetic) before
# they are taken for another range, such as 0..255.
RANGE_SLOP = 1e-3
# Values rounded at a time: temporaries of a whole large output would double its memory.
_CHUNK = 1 << 20


def _ops():
    # Imported on first use: `asdn-upscale --help` and image_io run without loading a backend.
    from keras import ops

    return ops


def to_float(image):
    """uint8 or uint16 pixels, or floats, as float32 in [0, 1] (floats are clipped).

    Raises:
        ValueError: a float image has NaN or infinite values.
    """
    image = np.asarray(image)
    if image.dtype in PEAKS:
        return image.astype(np.float32) / np.float32(PEAKS[image.dtype])
    if not np.all(np.isfinite(image)):
        raise ValueError("image has NaN or infinite values")
    return np.clip(image.astype(np.float32), 0.0, 1.0)


def to_float_ops(images):
    """`to_float` for a tensor (no finiteness check): uint8 and uint16 are divided by their
    peak, floats become float32."""
    from keras import backend

    ops = _ops()
    dtype = np.dtype(backend.standardize_dtype(images.dtype))
    images = ops.cast(images, "float32")
    return images / float(PEAKS[dtype]) if dtype in PEAKS else images


def from_float(image, dtype=np.uint8):
    """Float pixels as uint8 or uint16: clipped to [0, 1], times the peak, halves away from
    zero."""
    values = np.asarray(image, np.float32).reshape(-1)
    peak = np.float32(PEAKS[np.dtype(dtype)])
    result = np.empty(values.shape, dtype)
    for start in range(0, values.size, _CHUNK):
        chunk = np.clip(values[start:start + _CHUNK], 0.0, 1.0)
        result[start:start + _CHUNK] = np.floor(chunk * peak + np.float32(0.5))
    return result.reshape(np.shape(image))


def to_uint8(image):
    """Float pixels as uint8, halves away from zero (`from_float`)."""
    return from_float(image, np.uint8)


def to_uint8_ops(images):
    """`to_uint8` for a tensor: the same float32 arithmetic, so the same bytes."""
    ops = _ops()
    images = ops.clip(ops.cast(images, "float32"), 0.0, 1.0)
    return ops.cast(ops.floor(images * 255.0 + 0.5), "uint8")


def wide_to_uint16(values):
    """Gray pixels stored in 32 bits (TIFF's 32-bit integers and floats; Pillow's modes "I"
    and "F") as uint16, when no value is lost or reinterpreted: integers must lie in 0..65535
    (16-bit values in a wider type, read as they are), floats in [0, 1] (intensities, within
    RANGE_SLOP; rounded to 16 bits as `from_float` does). Anything else is refused rather than
    wrapped or clipped.

    Raises:
        ValueError: one line with the values' range and what would be read.
    """
    values = np.asarray(values)
    if values.size == 0:
        return values.astype(np.uint16)
    low, high = values.min(), values.max()
    if np.issubdtype(values.dtype, np.floating):
        if not (np.isfinite(low) and np.isfinite(high)):
            raise ValueError("its float pixels include NaN or infinite values")
        if low < -RANGE_SLOP or high > 1 + RANGE_SLOP:
            raise ValueError(f"its float pixels lie in [{low:g}, {high:g}], not in [0, 1]; "
                             "scale them to [0, 1] or save 8 or 16-bit integers")
        return from_float(values, np.uint16)
    if low < 0 or high > PEAKS[np.dtype(np.uint16)]:
        raise ValueError(f"its integer pixels lie in [{low}, {high}], beyond 16 bits "
                         "(0..65535); save it with 8 or 16 bits")
    return values.astype(np.uint16)


def uint16_to_uint8(pixels):
    """16-bit pixels as 8-bit: round(v / 257), which maps 65535 to 255 (257 is odd, so no
    value is a half)."""
    return ((np.asarray(pixels).astype(np.uint32) + 128) // 257).astype(np.uint8)


def to_rgb(pixels):
    """H×W or H×W×1 (gray) repeated to H×W×3, H×W×4 without its alpha; H×W×3 as it is."""
    pixels = np.asarray(pixels)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels[..., :3]


def to_float_rgb(image):
    """Any `image_io.read_image` layout (gray, RGB, RGBA; uint8, uint16 or float) as float32
    H×W×3 in [0, 1]."""
    return to_rgb(to_float(image))
