"""PSNR and SSIM as the super-resolution literature reports them (docs/protocol.md).

Both take images on the [0, 255] scale (uint8, as an SR output saved to PNG, or float), measure
the BT.601 luma of RGB images (kept float, not rounded) or the values of a gray image directly,
and shave `crop_border` pixels from every border first. SSIM is Wang et al. (2004): an 11×11
Gaussian window with σ = 1.5, valid filtering, the mean of the map. Computed in float64 numpy.

Example:
    >>> psnr(sr, hr, crop_border=4)                        # dB on Y, 4 pixels shaved
    >>> ssim(sr, hr, crop_border=4, test_y_channel=False)  # per channel, averaged
"""

import math

import numpy as np

PEAK = 255.0
_C1 = (0.01 * PEAK) ** 2
_C2 = (0.03 * PEAK) ** 2


def rgb_to_y(image):
    """BT.601 luma in [16, 235] of an RGB image on the [0, 255] scale, as float64."""
    rgb = np.asarray(image, np.float64)
    return 16.0 + rgb @ np.array([65.481, 128.553, 24.966]) / PEAK


def _prepare(sr, hr, crop_border, test_y_channel):
    """Both images as float64 H×W×C planes to compare, borders shaved."""
    sr = np.asarray(sr)
    hr = np.asarray(hr)
    if sr.shape != hr.shape:
        raise ValueError(f"images must have the same shape, got {sr.shape} and {hr.shape}")
    if sr.ndim not in (2, 3) or (sr.ndim == 3 and sr.shape[2] not in (1, 3)):
        raise ValueError(f"images must be H×W (gray), H×W×1 or H×W×3, got shape {sr.shape}")
    if not isinstance(crop_border, int) or crop_border < 0:
        raise ValueError(f"crop_border must be a non-negative integer, got {crop_border!r}")
    height, width = sr.shape[:2]
    if min(height, width) <= 2 * crop_border:
        raise ValueError(f"cannot shave {crop_border} pixels from a {height}×{width} image")
    planes = []
    for image in (sr, hr):
        image = image.reshape(height, width, -1)
        if test_y_channel and image.shape[2] == 3:
            image = rgb_to_y(image)[..., None]
        else:
            image = image.astype(np.float64)
        planes.append(image[crop_border:height - crop_border, crop_border:width - crop_border])
    return planes


def psnr(sr, hr, *, crop_border, test_y_channel=True):
    """Peak signal-to-noise ratio in dB (peak 255); inf for identical images.

    Args:
        sr, hr: arrays H×W or H×W×C (C = 1 or 3) on the [0, 255] scale.
        crop_border: int, pixels shaved from every border (the scale, ceil(s) for decimal s).
        test_y_channel: bool, measure the BT.601 Y of RGB images rather than all channels.
            Gray images are always measured on their values.
    """
    sr, hr = _prepare(sr, hr, crop_border, test_y_channel)
    mse = np.mean((sr - hr) ** 2)
    if mse == 0:
        return math.inf
    return float(10.0 * np.log10(PEAK ** 2 / mse))


def _gaussian_taps(size=11, sigma=1.5):
    offsets = np.arange(size) - (size - 1) / 2
    taps = np.exp(-offsets ** 2 / (2 * sigma ** 2))
    return taps / taps.sum()


def _filter_valid(plane, taps):
    """2-D 'valid' filtering with the separable window taps ⊗ taps (MATLAB filter2)."""
    n = len(taps)
    height, width = plane.shape
    rows = sum(t * plane[i:height - n + 1 + i] for i, t in enumerate(taps))
    return sum(t * rows[:, i:width - n + 1 + i] for i, t in enumerate(taps))


def _ssim_plane(x, y, taps):
    mu_x, mu_y = _filter_valid(x, taps), _filter_valid(y, taps)
    var_x = _filter_valid(x * x, taps) - mu_x ** 2
    var_y = _filter_valid(y * y, taps) - mu_y ** 2
    cov = _filter_valid(x * y, taps) - mu_x * mu_y
    ssim_map = (((2 * mu_x * mu_y + _C1) * (2 * cov + _C2))
                / ((mu_x ** 2 + mu_y ** 2 + _C1) * (var_x + var_y + _C2)))
    return ssim_map.mean()


def ssim(sr, hr, *, crop_border, test_y_channel=True):
    """Structural similarity (Wang et al. 2004), the mean of the valid SSIM map.

    Same arguments as `psnr`. Without `test_y_channel`, the channels' SSIMs are averaged.
    The shaved images must be at least 11×11.
    """
    sr, hr = _prepare(sr, hr, crop_border, test_y_channel)
    taps = _gaussian_taps()
    if min(sr.shape[:2]) < len(taps):
        raise ValueError(f"SSIM needs at least {len(taps)}×{len(taps)} pixels after shaving, "
                         f"got {sr.shape[0]}×{sr.shape[1]}")
    return float(np.mean([_ssim_plane(sr[..., c], hr[..., c], taps)
                          for c in range(sr.shape[2])]))
