import math

import numpy as np
import pytest
import tensorflow as tf

from asdn_tf.evaluation.metrics import psnr, rgb_to_y, ssim

RNG = np.random.default_rng(0)


def _random_rgb(height=40, width=48):
    return RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_identical_images():
    image = _random_rgb()
    assert psnr(image, image, crop_border=2) == math.inf
    assert ssim(image, image, crop_border=2) == pytest.approx(1.0)


def test_psnr_of_a_known_mse_on_gray_values():
    hr = np.full((20, 30), 100, np.uint8)
    sr = hr + np.uint8(5)  # MSE 25
    assert psnr(sr, hr, crop_border=0) == pytest.approx(10 * math.log10(255 ** 2 / 25))


def test_rgb_is_measured_on_bt601_y_kept_float():
    assert rgb_to_y(np.array([0, 0, 0])) == pytest.approx(16.0)
    assert rgb_to_y(np.array([255, 255, 255])) == pytest.approx(235.0)
    hr = np.full((20, 30, 3), 100, np.uint8)
    sr = hr + np.uint8(1)
    # One grey level in R, G and B moves Y by 219/255 (not rounded to 1).
    expected = 10 * math.log10(255 ** 2 / (219 / 255) ** 2)
    assert psnr(sr, hr, crop_border=0) == pytest.approx(expected)
    assert psnr(sr, hr, crop_border=0, test_y_channel=False) == pytest.approx(
        10 * math.log10(255 ** 2))


def test_gray_images_are_measured_directly():
    hr = RNG.integers(0, 256, (32, 32), dtype=np.uint8)
    sr = np.clip(hr.astype(int) + RNG.integers(-3, 4, hr.shape), 0, 255).astype(np.uint8)
    mse = np.mean((sr.astype(float) - hr) ** 2)
    assert psnr(sr, hr, crop_border=0) == pytest.approx(10 * math.log10(255 ** 2 / mse))
    assert psnr(sr[..., None], hr[..., None], crop_border=0) == psnr(sr, hr, crop_border=0)
    # The same values as R = G = B go through the Y formula instead.
    as_rgb = psnr(np.repeat(sr[..., None], 3, 2), np.repeat(hr[..., None], 3, 2), crop_border=0)
    assert as_rgb == pytest.approx(psnr(sr, hr, crop_border=0) - 20 * math.log10(219 / 255))


def test_shave_removes_the_border():
    hr = _random_rgb()
    sr = hr.copy()
    sr[:3] = 0
    sr[:, -3:] = 255
    assert psnr(sr, hr, crop_border=3) == math.inf
    assert psnr(sr, hr, crop_border=2) < 40
    assert ssim(sr, hr, crop_border=3) == pytest.approx(1.0)
    assert ssim(sr, hr, crop_border=2) < 1.0


@pytest.mark.parametrize("test_y_channel", [True, False])
def test_ssim_matches_tf_image_ssim(test_y_channel):
    hr = _random_rgb(64, 72)
    sr = np.clip(hr.astype(int) + RNG.integers(-20, 21, hr.shape), 0, 255).astype(np.uint8)
    shaved = [image[4:-4, 4:-4].astype(np.float64) for image in (sr, hr)]
    if test_y_channel:
        shaved = [rgb_to_y(image)[..., None] for image in shaved]
    expected = tf.image.ssim(tf.constant(shaved[0]), tf.constant(shaved[1]), max_val=255.0,
                             filter_size=11, filter_sigma=1.5, k1=0.01, k2=0.03).numpy()
    got = ssim(sr, hr, crop_border=4, test_y_channel=test_y_channel)
    assert got == pytest.approx(expected, abs=1e-6)
    assert 0 < got < 1


def test_ssim_falls_with_noise():
    hr = _random_rgb(64, 64)
    scores = [ssim(np.clip(hr + RNG.normal(0, sigma, hr.shape), 0, 255), hr, crop_border=0)
              for sigma in (2, 10, 40)]
    assert scores[0] > scores[1] > scores[2]


@pytest.mark.parametrize("sr,hr,crop,words", [
    (np.zeros((8, 8)), np.zeros((8, 9)), 0, "same shape"),
    (np.zeros((8, 8, 2)), np.zeros((8, 8, 2)), 0, "H×W"),
    (np.zeros((8, 8)), np.zeros((8, 8)), 4, "cannot shave"),
    (np.zeros((8, 8)), np.zeros((8, 8)), 1.5, "crop_border"),
])
def test_bad_arguments(sr, hr, crop, words):
    with pytest.raises(ValueError, match=words):
        psnr(sr, hr, crop_border=crop)


def test_ssim_needs_a_full_window():
    with pytest.raises(ValueError, match="11×11"):
        ssim(np.zeros((20, 20)), np.zeros((20, 20)), crop_border=5)
