"""The ONNX export: every variant (ASDN one step, on a level, recursive; NCHW; FSDN) run in
ONNX Runtime against Keras, and the command's output, refusals and errors."""

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import onnxruntime
import pytest

import asdn_tf
from asdn_tf.export import onnx as onnx_export
from asdn_tf.export import output_kinds, verification
from asdn_tf.io import pixels
from conftest import export_cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def photo():
    """The quick start's photograph as float32 RGB."""
    return verification.read_verification_images()[0]


def _session(content):
    return onnxruntime.InferenceSession(content, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("scale", [1.5, 2.0, 3.3])
def test_asdn_matches_keras_and_upscale(tiny_model, photo, scale):
    """One blended step, one step on a level, and a recursion of two: ONNX Runtime within a
    grey level of `asdn_tf.upscale` on the photograph, at two sizes (at ×3.3 the 65-row crop
    gives 215 rows: 65 · 3.3 is 214.5 in float64, below it in float32)."""
    content = onnx_export.convert_onnx(tiny_model, scale, description="tiny")
    cases = verification.verification_cases([photo], scale)
    result = onnx_export.verify_onnx(content, tiny_model, cases)
    assert result["ok"] and result["max_abs"] < 1e-4, result
    session = _session(content)
    for crop, _ in cases:
        image = pixels.from_float(crop)
        output = session.run(["sr"], {"image": pixels.to_float(image)[None]})[0][0]
        expected = asdn_tf.upscale(image, scale, model=tiny_model)
        assert output.shape == expected.shape
        assert np.abs(pixels.from_float(output).astype(int) - expected).max() <= 1


def test_nchw_layout_and_metadata(tiny_model, photo):
    content = onnx_export.convert_onnx(tiny_model, 2.5, layout="nchw", description="tiny")
    session = _session(content)
    (image_input,), (output,) = session.get_inputs(), session.get_outputs()
    assert (image_input.name, image_input.shape) == ("image", ["batch", 3, "height", "width"])
    assert (output.name, output.shape) == ("sr", ["batch", 3, "out_height", "out_width"])
    metadata = session.get_modelmeta().custom_metadata_map
    assert metadata["asdn_tf:scale"] == "2.5" and metadata["asdn_tf:layout"] == "NCHW"
    cases = verification.verification_cases([photo], 2.5)
    assert onnx_export.verify_onnx(content, tiny_model, cases, layout="nchw")["ok"]
    with pytest.raises(Exception, match="image"):  # 4 channels: ONNX Runtime names the input
        session.run(["sr"], {"image": np.zeros((1, 4, 8, 8), np.float32)})


def test_fsdn_matches_keras(photo):
    keras.utils.set_random_seed(1)
    fsdn = asdn_tf.build_fsdn("tiny", 2)
    content = onnx_export.convert_onnx(fsdn, 2, description="tiny FSDN")
    cases = verification.verification_cases([photo], 2)
    assert onnx_export.verify_onnx(content, fsdn, cases)["ok"]
    crop = cases[1][0]
    assert _session(content).run(["sr"], {"image": crop[None]})[0].shape == (
        1, 2 * crop.shape[0], 2 * crop.shape[1], 3)
    with pytest.raises(ValueError, match="the FSDN upscales by 2 only"):
        onnx_export.convert_onnx(fsdn, 3)


def test_any_scale_matches_keras(tiny_model, photo):
    """One graph, the scale an input: a blend, a level, recursions of two and three steps."""
    content = onnx_export.convert_onnx(tiny_model, None, description="tiny")
    session = _session(content)
    assert [item.name for item in session.get_inputs()] == ["image", "scale"]
    assert session.get_modelmeta().custom_metadata_map["asdn_tf:scale"] == "any"
    cases = verification.verification_cases([photo], None)
    assert {scale for _, scale in cases} == set(verification.ANY_SCALE_CHECKS)
    result = onnx_export.verify_onnx(content, tiny_model, cases)
    assert result["ok"] and result["max_abs"] < 1e-4, result
    image = np.zeros((1, 10, 20, 3), np.float32)
    for scale, shape in [(1.27, (13, 25)), (40.0, (320, 640)), (0.5, (10, 20))]:  # clamped
        output = session.run(["sr"], {"image": image, "scale": np.array(scale, np.float64)})
        assert output[0].shape == (1, *shape, 3)
    with pytest.raises(ValueError, match="the FSDN upscales by 2 only"):
        onnx_export.convert_onnx(asdn_tf.build_fsdn("tiny", 2), None)


def test_bad_scales_are_refused(tiny_model):
    for scale in (1.0, 33, float("nan")):
        with pytest.raises(ValueError, match="scale"):
            onnx_export.convert_onnx(tiny_model, scale)
    with pytest.raises(ValueError, match="layout must be one of nhwc, nchw"):
        onnx_export.convert_onnx(tiny_model, 2, layout="hwc")


def _run(*args):
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "asdn_tf.export", "onnx", *args],
                          capture_output=True, text=True, env=environment, cwd=ROOT, timeout=600)


def _error_lines(result):
    """stderr without the start-up lines TF's C++ runtime writes before its log is set up."""
    return [line for line in result.stderr.splitlines()
            if line.startswith("export:") or "Traceback" in line]


def test_command_writes_the_bundled_model(tmp_path):
    """Written in this process; refused as a process (the refusal needs no TensorFlow)."""
    output = tmp_path / "models" / "asdn_x1.5.onnx"
    status, out, err = export_cli("onnx", "--scale=1.5", f"--output={output}")
    assert status == 0, err
    assert "ONNX Runtime vs Keras on 2 crops of grace_hopper.jpg: max abs" in out
    assert "PSNR" in out and "requirement max abs <= 0.000784: met" in out
    session = _session(output.read_bytes())
    assert session.run(["sr"], {"image": np.zeros((1, 10, 20, 3), np.float32)})[0].shape == (
        1, 15, 30, 3)
    assert output_kinds.is_onnx_export(output)
    assert [path.name for path in output.parent.iterdir()] == [output.name]
    again = _run("--scale=1.5", f"--output={output}")
    assert again.returncode == 1 and _error_lines(again) == [
        f"export: {output} already exists (pass overwrite / --overwrite to replace an earlier "
        "export)"]


def test_command_writes_an_fsdn(tmp_path):
    fsdn = asdn_tf.build_fsdn("tiny", 3)
    weights = tmp_path / "fsdn.weights.h5"
    fsdn.save_weights(weights)
    (tmp_path / "fsdn.json").write_text(json.dumps(
        {"model": "fsdn", "scale": 3, "model_config": fsdn.model_config.to_dict()}))
    output = tmp_path / "fsdn_x3.onnx"
    wrong = export_cli("onnx", f"--weights={weights}", "--scale=2", f"--output={output}")
    assert wrong[0] == 1 and wrong[2].splitlines() == [
        "export: the FSDN upscales by 3 only; pass --scale=3, or ASDN weights for other scales"]
    anything = export_cli("onnx", f"--weights={weights}", "--any_scale", f"--output={output}")
    assert anything[0] == 1 and anything[2].splitlines() == [
        f"export: --any_scale needs an ASDN; {weights} holds an x3 FSDN"]
    status, out, err = export_cli("onnx", f"--weights={weights}", "--scale=3",
                                  f"--output={output}", "--layout=nchw")
    assert status == 0, err
    assert "x3 FSDN from" in out and "NCHW" in out
    assert _session(output.read_bytes()).get_inputs()[0].shape == ["batch", 3, "height", "width"]


def test_command_writes_any_scale(tmp_path, tiny_weights_file):
    output = tmp_path / "any.onnx"
    status, out, err = export_cli("onnx", f"--weights={tiny_weights_file}", "--any_scale",
                                  f"--output={output}")
    assert status == 0, err
    assert out.startswith("any scale (input 'scale') ASDN from")
    assert "on 8 crops at scales 1.35, 2.0, 3.3, 7.3 of grace_hopper.jpg" in out
    session = _session(output.read_bytes())
    output_image = session.run(["sr"], {"image": np.zeros((1, 10, 20, 3), np.float32),
                                        "scale": np.array(3.3, np.float64)})[0]
    assert output_image.shape == (1, 33, 66, 3)


def test_command_refuses_to_write_on_mismatch(tmp_path, monkeypatch):
    output = tmp_path / "m.onnx"
    monkeypatch.setattr(verification, "MAX_ABS_DIFFERENCE", -1.0)
    status, out, err = export_cli("onnx", "--scale=1.5", f"--output={output}")
    assert status == 1 and "NOT met" in out
    assert err.splitlines() == ["export: ONNX Runtime and Keras disagree; nothing written"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args,line", [
    (["--scale=0.5"], "export: --scale must be greater than 1 (1 is not an upscaling) and at "
                      "most 32, got 0.5"),
    (["--scale=40"], "export: --scale must be at most 32 (the configured maximum), got 40"),
    ([], "export: give --scale (a file for that scale) or --any_scale (a file with a scale "
         "input), one of them"),
    (["--scale=2", "--any_scale"], "export: give --scale (a file for that scale) or "
                                   "--any_scale (a file with a scale input), one of them"),
    (["--scale=2", "--weights=missing.weights.h5"],
     "export: weights file not found: missing.weights.h5"),
    (["--scale=2", "--layout=hwc"], "export: flag --layout=hwc: value should be one of "
                                    "<nhwc|nchw>"),
    (["--scale=2", "--quantize=int8"], "export: --quantize does not apply to onnx"),
    (["--scale=2", "--images={tmp}"], "export: no images found in {tmp}"),
])
def test_command_errors_are_one_line(tmp_path, args, line):
    output = tmp_path / "m.onnx"
    args = [arg.format(tmp=tmp_path) for arg in args]
    result = _run(*args, f"--output={output}")
    assert result.returncode != 0 and _error_lines(result) == [line.format(tmp=tmp_path)]
    assert not output.exists()


def test_command_replaces_only_an_onnx_export(tmp_path):
    for name, content, line in [
            ("m.onnx", b"not a model", "refusing to replace {}: it is not an ONNX export of "
                                       "asdn_tf; overwrite replaces only an earlier export, so "
                                       "nothing was touched"),
            ("m.txt", b"", "--output must end in .onnx, got {}")]:
        path = tmp_path / name
        path.write_bytes(content)
        result = _run("--scale=2", f"--output={path}", "--overwrite")
        assert result.returncode == 1 and _error_lines(result) == [
            "export: " + line.format(path)]
        assert path.read_bytes() == content
