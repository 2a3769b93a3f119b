"""keras-hub style checks for every layer: output shape, config round trip, .keras reload."""

import inspect

import keras
import numpy as np
import pytest

from asdn_tf.nn import layers as asdn_layers

# (class, constructor kwargs, input shape (a list of shapes for several inputs), output shape)
LAYERS = [
    (asdn_layers.ChannelAttention, {"reduction": 4}, (2, 6, 7, 16), (2, 6, 7, 16)),
    (asdn_layers.SpatialAttention, {"features": 4}, (2, 6, 7, 3), (2, 6, 7, 3)),
    (asdn_layers.IntraDenseBlock, {"features": 8, "growth": 4, "num_layers": 3},
     (2, 6, 7, 12), (2, 6, 7, 8)),
    (asdn_layers.DenseAttentionBlock, {"features": 8, "growth": 4, "num_layers": 2,
                                       "ca_reduction": 4}, (2, 6, 7, 16), (2, 6, 7, 8)),
    (asdn_layers.DenseAttentionBlock, {"features": 8, "growth": 4, "num_layers": 2,
                                       "channel_attention": False}, (1, 5, 5, 8), (1, 5, 5, 8)),
    (asdn_layers.FeatureMappingBranch, {"num_blocks": 3, "features": 8, "growth": 4,
                                        "num_layers": 2}, (2, 6, 7, 3), (2, 6, 7, 32)),
    (asdn_layers.ReconstructionBranch, {"sa_features": 4}, [(2, 5, 6, 24), (2, 5, 6, 3)],
     (2, 5, 6, 3)),
    (asdn_layers.ReconstructionBranch, {"spatial_attention": False, "global_skip": False},
     [(1, 4, 4, 8), (1, 4, 4, 3)], (1, 4, 4, 3)),
    (asdn_layers.BicubicUpsample, {"scale": 3}, (2, 5, 6, 3), (2, 15, 18, 3)),
]


def run_layer_test(tmp_path, cls, kwargs, input_shape, output_shape, seed=0):
    """What keras-hub's `run_layer_test` checks: the output shape, a `get_config` round trip,
    and equal outputs after a `.keras` save and reload of a model around the layer."""
    several = isinstance(input_shape, list)
    shapes = input_shape if several else [input_shape]
    rng = np.random.default_rng(seed)
    data = [rng.random(shape, dtype=np.float32) for shape in shapes]
    layer = cls(**kwargs, name="probe")
    output = layer(data if several else data[0])
    assert tuple(output.shape) == output_shape

    clone = cls.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()

    inputs = [keras.Input(shape[1:]) for shape in shapes]
    model = keras.Model(inputs, cls(**kwargs)(inputs if several else inputs[0]))
    model.save(tmp_path / "layer.keras")
    reloaded = keras.saving.load_model(tmp_path / "layer.keras")
    np.testing.assert_allclose(reloaded(data), model(data), atol=1e-6)


def _table_id(row):
    return row.__name__ if inspect.isclass(row) else None


@pytest.mark.parametrize("cls,kwargs,input_shape,output_shape", LAYERS, ids=_table_id)
def test_layer(tmp_path, cls, kwargs, input_shape, output_shape):
    run_layer_test(tmp_path, cls, kwargs, input_shape, output_shape)


def test_every_layer_is_in_the_table():
    defined = {cls for _, cls in inspect.getmembers(asdn_layers, inspect.isclass)
               if issubclass(cls, keras.layers.Layer) and cls.__module__ == asdn_layers.__name__}
    missing = sorted(cls.__name__ for cls in defined - {row[0] for row in LAYERS})
    assert not missing, f"layers without a row in LAYERS: {missing}"


def test_branch_switches():
    f = np.random.rand(1, 4, 4, 8).astype("float32")
    s = np.random.rand(1, 4, 4, 3).astype("float32")
    plain = asdn_layers.ReconstructionBranch(spatial_attention=False, global_skip=False)
    out = plain([f, s])
    np.testing.assert_allclose(out, plain.to_rgb(f), atol=1e-6)
    assert plain.sa is None


def test_channel_attention_uses_average_pooling():
    layer = asdn_layers.ChannelAttention(reduction=2)
    x = np.random.rand(1, 4, 4, 4).astype("float32")
    out = layer(x)
    weights = layer.excite(layer.squeeze(x.mean(axis=(1, 2))))
    np.testing.assert_allclose(out, x * np.asarray(weights)[:, None, None, :], atol=1e-6)


def test_channel_attention_pools_the_means_it_is_given():
    layer = asdn_layers.ChannelAttention(reduction=2)
    x = np.random.rand(2, 4, 4, 4).astype("float32")
    np.testing.assert_allclose(layer(x, means=x.mean(axis=(1, 2))), layer(x), atol=1e-6)
    other = np.random.rand(1, 4).astype("float32")
    weights = np.asarray(layer.excite(layer.squeeze(other)))
    np.testing.assert_allclose(layer(x, means=other), x * weights[:, None, None, :], atol=1e-6)


def test_dense_attention_block_is_its_two_halves():
    block = asdn_layers.DenseAttentionBlock(8, 4, 2, ca_reduction=4)
    x = np.random.rand(1, 5, 6, 16).astype("float32")
    output = block(x)
    before = block.pre_attention(x)
    np.testing.assert_allclose(before, block.idb(x), atol=1e-6)
    np.testing.assert_allclose(output, block.attend(before), atol=1e-6)
    np.testing.assert_allclose(output, block.ca(before), atol=1e-6)


def test_trunk_stages_pause_at_every_attention():
    # Seeded: with some initial weights the attention's ReLU is dead for small shifts of the
    # means, and the last check would not see them.
    keras.utils.set_random_seed(0)
    trunk = asdn_layers.FeatureMappingBranch(num_blocks=3, features=8, growth=4, num_layers=2)
    x = np.random.rand(1, 6, 7, 3).astype("float32")
    expected = trunk(x)
    state, means = trunk.start(x), []
    for _ in range(trunk.num_blocks):
        means.append(np.asarray(state[-1]).mean(axis=(1, 2)))
        state = trunk.resume(state, means[-1])
    np.testing.assert_allclose(state, expected, atol=1e-6)
    np.testing.assert_allclose(trunk(x, channel_means=np.stack(means)), expected, atol=1e-6)
    shifted = [m + 5.0 for m in means]
    assert np.abs(trunk(x, channel_means=np.stack(shifted)) - expected).max() > 1e-3
