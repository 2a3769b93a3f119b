import numpy as np
import pytest
import tensorflow as tf

from asdn_tf.evaluation import benchmark
from asdn_tf.data import pipeline as data, degradation
from asdn_tf.nn import config
from asdn_tf.data.config import DataConfig, PhotoDegradation, DEGRADATIONS
from asdn_tf.training.config import TrainConfig
from asdn_tf.data.imresize import imresize
from asdn_tf.inference.engine import upscale_tensor
from asdn_tf.training.train_step import Trainer

PLAIN = PhotoDegradation(clean_probability=0.0, kernels=("bilinear",),
                         blur_probability=0.0, noise_probability=0.0, jpeg_probability=0.0)


def _hr(count=3, size=24, seed=0):
    return tf.constant(np.random.default_rng(seed).random((count, size, size, 3)), tf.float32)


def _reference_blur(image, sigma, radius):
    offsets = np.arange(-radius, radius + 1)
    taps = np.exp(-0.5 * (offsets / sigma) ** 2)
    taps /= taps.sum()
    padded = np.pad(image, [(radius, radius), (radius, radius), (0, 0)], mode="reflect")
    rows = sum(t * padded[radius + o:radius + o + image.shape[0]] for t, o in zip(taps, offsets))
    return sum(t * rows[:, radius + o:radius + o + image.shape[1]] for t, o in zip(taps, offsets))


def test_blur_gives_each_image_its_own_sigma():
    images = _hr(3, 20)
    blurred = degradation.gaussian_blur(images, [0.0, 0.7, 1.5], radius=5).numpy()
    np.testing.assert_allclose(blurred[0], images[0], atol=1e-6)
    small = _hr(2, 3)  # smaller than the radius: reflected again, as np.pad does
    np.testing.assert_allclose(degradation.gaussian_blur(small, [1.0, 1.0], radius=5)[1],
                               _reference_blur(small[1].numpy(), 1.0, 5), atol=1e-5)
    for index, sigma in ((1, 0.7), (2, 1.5)):
        np.testing.assert_allclose(blurred[index], _reference_blur(images[index].numpy(), sigma,
                                                                   5), atol=1e-5)


def test_each_kernel_is_the_resize_it_names():
    hr = _hr()
    np.testing.assert_allclose(degradation.downscale(hr, (12, 12), 2.0, "bicubic"),
                               imresize(hr, scale=0.5), atol=1e-6)
    for kernel, method in (("bicubic_noaa", "bicubic"), ("bilinear", "bilinear"),
                           ("area", "area")):
        np.testing.assert_allclose(degradation.downscale(hr, (12, 12), 2.0, kernel),
                                   tf.image.resize(hr, (12, 12), method, antialias=False),
                                   atol=1e-6)


def test_without_blur_noise_or_jpeg_the_lr_is_the_quantised_kernel():
    hr = _hr()
    lr = degradation.random_lr(hr, (12, 12), 2.0, PLAIN, [1, 2])
    expected = degradation.quantize(tf.image.resize(hr, (12, 12), "bilinear", antialias=False))
    np.testing.assert_allclose(lr, expected, atol=1e-6)


def test_random_lr_is_decided_by_its_seed():
    hr, photo = _hr(8, 30), PhotoDegradation()
    first = degradation.random_lr(hr, (15, 15), 2.0, photo, [4, 1]).numpy()
    np.testing.assert_array_equal(first, degradation.random_lr(hr, (15, 15), 2.0, photo,
                                                               [4, 1]).numpy())
    other = degradation.random_lr(hr, (15, 15), 2.0, photo, [5, 1]).numpy()
    assert np.abs(first - other).max() > 0.01
    assert first.shape == (8, 15, 15, 3) and 0.0 <= first.min() and first.max() <= 1.0
    np.testing.assert_allclose(first * 255.0, np.round(first * 255.0), atol=1e-3)  # 8-bit


def test_random_lr_runs_the_same_inside_dataset_map():
    hr, photo = _hr(4, 30), PhotoDegradation()
    eager = degradation.random_lr(hr, (15, 15), 2.0, photo, [9, 9]).numpy()
    mapped = next(iter(tf.data.Dataset.from_tensors(hr).map(
        lambda batch: degradation.random_lr(batch, (15, 15), 2.0, photo, [9, 9])))).numpy()
    np.testing.assert_allclose(mapped, eager, atol=1e-6)


def test_the_photo_mix_draws_every_kind_of_damage():
    hr = tf.tile(_hr(1, 32), [64, 1, 1, 1])
    clean = {kernel: degradation.quantize(degradation.downscale(hr[:1], (16, 16), 2.0, kernel))
             for kernel in degradation.KERNELS}
    lr = degradation.random_lr(hr, (16, 16), 2.0, PhotoDegradation(), [0, 3]).numpy()
    matches = [next((k for k, c in clean.items() if np.allclose(patch, c[0], atol=1e-6)), None)
               for patch in lr]
    assert 0 < matches.count(None) < len(matches)  # some damaged, some left clean
    assert len({k for k in matches if k}) >= 2  # clean ones come from several kernels
    always_clean = PhotoDegradation(clean_probability=1.0)
    np.testing.assert_allclose(degradation.random_lr(hr, (16, 16), 2.0, always_clean, [0, 3]),
                               tf.tile(clean["bicubic"], [64, 1, 1, 1]), atol=1e-6)


def test_photo_batches_line_up_with_their_targets(t91_subset):
    settings = DataConfig(sources=(str(t91_subset),), patch_size=10, batch_size=2,
                          degradation="photo")
    iterator = iter(data.training_dataset(settings, seed=1))
    for _ in range(6):
        batch = next(iterator)
        level = int(batch["level"][0])
        # LR sides 10, or 6 and 5 for the first step of a ×1.5r or ×2r recursion.
        sides = {data.hr_patch_size(lr_side, level) for lr_side in (10, 6, 5)}
        assert batch["x_up"].shape == batch["hr"].shape
        assert batch["x_up"].shape[0] == 2 and batch["x_up"].shape[1] in sides
        # x_up still follows its HR: a damaged copy, not another patch.
        assert float(tf.reduce_mean(tf.abs(batch["x_up"] - batch["hr"]))) < 0.15


def test_a_recursion_pair_targets_the_clean_image_of_its_first_step():
    hr = tf.cast(tf.round(_hr(2, 96) * 255.0), tf.uint8)
    photo = PhotoDegradation(clean_probability=1.0, recursion_probability=1.0)
    x_up, target, _ = data.training_pair(hr, tf.constant(10), 48, photo=photo, seed=[3, 4])
    side = x_up.shape[1]
    factor = {48: 2.0, 64: 1.5}[side]  # ×2 step, LR side 24 or 32
    region = tf.cast(hr, tf.float32) / 255.0
    np.testing.assert_allclose(target, imresize(region, scale=1 / factor, size=(side, side)),
                               atol=1e-6)
    lr = degradation.quantize(imresize(region, scale=1 / (2 * factor), size=(side // 2,) * 2))
    np.testing.assert_allclose(x_up, imresize(lr, scale=2.0, size=(side, side)), atol=1e-5)


def test_fsdn_batches_take_the_photo_mix(t91_subset):
    settings = DataConfig(sources=(str(t91_subset),), patch_size=8, batch_size=2,
                          degradation="photo")
    batch = next(iter(data.training_dataset(settings, fixed_scale=2)))
    assert batch["lr"].shape == (2, 8, 8, 3) and batch["hr"].shape == (2, 16, 16, 3)


@pytest.mark.parametrize("kwargs, message", [
    ({"degradation": "jpeg"}, "degradation must be one of bicubic, photo"),
    ({"degradation": "photo", "degrade_in_step": True}, "degrade_in_step makes bicubic LR"),
])
def test_bad_degradation_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DataConfig(**kwargs)


def test_the_protocol_degradation_is_the_benchmarks_lr():
    hr = (np.random.default_rng(1).random((24, 18, 3)) * 255).astype(np.uint8)
    np.testing.assert_array_equal(degradation.fixed_lr(hr, (8, 6), 3.0, "bicubic"),
                                  benchmark.benchmark_pair(hr, 3)[1])


def test_evaluation_degradations_are_fixed_and_differ():
    hr = (np.random.default_rng(2).random((32, 32)) * 255).astype(np.uint8)  # gray
    made = {name: degradation.fixed_lr(hr, (16, 16), 2.0, name)
            for name in degradation.EVALUATION}
    for name, lr in made.items():
        assert lr.shape == (16, 16, 1) and lr.dtype == np.uint8
        np.testing.assert_array_equal(lr, degradation.fixed_lr(hr, (16, 16), 2.0, name))
    for name in ("bicubic_noaa", "jpeg75", "blur_noise"):
        assert np.abs(made[name].astype(int) - made["bicubic"]).max() > 2, name
    with pytest.raises(ValueError, match="unknown degradation 'sharp'"):
        degradation.fixed_lr(hr, (16, 16), 2.0, "sharp")


def test_an_own_step_pair_trains_the_step_inference_runs_second(tiny_model):
    """An own-step pair (passes 2): x_up is the ×2 first step's input, from the LR decimated by
    2r; the trainer's own first step turns it into the input inference gives the ×r step."""
    level, patch = 4, 48  # r = 1.4: LR 24, first step to 48, output round(24 · 2.8) = 67
    hr = tf.cast(tf.round(_hr(2, 96) * 255.0), tf.uint8)
    photo = PhotoDegradation(clean_probability=1.0, recursion_probability=0.0,
                             own_step_probability=1.0)
    x_up, target, passes = data.training_pair(hr, tf.constant(level), patch, photo=photo,
                                              seed=[3, 4])
    assert int(passes) == 2 and x_up.shape == (2, 48, 48, 3) and target.shape == (2, 67, 67, 3)
    region = tf.cast(hr[:, :67, :67], tf.float32) / 255.0
    np.testing.assert_allclose(target, region)
    lr = degradation.quantize(imresize(region, scale=1 / 2.8, size=(24, 24)))
    np.testing.assert_allclose(x_up, imresize(lr, scale=2.0, size=(48, 48)), atol=1e-5)

    step_input = Trainer(tiny_model).own_first_step(x_up, level, (67, 67))
    trained = tf.clip_by_value(tiny_model(step_input, level=level), 0.0, 1.0)
    np.testing.assert_allclose(trained, upscale_tensor(tiny_model, lr, 2.8), atol=1e-5)
    # The network made the step's input: it is not the LR brought up by bicubic alone.
    bicubic = imresize(imresize(lr, scale=2.0, size=(48, 48)), scale=1.4, size=(67, 67))
    assert float(tf.reduce_max(tf.abs(step_input - bicubic))) > 1e-3


@pytest.mark.slow
def test_training_runs_own_step_updates_as_their_own_step(tmp_path, t91_subset, monkeypatch):
    """With own-step pairs in the mix the training loop hands each update its passes: the
    two-pass updates get a step of their own, traced apart from the plain ones."""
    from asdn_tf.training import train_tf
    from asdn_tf.training import train_step
    monkeypatch.setitem(DEGRADATIONS, "photo", PhotoDegradation(
        recursion_probability=0.0, own_step_probability=0.5))
    seen = []
    real_step = train_step.Trainer.train_step

    def recording(self, batch, level=None, passes=1):
        seen.append((batch["x_up"].shape[1] < batch["hr"].shape[1], passes))
        return real_step(self, batch, level, passes)

    monkeypatch.setattr(train_step.Trainer, "train_step", recording)
    train_tf.train(config.preset("tiny"),
                DataConfig(sources=(str(t91_subset),), patch_size=8, batch_size=2,
                           degradation="photo"),
                TrainConfig(steps=8, checkpoint_every=8, log_every=8, validate_every=0),
                tmp_path / "run")
    # An own-step update's x_up is its first step's input, smaller than its target.
    assert {passes for _, passes in seen} == {1, 2}
    assert all(smaller == (passes == 2) for smaller, passes in seen)
    assert (tmp_path / "run" / "final.weights.h5").exists()


def test_photo_aliased_draws_bicubic_without_antialiasing_twice_as_often():
    """Its kernel draw: among the degraded patches 2/5 bicubic_noaa (photo: 1/4), 2/5 the 2×2
    box that bilinear and area are at ×2 (photo: 1/2)."""
    import numpy as np

    from asdn_tf.data import photo_mix
    from asdn_tf.data.config import DEGRADATIONS, DataConfig
    from asdn_tf.data.photo_degradation import NumpyMix

    assert DataConfig(degradation="photo_aliased").degradation == "photo_aliased"
    shares = {}
    for name in ("photo", "photo_aliased"):
        kernel, blur, *_ = photo_mix.draw(DEGRADATIONS[name],
                                          NumpyMix(40000, np.random.default_rng(0)))
        degraded = kernel[blur > 0]  # blur is drawn only for degraded patches
        shares[name] = np.mean(degraded == photo_mix.KERNELS.index("bicubic_noaa"))
    assert abs(shares["photo"] - 0.25) < 0.02 and abs(shares["photo_aliased"] - 0.4) < 0.02
