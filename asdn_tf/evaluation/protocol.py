"""The benchmark protocol, one image at a time: the literature's (../shared/docs/ASDN.md §7).

For an integer scale s the HR image is cropped to a multiple of s; LR = imresize(HR, 1/s)
(MATLAB-exact, ceil(H/s) pixels), quantised to uint8 as the benchmark LR PNGs are; the SR is
made at exactly the HR size and quantised to uint8; PSNR and SSIM are measured on BT.601 Y
(gray images on their values) with ceil(s) pixels shaved from every border. Decimal scales
skip the crop.
"""

import math

import numpy as np

from asdn_tf.data import degradation as degradation_lib
from asdn_tf.data.imresize import imresize
from asdn_tf.evaluation import metrics
from asdn_tf.inference.engine import compiled_upscaler
from asdn_tf.io.pixels import to_float, to_rgb, to_uint8
from asdn_tf.nn import lfr
from asdn_tf.nn.model import ASDN

METHODS = ("bicubic", "asdn")


def parse_scales(values):
    """Scales as floats from numbers or strings ("2", "1.5"); raises ValueError naming a bad one."""
    scales = [lfr.check_scale(value) for value in values]
    if not scales:
        raise ValueError("no scales given")
    return scales


def shave(scale):
    """Border pixels left out of the metrics: s, or ceil(s) for a decimal scale."""
    return math.ceil(scale - 1e-9)


def benchmark_pair(hr, scale, degradation="bicubic"):
    """(HR cropped to a multiple of an integer scale, LR uint8 of ceil(H/s) × ceil(W/s)).

    The LR is the protocol's (MATLAB bicubic, quantised) or another of
    `degradation.EVALUATION` ("bicubic_noaa", "jpeg75", "blur_noise").

    Raises:
        ValueError: the image is too small to measure at `scale` (the message says why).
    """
    original = hr.shape[:2]
    if float(scale).is_integer():
        factor = int(scale)
        height, width = hr.shape[:2]
        hr = hr[:height - height % factor, :width - width % factor]
    height, width = hr.shape[:2]
    border = shave(scale)
    if min(height, width) <= 2 * border:
        raise ValueError(f"{original[0]}×{original[1]} pixels is too small for ×{scale:g}: the "
                         f"protocol crops it to {height}×{width} and shaves {border} pixels "
                         "from each border, which leaves nothing to measure")
    size = (math.ceil(height / scale - 1e-9), math.ceil(width / scale - 1e-9))
    return hr, degradation_lib.fixed_lr(hr, size, scale, degradation)


def super_resolve(lr, scale, size, method, model=None):
    """LR uint8 H×W×C (C = 1 or 3) → float32 size×C SR image in [0, 1].

    A gray image goes through the model as R = G = B and comes back as the mean of the three.
    """
    pixels = to_float(lr)
    if method == "bicubic":
        return imresize(pixels, scale=scale, size=size).numpy()
    rgb = to_rgb(pixels)
    if isinstance(model, ASDN):
        # One graph for every image, size and scale (as float32, as `asdn_tf.upscale` takes
        # it): nothing is traced per image.
        output = compiled_upscaler(model)(rgb[None], float(scale), size)[0].numpy()
    else:  # FSDN: a fixed-scale network on the LR image.
        if float(scale) != model.scale:
            raise ValueError(f"these are FSDN weights for ×{model.scale} only; measure them "
                             f"with --scales={model.scale}, or use ASDN weights for ×{scale:g}")
        output = np.clip(np.asarray(model(rgb[None]), np.float32)[0], 0.0, 1.0)
    return output.mean(axis=2, keepdims=True) if pixels.shape[2] == 1 else output


def measure(hr, scale, method, model=None, degradation="bicubic"):
    """(PSNR, SSIM, SR uint8) of one HR image (uint8 H×W or H×W×3) at `scale`, its LR made by
    `degradation` (the protocol's by default)."""
    hr, lr = benchmark_pair(hr, scale, degradation)
    sr = super_resolve(lr, scale, hr.shape[:2], method, model)
    sr = to_uint8(sr).reshape(hr.shape)
    border = shave(scale)
    return (metrics.psnr(sr, hr, crop_border=border), metrics.ssim(sr, hr, crop_border=border),
            sr)
