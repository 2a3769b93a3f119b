"""keras-hub style checks for every layer: output shape, config round trip, .keras reload."""

import keras
import numpy as np
import pytest

from asdn_tf import layers as asdn_layers

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
]


def _model_around(layer, input_shape):
    inputs = keras.Input(input_shape[1:])
    return keras.Model(inputs, layer(inputs))


@pytest.mark.parametrize("cls,kwargs,input_shape,output_shape", LAYERS)
def test_output_shape(cls, kwargs, input_shape, output_shape):
    out = cls(**kwargs)(np.random.rand(*input_shape).astype("float32"))
    assert tuple(out.shape) == output_shape


@pytest.mark.parametrize("cls,kwargs,input_shape,output_shape", LAYERS)
def test_config_round_trip(cls, kwargs, input_shape, output_shape):
    layer = cls(**kwargs, name="probe")
    clone = cls.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


@pytest.mark.parametrize("cls,kwargs,input_shape,output_shape", LAYERS)
def test_keras_save_and_reload(tmp_path, cls, kwargs, input_shape, output_shape):
    model = _model_around(cls(**kwargs), input_shape)
    x = np.random.rand(*input_shape).astype("float32")
    model.save(tmp_path / "layer.keras")
    reloaded = keras.saving.load_model(tmp_path / "layer.keras")
    np.testing.assert_allclose(reloaded(x), model(x), atol=1e-6)


def test_reconstruction_branch_round_trip(tmp_path):
    features = keras.Input((None, None, 24))
    skip = keras.Input((None, None, 3))
    branch = asdn_layers.ReconstructionBranch(sa_features=4)
    model = keras.Model([features, skip], branch([features, skip]))
    f = np.random.rand(2, 5, 6, 24).astype("float32")
    s = np.random.rand(2, 5, 6, 3).astype("float32")
    assert tuple(model([f, s]).shape) == (2, 5, 6, 3)
    model.save(tmp_path / "irb.keras")
    np.testing.assert_allclose(keras.saving.load_model(tmp_path / "irb.keras")([f, s]),
                               model([f, s]), atol=1e-6)
    assert asdn_layers.ReconstructionBranch.from_config(branch.get_config()).get_config() == \
        branch.get_config()


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
