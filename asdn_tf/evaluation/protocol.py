"""The benchmark protocol, one image at a time: the literature's (docs/protocol.md).

For an integer scale s the HR image is cropped to a multiple of s; LR = imresize(HR, 1/s)
(MATLAB-exact, ceil(H/s) pixels), quantised to uint8 as the benchmark LR PNGs are; the SR is
made at exactly the HR size and quantised to uint8; PSNR and SSIM are measured on BT.601 Y
(gray images on their values) with ceil(s) pixels shaved from every border. Decimal scales
skip the crop.

Nothing here imports TensorFlow: the LR maker and the super-resolver are arguments, so the
TensorFlow evaluation (asdn_tf/evaluation/benchmark.py) and the JAX trainer's validation run
the same crop, LR size, quantisation and shaved Y metrics.
"""

import math

from asdn_tf.evaluation import metrics
from asdn_tf.io.pixels import to_uint8
from asdn_tf.nn import lfr

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


def crop(hr, scale):
    """`hr` cropped to a multiple of an integer scale (a decimal scale keeps it whole).

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
    return hr


def lr_size(height, width, scale):
    """The LR size of a (cropped) HR image: ceil(H/s) × ceil(W/s)."""
    return math.ceil(height / scale - 1e-9), math.ceil(width / scale - 1e-9)


def sr_image(hr, scale, make_lr, super_resolve):
    """(HR cropped, SR uint8 of its shape) for one uint8 HR image (H×W or H×W×3) at `scale`.

    Args:
        make_lr: callable(cropped hr, lr size) → uint8 LR, H×W×C with C = 1 or 3.
        super_resolve: callable(lr, hr size) → float SR in [0, 1], H×W×C.
    """
    hr = crop(hr, scale)
    lr = make_lr(hr, lr_size(*hr.shape[:2], scale))
    return hr, to_uint8(super_resolve(lr, hr.shape[:2])).reshape(hr.shape)


def y_psnr(sr, hr, scale):
    """PSNR on BT.601 Y (a gray image on its values) with `shave(scale)` pixels left out."""
    return metrics.psnr(sr, hr, crop_border=shave(scale))


def y_ssim(sr, hr, scale):
    """SSIM on Y, with the same border left out."""
    return metrics.ssim(sr, hr, crop_border=shave(scale))
