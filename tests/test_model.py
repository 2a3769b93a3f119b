import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

import asdn_tf
from asdn_tf.inference import weights_io
from asdn_tf.nn import config, cost, lfr
from asdn_tf.nn.model import flops_per_pixel


def _x(h=9, w=11, batch=1, seed=0):
    return np.random.default_rng(seed).random((batch, h, w, 3), dtype=np.float32)


@pytest.mark.slow
def test_preset_sizes():
    paper = asdn_tf.build_model("paper")
    assert 19e6 <= paper.count_params() <= 23e6
    assert asdn_tf.build_model("default").count_params() > 50_000
    tiny = asdn_tf.build_model("tiny")
    assert 0 < tiny.count_params() < 20_000
    assert flops_per_pixel(config.preset("paper")) == pytest.approx(44e6, rel=0.05)


@pytest.mark.parametrize("changes", [{}, {"channel_attention": False},
                                     {"spatial_attention": False, "ca_reduction": 2}])
def test_one_walk_of_the_architecture_matches_the_built_network(changes):
    """`cost.architecture_cost` is what every cost figure reads: its parameters are the built
    network's, its trunk channels the trunk's output, and model_cost and flops_per_pixel are
    its figures."""
    model_config = config.ModelConfig(**{**config.preset("tiny").to_dict(), **changes})
    found = cost.architecture_cost(model_config)
    model = asdn_tf.build_model(model_config)
    assert found.parameters == model.count_params()
    assert found.trunk_channels == model.trunk.output_channels
    assert config.model_cost(model_config) == (found.parameters, found.activation_bytes)
    assert flops_per_pixel(model_config) == found.flops_per_pixel


def test_every_branch_is_built(tiny_model):
    for branch in tiny_model.branches:
        assert branch.built and branch.count_params() > 0


@pytest.mark.parametrize("h,w", [(5, 5), (9, 11), (16, 7)])
@pytest.mark.parametrize("scale", [1.0001, 1.1, 1.27, 1.5, 1.95, 2.0])
def test_output_keeps_the_input_size(tiny_model, h, w, scale):
    assert tuple(tiny_model(_x(h, w, 2), scale=scale).shape) == (2, h, w, 3)


def test_level_scale_equals_that_branch(tiny_model):
    x = _x()
    features = tiny_model.trunk(x)
    for level in range(1, 11):
        r = lfr.level_scales()[level]
        expected = tiny_model.branches[level]([features, x])
        np.testing.assert_allclose(tiny_model(x, scale=r), expected, atol=1e-6)
        np.testing.assert_allclose(tiny_model(x, scale=tf.constant(r, tf.float32)), expected,
                                   atol=1e-6)


def test_blend_is_continuous_across_levels(tiny_model):
    x = _x()
    for r in lfr.level_scales()[1:-1]:
        below = tiny_model(x, scale=r - 1e-6)
        at = tiny_model(x, scale=r)
        above = tiny_model(x, scale=r + 1e-6)
        np.testing.assert_allclose(below, at, atol=1e-4)
        np.testing.assert_allclose(above, at, atol=1e-4)


def test_blend_is_linear_between_branches(tiny_model):
    x = _x()
    features = tiny_model.trunk(x)
    upper = tiny_model.branches[3]([features, x])
    lower = tiny_model.branches[2]([features, x])
    np.testing.assert_allclose(tiny_model(x, scale=1.27), upper + 0.3 * (lower - upper),
                               atol=1e-5)


@pytest.mark.parametrize("level", [0, 4, 10])
def test_one_level_trains_only_its_branch(tiny_model, level):
    x = _x()
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.abs(tiny_model(x, level=level) - x))
    grads = tape.gradient(loss, tiny_model.trainable_variables)
    by_var = dict(zip((v.path for v in tiny_model.trainable_variables), grads))
    for index, branch in enumerate(tiny_model.branches):
        branch_grads = [by_var[v.path] for v in branch.trainable_variables]
        if index == level:
            assert all(g is not None and float(tf.reduce_sum(tf.abs(g))) > 0 for g in branch_grads)
        else:
            assert all(g is None for g in branch_grads), f"branch {index} got gradient"
    trunk_grads = [by_var[v.path] for v in tiny_model.trunk.trainable_variables]
    assert all(g is not None for g in trunk_grads)


def test_tensor_level_selects_the_same_branch(tiny_model):
    x = _x()
    np.testing.assert_allclose(tiny_model(x, level=tf.constant(6)), tiny_model(x, level=6),
                               atol=1e-6)


def test_call_needs_scale_or_level(tiny_model):
    with pytest.raises(ValueError, match="exactly one"):
        tiny_model(_x())
    with pytest.raises(ValueError, match="level must be in"):
        tiny_model(_x(), level=11)


@pytest.mark.parametrize("switch", ["channel_attention", "spatial_attention", "global_skip"])
def test_ablation_switches(switch):
    cfg = config.ModelConfig(**{**config.preset("tiny").to_dict(), switch: False})
    model = asdn_tf.build_model(cfg)
    full = asdn_tf.build_model("tiny")
    assert model.count_params() < full.count_params() or switch == "global_skip"
    assert tuple(model(_x(), scale=1.5).shape) == (1, 9, 11, 3)
    x = _x()
    if switch == "channel_attention":
        assert all(block.ca is None for block in model.trunk.blocks)
        block_input = model.trunk.head(x)
        np.testing.assert_allclose(model.trunk.blocks[0](block_input),
                                   model.trunk.blocks[0].idb(block_input), atol=1e-6)
    elif switch == "spatial_attention":
        assert all(branch.sa is None for branch in model.branches)
        features = model.trunk(x)
        np.testing.assert_allclose(model(x, level=4), model.branches[4].to_rgb(features) + x,
                                   atol=1e-6)
    else:
        # The same weights with and without the skip: the outputs differ by exactly x_up.
        model.set_weights(full.get_weights())
        for scale in (1.27, 1.5, 2.0):
            np.testing.assert_allclose(model(x, scale=scale) + x, full(x, scale=scale),
                                       atol=1e-6)


def test_blend_is_the_call_after_the_trunk(tiny_model):
    x = _x()
    features = tiny_model.trunk(x)
    for scale in (1.05, 1.3, 1.95, tf.constant(1.27, tf.float64)):
        np.testing.assert_allclose(tiny_model.blend(features, x, scale),
                                   tiny_model(x, scale=scale), atol=1e-6)


def test_channel_means_reach_every_block(tiny_model):
    x = _x()
    state, means = tiny_model.trunk.start(x), []
    for _ in range(tiny_model.model_config.num_blocks):
        means.append(np.asarray(state[-1]).mean(axis=(1, 2)))
        state = tiny_model.trunk.resume(state)
    own = np.stack(means)
    np.testing.assert_allclose(tiny_model(x, scale=1.4, channel_means=own),
                               tiny_model(x, scale=1.4), atol=1e-6)
    for block in range(len(means)):
        other = own.copy()
        other[block] += 1.0
        assert np.abs(tiny_model(x, scale=1.4, channel_means=other)
                      - tiny_model(x, scale=1.4)).max() > 1e-4


def test_bundled_weights_load_unchanged():
    # Outputs recorded before the trunk was cut into stages (commit 02c0dbe): the layer names and
    # weights layout of the bundled file still fit, and the forward pass is the same.
    model = asdn_tf.load_pretrained(precision="float32")
    with h5py.File(weights_io.PACKAGE_WEIGHTS, "r") as file:
        stored = []
        file.visititems(lambda _, item: stored.append(item.shape)
                        if isinstance(item, h5py.Dataset) else None)
    assert sorted(stored) == sorted(tuple(w.shape) for w in model.weights)
    x = np.random.default_rng(0).random((1, 12, 16, 3), dtype=np.float32)
    y = np.asarray(model(x, scale=1.37))
    assert y.mean() == pytest.approx(0.5163584, abs=1e-6)
    np.testing.assert_allclose(y[0, 5, 7], [0.603983, 0.8748445, 0.5440726], atol=1e-5)
    np.testing.assert_allclose(y[0, 11, 15], [0.24023955, 0.21362889, 0.7171132], atol=1e-5)


@pytest.mark.parametrize("levels", [5, 9, 17])
def test_level_count_is_configurable(levels):
    cfg = config.ModelConfig(**{**config.preset("tiny").to_dict(), "num_levels": levels})
    model = asdn_tf.build_model(cfg)
    assert len(model.branches) == levels
    assert tuple(model(_x(), scale=1.33).shape) == (1, 9, 11, 3)


def test_keras_round_trip(tmp_path, tiny_model):
    x = _x()
    tiny_model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    assert reloaded.model_config == tiny_model.model_config
    np.testing.assert_array_equal(reloaded(x, scale=1.37), tiny_model(x, scale=1.37))
    reloaded = asdn_tf.load_model(tmp_path / "m.keras", precision="float32")
    np.testing.assert_array_equal(reloaded(x, scale=1.6), tiny_model(x, scale=1.6))


def test_weights_h5_round_trip(tmp_path, tiny_model):
    x = _x()
    tiny_model.save_weights(tmp_path / "m.weights.h5")
    reloaded = asdn_tf.load_model(tmp_path / "m.weights.h5", preset="tiny",
                                  precision="float32")
    np.testing.assert_array_equal(reloaded(x, scale=1.83), tiny_model(x, scale=1.83))


def test_weights_that_do_not_fit_the_preset(tmp_path, tiny_model):
    tiny_model.save_weights(tmp_path / "m.weights.h5")
    with pytest.raises(ValueError, match="do not fit preset default: the file holds 5,426 parameters, the preset needs"):
        asdn_tf.load_model(tmp_path / "m.weights.h5", preset="default")
    with pytest.raises(FileNotFoundError, match="not found"):
        asdn_tf.load_model(tmp_path / "missing.weights.h5", preset="tiny")


def test_config_validation():
    with pytest.raises(ValueError, match="num_levels"):
        config.ModelConfig(num_levels=1)
    with pytest.raises(ValueError, match="features"):
        config.ModelConfig(features=0)
    with pytest.raises(ValueError, match="unknown preset"):
        config.preset("huge")


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_fsdn_shapes_and_init_from_asdn(tiny_model, scale):
    fsdn = asdn_tf.build_fsdn("tiny", scale)
    lr = _x(6, 7)
    assert tuple(fsdn(lr).shape) == (1, 6 * scale, 7 * scale, 3)
    asdn_tf.init_from_asdn(fsdn, tiny_model)
    for mine, theirs in zip(fsdn.trunk.get_weights(), tiny_model.trunk.get_weights()):
        np.testing.assert_array_equal(mine, theirs)


def test_fsdn_skip_is_exact_bicubic():
    from asdn_tf.data.imresize import imresize
    fsdn = asdn_tf.build_fsdn("tiny", 3)
    lr = _x(5, 9)
    np.testing.assert_allclose(fsdn.heads[0].skip(lr), imresize(lr, scale=3), atol=1e-5)


def test_fsdn_round_trip(tmp_path):
    fsdn = asdn_tf.build_fsdn("tiny", 2)
    fsdn.save(tmp_path / "f.keras")
    reloaded = keras.saving.load_model(tmp_path / "f.keras")
    np.testing.assert_array_equal(reloaded(_x()), fsdn(_x()))


def test_fsdn_rejects_decimal_scale():
    with pytest.raises(ValueError, match="integer"):
        asdn_tf.FSDN(config.preset("tiny"), 2.5)


def test_a_file_that_is_not_weights(tmp_path):
    (tmp_path / "junk.weights.h5").write_text("junk")
    with pytest.raises(ValueError, match="not a readable .weights.h5 file"):
        asdn_tf.load_model(tmp_path / "junk.weights.h5", preset="tiny")
