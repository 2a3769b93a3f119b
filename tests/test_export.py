"""The SavedModel (loaded as TF Serving loads it) and the TFLite export.

One tiny ASDN is exported once for the module; the TFLite tests convert one tiny FSDN.
"""

import base64
import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import asdn_tf
from asdn_tf import export
from asdn_tf.image_io import read_image
from asdn_tf.inference import upscale_tensor

ROOT = pathlib.Path(__file__).resolve().parents[1]
MAX_OUTPUT_PIXELS = 50_000


def _load_client():
    spec = importlib.util.spec_from_file_location("asdn_export_client", ROOT / "export" / "client.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _reference_uint8(model, image, scale):
    """The in-process model on a uint8 batch, quantised as the signature does."""
    output = upscale_tensor(model, image.astype(np.float32) / 255.0, scale)
    return np.round(np.asarray(output) * 255.0).astype(np.uint8)


def _run(args):
    """Runs a command with TF's C++ logging quiet; returns the CompletedProcess."""
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    return subprocess.run(args, capture_output=True, text=True, env=environment, cwd=ROOT,
                          timeout=300)


@pytest.fixture(scope="module")
def image(datasets_dir):
    """A real 24×32 RGB crop (a batch of one)."""
    return read_image(datasets_dir / "Set5" / "bird.png")[100:124, 120:152][None]


@pytest.fixture(scope="module")
def saved_model_dir(tiny_model, tmp_path_factory):
    """The tiny model exported once, by the command line (the library does the work)."""
    folder = tmp_path_factory.mktemp("serving")
    weights = folder / "asdn.weights.h5"
    tiny_model.save_weights(weights)
    path = folder / "asdn" / "1"
    result = _run([sys.executable, "-m", "asdn_tf.export", "saved_model", f"--output_dir={path}",
                   f"--weights={weights}", "--preset=tiny",
                   f"--max_output_pixels={MAX_OUTPUT_PIXELS}"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "signatures serving_default" in result.stdout
    return path


@pytest.fixture(scope="module")
def loaded(saved_model_dir):
    return tf.saved_model.load(str(saved_model_dir))


@pytest.fixture(scope="module")
def session(saved_model_dir):
    """The SavedModel in a TF1 session, loaded the way TF Serving's session bundle does."""
    graph = tf.Graph()
    with graph.as_default():
        sess = tf.compat.v1.Session(graph=graph)
        meta_graph = tf.compat.v1.saved_model.loader.load(sess, ["serve"], str(saved_model_dir))
    yield sess, meta_graph
    sess.close()


def _serve(session, request):
    """Answers a PredictRequest as TF Serving does: feed and fetch the signature's tensor names."""
    from tensorflow_serving.apis import predict_pb2

    sess, meta_graph = session
    request = predict_pb2.PredictRequest.FromString(request.SerializeToString())
    signature = meta_graph.signature_def[request.model_spec.signature_name or "serving_default"]
    feed = {signature.inputs[key].name: tf.make_ndarray(value)
            for key, value in request.inputs.items()}
    fetch = {key: value.name for key, value in signature.outputs.items()}
    response = predict_pb2.PredictResponse()
    response.model_spec.CopyFrom(request.model_spec)
    for key, value in sess.run(fetch, feed).items():
        response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
    return predict_pb2.PredictResponse.FromString(response.SerializeToString())


def _predict_request(image, scale, signature="serving_default"):
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "asdn"
    request.model_spec.signature_name = signature
    request.inputs["image"].CopyFrom(tf.make_tensor_proto(image))
    request.inputs["scale"].CopyFrom(tf.make_tensor_proto(np.float32(scale)))
    return request


# ---------------------------------------------------------------------------------------------
# SavedModel


def test_signatures(loaded, saved_model_dir):
    expected = {
        "serving_default": ({"image": tf.uint8, "scale": tf.float32}, {"image": tf.uint8}),
        "upscale_float": ({"image": tf.float32, "scale": tf.float32}, {"image": tf.float32}),
        "upscale_encoded": ({"image_bytes": tf.string, "scale": tf.float32},
                            {"png_bytes": tf.string}),
    }
    assert set(loaded.signatures) == set(expected)
    for name, (inputs, outputs) in expected.items():
        function = loaded.signatures[name]
        specs = function.structured_input_signature[1]
        assert {key: spec.dtype for key, spec in specs.items()} == inputs
        assert specs["scale"].shape.rank == 0
        assert {key: spec.dtype for key, spec in function.structured_outputs.items()} == outputs
    assert loaded.signatures["serving_default"].structured_input_signature[1]["image"].shape \
        .as_list() == [None, None, None, 3]
    leftovers = [p.name for p in saved_model_dir.parent.iterdir() if p.name != "1"]
    assert leftovers == []


@pytest.mark.parametrize("scale", [1.27, 2.0, 3.3])
def test_uint8_signature_matches_in_process_model(loaded, tiny_model, image, scale):
    output = loaded.signatures["serving_default"](image=tf.constant(image),
                                                  scale=tf.constant(scale))["image"].numpy()
    expected = _reference_uint8(tiny_model, image, scale)
    assert output.shape == expected.shape == (1, *asdn_tf.lfr.output_size(24, 32, scale), 3)
    assert np.abs(output.astype(int) - expected).max() <= 1


def test_float_and_encoded_signatures(loaded, tiny_model, image):
    pixels = image.astype(np.float32) / 255.0
    output = loaded.signatures["upscale_float"](image=tf.constant(pixels),
                                                scale=tf.constant(3.3))["image"]
    np.testing.assert_allclose(output, upscale_tensor(tiny_model, pixels, 3.3), atol=1e-5)
    for encode in (tf.io.encode_png, lambda x: tf.io.encode_jpeg(x, quality=100)):
        encoded = encode(image[0])
        png = loaded.signatures["upscale_encoded"](image_bytes=encoded,
                                                   scale=tf.constant(2.5))["png_bytes"]
        decoded = tf.io.decode_image(encoded, channels=3).numpy()[None]
        np.testing.assert_array_equal(tf.io.decode_png(png).numpy()[None],
                                      loaded.signatures["serving_default"](
                                          image=tf.constant(decoded),
                                          scale=tf.constant(2.5))["image"].numpy())


def test_saved_model_cli_run(saved_model_dir, tiny_model, image, tmp_path):
    """`saved_model_cli run` loads through the session loader, as TF Serving does."""
    np.save(tmp_path / "image.npy", image)
    np.save(tmp_path / "scale.npy", np.float32(3.3))
    cli = shutil.which("saved_model_cli")
    command = [cli] if cli else [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
    result = _run(command + [
        "run", "--dir", str(saved_model_dir), "--tag_set", "serve",
        "--signature_def", "serving_default",
        "--inputs", f"image={tmp_path / 'image.npy'};scale={tmp_path / 'scale.npy'}",
        "--outdir", str(tmp_path / "out")])
    assert result.returncode == 0, result.stderr[-2000:]
    output = np.load(tmp_path / "out" / "image.npy")
    expected = _reference_uint8(tiny_model, image, 3.3)
    assert output.shape == expected.shape
    assert np.abs(output.astype(int) - expected).max() <= 1


def test_session_loader_answers_a_predict_request(session, tiny_model, image):
    response = _serve(session, _predict_request(image, 3.3))
    output = tf.make_ndarray(response.outputs["image"])
    expected = _reference_uint8(tiny_model, image, 3.3)
    assert output.dtype == np.uint8 and output.shape == expected.shape
    assert np.abs(output.astype(int) - expected).max() <= 1


def test_client_requests_through_the_session(session, loaded, image):
    """export/client.py's gRPC request and REST JSON, answered through the session."""
    client = _load_client()
    png_in = tf.io.encode_png(image[0]).numpy()
    expected = loaded.signatures["upscale_encoded"](
        image_bytes=tf.constant(png_in), scale=tf.constant(3.3))["png_bytes"].numpy()

    response = _serve(session, client.grpc_request(png_in, 3.3, "asdn"))
    assert client.grpc_png(response) == expected

    # TF Serving's JSON mapping: {"b64": ...} is bytes in; a single output named *_bytes comes
    # back as {"outputs": {"b64": ...}}.
    body = json.loads(json.dumps(client.rest_request(png_in, 3.3)))
    inputs = body["inputs"]
    request = client.grpc_request(base64.b64decode(inputs["image_bytes"]["b64"]),
                                  inputs["scale"], "asdn", body["signature_name"])
    png = client.grpc_png(_serve(session, request))
    reply = json.loads(json.dumps({"outputs": {"b64": base64.b64encode(png).decode()}}))
    assert client.rest_png(reply) == expected
    with pytest.raises(RuntimeError, match="not an upscaling"):
        client.rest_png({"error": "scale must be greater than 1 (1 is not an upscaling)"})


@pytest.mark.parametrize("scale,words", [
    (1.0, "greater than 1 .1 is not an upscaling., got 1"),
    (0.5, "greater than 1"),
    (float("nan"), "finite number in .1, 32., got nan"),
    (float("inf"), "finite number in .1, 32., got inf"),
    (-float("inf"), "finite"),
    (40.0, "at most 32"),
    (12.0, "288x384 is 110592 pixels, over the limit of 50000 .max_output_pixels."),
])
def test_bad_scale_or_size_is_invalid_argument(loaded, image, scale, words):
    for name in ("serving_default", "upscale_encoded"):
        inputs = ({"image": tf.constant(image)} if name == "serving_default"
                  else {"image_bytes": tf.io.encode_png(image[0])})
        with pytest.raises(tf.errors.InvalidArgumentError, match=words):
            loaded.signatures[name](scale=tf.constant(scale), **inputs)


def test_giant_output_is_refused_before_allocation(loaded):
    """×32 of 4000×4000 would be 16 G pixels (50 GB as uint8): refused at once."""
    huge = tf.zeros([1, 4000, 4000, 3], tf.uint8)
    with pytest.raises(tf.errors.InvalidArgumentError, match="128000x128000 is 16384000000 pixels"):
        loaded.signatures["serving_default"](image=huge, scale=tf.constant(32.0))


def test_bad_images_are_invalid_argument(loaded):
    with pytest.raises(tf.errors.InvalidArgumentError, match="must not be empty"):
        loaded.signatures["serving_default"](image=tf.zeros([1, 0, 4, 3], tf.uint8),
                                             scale=tf.constant(2.0))
    with pytest.raises(tf.errors.InvalidArgumentError, match="NaN or infinite"):
        loaded.signatures["upscale_float"](image=tf.fill([1, 4, 4, 3], np.nan),
                                           scale=tf.constant(2.0))
    with pytest.raises(tf.errors.InvalidArgumentError, match="Unknown image file format"):
        loaded.signatures["upscale_encoded"](image_bytes=tf.constant(b"not an image"),
                                             scale=tf.constant(2.0))


def test_session_reports_bad_requests(session, image):
    for scale, words in ((float("nan"), "finite"), (1.0, "not an upscaling"),
                         (16.0, "max_output_pixels")):
        with pytest.raises(tf.errors.InvalidArgumentError, match=words):
            _serve(session, _predict_request(image, scale))


def test_export_refuses_to_replace_and_leaves_nothing_on_failure(tiny_model, tmp_path,
                                                                 monkeypatch):
    existing = tmp_path / "1"
    existing.mkdir()
    with pytest.raises(FileExistsError, match="already exists"):
        export.export_saved_model(tiny_model, existing)

    def broken_save(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", broken_save)
    with pytest.raises(RuntimeError, match="disk full"):
        export.export_saved_model(tiny_model, tmp_path / "2")
    assert [p.name for p in tmp_path.iterdir()] == ["1"]
    with pytest.raises(ValueError, match="takes an ASDN"):
        export.export_saved_model(asdn_tf.build_fsdn("tiny", 2), tmp_path / "3")
    with pytest.raises(ValueError, match="max_output_pixels"):
        export.export_saved_model(tiny_model, tmp_path / "3", max_output_pixels=0)
    with pytest.raises(ValueError, match="max_scale must be a finite number above 1"):
        export.export_saved_model(tiny_model, tmp_path / "3", max_scale=1.0)


@pytest.mark.parametrize("args,words", [
    (["saved_model", "--weights=missing.weights.h5"], "error: weights file not found"),
    (["tflite", "--weights=missing.keras", "--scale=2", "--images=.", "--output=m.tflite",
      "--input_size=12"], "error: --input_size must be HEIGHTxWIDTH"),
])
def test_cli_errors_are_one_line(tmp_path, args, words):
    target = tmp_path / "out"
    if args[0] == "saved_model":
        args = args + [f"--output_dir={target}"]
    result = _run([sys.executable, "-m", "asdn_tf.export", *args])
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(words)
    assert not target.exists() and not (ROOT / "m.tflite").exists()


def test_import_defines_no_flags():
    from absl import flags
    assert "quantize" not in flags.FLAGS and "output_dir" not in flags.FLAGS


# ---------------------------------------------------------------------------------------------
# TFLite


@pytest.fixture(scope="module")
def fsdn(tiny_model):
    keras.utils.set_random_seed(1)
    return asdn_tf.init_from_asdn(asdn_tf.build_fsdn("tiny", 2), tiny_model)


@pytest.fixture(scope="module")
def set5(datasets_dir):
    return datasets_dir / "Set5"


@pytest.mark.parametrize("quantize", export.QUANTIZATIONS)
def test_tflite_matches_keras(fsdn, set5, quantize):
    content = export.convert_tflite(fsdn, quantize, input_size=(40, 48),
                                    representative_images=set5, calibration_patches=8)
    result = export.verify_tflite(content, fsdn, export.verification_images(set5, (40, 48)),
                                  quantize)
    assert result["images"] == 5
    assert result["ok"], result
    bound = {"none": ("max_abs", 1e-4), "float16": ("max_abs", 2e-3),
             "dynamic": ("psnr", 40.0), "int8": ("psnr", 35.0)}[quantize]
    if bound[0] == "max_abs":
        assert result["max_abs"] <= bound[1]
    else:
        assert result["psnr"] >= bound[1]


def test_tflite_dynamic_size_runs_several_sizes(fsdn, set5):
    images = [image[:h, :w] for image, (h, w) in
              zip(export.verification_images(set5, max_side=40), [(40, 40), (17, 29), (33, 12)])]
    result = export.verify_tflite(export.convert_tflite(fsdn, "none"), fsdn, images, "none")
    assert result["images"] == 3 and result["ok"], result
    with pytest.raises(ValueError, match="takes .1, 40, 48, 3."):
        export.verify_tflite(export.convert_tflite(fsdn, "none", input_size=(40, 48)), fsdn,
                             images)


def test_tflite_argument_errors(fsdn, set5):
    with pytest.raises(ValueError, match="quantize must be one of"):
        export.convert_tflite(fsdn, "int4")
    with pytest.raises(ValueError, match="representative images"):
        export.convert_tflite(fsdn, "int8")
    with pytest.raises(ValueError, match="at least 600x600"):
        export.representative_patches(set5, (600, 600), 4)


def test_load_model_gives_the_fsdn(fsdn, tmp_path):
    fsdn.save_weights(tmp_path / "f.weights.h5")
    (tmp_path / "f.json").write_text(json.dumps({"model_config": fsdn.model_config.to_dict(),
                                                 "model": "fsdn", "scale": 2}))
    loaded = asdn_tf.load_model(tmp_path / "f.weights.h5", fsdn_scale=2)
    x = np.random.default_rng(0).random((1, 6, 7, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x), fsdn(x))
    with pytest.raises(ValueError, match="for x2 .its sidecar., not x3"):
        asdn_tf.load_model(tmp_path / "f.weights.h5", fsdn_scale=3)
    fsdn.save(tmp_path / "f.keras")
    with pytest.raises(ValueError, match="not x4"):
        asdn_tf.load_model(tmp_path / "f.keras", fsdn_scale=4)
    with pytest.raises(FileNotFoundError):
        asdn_tf.load_model(tmp_path / "missing.weights.h5", fsdn_scale=2)


def test_cli_tflite(fsdn, set5, tmp_path):
    weights = tmp_path / "fsdn.weights.h5"
    fsdn.save_weights(weights)
    output = tmp_path / "m.tflite"
    result = _run([sys.executable, "-m", "asdn_tf.export", "tflite", f"--weights={weights}",
                   "--preset=tiny", "--scale=2", "--quantize=int8", "--calibration_patches=8",
                   f"--images={set5}", f"--output={output}"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "quantize=int8, input dynamic HxW" in result.stdout
    assert "PSNR" in result.stdout and "requirement PSNR ≥ 35 dB: met" in result.stdout
    size = float(result.stdout.split("input dynamic HxW: ")[1].split(" MB")[0])
    assert abs(size - output.stat().st_size / 1e6) < 1e-3
    assert [p.name for p in tmp_path.iterdir() if p.suffix != ".h5"] == ["m.tflite"]
