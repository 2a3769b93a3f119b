"""The recursion with an FSDN: its integer factors first (×3.3 = FSDN ×3 then ASDN ×1.1), on the
whole image or by regions, and ASDN alone on request."""

import numpy as np
import pytest

import asdn_tf
from asdn_tf.inference import engine, fsdn_step, recursion
from asdn_tf.nn.config import ModelConfig


@pytest.mark.parametrize("scale, steps", [
    (2, [(2, (20, 20))]),
    (3, [(3, (30, 30))]),
    (2.5, [(2, (20, 20)), (1.25, (25, 25))]),
    (5.7, [(4, (40, 40)), (1.425, (57, 57))]),
    (8, [(4, (40, 40)), (2, (80, 80))]),
    (32, [(4, (40, 40)), (4, (160, 160)), (2, (320, 320))]),
    (1.5, [(1.5, (15, 15))]),
])
def test_the_plan_takes_the_largest_factor_that_fits_then_asdn(scale, steps):
    size = (round(10 * scale), round(10 * scale))
    assert recursion.plan(10, 10, scale, size, (2, 3, 4)) == pytest.approx(steps)


def test_the_plan_is_asdns_alone_without_factors_or_when_they_miss_the_size():
    assert recursion.plan(10, 10, 3.3, (33, 33)) == recursion.plan(10, 10, 3.3, (33, 33), ())
    assert recursion.plan(10, 10, 3, (30, 31), (2, 3, 4)) == [(2.0, (20, 20)), (1.5, (30, 31))]
    step, target = recursion.plan(10, 10, 3.3, (33, 33), (2, 3, 4))[0]
    assert (step, target) == (3, (30, 30)) and isinstance(step, int)


def _networks(config="tiny"):
    asdn = asdn_tf.build_model(config)
    fsdn = asdn_tf.build_fsdn(config, (2, 3, 4))
    rng = np.random.default_rng(0)
    for weight in fsdn.weights:  # away from a fresh build's zero biases
        weight.assign(weight + rng.normal(0, 0.02, weight.shape).astype("float32"))
    return asdn, fsdn


def _image(height=23, width=31, seed=1):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_an_integer_scale_is_the_fsdns_pass():
    asdn, fsdn = _networks()
    image = _image()
    output = asdn_tf.upscale(image, 3, model=asdn, fsdn=fsdn)
    expected = np.clip(np.asarray(fsdn(image[None].astype("float32") / 255, scale=3))[0], 0, 1)
    # The traced pass and the eager one differ in float rounding: a grey level at most.
    difference = np.abs(output.astype(int) - np.round(expected * 255))
    assert difference.max() <= 1 and difference.mean() < 0.01


def test_a_scale_between_runs_the_fsdn_then_asdn_for_the_rest():
    asdn, fsdn = _networks()
    image = _image()
    output = asdn_tf.upscale(image, 3.3, model=asdn, fsdn=fsdn)
    first = engine.run(fsdn_free := asdn, image.astype("float32") / 255, 3, (69, 93), fsdn=fsdn)
    rest = engine.run(fsdn_free, first, 1.1, (76, 102), dtype=np.uint8)
    assert output.shape == (76, 102, 3)
    np.testing.assert_array_equal(output, rest)


def test_asdn_alone_on_request_and_when_no_fsdn_ships():
    asdn, fsdn = _networks()
    image = _image()
    alone = asdn_tf.upscale(image, 3, model=asdn, fsdn=None)
    assert np.array_equal(alone, asdn_tf.upscale(image, 3, model=asdn))  # "auto": none paired
    assert not np.array_equal(alone, asdn_tf.upscale(image, 3, model=asdn, fsdn=fsdn))


def test_regions_give_the_whole_images_pass_without_attention():
    config = ModelConfig(num_blocks=2, num_layers=2, features=8, growth=8, sa_features=4,
                         channel_attention=False)
    _, fsdn = _networks(config)
    image = _image(40, 52).astype("float32") / 255
    whole = fsdn_step.upscale_step(fsdn, image, 2, 0, None, lambda: None)
    radius = 1 + config.num_blocks * config.num_layers
    tiled = fsdn_step.upscale_step(fsdn, image, 2, 16, radius, lambda: None)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_regions_take_the_samples_channel_means():
    _, fsdn = _networks()
    image = _image(90, 100).astype("float32") / 255
    passes = []
    whole = fsdn_step.upscale_step(fsdn, image, 3, 0, None, lambda: None)
    tiled = fsdn_step.upscale_step(fsdn, image, 3, 32, None, lambda: passes.append(1))
    assert len(passes) == fsdn_step.count_passes(fsdn.model_config, (90, 100), 3, 32) == 12
    assert np.abs(tiled - whole).max() < 2 / 255


def test_large_steps_are_cut_into_regions_that_fit_the_budget():
    config = asdn_tf.FSDN(ModelConfig(features=64, growth=32), 2).model_config
    assert fsdn_step.choose_tile(config, (200, 200), 2) == 0
    side = fsdn_step.choose_tile(config, (1200, 1200), 4)
    assert side >= 64
    assert fsdn_step.pass_bytes(config, 4, (side + 24) ** 2) <= engine.tiling.MEMORY_BUDGET


def test_anything_else_as_the_fsdn_is_one_line():
    with pytest.raises(TypeError, match='fsdn must be "auto", None or an FSDN'):
        asdn_tf.upscale(_image(), 2, model=asdn_tf.build_model("tiny"), fsdn="x4.h5")
