"""The SavedModel (loaded as TF Serving loads it), the TFLite export, and what the export
command may write over.

One tiny ASDN is exported once for the module; the TFLite tests convert one tiny FSDN. Hostile
requests to the SavedModel are in test_export_bombs.py.
"""

import base64
import dataclasses
import errno
import hashlib
import importlib.metadata
import importlib.util
import io
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
from PIL import Image

import asdn_tf
from asdn_tf.export import output_files, output_kinds, saved_model, tflite
from asdn_tf.export.formats import FORMATS
from asdn_tf.io import fileio, pixels
from asdn_tf.nn import config
from asdn_tf.io.image_io import read_image
from asdn_tf.inference.engine import upscale_tensor
from conftest import BLOCK_TENSORFLOW, export_cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
MAX_OUTPUT_PIXELS = 50_000


def _load_client():
    spec = importlib.util.spec_from_file_location("asdn_serving_client",
                                                  ROOT / "serving" / "client.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _reference_uint8(model, image, scale):
    """The in-process model on a uint8 batch, quantised as the signature does."""
    output = upscale_tensor(model, image.astype(np.float32) / 255.0, scale)
    return pixels.to_uint8(output)


def _run(args, cwd=ROOT, **environment):
    """Runs a command with TF's C++ logging quiet; returns the CompletedProcess."""
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT),
                   **environment}
    return subprocess.run(args, capture_output=True, text=True, env=environment, cwd=cwd,
                          timeout=300)


def _one_line_error(result, words):
    """The command failed with exit status 1 and one line on stderr that starts with `words`."""
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines()
             if line.strip() and not line.startswith(("I0000", "W0000", "E0000", "WARNING"))]
    assert len(lines) == 1 and lines[0].startswith(words), lines


def _tree(folder):
    """{relative path: sha256} of every file under `folder`, and the folders."""
    folder = pathlib.Path(folder)
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            if path.is_file() else "folder" for path in sorted(folder.rglob("*"))}


def _user_files(folder):
    """A folder of files a user owns: what no export may replace."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "holiday.jpg").write_bytes(b"\xff\xd8\xff not really a photo")
    (folder / "notes").mkdir()
    (folder / "notes" / "todo.txt").write_text("back up the photos")
    return _tree(folder)


@pytest.fixture(scope="module")
def image(datasets_dir):
    """A real 24×32 RGB crop (a batch of one)."""
    return read_image(datasets_dir / "Set5" / "bird.png")[100:124, 120:152][None]


@pytest.fixture(scope="module")
def saved_model_dir(tiny_model, tmp_path_factory):
    """The tiny model exported once, by the command line in this process (the library does the
    work; test_export_logging.py runs it as a process)."""
    folder = tmp_path_factory.mktemp("serving")
    weights = folder / "asdn.weights.h5"
    tiny_model.save_weights(weights)
    path = folder / "asdn" / "1"
    status, out, err = export_cli("saved_model", f"--output_dir={path}", f"--weights={weights}",
                                  "--preset=tiny", f"--max_output_pixels={MAX_OUTPUT_PIXELS}")
    assert status == 0, err
    assert "signatures serving_default" in out
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


@pytest.mark.slow
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
    # The batch signatures declare any shape and check [batch, height, width, 3] themselves.
    assert loaded.signatures["serving_default"].structured_input_signature[1]["image"].shape \
        .rank is None
    leftovers = [p.name for p in saved_model_dir.parent.iterdir() if p.name != "1"]
    assert leftovers == []


@pytest.mark.parametrize("scale", [1.27, 2.0, 3.3])
def test_uint8_signature_matches_in_process_model(loaded, tiny_model, image, scale):
    output = loaded.signatures["serving_default"](image=tf.constant(image),
                                                  scale=tf.constant(scale))["image"].numpy()
    expected = _reference_uint8(tiny_model, image, scale)
    assert output.shape == expected.shape == (1, *asdn_tf.nn.lfr.output_size(24, 32, scale), 3)
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
        # What the CLI decodes (Pillow); for a JPEG, TF's accurate IDCT gives the same pixels.
        decoded = np.asarray(Image.open(io.BytesIO(encoded.numpy())).convert("RGB"))[None]
        np.testing.assert_array_equal(tf.io.decode_png(png).numpy()[None],
                                      loaded.signatures["serving_default"](
                                          image=tf.constant(decoded),
                                          scale=tf.constant(2.5))["image"].numpy())


@pytest.mark.slow
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
    """serving/client.py's gRPC request and REST JSON, answered through the session."""
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


def test_client_writes_only_where_it_may(image, tmp_path, monkeypatch, capsys):
    client = _load_client()
    monkeypatch.setattr(client, "predict_rest", lambda *args, **kwargs: b"upscaled PNG")
    source = tmp_path / "in.png"
    source.write_bytes(tf.io.encode_png(image[0]).numpy())
    mine = tmp_path / "mine.png"
    mine.write_bytes(b"my picture")
    (tmp_path / "notes.txt").write_text("not an image")
    before = _tree(tmp_path)
    for args, words in (([f"--output={mine}"], "already exists"),
                        ([f"--output={source}", "--overwrite"], "is the input image"),
                        ([f"--output={tmp_path}", "--overwrite"], "is a folder"),
                        ([f"--image={tmp_path / 'notes.txt'}", f"--output={tmp_path / 'n.png'}"],
                         "is not a PNG or JPEG file")):
        assert client.main([f"--image={source}", "--scale=2", *args]) == 1
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1 and words in lines[0], lines
    with pytest.raises(SystemExit, match="2"):
        client.main([f"--image={source}", "--scale=x", f"--output={tmp_path / 'o.png'}"])
    assert capsys.readouterr().err == "error: argument --scale: invalid float value: 'x'\n"
    assert _tree(tmp_path) == before
    assert client.main([f"--image={source}", "--scale=2", f"--output={mine}", "--overwrite"]) == 0
    assert mine.read_bytes() == b"upscaled PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "mine.png", "notes.txt"]


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
    with pytest.raises(tf.errors.InvalidArgumentError, match="must be a PNG or JPEG file"):
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
        saved_model.export_saved_model(tiny_model, existing)

    def broken_save(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", broken_save)
    with pytest.raises(RuntimeError, match="disk full"):
        saved_model.export_saved_model(tiny_model, tmp_path / "2")
    assert [p.name for p in tmp_path.iterdir()] == ["1"]
    with pytest.raises(ValueError, match="takes an ASDN"):
        saved_model.export_saved_model(asdn_tf.build_fsdn("tiny", 2), tmp_path / "3")
    with pytest.raises(ValueError, match="max_output_pixels"):
        saved_model.export_saved_model(tiny_model, tmp_path / "3", max_output_pixels=0)
    with pytest.raises(ValueError, match="max_scale must be a finite number above 1"):
        saved_model.export_saved_model(tiny_model, tmp_path / "3", max_scale=1.0)


@pytest.mark.slow
@pytest.mark.parametrize("args,words", [
    (["saved_model", "--weights=missing.weights.h5"], "export: weights file not found"),
    (["tflite", "--weights=missing.keras", "--scale=2", "--images=.", "--output=m.tflite",
      "--input_size=12"], "export: --input_size must be HEIGHTxWIDTH"),
    (["tflite", "--weights=missing.keras", "--scale=2", "--images=.", "--output=m.tflite",
      "--quantize=bogus"], "export: flag --quantize=bogus: value should be one of"),
])
def test_cli_errors_are_one_line(tmp_path, args, words):
    target = tmp_path / "out"
    if args[0] == "saved_model":
        args = args + [f"--output_dir={target}"]
    result = _run([sys.executable, "-m", "asdn_tf.export", *args])
    _one_line_error(result, words)
    assert not target.exists() and not (ROOT / "m.tflite").exists()


# Runs each command line of a JSON list through `run_cli` with TensorFlow blocked (an import
# of it raises, and the traceback fails the child): prints [status, stderr] for each.
_REFUSE_WITHOUT_TENSORFLOW = BLOCK_TENSORFLOW + """
import contextlib, io, json
from asdn_tf.cli import export
said = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = export.run_cli(["export", *argv])
    said.append([status, err.getvalue()])
assert "tensorflow" not in sys.modules
print(json.dumps(said))
"""


def test_what_can_be_refused_is_refused_before_tensorflow_loads(tmp_path):
    """Flags, outputs and the model's files are checked for every format before TensorFlow
    loads: a refused command answers at once, in one line, having written nothing."""
    (tmp_path / "old").mkdir()
    (tmp_path / "notes.onnx").write_text("not a model")
    (tmp_path / "file").write_text("")
    before = _tree(tmp_path)
    cases = [
        (["saved_model", "--output_dir=out/1", "--max_scale=1"],
         1, "export: max_scale must be a finite number above 1"),
        (["saved_model", "--output_dir=old"], 1, "export: old already exists"),
        (["saved_model", "--output_dir=.", "--overwrite"], 1,
         "export: refusing to write an export at .: it is the working folder"),
        (["saved_model", "--output_dir=out/2", "--fsdn=missing.h5"], 1,
         "export: --fsdn: weights file not found: missing.h5"),
        (["saved_model", "--output_dir=out/3", "--weights=missing.h5"], 1,
         "export: weights file not found: missing.h5"),
        (["tflite", "--scale=2.5", "--images=file", "--output=m.tflite"], 1,
         "export: a TFLite export is an FSDN"),
        (["tflite", "--scale=2", "--images=file", "--output=m.tflite", "--input_size=12"], 1,
         "export: --input_size must be HEIGHTxWIDTH"),
        (["tflite", "--quantize=bogus"], 1, "export: flag --quantize=bogus: value should be"),
        (["onnx", "--scale=40", "--output=m.onnx"], 1, "export: --scale must be at most 32"),
        (["onnx", "--scale=2", "--output=notes.onnx", "--overwrite"], 1,
         "export: refusing to replace notes.onnx: it is not an ONNX export of asdn_tf"),
        (["onnx", "--scale=2", "--output=m.onnx", "--images=old"], 1,
         "export: no images found in old"),
        (["onnx", "--scale=2", "--output=m.onnx", "--quantize=int8"], 2,
         "export: --quantize does not apply to onnx"),
        (["ncnn", "--scale=5", "--output=models"], 1, "export: --scale must be one of 2, 3, 4, 8"),
        (["ncnn", "--scale=2", "--output=models", "--preset=tiny"], 1,
         "export: --preset needs --weights"),
    ]
    result = _run([sys.executable, "-c", _REFUSE_WITHOUT_TENSORFLOW,
                   json.dumps([argv for argv, _, _ in cases])], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    for (argv, status, words), (got, err) in zip(cases, json.loads(result.stdout)):
        lines = err.splitlines()
        assert got == status and len(lines) == 1 and lines[0].startswith(words), (argv, err)
    assert _tree(tmp_path) == before


def test_import_defines_no_flags():
    from absl import flags
    assert "quantize" not in flags.FLAGS and "output_dir" not in flags.FLAGS


def test_uint8_rounds_halves_away_from_zero(loaded, image):
    """As MATLAB and the benchmark round (`pixels.to_uint8`), not half to even."""
    as_float = loaded.signatures["upscale_float"](image=tf.constant(pixels.to_float(image)),
                                                  scale=tf.constant(2.5))["image"].numpy()
    as_uint8 = loaded.signatures["serving_default"](image=tf.constant(image),
                                                    scale=tf.constant(2.5))["image"].numpy()
    np.testing.assert_array_equal(as_uint8, pixels.to_uint8(as_float))


def _constant_model(values):
    """A tiny ASDN whose every output pixel is `values` (RGB, float32): each branch's 1×1 conv
    to RGB has zero weights and these biases, and there is no attention or skip after it."""
    model = asdn_tf.build_model(dataclasses.replace(config.preset("tiny"),
                                                    spatial_attention=False, global_skip=False))
    model.set_weights([np.zeros_like(weight) for weight in model.get_weights()])
    for branch in model.branches:
        branch.to_rgb.bias.assign(values)
    return model


@pytest.mark.slow
def test_cli_and_saved_model_give_the_same_bytes_on_exact_halves(tmp_path):
    """`asdn_tf.upscale` (what the command line runs) and the SavedModel quantise an output
    whose values times 255 are exactly 0.5, 2.5 and 4.5 to 1, 3 and 5 (half to even: 0, 2, 4)."""
    values = np.float32([0.5, 2.5, 4.5]) / np.float32(255)
    assert np.all(values * np.float32(255) % 1 == 0.5)
    model = _constant_model(values)
    image = np.full((6, 5, 3), 77, np.uint8)
    on_cli = asdn_tf.upscale(image, 2.5, model=model, tile=0)
    loaded = tf.saved_model.load(str(saved_model.export_saved_model(model, tmp_path / "constant")))
    served = loaded.signatures["serving_default"](image=tf.constant(image[None]),
                                                  scale=tf.constant(2.5))["image"].numpy()[0]
    assert on_cli.dtype == served.dtype == np.uint8
    np.testing.assert_array_equal(on_cli, served)
    np.testing.assert_array_equal(on_cli, np.broadcast_to(np.uint8([1, 3, 5]), (15, 13, 3)))


# ---------------------------------------------------------------------------------------------
# What an export may write over


@pytest.fixture(scope="module")
def tiny_weights(tiny_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "asdn.weights.h5"
    tiny_model.save_weights(path)
    return path


def _saved_model_command(tiny_weights, output_dir, *flags, cwd=ROOT):
    return _run([sys.executable, "-m", "asdn_tf.export", "saved_model",
                 f"--output_dir={output_dir}", f"--weights={tiny_weights}", "--preset=tiny",
                 f"--max_output_pixels={MAX_OUTPUT_PIXELS}", *flags], cwd=cwd)


@pytest.mark.slow
def test_overwrite_replaces_an_earlier_saved_model(tiny_model, saved_model_dir, tmp_path):
    """The replaced folder is what a fresh export of the model writes. (`saved_model_dir` holds
    a model loaded from the same weights, whose variables this process names apart.)"""
    earlier = tmp_path / "asdn" / "1"
    shutil.copytree(saved_model_dir, earlier)
    (earlier / "variables" / "variables.index").write_bytes(b"an older version")
    saved_model.export_saved_model(tiny_model, earlier, max_output_pixels=MAX_OUTPUT_PIXELS,
                                   overwrite=True)
    fresh = saved_model.export_saved_model(tiny_model, tmp_path / "fresh",
                                           max_output_pixels=MAX_OUTPUT_PIXELS)
    assert set(_tree(earlier)) == set(_tree(fresh)) == set(_tree(saved_model_dir))
    assert (earlier / "variables" / "variables.index").read_bytes() == (
        fresh / "variables" / "variables.index").read_bytes()
    assert [p.name for p in earlier.parent.iterdir()] == ["1"]


@pytest.mark.parametrize("layout", ["user files", "a SavedModel and a user file",
                                    "a user file in variables/", "a user file in assets/",
                                    "a file", "a symbolic link"])
def test_overwrite_refuses_what_is_not_a_saved_model(tiny_model, saved_model_dir, tmp_path,
                                                     layout):
    target = tmp_path / "out"
    if layout == "user files":
        _user_files(target)
    elif layout == "a file":
        target.write_text("my thesis")
    elif layout == "a symbolic link":
        _user_files(tmp_path / "mine")
        target.symlink_to(tmp_path / "mine")
    else:
        shutil.copytree(saved_model_dir, target)
        inside = {"a user file in variables/": "variables", "a user file in assets/": "assets"}
        (target / inside.get(layout, "") / "mine.txt").write_text("x")
    before = _tree(tmp_path)
    with pytest.raises((FileExistsError, ValueError), match="refusing to replace"):
        saved_model.export_saved_model(tiny_model, target, overwrite=True)
    assert _tree(tmp_path) == before


@pytest.mark.slow
def test_cli_overwrite_leaves_a_folder_of_user_files_alone(tiny_weights, tmp_path):
    before = _user_files(tmp_path / "photos")
    result = _saved_model_command(tiny_weights, tmp_path / "photos", "--overwrite")
    _one_line_error(result, "export: refusing to replace")
    assert "holiday.jpg" in result.stderr and _tree(tmp_path / "photos") == before


@pytest.mark.slow
@pytest.mark.parametrize("where", [".", "..", "working folder"])
def test_cli_never_writes_over_the_working_folder_or_one_holding_it(tiny_weights, tmp_path,
                                                                    where):
    working = tmp_path / "work"
    before = _user_files(working)
    output_dir = working if where == "working folder" else where
    result = _saved_model_command(tiny_weights, output_dir, "--overwrite", cwd=working)
    _one_line_error(result, "export: refusing to write an export at")
    assert _tree(working) == before and sorted(p.name for p in tmp_path.iterdir()) == ["work"]


def test_home_and_root_are_never_outputs(tmp_path, monkeypatch):
    home = tmp_path / "home"
    before = _user_files(home)
    monkeypatch.setenv("HOME", str(home))  # Path.home(), so a broken check spoils no real home
    for path, words in ((home, "the home folder"), (pathlib.Path("/"), "the working folder")):
        for kind in ("saved_model", "tflite"):
            with pytest.raises(ValueError, match=f"refusing to write an export at .*{words}"):
                output_files.check_output(path, FORMATS[kind].output, overwrite=True)
    assert _tree(home) == before


@pytest.mark.slow
def test_tflite_overwrite_replaces_only_a_tflite_file(fsdn, set5, tmp_path):
    earlier = tmp_path / "earlier.tflite"
    earlier.write_bytes(bytes(4) + b"TFL3" + bytes(8))
    output_files.check_output(earlier, output_kinds.tflite_problem, overwrite=True)
    not_a_model = tmp_path / "notes.tflite"
    not_a_model.write_text("not a model")
    before = _user_files(tmp_path / "folder")
    for path, words in ((not_a_model, "not a TFLite model"), (tmp_path / "folder", "a folder")):
        with pytest.raises(FileExistsError, match=words):
            output_files.check_output(path, output_kinds.tflite_problem, overwrite=True)
    weights = tmp_path / "fsdn.weights.h5"
    fsdn.save_weights(weights)
    result = _run([sys.executable, "-m", "asdn_tf.export", "tflite", f"--weights={weights}",
                   "--preset=tiny", "--scale=2", f"--images={set5}",
                   f"--output={tmp_path / 'folder'}", "--overwrite"])
    _one_line_error(result, "export: refusing to replace")
    assert _tree(tmp_path / "folder") == before and not_a_model.read_text() == "not a model"


def test_full_disk_is_one_line_and_leaves_nothing(tiny_model, tmp_path, monkeypatch):
    def full_disk(module, path, signatures):
        pathlib.Path(path, "variables").mkdir(parents=True)
        pathlib.Path(path, "saved_model.pb").write_bytes(b"half")
        raise tf.errors.ResourceExhaustedError(
            None, None, f"{path}/variables/variables.data-00000-of-00001; No space left on "
            "device\n\t[[{{node SaveV2}}]]")

    monkeypatch.setattr(tf.saved_model, "save", full_disk)
    with pytest.raises(OSError, match=r"^cannot write .*models/asdn/1: .*No space left on "
                                      r"device$"):
        saved_model.export_saved_model(tiny_model, tmp_path / "models" / "asdn" / "1")

    def no_space(path):
        path.write_bytes(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    with pytest.raises(OSError, match=r"^cannot write .*m\.tflite: No space left on device$"):
        output_files.write_export(tmp_path / "lite" / "m.tflite", no_space,
                                  output_kinds.tflite_problem, False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_cli_full_disk_is_one_line(tiny_weights, tmp_path, monkeypatch):
    """In this process: a traceback would be the exception escaping `run_cli`."""
    def full_disk(*args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")

    monkeypatch.setattr(tf.saved_model, "save", full_disk)
    status, _, err = export_cli("saved_model", f"--output_dir={tmp_path / 'asdn' / '1'}",
                                f"--weights={tiny_weights}", "--preset=tiny")
    assert status == 1 and err.splitlines() == [
        f"export: cannot write {tmp_path / 'asdn' / '1'}: No space left on device"], err
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def unwritable_folder(tmp_path):
    """A folder no file can be created in: read-only for a user; sysfs for root, whom
    permissions do not stop."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    for candidate in (folder, pathlib.Path("/sys")):
        try:
            fileio.check_writable(candidate)
        except OSError:
            yield candidate
            break
    else:
        pytest.skip("no folder here refuses to be written")
    folder.chmod(0o755)


@pytest.mark.slow
def test_unwritable_folder_is_reported_before_any_work(unwritable_folder, tmp_path):
    """The weights are missing too: the folder is what the command reports, as it checks the
    output before it loads anything."""
    result = _run([sys.executable, "-m", "asdn_tf.export", "saved_model",
                   f"--output_dir={unwritable_folder / 'asdn_export'}",
                   f"--weights={tmp_path / 'missing.weights.h5'}"])
    _one_line_error(result, f"export: cannot write to folder {unwritable_folder}")
    result = _run([sys.executable, "-m", "asdn_tf.export", "tflite",
                   f"--output={unwritable_folder / 'm.tflite'}", "--scale=2",
                   f"--weights={tmp_path / 'missing.weights.h5'}", f"--images={tmp_path}"])
    _one_line_error(result, f"export: cannot write to folder {unwritable_folder}")


@pytest.mark.slow
def test_runs_from_a_folder_holding_a_clone_named_asdn_tf(tmp_path):
    """From there `asdn_tf` is the clone (a namespace package: python -m puts the working
    folder first on sys.path), and a top-level folder of the clone named like a module of the
    package, as export/ was, is found before that module."""
    try:
        importlib.metadata.distribution("asdn_tf")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("asdn_tf is not installed (pip install -e .)")
    (tmp_path / "asdn_tf").symlink_to(ROOT, target_is_directory=True)
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-m", "asdn_tf.export", "saved_model",
                             "--output_dir=out", "--weights=missing.weights.h5"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300,
                            env={**environment, "TF_CPP_MIN_LOG_LEVEL": "2"})
    _one_line_error(result, "export: weights file not found")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["asdn_tf"]


# ---------------------------------------------------------------------------------------------
# TFLite


@pytest.fixture(scope="module")
def fsdn(tiny_model):
    keras.utils.set_random_seed(1)
    return asdn_tf.init_from_asdn(asdn_tf.build_fsdn("tiny", 2), tiny_model)


@pytest.fixture(scope="module")
def set5(datasets_dir):
    return datasets_dir / "Set5"


@pytest.mark.parametrize("quantize", tflite.QUANTIZATIONS)
def test_tflite_matches_keras(fsdn, set5, quantize):
    content = tflite.convert_tflite(fsdn, quantize, input_size=(40, 48),
                                    representative_images=set5, calibration_patches=8)
    result = tflite.verify_tflite(content, fsdn, tflite.verification_images(set5, (40, 48)),
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
              zip(tflite.verification_images(set5, max_side=40), [(40, 40), (17, 29), (33, 12)])]
    result = tflite.verify_tflite(tflite.convert_tflite(fsdn, "none"), fsdn, images, "none")
    assert result["images"] == 3 and result["ok"], result
    with pytest.raises(ValueError, match="takes .1, 40, 48, 3."):
        tflite.verify_tflite(tflite.convert_tflite(fsdn, "none", input_size=(40, 48)), fsdn,
                             images)


def test_tflite_argument_errors(fsdn, set5):
    with pytest.raises(ValueError, match="quantize must be one of"):
        tflite.convert_tflite(fsdn, "int4")
    with pytest.raises(ValueError, match="representative images"):
        tflite.convert_tflite(fsdn, "int8")
    with pytest.raises(ValueError, match="at least 600x600"):
        tflite.representative_patches(set5, (600, 600), 4)


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


@pytest.mark.slow
def test_cli_tflite(fsdn, set5, tmp_path):
    weights = tmp_path / "fsdn.weights.h5"
    fsdn.save_weights(weights)
    output = tmp_path / "m.tflite"
    status, out, err = export_cli("tflite", f"--weights={weights}", "--preset=tiny", "--scale=2",
                                  "--quantize=int8", "--calibration_patches=8",
                                  f"--images={set5}", f"--output={output}")
    assert status == 0, err
    assert "quantize=int8, input dynamic HxW" in out
    assert "PSNR" in out and "requirement PSNR ≥ 35 dB: met" in out
    size = float(out.split("input dynamic HxW: ")[1].split(" MB")[0])
    assert abs(size - output.stat().st_size / 1e6) < 1e-3
    assert [p.name for p in tmp_path.iterdir() if p.suffix != ".h5"] == ["m.tflite"]


def test_export_without_a_known_command_prints_its_usage(capsys):
    from asdn_tf.cli import export as export_command

    assert export_command.main(["export", "pdf"]) == 2
    assert capsys.readouterr().err == (
        "export: usage: python -m asdn_tf.export saved_model|tflite|onnx|ncnn [--flags]\n")
