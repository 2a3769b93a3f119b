"""`--degradation=photo` without TensorFlow (asdn_tf.data.photo_degradation): each numpy kernel
against the TensorFlow op it stands for, the frequencies of the draws against
`PhotoDegradation`, and a JAX training run with TensorFlow unimportable."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from asdn_tf.evaluation import benchmark
from asdn_tf.data import pipeline as data, degradation, folder_data
from asdn_tf.data.config import DataConfig, PhotoDegradation
from asdn_tf.data import photo_degradation as photo_np
from conftest import BLOCK_TENSORFLOW, ONE_LEVEL, run_jax
from jax_cache import jax_compilation_cache  # noqa: F401 (autouse)

# Deterministic mixes: no blur, noise, JPEG or recursion, so TF and numpy make the same pair.
PLAIN = PhotoDegradation(clean_probability=0.0, blur_probability=0.0,
                         noise_probability=0.0, jpeg_probability=0.0,
                         recursion_probability=0.0)


def _images(shape, seed=0):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


@pytest.mark.parametrize("method", ["bicubic", "bilinear", "area"])
@pytest.mark.parametrize("in_size,out_size", [((24, 24), (12, 12)), ((31, 17), (8, 9)),
                                              ((96, 96), (12, 12)), ((20, 20), (7, 11)),
                                              ((10, 10), (23, 17))])
def test_resize_is_tf_image_resize_without_antialiasing(method, in_size, out_size):
    images = _images((2, *in_size, 3))
    np.testing.assert_allclose(photo_np.resize(images, out_size, method),
                               tf.image.resize(images, out_size, method, antialias=False),
                               atol=1e-5)


# Not "bicubic": MATLAB's imresize, checked against MATLAB in both forms (test_imresize.py,
# test_resizing.py).
@pytest.mark.parametrize("kernel", degradation.KERNELS[1:])
def test_each_kernel_is_degradations(kernel):
    hr = _images((2, 36, 36, 3))
    np.testing.assert_allclose(photo_np.downscale(hr, (12, 12), 3.0, kernel),
                               degradation.downscale(hr, (12, 12), 3.0, kernel), atol=1e-5)


def test_blur_is_degradations():
    images = _images((3, 20, 20, 3))
    sigma = [0.0, 0.7, 1.2]
    blurred = photo_np.gaussian_blur(images, sigma, 4)
    np.testing.assert_array_equal(blurred[0], images[0])
    np.testing.assert_allclose(blurred, degradation.gaussian_blur(images, sigma, 4), atol=1e-6)
    small = _images((2, 3, 3, 3))  # smaller than the radius: reflected again
    np.testing.assert_allclose(photo_np.gaussian_blur(small, [1.0, 0.5], 5),
                               degradation.gaussian_blur(small, [1.0, 0.5], 5), atol=1e-6)


def test_quantize_is_degradations():
    values = np.concatenate([_images((1, 8, 8, 3)).ravel() * 1.2 - 0.1,
                             (np.arange(256) + 0.5) / 255.0]).astype(np.float32)
    np.testing.assert_array_equal(photo_np.quantize(values), degradation.quantize(values))


@pytest.mark.parametrize("quality", [40, 75, 95])
def test_jpeg_is_tensorflows_up_to_its_fast_idct(datasets_dir, quality):
    """PIL writes the bytes TensorFlow writes and decodes them with the accurate integer IDCT;
    `tf.image.adjust_jpeg_quality` decodes with the fast one: close, not equal."""
    hr = benchmark.load_set(datasets_dir / "Set5")[0][1][:48, :64]
    image = photo_np.quantize(hr / 255.0)
    ours = photo_np.jpeg(image, quality)
    accurate = tf.io.decode_jpeg(tf.io.encode_jpeg(hr, quality=quality),
                                 dct_method="INTEGER_ACCURATE").numpy()
    np.testing.assert_array_equal(ours, accurate / np.float32(255))
    theirs = tf.image.adjust_jpeg_quality(image, quality).numpy()
    assert _psnr(ours, theirs) > 42.0  # measured 43.6 to 51 dB on this image


def _psnr(first, second):
    return 10 * np.log10(1 / np.mean(np.square(first - second)))


def test_draws_follow_the_config():
    photo, count = PhotoDegradation(), 40_000
    rng = np.random.default_rng(0)
    draws = photo_np.draw(count, photo, rng)
    tolerance = 4 * np.sqrt(0.25 / count)  # 4 standard deviations of a frequency at most
    untouched = ((draws["kernel"] == "bicubic") & (draws["blur"] == 0) & (draws["noise"] == 0)
                 & (draws["quality"] == 0))  # drawn clean, or bicubic with nothing after
    share = 1 - photo.clean_probability
    for kernel in photo.kernels:
        expected = photo.clean_probability + share / 4 if kernel == "bicubic" else share / 4
        assert abs(np.mean(draws["kernel"] == kernel) - expected) < tolerance
    for key, probability, (low, high) in (
            ("blur", photo.blur_probability, photo.blur_sigma),
            ("noise", photo.noise_probability, photo.noise_sigma),
            ("quality", photo.jpeg_probability, photo.jpeg_quality)):
        applied = draws[key] > 0
        assert abs(np.mean(applied) - share * probability) < tolerance, key  # never if clean
        assert low <= draws[key][applied].min() and draws[key][applied].max() <= high, key
    assert abs(np.mean(untouched) - photo.clean_probability
               - share / 4 * (1 - photo.blur_probability) * (1 - photo.noise_probability)
               * (1 - photo.jpeg_probability)) < tolerance
    photo = dataclasses.replace(photo, own_step_probability=0.3)
    draws = [photo_np.recursion_draw(photo, rng) for _ in range(count)]
    plain = 1 - photo.recursion_probability - photo.own_step_probability
    for draw, expected in (((1.0, 1), plain), ((1.5, 1), photo.recursion_probability / 2),
                           ((2.0, 1), photo.recursion_probability / 2),
                           ((2.0, 2), photo.own_step_probability)):
        assert abs(np.mean([d == draw for d in draws]) - expected) < tolerance, draw


@pytest.mark.parametrize("photo", [
    dataclasses.replace(PLAIN, kernels=(kernel,)) for kernel in degradation.KERNELS[1:]]
    + [dataclasses.replace(PLAIN, clean_probability=1.0)],
    ids=list(degradation.KERNELS[1:]) + ["clean"])
def test_pair_is_datas_without_random_parts(photo):
    """With one kernel and no blur, noise, JPEG or recursion (or all clean) nothing is left to
    chance: the pair is TensorFlow's."""
    level, patch = 4, 8
    size = folder_data.hr_patch_size(patch, level)
    hr = np.random.default_rng(1).integers(0, 256, (3, size, size, 3), np.uint8)
    x_up, target, _ = folder_data.training_pair(hr, level, patch, photo=photo,
                                                rng=np.random.default_rng(2))
    expected_x_up, expected_target, _ = data.training_pair(hr, level, patch, photo=photo,
                                                           seed=[2, 0])
    np.testing.assert_allclose(target, expected_target, atol=1e-7)
    np.testing.assert_allclose(x_up, expected_x_up, atol=1e-5)


def test_the_mix_draws_a_kernel_per_patch():
    level, patch, count = 4, 8, 16
    scale = folder_data.lfr.level_scales()[level]
    size = folder_data.hr_patch_size(patch, level)
    hr = np.random.default_rng(1).integers(0, 256, (count, size, size, 3), np.uint8)
    x_up, _, _ = folder_data.training_pair(hr, level, patch, photo=PLAIN,
                                           rng=np.random.default_rng(2))
    # The same Generator state again: the recursion draw, then the patches' draws.
    replay = np.random.default_rng(2)
    photo_np.recursion_draw(PLAIN, replay)
    kernels = photo_np.draw(count, PLAIN, replay)["kernel"]
    assert set(kernels) == set(degradation.KERNELS)
    for index, kernel in enumerate(kernels):
        lr = degradation.quantize(degradation.downscale(
            hr[index:index + 1] / np.float32(255), (patch, patch), scale, kernel))
        np.testing.assert_allclose(x_up[index:index + 1],
                                   data.imresize(lr, scale=scale, size=(size, size)),
                                   atol=1e-5)


def test_a_recursion_pair_is_datas():
    """The first step of a ×1.5r or ×2r recursion: the LR decimated by r·k, the target the HR
    brought down by k, both of TensorFlow's sizes and values."""
    photo = dataclasses.replace(PLAIN, kernels=("bilinear",), recursion_probability=1.0)
    level, patch = 6, 8
    size = folder_data.hr_patch_size(patch, level)
    hr = np.random.default_rng(1).integers(0, 256, (2, size, size, 3), np.uint8)
    sides = set()
    for seed in range(12):
        x_up, target, _ = folder_data.training_pair(hr, level, patch, photo=photo,
                                                    rng=np.random.default_rng(seed))
        sides.add(x_up.shape[1])
        for tf_seed in range(12):  # a TF seed that drew the same k
            expected_x_up, expected_target, _ = data.training_pair(
                hr, level, patch, photo=photo, seed=[tf_seed, 0])
            if expected_x_up.shape == x_up.shape:
                break
        np.testing.assert_allclose(target, expected_target, atol=1e-6)
        np.testing.assert_allclose(x_up, expected_x_up, atol=1e-5)
    assert len(sides) == 2 and max(sides) < size


def test_an_own_step_pair_is_datas():
    """The second step of a ×2r recursion: x_up the ×2 first step's input from the LR
    decimated by 2r, the target the HR of round(2r · LR side), as TensorFlow makes them."""
    photo = dataclasses.replace(PLAIN, kernels=("bilinear",), own_step_probability=1.0)
    level, patch = 6, 8
    size = folder_data.hr_patch_size(patch, level)
    hr = np.random.default_rng(1).integers(0, 256, (2, size, size, 3), np.uint8)
    x_up, target, passes = folder_data.training_pair(hr, level, patch, photo=photo,
                                                     rng=np.random.default_rng(0))
    expected_x_up, expected_target, expected_passes = data.training_pair(
        hr, level, patch, photo=photo, seed=[0, 0])
    assert passes == int(expected_passes) == 2
    assert x_up.shape[1] == 8 and target.shape[1] == round(4 * 2 * 1.6)
    np.testing.assert_allclose(target, expected_target, atol=1e-7)
    np.testing.assert_allclose(x_up, expected_x_up, atol=1e-5)


def test_photo_batches_are_decided_by_seed_and_step():
    images = [np.random.default_rng(i).integers(0, 256, (40, 48, 3), np.uint8) for i in range(3)]
    photo = DataConfig(patch_size=8, batch_size=4, degradation="photo")
    first = folder_data.training_batch(images, photo, step=5, seed=1)
    again = folder_data.training_batch(images, photo, step=5, seed=1)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    bicubic = folder_data.training_batch(images, dataclasses.replace(photo,
                                                                     degradation="bicubic"),
                                         step=5, seed=1)
    assert first["level"][0] == bicubic["level"][0]  # the photo draws come after the patches'
    assert not np.array_equal(first["x_up"], bicubic["x_up"])


@pytest.mark.slow
def test_trains_under_jax_without_tensorflow(tmp_path, image_folder):
    result = run_jax(BLOCK_TENSORFLOW + f"""
import sys
from asdn_tf.nn import config
from asdn_tf.data.config import DataConfig, PhotoDegradation
from asdn_tf.training.config import TrainConfig
from asdn_tf.training import train_jax
data_config = DataConfig(sources=(sys.argv[1],), patch_size=8, batch_size=2,
                         level_weights={ONE_LEVEL}, degradation="photo")
train_config = TrainConfig(steps=4, validate_every=0, log_every=1)
train_jax.train(config.preset("tiny"), data_config, train_config, sys.argv[2],
                preset_name="tiny")
assert not [name for name in sys.modules if name.startswith("tensorflow")]
""", image_folder, tmp_path / "run")
    assert "4/4 loss" in result.stderr
    assert (tmp_path / "run" / "final.weights.h5").exists()
