"""How LR images are made from HR ones: the benchmark's bicubic, or a random mix for photos.

Training draws a degradation per patch (`random_lr`, inside `tf.data`: the mix of
`asdn_tf.data.photo_mix` on TensorFlow's operations); evaluation applies a named, fixed one to
whole images (`fixed_lr`). The ranges of the photo mix live in
`asdn_tf.data.config.PhotoDegradation`; the named evaluation degradations in `EVALUATION`.

Photos met in practice were downscaled by other software (bicubic without antialiasing,
bilinear, area), slightly blurred, noisy and JPEG-compressed; a network trained only on the
benchmark's antialiased bicubic sharpens those artefacts (BSRGAN and Real-ESRGAN train on such
a mix for the same reason). The order here: downscale, blur, noise, 8-bit quantisation, JPEG.

Example:
    >>> lr = fixed_lr(hr_uint8, (h // 2, w // 2), 2.0, "jpeg75")   # uint8, for evaluate
"""

import math

import numpy as np
import tensorflow as tf

from asdn_tf.io import pixels
from asdn_tf.data import photo_mix
from asdn_tf.data.imresize import imresize
from asdn_tf.data.photo_mix import KERNELS

# Named LR makers for `evaluate --degradation`: (kernel, blur sigma in LR pixels, noise sigma in
# [0, 1] units, JPEG quality or 0). "bicubic" is the literature's protocol.
EVALUATION = {
    "bicubic": ("bicubic", 0.0, 0.0, 0),
    "bicubic_noaa": ("bicubic_noaa", 0.0, 0.0, 0),
    "jpeg75": ("bicubic", 0.0, 0.0, 75),
    "blur_noise": ("bicubic", 1.0, 2.0 / 255.0, 0),
}
DESCRIPTIONS = {
    "bicubic": "MATLAB imresize, antialiased: the literature's protocol",
    "bicubic_noaa": "bicubic without antialiasing, as tf.image.resize and most tools",
    "jpeg75": "the protocol's LR saved as JPEG quality 75",
    "blur_noise": "the protocol's LR blurred (Gaussian sigma 1 pixel) plus noise sigma 2/255",
}


def check_name(name, choices=tuple(EVALUATION)):
    """Returns `name` if it is one of `choices`; raises ValueError naming them otherwise."""
    if name not in choices:
        raise ValueError(f"unknown degradation {name!r}; choose one of {', '.join(choices)}")
    return name


def downscale(hr, size, scale, kernel):
    """N×H×W×C float images → N×size float32 with one of `KERNELS` ("bicubic" is MATLAB's
    antialiased imresize at 1/`scale`; the others are `tf.image.resize` without antialiasing)."""
    if kernel == "bicubic":
        return imresize(hr, scale=1.0 / scale, size=size)
    method = "bicubic" if kernel == "bicubic_noaa" else kernel
    return tf.cast(tf.image.resize(hr, size, method=method, antialias=False), tf.float32)


def gaussian_blur(images, sigma, radius):
    """Blurs each of N×H×W×C `images` with its own Gaussian `sigma` (shape [N]; 0 leaves the
    image as it is) of at most `radius` pixels, reflecting at the borders."""
    images = tf.convert_to_tensor(images, tf.float32)
    sigma = tf.reshape(tf.cast(sigma, tf.float32), [-1, 1])
    offsets = tf.range(-radius, radius + 1, dtype=tf.float32)[None]
    taps = tf.exp(-0.5 * tf.square(offsets / tf.maximum(sigma, 1e-3)))
    taps = tf.where(sigma > 0, taps, tf.cast(tf.equal(offsets, 0.0), tf.float32))
    taps /= tf.reduce_sum(taps, axis=1, keepdims=True)  # [N, 2r + 1]
    shape = tf.shape(images)
    count, channels = shape[0], images.shape[-1]
    # One depthwise convolution blurs every image with its own kernel: images become channels.
    stacked = tf.transpose(images, [1, 2, 0, 3])
    stacked = tf.reshape(stacked, [1, shape[1], shape[2], count * channels])
    kernel = tf.repeat(taps, channels, axis=0)  # [N·C, 2r + 1], image-major as the channels
    padded = _reflect(_reflect(stacked, radius, axis=1), radius, axis=2)
    vertical = tf.transpose(kernel)[:, None, :, None]
    horizontal = tf.transpose(kernel)[None, :, :, None]
    blurred = tf.nn.depthwise_conv2d(padded, vertical, [1, 1, 1, 1], "VALID")
    blurred = tf.nn.depthwise_conv2d(blurred, horizontal, [1, 1, 1, 1], "VALID")
    blurred = tf.reshape(blurred, [shape[1], shape[2], count, channels])
    return tf.transpose(blurred, [2, 0, 1, 3])


def _reflect(images, radius, axis):
    """Pads `axis` by `radius` on both sides, mirrored without repeating the edge, as
    `tf.pad(..., "REFLECT")` does, but for any size: patches smaller than the radius reflect
    again (`np.pad(mode="reflect")`)."""
    size = tf.shape(images)[axis]
    period = tf.maximum(2 * (size - 1), 1)
    index = tf.math.floormod(tf.range(-radius, size + radius), period)
    index = tf.minimum(tf.where(index >= size, period - index, index), size - 1)
    return tf.gather(images, index, axis=axis)


def quantize(images):
    """Float [0, 1] → the nearest of 256 levels (`pixels.to_uint8_ops`), still float32."""
    return pixels.to_float_ops(pixels.to_uint8_ops(images))


def jpeg(images, quality):
    """JPEG-compresses each of N×H×W×3 float `images` at its own `quality` ([N] int32, 0: no
    compression) and decodes it again."""
    def one(args):
        image, level = args
        return tf.cond(level > 0,
                       lambda: tf.image.adjust_jpeg_quality(image, level),
                       lambda: image)

    return tf.map_fn(one, (images, tf.cast(quality, tf.int32)),
                     fn_output_signature=tf.TensorSpec(images.shape[1:], tf.float32))


class TensorFlowMix:
    """`photo_mix`'s operations in TensorFlow for N patches, stateless: every draw comes from
    its own part of `seed`, so the same seed gives the same LR, eagerly or in a graph."""

    # The part of the seed each draw takes.
    _SEEDS = {"kernel": 0, "blur applied": 1, "blur": 2, "noise applied": 3, "noise": 4,
              "noise field": 5, "jpeg applied": 6, "jpeg": 7, "clean": 8}

    def __init__(self, count, seed):
        self.count = count
        self.seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 9)

    def uniform(self, name, low=0.0, high=1.0):
        return tf.random.stateless_uniform([self.count], self.seeds[self._SEEDS[name]], low, high)

    def choose(self, name, options):
        return tf.gather(options, tf.random.stateless_uniform(
            [self.count], self.seeds[self._SEEDS[name]], 0, len(options), tf.int32))

    @staticmethod
    def where(condition, x, y):
        return tf.where(condition, x, y)

    @staticmethod
    def round_int(values):
        return tf.cast(tf.round(values), tf.int32)

    def downscale(self, hr, size, scale, kernel):
        candidates = tf.stack([downscale(hr, size, scale, name) for name in KERNELS])
        return tf.gather_nd(tf.transpose(candidates, [1, 0, 2, 3, 4]),
                            tf.stack([tf.range(self.count), kernel], axis=1))

    gaussian_blur = staticmethod(gaussian_blur)
    quantize = staticmethod(quantize)
    jpeg = staticmethod(jpeg)

    def add_noise(self, lr, sigma):
        return lr + sigma[:, None, None, None] / 255.0 * tf.random.stateless_normal(
            tf.shape(lr), self.seeds[self._SEEDS["noise field"]])


def random_lr(hr, size, scale, photo, seed):
    """LR patches made from N×H×W×3 float HR patches by the photo mix (`photo_mix.random_lr`),
    drawn per patch.

    Args:
        hr: float32 N×H×W×3 in [0, 1].
        size: (height, width) of the LR patches.
        scale: float or scalar tensor, HR / LR.
        photo: `asdn_tf.data.config.PhotoDegradation`, the ranges.
        seed: int32 [2] tensor; the draws are stateless, so the same seed gives the same LR.

    Returns:
        float32 N×size×3 in [0, 1], quantised to 8 bits.
    """
    return photo_mix.random_lr(hr, size, scale, photo, TensorFlowMix(tf.shape(hr)[0], seed))


def fixed_lr(hr, size, scale, name, seed=0):
    """uint8 LR image of `size` made from a uint8 H×W×C HR image by the named degradation
    (`EVALUATION`); the noise, if any, is drawn from `seed` so every run measures the same LR."""
    kernel, sigma, noise, quality = EVALUATION[check_name(name)]
    channels = hr.shape[2] if hr.ndim == 3 else 1
    pixels = tf.constant(hr.reshape(*hr.shape[:2], channels), tf.float32)[None] / 255.0
    lr = downscale(pixels, size, scale, kernel)
    if sigma:
        lr = gaussian_blur(lr, [sigma], math.ceil(3 * sigma))
    if noise:
        lr += noise * tf.random.stateless_normal(tf.shape(lr), [seed, 0])
    lr = quantize(lr)
    if quality:
        lr = quantize(tf.image.adjust_jpeg_quality(lr[0], quality)[None])
    return np.asarray(tf.round(lr[0] * 255.0), np.uint8)
