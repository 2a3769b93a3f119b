import numpy as np
import pytest
import tensorflow as tf

from asdn_tf.data.imresize import imresize
from conftest import IMRESIZE_CASES as CASES


@pytest.fixture(scope="module")
def vectors(testvectors_dir):
    return dict(np.load(testvectors_dir / "imresize_matlab_bicubic.npz"))


@pytest.mark.parametrize("key,source,scale", CASES)
def test_matches_matlab_eagerly(vectors, key, source, scale):
    out = imresize(vectors[source], scale=scale).numpy()
    assert out.shape == vectors[key].shape
    assert np.abs(out - vectors[key]).max() <= 1e-5


@pytest.mark.parametrize("key,source,scale", CASES[::3])
def test_matches_under_xla(vectors, key, source, scale):
    resize = tf.function(lambda image: imresize(image, scale=scale), jit_compile=True)
    assert np.abs(resize(vectors[source]).numpy() - vectors[key]).max() <= 1e-5


def test_matches_inside_dataset_map_with_tensor_scale(vectors):
    keys = [("down_3", 1 / 3), ("up_1_27", 1.27)]
    sources = [vectors["input_butterfly"], vectors["input_crop64"]]
    for (key, scale), source in zip(keys, sources):
        dataset = tf.data.Dataset.from_tensors((source, np.float32(scale)))
        dataset = dataset.map(lambda image, s: imresize(image, scale=s))
        out = next(iter(dataset)).numpy()
        assert np.abs(out - vectors[key]).max() <= 1e-5


def test_batched_and_explicit_size(vectors):
    batch = np.stack([vectors["input_crop64"]] * 2)
    out = imresize(batch, scale=2).numpy()
    assert out.shape == (2, 128, 128, 3)
    assert np.abs(out[1] - vectors["up_2"]).max() <= 1e-5
    assert imresize(vectors["input_crop64"], size=(70, 90)).shape == (70, 90, 3)


def test_identity_at_scale_one(vectors):
    image = vectors["input_crop64"]
    np.testing.assert_allclose(imresize(image, scale=1).numpy(), image, atol=1e-6)


def test_tf_image_resize_is_not_this(vectors):
    # The reason for the module: tf.image.resize misses the reference badly at 1/3.
    approx = tf.image.resize(vectors["input_butterfly"], (86, 86), "bicubic", antialias=True)
    assert np.abs(approx.numpy() - vectors["down_3"]).max() > 0.1


@pytest.mark.parametrize("kwargs,words", [({}, "scale or a size")])
def test_needs_scale_or_size(kwargs, words):
    with pytest.raises(ValueError, match=words):
        imresize(np.zeros((4, 4, 3), np.float32), **kwargs)


def test_rejects_integer_images():
    with pytest.raises(ValueError, match="float"):
        imresize(np.zeros((4, 4, 3), np.uint8), scale=2)


def test_unknown_shapes_and_tensor_size_in_a_graph(vectors):
    resize = tf.function(lambda image, size, scale: imresize(image, scale=scale, size=size),
                         input_signature=[tf.TensorSpec([None, None, None]),
                                          tf.TensorSpec([2], tf.int32), tf.TensorSpec([])])
    out = resize(vectors["input_crop64"], tf.constant([82, 82]), 1.27)
    assert np.abs(out.numpy() - vectors["up_1_27"]).max() <= 1e-5
    out = resize(vectors["input_butterfly"], tf.constant([86, 86]), 1 / 3)
    assert np.abs(out.numpy() - vectors["down_3"]).max() <= 1e-5


@pytest.mark.parametrize("in_size,out_size,scale", [(37, 13, 13 / 37), (20, 51, 2.55),
                                                   (64, 64, 1.0)])
def test_agrees_with_the_dense_matrix(in_size, out_size, scale):
    from asdn_tf.data.resizing import resize_matrix
    image = np.random.default_rng(0).random((in_size, in_size, 2)).astype(np.float32)
    matrix = resize_matrix(in_size, out_size, scale)
    expected = np.einsum("oh,hwc->owc", matrix, image)
    expected = np.einsum("pw,owc->opc", matrix, expected)
    out = imresize(image, scale=scale, size=(out_size, out_size)).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-5)
