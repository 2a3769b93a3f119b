import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf

import asdn_tf
from asdn_tf.inference import engine as inference, weights_io
from asdn_tf.evaluation import notebook
from asdn_tf.io import image_io, pixels
from asdn_tf.nn import lfr
from asdn_tf.inference import precision as precision_lib
from asdn_tf.data.imresize import imresize
from asdn_tf.inference.engine import upscale_tensor


@pytest.mark.parametrize("h,w", [(7, 9), (12, 5), (16, 16)])
@pytest.mark.parametrize("scale", [1.05, 1.1, 1.31, 2.0, 2.01, 3.3, 4.0, 5.7, 8.0])
def test_exact_output_size(tiny_model, h, w, scale):
    image = np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)
    out = asdn_tf.upscale(image, scale, model=tiny_model)
    assert out.shape == (*lfr.output_size(h, w, scale), 3) and out.dtype == np.uint8


def test_scale_32(tiny_model):
    out = asdn_tf.upscale(np.zeros((3, 5, 3), np.uint8), 32, model=tiny_model)
    assert out.shape == (96, 160, 3)


def test_explicit_size(tiny_model):
    image = np.random.default_rng(2).random((10, 12, 3)).astype(np.float32)
    assert asdn_tf.upscale(image, model=tiny_model, size=(25, 30)).shape == (25, 30, 3)
    assert asdn_tf.upscale(image, 2.5, model=tiny_model, size=(26, 31)).shape == (26, 31, 3)


def test_single_step_is_pre_upsampling_then_the_model(tiny_model):
    x = np.random.default_rng(3).random((1, 8, 10, 3)).astype(np.float32)
    expected = tiny_model(imresize(x, scale=1.27, size=(10, 13)), scale=1.27)
    out = upscale_tensor(tiny_model, x, 1.27)
    np.testing.assert_allclose(out, np.clip(expected, 0, 1), atol=1e-5)


def test_recursion_runs_the_plan(tiny_model):
    x = np.random.default_rng(4).random((1, 6, 7, 3)).astype(np.float32)
    image = x
    sizes = [(12, 14), (17, 20)]
    for step, size in zip(lfr.recursion_plan(2.8), sizes):
        image = np.clip(tiny_model(imresize(image, scale=step, size=size), scale=step), 0, 1)
    np.testing.assert_allclose(upscale_tensor(tiny_model, x, 2.8), image, atol=1e-5)


@pytest.mark.slow
def test_tensor_scale_in_a_graph(tiny_model):
    fn = tf.function(lambda x, s: upscale_tensor(tiny_model, x, s),
                     input_signature=[tf.TensorSpec([None, None, None, 3]), tf.TensorSpec([])])
    x = np.random.default_rng(5).random((2, 6, 7, 3)).astype(np.float32)
    for scale in (1.5, 3.3, 9.0):
        out = fn(x, scale)
        np.testing.assert_allclose(out, upscale_tensor(tiny_model, x, scale), atol=1e-5)
    with pytest.raises(tf.errors.InvalidArgumentError, match="not an upscaling"):
        fn(x, 1.0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="finite"):
        fn(x, float("nan"))
    with pytest.raises(tf.errors.InvalidArgumentError, match="at most 32"):
        fn(x, 40.0)


def test_grayscale_and_rgba_keep_their_layout(tiny_model):
    gray = np.random.default_rng(6).integers(0, 256, (9, 8), dtype=np.uint8)
    assert asdn_tf.upscale(gray, 2, model=tiny_model).shape == (18, 16)
    assert asdn_tf.upscale(gray[..., None], 2, model=tiny_model).shape == (18, 16, 1)
    rgba = np.random.default_rng(7).integers(0, 256, (9, 8, 4), dtype=np.uint8)
    out = asdn_tf.upscale(rgba, 1.5, model=tiny_model)
    assert out.shape == (14, 12, 4)
    opaque = rgba.copy()
    opaque[..., 3] = 255
    assert np.all(asdn_tf.upscale(opaque, 1.5, model=tiny_model)[..., 3] == 255)


def test_uint16_stays_uint16(tiny_model):
    image = np.full((5, 5, 3), 40000, np.uint16)
    assert asdn_tf.upscale(image, 2, model=tiny_model).dtype == np.uint16


@pytest.mark.parametrize("scale,words", [(1, "not an upscaling"), (0.5, "greater than 1"),
                                         (float("nan"), "finite"), (float("inf"), "finite"),
                                         (40, "at most 32"), ("abc", "number")])
def test_bad_scale(tiny_model, scale, words):
    with pytest.raises(ValueError, match=words):
        asdn_tf.upscale(np.zeros((4, 4, 3), np.uint8), scale, model=tiny_model)


def test_max_scale_configurable(tiny_model):
    with pytest.raises(ValueError, match="at most 4"):
        asdn_tf.upscale(np.zeros((4, 4, 3), np.uint8), 5, model=tiny_model, max_scale=4)


@pytest.mark.parametrize("image,words", [
    (np.zeros((0, 4, 3), np.uint8), "empty"),
    (np.zeros((4,), np.uint8), "2-D or 3-D"),
    (np.zeros((1, 4, 4, 3), np.uint8), "2-D or 3-D"),
    (np.zeros((4, 4, 2), np.uint8), "got 2"),
    (np.zeros((4, 4, 5), np.uint8), "got 5"),
    (np.full((4, 4, 3), np.nan, np.float32), "NaN"),
    (np.zeros((4, 4, 3), np.int64), "dtype"),
])
def test_bad_images(tiny_model, image, words):
    with pytest.raises(ValueError, match=words):
        asdn_tf.upscale(image, 2, model=tiny_model)


def test_size_smaller_than_input(tiny_model):
    with pytest.raises(ValueError, match="larger than the input"):
        asdn_tf.upscale(np.zeros((8, 8, 3), np.uint8), model=tiny_model, size=(6, 10))


def test_the_scale_is_checked_before_the_pixels(tiny_model):
    # Converting and scanning a large array costs; a bad scale is refused before either.
    nans = np.full((4, 4, 3), np.nan, np.float32)
    with pytest.raises(ValueError, match="scale must be a finite number"):
        asdn_tf.upscale(nans, float("nan"), model=tiny_model)
    with pytest.raises(ValueError, match="scale must be at most 32"):
        asdn_tf.upscale(nans, 40, model=tiny_model, size=(8, 8))


@pytest.mark.slow
def test_the_default_model_is_loaded_once(monkeypatch, tmp_path, tiny_model):
    """Without `model=`, the bundled model and its FSDN are loaded, and the model traced, on
    the first call only."""
    monkeypatch.setenv(precision_lib.AUTO_PRECISION_ENV, "float32")
    weights = tmp_path / "default.weights.h5"
    tiny_model.save_weights(weights)
    weights_io.sidecar_path(weights).write_text(
        json.dumps({"model_config": tiny_model.model_config.to_dict()}))
    fsdn = asdn_tf.build_fsdn("tiny", (2, 3, 4))
    fsdn.save_weights(tmp_path / "fsdn_default.weights.h5")
    (tmp_path / "fsdn_default.json").write_text(json.dumps(
        {"model": "fsdn", "scale": [2, 3, 4], "model_config": fsdn.model_config.to_dict()}))
    monkeypatch.setattr(weights_io, "PACKAGE_WEIGHTS", weights)
    monkeypatch.setattr(weights_io, "WEIGHTS_FOLDER", tmp_path)
    loads = []
    monkeypatch.setattr(weights_io, "UPSCALE_MODEL", "default")
    load = weights_io.load_model
    monkeypatch.setattr(weights_io, "load_model",
                        lambda *args, **kwargs: loads.append(args) or load(*args, **kwargs))
    image = np.random.default_rng(8).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    first = asdn_tf.upscale(image, 2)
    np.testing.assert_array_equal(asdn_tf.upscale(image, 2), first)
    assert asdn_tf.upscale(image, 3.3).shape == (40, 53, 3)
    assert sorted(pathlib.Path(args[0]).name for args in loads) == [
        "default.weights.h5", "fsdn_default.weights.h5"]
    model = weights_io.shared_pretrained()
    assert inference.traced_step(model).experimental_get_tracing_count() == 1
    np.testing.assert_array_equal(first, asdn_tf.upscale(image, 2, model=tiny_model, fsdn=fsdn))
    # Each precision is a model of its own, kept as well; "auto" is the one it resolves to.
    assert weights_io.shared_pretrained("float32") is model
    assert weights_io.shared_pretrained("bfloat16") is weights_io.shared_pretrained("bfloat16")
    assert weights_io.shared_pretrained("bfloat16") is not model and len(loads) == 3
    monkeypatch.setenv(precision_lib.AUTO_PRECISION_ENV, "bfloat16")
    assert weights_io.shared_pretrained() is weights_io.shared_pretrained("bfloat16")
    assert asdn_tf.upscale(image, 2).shape == (24, 32, 3) and len(loads) == 4  # its FSDN too


def test_one_trace_serves_every_size_scale_and_recursion_depth():
    """A folder of photographs of many sizes, at any scales, pays the tracing once."""
    model = asdn_tf.build_model("tiny")
    rng = np.random.default_rng(9)
    for (h, w), scale in [((9, 7), 2.0), ((12, 5), 2.0), ((16, 16), 2.0), ((7, 9), 1.27),
                          ((10, 6), 3.3), ((5, 6), 8.0), ((6, 5), 1.5)]:
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        assert asdn_tf.upscale(image, scale, model=model).shape[:2] == lfr.output_size(h, w, scale)
    assert inference.traced_step(model).experimental_get_tracing_count() == 1


@pytest.mark.slow
@pytest.mark.parametrize("name", ["default", "photo"])
def test_the_engine_whole_image_gives_the_bytes_of_one_graph(name):
    """The bundled models' untiled outputs: the engine's step by step recursion gives the
    bytes of `upscale_tensor`'s single graph (a `tf.while_loop`), as `asdn_tf.upscale` gave
    them before the engine, on the quick start's photograph (a 64×80 crop: tracing the two
    ways is most of the cost, the pixels of a larger one add seconds)."""
    model = weights_io.load_pretrained(name, precision="float32")
    photo = image_io.read_image(notebook.sample_image_path())[200:264, 150:230]
    for scale in (2.5, 3.3):
        size = lfr.output_size(*photo.shape[:2], scale)
        graph = inference.compiled_upscaler(model)(pixels.to_float(photo)[None], scale, size)[0]
        np.testing.assert_array_equal(asdn_tf.upscale(photo, scale, model=model, tile=0),
                                      pixels.from_float(graph.numpy(), np.uint8))


def test_the_compiled_upscaler_is_upscale_tensor(tiny_model):
    x = np.random.default_rng(10).random((1, 11, 9, 3)).astype(np.float32)
    compiled = inference.compiled_upscaler(tiny_model)
    for scale, size in ((1.3, (14, 12)), (2.8, (31, 25)), (5.7, (63, 51))):
        np.testing.assert_allclose(compiled(x, scale, size), upscale_tensor(tiny_model, x, scale),
                                   atol=1e-5)
