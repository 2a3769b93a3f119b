"""`--degradation=photo` in numpy and PIL, for training without TensorFlow (JAX).

The mix is `asdn_tf.data.photo_mix`'s, as under `tf.data`; this module holds its numpy
operations (`NumpyMix`) and the recursion pairs of `asdn_tf.data.pipeline._photo_pair`: per
update maybe the first step of a ×3 or ×4 recursion. The draws come from a numpy Generator
(`asdn_tf.data.folder_data` seeds it from (seed, step)), so they follow the same distribution as
TensorFlow's, not the same values. The kernels without antialiasing are `tf.image.resize`'s
arithmetic (half-pixel centres; Keys a = -0.5 from its 1024-entry table; TF's area), the blur is
`degradation.gaussian_blur`'s; JPEG goes through PIL, which writes TensorFlow's bytes but decodes
them with the accurate IDCT where `tf.image.adjust_jpeg_quality` uses the fast one (43 to 51 dB
apart on a Set5 crop: tests/test_jax_photo.py).

Example:
    >>> rng = np.random.default_rng([seed, step])
    >>> x_up, target, passes = photo_pair(hr_uint8, 2.0, 48, PhotoDegradation(), rng)
"""

import functools
import io
import math

import numpy as np
import PIL.Image

from asdn_tf.data import photo_mix, resizing
from asdn_tf.io import pixels
from asdn_tf.nn.cubic import cubic

# tf.image.resize's bicubic samples Keys' cubic at multiples of 1/1024 (resize_bicubic_op.cc).
_TABLE_SIZE = 1024


@functools.lru_cache(maxsize=1)
def _cubic_table():
    """resize_bicubic_op.cc's coefficient table for a = -0.5: [i, 0] the weight at distance
    i/1024, [i, 1] at 1 + i/1024 (float32; TF's own arithmetic differs by about 1e-7)."""
    x = (np.arange(_TABLE_SIZE + 1, dtype=np.float64) / _TABLE_SIZE).astype(np.float32)
    return np.stack([cubic(x), cubic(x + np.float32(1))], axis=1)


@functools.lru_cache(maxsize=256)
def tf_resize_matrix(in_size, out_size, method):
    """[out_size, in_size] float32 weights of `tf.image.resize(..., method, antialias=False)`
    along one axis; `method` is "bicubic", "bilinear" or "area" (numpy, read-only)."""
    if method not in ("bicubic", "bilinear", "area"):
        raise ValueError(f"unknown resize method {method!r}")
    matrix = np.zeros((out_size, in_size), np.float32)
    scale = np.float32(in_size) / np.float32(out_size)
    outputs = np.arange(out_size)
    if method == "area":
        # resize_area_op.cc: each output averages the input cells its span [y·s, (y+1)·s) covers.
        for row in outputs:
            start, end = np.float32(row) * scale, np.float32(row + 1) * scale
            for index in range(math.floor(start), math.ceil(end)):
                cover = min(np.float32(index + 1), end) - max(np.float32(index), start)
                matrix[row, min(index, in_size - 1)] += cover / scale
        return _read_only(matrix)
    position = (outputs.astype(np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    floor = np.floor(position)
    delta = position - floor
    floor = floor.astype(np.int64)
    if method == "bilinear":
        lower, upper = np.maximum(floor, 0), np.minimum(np.ceil(position).astype(np.int64),
                                                         in_size - 1)
        np.add.at(matrix, (outputs, lower), 1 - delta)
        np.add.at(matrix, (outputs, upper), delta)
        return _read_only(matrix)
    table = _cubic_table()
    offset = np.rint(delta * np.float32(_TABLE_SIZE)).astype(np.int64)
    weights = np.stack([table[offset, 1], table[offset, 0], table[_TABLE_SIZE - offset, 0],
                        table[_TABLE_SIZE - offset, 1]], axis=1)
    indices = floor[:, None] + np.arange(-1, 3)[None, :]
    # Taps outside the image get no weight and the rest are renormalised (Keys mode in TF).
    inside = (indices >= 0) & (indices < in_size)
    weights = np.where(inside, weights, np.float32(0))
    weights = weights * (np.float32(1) / weights.sum(axis=1, keepdims=True))
    np.add.at(matrix, (np.repeat(outputs, 4), np.clip(indices, 0, in_size - 1).ravel()),
              weights.ravel())
    return _read_only(matrix)


def _read_only(matrix):
    matrix.flags.writeable = False  # cached: shared by every caller
    return matrix


def resize(images, size, method):
    """N×H×W×C float images → N×size float32, as `tf.image.resize(images, size, method,
    antialias=False)` ("bicubic", "bilinear" or "area")."""
    return _apply(images, tf_resize_matrix(images.shape[1], size[0], method),
                  tf_resize_matrix(images.shape[2], size[1], method))


def imresize(images, scale, size):
    """`resizing.imresize` (MATLAB's antialiased bicubic) of N×H×W×C float images to `size`
    at `scale`, in numpy: patches drawn per kernel come in any number, and each new shape
    would compile anew under JAX."""
    return _apply(images, resizing.resize_matrix(images.shape[1], size[0], float(scale)),
                  resizing.resize_matrix(images.shape[2], size[1], float(scale)))


def _apply(images, rows, columns):
    """Each image's rows, then its columns, weighted by [out, in] matrices (BLAS matmuls)."""
    images = np.asarray(images, np.float32)
    count, height, width, channels = images.shape
    resized = np.matmul(rows, images.reshape(count, height, width * channels))
    return np.matmul(columns, resized.reshape(count, len(rows), width, channels))


def downscale(hr, size, scale, kernel):
    """`degradation.downscale` in numpy: "bicubic" is MATLAB's antialiased imresize at
    1/`scale`, the others `tf.image.resize` without antialiasing."""
    if kernel == "bicubic":
        return imresize(hr, 1.0 / scale, size)
    return resize(hr, size, "bicubic" if kernel == "bicubic_noaa" else kernel)


def gaussian_blur(images, sigma, radius):
    """`degradation.gaussian_blur` in numpy: each of N×H×W×C `images` blurred with its own
    `sigma` ([N]; 0 leaves it as it is), `radius` taps each side, reflected at the borders."""
    images = np.asarray(images, np.float32)
    sigma = np.asarray(sigma, np.float32).reshape(-1, 1)
    offsets = np.arange(-radius, radius + 1, dtype=np.float32)[None]
    taps = np.exp(np.float32(-0.5) * np.square(offsets / np.maximum(sigma, np.float32(1e-3))))
    taps = np.where(sigma > 0, taps, (offsets == 0).astype(np.float32))
    taps /= taps.sum(axis=1, keepdims=True)
    padded = np.pad(images, [(0, 0), (radius, radius), (radius, radius), (0, 0)],
                    mode="reflect")
    height, width = images.shape[1:3]
    vertical = sum(taps[:, k, None, None, None] * padded[:, k:k + height]
                   for k in range(2 * radius + 1))
    return sum(taps[:, k, None, None, None] * vertical[:, :, k:k + width]
               for k in range(2 * radius + 1)).astype(np.float32)


def quantize(images):
    """`degradation.quantize` in numpy: the nearest of 256 levels, halves up, float32."""
    return pixels.to_float(pixels.to_uint8(images))


def jpeg(image, quality):
    """One H×W×3 float image, already quantised, JPEG-compressed by PIL at `quality` and
    decoded again (float32)."""
    buffer = io.BytesIO()
    PIL.Image.fromarray(pixels.to_uint8(image)).save(buffer, "JPEG", quality=int(quality))
    return pixels.to_float(np.asarray(PIL.Image.open(buffer).convert("RGB")))


class NumpyMix:
    """`photo_mix`'s operations in numpy and PIL for `count` patches, the draws taken from
    the numpy Generator `rng` in the order `photo_mix.draw` asks for them (the names only
    document them)."""

    def __init__(self, count, rng):
        self.count, self.rng = count, rng

    def uniform(self, name, low=0.0, high=1.0):
        return self.rng.uniform(low, high, self.count)

    def choose(self, name, options):
        return np.asarray(options)[self.rng.integers(len(options), size=self.count)]

    @staticmethod
    def where(condition, x, y):
        return np.where(condition, x, y)

    @staticmethod
    def round_int(values):
        return np.round(values).astype(np.int32)

    def downscale(self, hr, size, scale, kernel):
        lr = np.empty((len(hr), *size, hr.shape[-1]), np.float32)
        for index in np.unique(kernel):
            chosen = kernel == index
            lr[chosen] = downscale(hr[chosen], size, scale, photo_mix.KERNELS[index])
        return lr

    gaussian_blur = staticmethod(gaussian_blur)
    quantize = staticmethod(quantize)

    def add_noise(self, lr, sigma):
        return lr + (sigma[:, None, None, None] / 255.0
                     * self.rng.standard_normal(lr.shape)).astype(np.float32)

    @staticmethod
    def jpeg(lr, quality):
        for index, level in enumerate(quality):
            if level:
                lr[index] = jpeg(lr[index], level)
        return lr


def draw(count, photo, rng):
    """The per-patch draws of `random_lr` for `count` patches (`photo_mix.draw`): a dict of
    [count] arrays "kernel" (names), "blur" (sigma, 0: none), "noise" (sigma in grey levels,
    0: none) and "quality" (JPEG, 0: none)."""
    kernel, blur, noise, quality = photo_mix.draw(photo, NumpyMix(count, rng))
    return {"kernel": np.asarray(photo_mix.KERNELS)[kernel], "blur": blur, "noise": noise,
            "quality": quality}


def random_lr(hr, size, scale, photo, rng):
    """`photo_mix.random_lr` in numpy: N×size×3 float32 LR patches, quantised to 8 bits, from
    N×H×W×3 float HR patches, a degradation drawn per patch from `rng`."""
    return photo_mix.random_lr(hr, size, scale, photo, NumpyMix(len(hr), rng))


def recursion_draw(photo, rng):
    """(k, passes) of one update (`photo_mix.pair_kind`), drawn from the numpy Generator `rng`."""
    kind = photo_mix.pair_kind(photo, rng.random(), int(rng.integers(2)))
    return photo_mix.FACTORS[kind], photo_mix.PASSES[kind]


def photo_pair(hr_patches, scale, patch_size, photo, rng):
    """(x_up, target, passes) float32 of one update at step scale `scale` from N×S×S×3 uint8 HR
    patches (S at least round(p · scale)), as `data._photo_pair` makes them."""
    factor, passes = recursion_draw(photo, rng)
    sides = photo_mix.pair_sides(patch_size, scale, factor)
    hr = pixels.to_float(hr_patches[:, :sides.region, :sides.region])
    lr = random_lr(hr, (sides.lr, sides.lr), scale * factor, photo, rng)
    if passes == 2:
        return (imresize(lr, factor, (sides.first_step,) * 2),
                hr[:, :sides.own_step, :sides.own_step], passes)
    step = (sides.step,) * 2
    target = hr if factor == 1.0 else imresize(hr, 1.0 / factor, step)
    return imresize(lr, scale, step), target, passes
