"""The exports carry the FSDN where it applies: a fixed-scale file at a scale the bundled FSDN
has holds that FSDN's head, and the SavedModel runs `asdn_tf.upscale`'s plan (the FSDN's
integer steps, then ASDN for the rest), or ASDN's recursion alone with --fsdn=none."""

import types

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import asdn_tf
from asdn_tf.cli import export as export_command
from asdn_tf.inference import weights_io
from asdn_tf.inference.engine import upscale_tensor
from asdn_tf.io import pixels
from conftest import export_cli
from test_fsdn_plan import _networks, _saved_fsdn

SCALES = (1.5, 2, 2.5, 3, 3.3, 4, 5.7, 8)
BUNDLED_FSDN = weights_io.WEIGHTS_FOLDER / f"{weights_io.BUNDLED_FSDN['default']}.weights.h5"


def _export(*args):
    """The command in this process (`run_cli`: the bundled networks load once for the module);
    test_export.py, test_onnx.py and test_ncnn.py run it as a process too."""
    status, out, err = export_cli(*args)
    return types.SimpleNamespace(returncode=status, stdout=out, stderr=err)


def _error_lines(result):
    return [line for line in result.stderr.splitlines()
            if line.startswith("export:") or "Traceback" in line]


def _bundled_head(scale):
    """The bundled FSDN's head for `scale`, as `asdn_tf.load_model` gives it."""
    return weights_io.load_model(BUNDLED_FSDN, fsdn_scale=scale, precision="float32")


@pytest.fixture(scope="module")
def image():
    """An odd-sized RGB image (23×31)."""
    return np.random.default_rng(1).integers(0, 256, (23, 31, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def networks(tmp_path_factory):
    """(tiny ASDN, tiny ×2/×3/×4 FSDN, the ASDN's weights file, the FSDN's weights file)."""
    folder = tmp_path_factory.mktemp("networks")
    asdn, fsdn = _networks()
    asdn.save_weights(folder / "asdn.weights.h5")
    return asdn, fsdn, folder / "asdn.weights.h5", _saved_fsdn(folder, fsdn)


def _saved_model(networks, folder, *flags):
    _, _, asdn_path, fsdn_path = networks
    output = folder / "asdn" / "1"
    flags = [flag.format(fsdn=fsdn_path) for flag in flags]
    result = _export("saved_model", f"--output_dir={output}", f"--weights={asdn_path}",
                     "--preset=tiny", *flags)
    assert result.returncode == 0, result.stderr[-2000:]
    return output, result.stdout


@pytest.fixture(scope="module")
def plan_export(networks, tmp_path_factory):
    return _saved_model(networks, tmp_path_factory.mktemp("plan"), "--fsdn={fsdn}")


@pytest.fixture(scope="module")
def plan_loaded(plan_export):
    """`plan_export` loaded once for the module (a load is most of a case's cost)."""
    return tf.saved_model.load(str(plan_export[0]))


@pytest.mark.slow
@pytest.mark.parametrize("scale", SCALES)
def test_the_saved_model_runs_the_plan_of_upscale(networks, plan_export, plan_loaded, image,
                                                  scale):
    asdn, fsdn, _, fsdn_path = networks
    assert f"plan: x2, x3, x4 by the FSDN from {fsdn_path}, then ASDN" in plan_export[1]
    loaded = plan_loaded
    expected = asdn_tf.upscale(image, scale, model=asdn, fsdn=fsdn).astype(int)
    uint8 = loaded.signatures["serving_default"](image=tf.constant(image[None]),
                                                 scale=tf.constant(scale, tf.float32))["image"]
    as_float = loaded.signatures["upscale_float"](
        image=tf.constant(pixels.to_float(image)[None]),
        scale=tf.constant(scale, tf.float32))["image"]
    for output in (uint8.numpy()[0], pixels.to_uint8(as_float.numpy()[0])):
        assert output.shape == expected.shape
        assert np.abs(output.astype(int) - expected).max() <= 1, scale


@pytest.mark.slow
def test_the_plan_is_served_as_tf_serving_loads_it(networks, plan_export, image):
    """The session loader TF Serving uses finds the FSDN's variables too."""
    asdn, fsdn, _, _ = networks
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"],
                                                          str(plan_export[0]))
        signature = meta_graph.signature_def["serving_default"]
        output = session.run(signature.outputs["image"].name, {
            signature.inputs["image"].name: image[None],
            signature.inputs["scale"].name: np.float32(3.3)})[0]
    expected = asdn_tf.upscale(image, 3.3, model=asdn, fsdn=fsdn).astype(int)
    assert np.abs(output.astype(int) - expected).max() <= 1


@pytest.mark.slow
def test_requests_are_checked_as_before(plan_loaded, image):
    loaded = plan_loaded
    for scale, words in [(float("nan"), "scale must be a finite number"),
                         (1.0, "scale must be greater than 1"), (40.0, "scale must be at most 32")]:
        with pytest.raises(tf.errors.InvalidArgumentError, match=words):
            loaded.signatures["serving_default"](image=tf.constant(image[None]),
                                                 scale=tf.constant(scale, tf.float32))


@pytest.mark.slow
def test_fsdn_none_keeps_asdns_recursion_alone(networks, plan_loaded, image, tmp_path):
    asdn = networks[0]
    folder, stdout = _saved_model(networks, tmp_path, "--fsdn=none")
    assert "plan: ASDN's x2 recursion alone" in stdout
    alone = tf.saved_model.load(str(folder)).signatures["upscale_float"]
    plan = plan_loaded.signatures["upscale_float"]
    batch = tf.constant(pixels.to_float(image)[None])
    for scale in (2, 3.3):
        scale = tf.constant(scale, tf.float32)
        output = alone(image=batch, scale=scale)["image"]
        np.testing.assert_allclose(output, upscale_tensor(asdn, batch, scale), atol=1e-5)
        assert np.abs(output - plan(image=batch, scale=scale)["image"]).max() > 0.01


def test_an_explicit_size_the_integer_steps_miss_runs_asdn_alone(networks, image):
    """As in `recursion.plan`: ×3 to one more column than 3·31 is ASDN's ×2 then ×1.5."""
    asdn, fsdn = networks[:2]
    batch = pixels.to_float(image)[None]
    output = upscale_tensor(asdn, batch, 3.0, size=(69, 94), fsdn=fsdn)
    np.testing.assert_allclose(output, upscale_tensor(asdn, batch, 3.0, size=(69, 94)),
                               atol=1e-6)
    expected = asdn_tf.upscale(image, 3, model=asdn, size=(69, 94), fsdn=fsdn).astype(int)
    assert np.abs(pixels.to_uint8(output.numpy()[0]).astype(int) - expected).max() <= 1


def _flags(weights=None, fsdn="auto"):
    return types.SimpleNamespace(weights=weights, preset=None, fsdn=fsdn)


def test_a_fixed_scale_the_bundled_fsdn_has_chooses_its_head():
    for scale in (2, 3.0, 4):
        model, words = export_command.chosen_model(_flags(), scale)
        assert isinstance(model, asdn_tf.FSDN) and model.scales == (int(scale),)
        assert words == "the bundled fsdn_default weights"
        for mine, bundled in zip(model.get_weights(), _bundled_head(int(scale)).get_weights()):
            np.testing.assert_array_equal(mine, bundled)
    for scale in (None, 2.5, 8):
        model, words = export_command.chosen_model(_flags(), scale)
        assert isinstance(model, asdn_tf.ASDN) and words == "the bundled default weights"
    fsdn, words = export_command.chosen_fsdn(_flags())
    assert fsdn.scales == (2, 3, 4) and words == "the bundled fsdn_default weights"
    assert export_command.chosen_fsdn(_flags(fsdn="none")) == (None, None)
    assert export_command.chosen_fsdn(_flags(weights=str(BUNDLED_FSDN))) == (None, None)


@pytest.fixture(scope="module")
def small_images(tmp_path_factory):
    """A folder of one small photograph crop, for a quick verification."""
    from asdn_tf.export import verification
    folder = tmp_path_factory.mktemp("images")
    photo = verification.read_verification_images()[0]
    Image.fromarray(pixels.to_uint8(photo[200:248, 150:206])).save(folder / "crop.png")
    return folder


@pytest.mark.slow
def test_onnx_at_a_bundled_fsdn_scale_holds_its_head(tmp_path, small_images):
    import onnxruntime

    output = tmp_path / "x2.onnx"
    result = _export("onnx", "--scale=2", f"--output={output}", f"--images={small_images}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("x2 FSDN from the bundled fsdn_default weights")
    crop = np.random.default_rng(2).random((1, 19, 27, 3), np.float32)
    session = onnxruntime.InferenceSession(output.read_bytes(),
                                           providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(["sr"], {"image": crop})[0],
                               np.clip(_bundled_head(2)(crop), 0, 1), atol=1e-4)


@pytest.mark.slow
def test_ncnn_at_a_bundled_fsdn_scale_holds_its_head(tmp_path, small_images):
    from asdn_tf.export import ncnn as ncnn_export

    folder = tmp_path / "models"
    result = _export("ncnn", "--scale=3", f"--output={folder}", f"--images={small_images}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("x3 FSDN from the bundled fsdn_default weights")
    assert sorted(path.name for path in folder.iterdir()) == ["fsdn-x3.bin", "fsdn-x3.param"]
    net = ncnn_export.load_net(folder / "fsdn-x3.param", folder / "fsdn-x3.bin")
    crop = np.random.default_rng(3).random((21, 17, 3), np.float32)
    np.testing.assert_allclose(ncnn_export.run_net(net, crop),
                               np.clip(_bundled_head(3)(crop[None])[0], 0, 1), atol=1e-3)


@pytest.mark.slow
def test_tflite_without_weights_is_the_bundled_fsdn(tmp_path, small_images):
    from ai_edge_litert.interpreter import Interpreter

    output = tmp_path / "x4.tflite"
    result = _export("tflite", "--scale=4", f"--output={output}", f"--images={small_images}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("x4 FSDN from the bundled fsdn_default weights, "
                                    "quantize=none")
    interpreter = Interpreter(model_path=str(output))
    crop = np.random.default_rng(4).random((1, 13, 15, 3), np.float32)
    interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], crop.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], crop)
    interpreter.invoke()
    np.testing.assert_allclose(
        interpreter.get_tensor(interpreter.get_output_details()[0]["index"]),
        _bundled_head(4)(crop), atol=1e-4)  # as the Keras FSDN gives it: not clipped


@pytest.mark.slow
def test_tflite_without_weights_refuses_a_scale_the_bundled_fsdn_lacks(tmp_path, small_images):
    output = tmp_path / "x5.tflite"
    result = _export("tflite", "--scale=5", f"--output={output}", f"--images={small_images}")
    assert result.returncode == 1 and _error_lines(result) == [
        "export: the bundled models have no FSDN for x5; pass --weights=FILE, an FSDN for x5"]
    assert not output.exists()


def _onnx_networks():
    """`_networks` with each head's bicubic skip as built: the ONNX file computes the skip from
    constants (`onnx_resize`), and `_networks` perturbs every weight, the fixed ones too."""
    asdn, fsdn = _networks()
    for head, built in zip(fsdn.heads, asdn_tf.build_fsdn("tiny", fsdn.scales).heads):
        head.skip.kernel.assign(built.skip.kernel)
    return asdn, fsdn


@pytest.mark.slow
def test_the_any_scale_onnx_file_runs_the_plan_of_upscale(image):
    import onnxruntime
    from asdn_tf.export import onnx as onnx_export

    asdn, fsdn = _onnx_networks()
    content = onnx_export.convert_onnx(asdn, None, description="tiny", fsdn=fsdn)
    session = onnxruntime.InferenceSession(content, providers=["CPUExecutionProvider"])
    for scale in SCALES:
        output = session.run(["sr"], {"image": pixels.to_float(image)[None],
                                      "scale": np.array(scale, np.float64)})[0][0]
        expected = asdn_tf.upscale(image, scale, model=asdn, fsdn=fsdn).astype(int)
        assert output.shape == expected.shape
        assert np.abs(pixels.to_uint8(output).astype(int) - expected).max() <= 1, scale
    with pytest.raises(ValueError, match="an FSDN plan is for any-scale graphs"):
        onnx_export.convert_onnx(asdn, 2.5, fsdn=fsdn)


@pytest.mark.slow
def test_the_any_scale_onnx_command_carries_the_bundled_fsdn(tmp_path, small_images, image):
    import onnxruntime

    output = tmp_path / "any.onnx"
    result = _export("onnx", "--any_scale", f"--output={output}", f"--images={small_images}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(
        "any scale (input 'scale') ASDN from the bundled default weights, the integer part of "
        "each scale (x2, x3, x4) by the FSDN from the bundled fsdn_default weights")
    session = onnxruntime.InferenceSession(output.read_bytes(),
                                           providers=["CPUExecutionProvider"])
    output = session.run(["sr"], {"image": pixels.to_float(image)[None],
                                  "scale": np.array(3.3, np.float64)})[0][0]
    expected = asdn_tf.upscale(image, 3.3, model="default", precision="float32").astype(int)
    assert np.abs(pixels.to_uint8(output).astype(int) - expected).max() <= 1


@pytest.mark.slow
def test_fsdn_is_refused_for_a_fixed_scale_onnx_file(tmp_path):
    output = tmp_path / "x2.onnx"
    result = _export("onnx", "--scale=2", "--fsdn=none", f"--output={output}")
    assert result.returncode == 1 and _error_lines(result) == [
        "export: --fsdn is for --any_scale files; a fixed-scale file holds --weights, or the "
        "bundled FSDN at a scale it has"]
    assert not output.exists()
