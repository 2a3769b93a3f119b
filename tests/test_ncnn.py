"""The NCNN export: names and blobs as upscayl reads them, the files run in the `ncnn` package at
several sizes (odd ones included) against Keras, run as upscayl tiles them, and the command's
output, refusals and errors.

The conversions need pnnx (`pip install --no-deps pnnx`, which .ci/run does): without it those
tests are skipped, except under CI=true, where they fail."""

import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

import asdn_tf
from asdn_tf.export import ncnn as ncnn_export
from asdn_tf.export import command_checks, output_files, output_kinds, verification
from conftest import export_cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Heights and widths the converted files run at: even, odd, and H·W not a multiple of 4 (the
# sizes at which ncnn.Mat(numpy) used to give wrong border rows).
SIZES = ((16, 16), (37, 53), (31, 17), (20, 90))


def upscayl_bin_scale(name):
    """The scale upscayl-bin reads from a model's name (github.com/upscayl/upscayl-ncnn,
    src/main.cpp: the first of x1/1x, x2/2x, x3/3x, x4/4x, x8/8x, x16/16x found; else 4)."""
    for scale in (1, 2, 3, 4, 8, 16):
        if f"x{scale}" in name or f"{scale}x" in name:
            return scale
    return 4


def upscayl_gui_scale(name):
    """The scale upscayl's window reads (github.com/upscayl/upscayl, common/check-model-scale.ts)."""
    name = name.lower()
    return next((scale for scale in (2, 3) if f"x{scale}" in name or f"{scale}x" in name), 4)


def _net(tmp_path, param, weights=b""):
    (tmp_path / "m.param").write_text(param)
    (tmp_path / "m.bin").write_bytes(weights)
    return ncnn_export.load_net(tmp_path / "m.param", tmp_path / "m.bin")


@pytest.fixture(scope="session")
def pnnx():
    try:
        return command_checks.pnnx_binary()
    except ValueError as error:
        if os.environ.get("CI") == "true":
            pytest.fail(str(error))
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def photo():
    return verification.read_verification_images()[0]


def test_names_carry_the_scale_where_upscayl_reads_it(tiny_model):
    fsdn = asdn_tf.build_fsdn("tiny", (2, 3))
    for scale in command_checks.NCNN_SCALES:
        name = ncnn_export.model_name(tiny_model, scale)
        assert name == f"asdn-x{scale}" and upscayl_bin_scale(name) == scale
        if scale in (2, 3, 4):
            assert upscayl_gui_scale(name) == scale
    assert ncnn_export.model_name(fsdn.at_scale(3), 3) == "fsdn-x3"
    assert upscayl_bin_scale("asdn-x16") == 1  # why 16 is not offered


@pytest.mark.parametrize("scale", [2.5, 5, 16, 1, None])
def test_other_scales_are_refused(scale):
    with pytest.raises(ValueError, match="--scale must be one of 2, 3, 4, 8 for NCNN"):
        command_checks.ncnn_scale(scale)


def test_fsdn_scales(tiny_model):
    fsdn = asdn_tf.build_fsdn("tiny", (2, 3))
    assert ncnn_export.fixed_scale_model(fsdn, 3).scales == (3,)
    assert ncnn_export.fixed_scale_model(tiny_model, 4) is tiny_model
    with pytest.raises(ValueError, match="the FSDN upscales by 2, 3 only, not 4"):
        ncnn_export.fixed_scale_model(fsdn, 4)


def test_blobs_are_named_as_realesrgan_ncnn_vulkan_asks():
    param = ("7767517\n3 3\nInput in0 0 1 in0\nReLU relu_0 1 1 in0 1\n"
             "Clip clip_1 1 1 1 out0 0=0.0 1=1.0\n")
    assert ncnn_export.name_blobs(param) == (
        "7767517\n3 3\nInput asdn_tf 0 1 data\nReLU relu_0 1 1 data 1\n"
        "Clip clip_1 1 1 1 output 0=0.0 1=1.0\n")
    with pytest.raises(ValueError, match="pnnx wrote no blob out0"):
        ncnn_export.name_blobs("7767517\n1 1\nInput in0 0 1 in0\n")


def test_input_is_fed_as_ncnn_lays_it_out(tmp_path):
    """The mirrored border as the files build it (single-row Crops and a Concat) is exact at
    every size through `run_net`. Fed as ncnn.Mat(numpy_array), whose channel stride is H·W
    where ncnn's layers expect it rounded up to 16 bytes, the rows came out wrong whenever
    H·W is not a multiple of 4 (37×53, 31×17: up to 0.15 off near the borders)."""
    net = _net(tmp_path, "7767517\n6 8\nInput asdn_tf 0 1 data\nSplit sp 1 3 data a b c\n"
               "Crop top 1 1 a t -23310=1,2 -23311=1,1 -23309=1,1\n"
               "Crop bottom 1 1 b u -23310=1,-1 -23311=1,1 -23309=1,-2\n"
               "Concat cat 3 1 t c u m 0=1\n"
               "Crop left 1 1 m output -23310=1,2 -23311=1,2 -23309=1,1\n")
    rng = np.random.default_rng(0)
    for height, width in ((9, 14), *SIZES):
        image = rng.random((height, width, 3), dtype=np.float32)
        expected = np.concatenate([image[1:2], image, image[-2:-1]])[:, 1:2]
        np.testing.assert_array_equal(ncnn_export.run_net(net, image), expected)


def test_tiles_as_upscayl_cuts_them(tmp_path):
    """`run_tiled` puts each tile's output where it belongs: with a network that sees one pixel
    at a time (nearest ×2), tiles and context make no difference."""
    net = _net(tmp_path, "7767517\n2 2\nInput asdn_tf 0 1 data\n"
               "Interp up 1 1 data output 0=1 1=2.0 2=2.0\n")
    image = np.random.default_rng(1).random((37, 53, 3), dtype=np.float32)
    expected = image.repeat(2, axis=0).repeat(2, axis=1)
    for tile, padding in ((8, 3), (16, 10), (200, 10)):
        np.testing.assert_array_equal(ncnn_export.run_tiled(net, image, 2, tile, padding),
                                      expected)


def test_depth_to_space_is_reordered_for_pixelshuffle():
    """An FSDN's upsampling (Conv, then DepthToSpace in TensorFlow's DCR order) gives the same
    output in PyTorch's CRD order, which pnnx turns into ncnn's PixelShuffle."""
    import onnx
    import onnxruntime
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(2)
    weights = rng.standard_normal((2 * 9, 4, 1, 1)).astype(np.float32)
    bias = rng.standard_normal(2 * 9).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[1, 1]),
         helper.make_node("DepthToSpace", ["y"], ["z"], blocksize=3)], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4, 5, 7])],
        [helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, [1, 2, 15, 21])],
        [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(bias, "b")])
    content = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    content = content.SerializeToString()
    reordered = ncnn_export.crd_depth_to_space(content)
    modes = [{item.name: helper.get_attribute_value(item) for item in proto.graph.node[1].attribute}
             .get("mode", b"DCR") for proto in map(onnx.load_from_string, (content, reordered))]
    assert modes == [b"DCR", b"CRD"]
    image = rng.random((1, 4, 5, 7), dtype=np.float32)
    outputs = [onnxruntime.InferenceSession(each, providers=["CPUExecutionProvider"]).run(
        None, {"x": image})[0] for each in (content, reordered)]
    np.testing.assert_allclose(outputs[1], outputs[0], atol=1e-6)


def test_only_an_earlier_ncnn_export_is_replaced(tmp_path):
    ours = tmp_path / "asdn-x2.param"
    ours.write_text("7767517\n1 1\nInput asdn_tf 0 1 data\n")
    (tmp_path / "asdn-x2.bin").write_bytes(b"\0" * 8)
    foreign = tmp_path / "realesrgan-x4plus.param"
    foreign.write_text("7767517\n1 1\nInput input 0 1 data\n")
    (tmp_path / "realesrgan-x4plus.bin").write_bytes(b"\0" * 8)
    for path in (ours, ours.with_suffix(".bin")):
        output_files.check_output(path, output_kinds.ncnn_problem, overwrite=True)
        with pytest.raises(FileExistsError, match="already exists"):
            output_files.check_output(path, output_kinds.ncnn_problem)
    for path, problem in ((foreign, "it is not an NCNN export of asdn_tf"),
                          (foreign.with_suffix(".bin"), "its .param is not an NCNN export")):
        with pytest.raises(FileExistsError, match=problem):
            output_files.check_output(path, output_kinds.ncnn_problem, overwrite=True)
    output_files.check_output(tmp_path / "fsdn-x2.param", output_kinds.ncnn_problem)


def test_a_missing_converter_names_the_install(monkeypatch):
    monkeypatch.setattr(command_checks.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match=r'pip install --no-deps "pnnx>=20261020"'):
        command_checks.pnnx_binary()


def test_a_failed_conversion_is_one_line(monkeypatch, tmp_path, tiny_model):
    import onnx
    from onnx import helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3, 4, 4])])
    content = helper.make_model(graph).SerializeToString()
    failing = tmp_path / "pnnx"
    failing.write_text("#!/bin/sh\necho converting\necho 'unsupported op Foo' >&2\nexit 3\n")
    failing.chmod(0o755)
    monkeypatch.setattr(ncnn_export, "pnnx_binary", lambda: failing)
    monkeypatch.setattr(ncnn_export.onnx_export, "convert_onnx", lambda *args, **kw: content)
    with pytest.raises(ValueError, match=r"^pnnx could not convert the model \(exit 3\): "
                                         r"unsupported op Foo$"):
        ncnn_export.convert_ncnn(tiny_model, 2)


@pytest.fixture(scope="module")
def converted(pnnx, tiny_model):
    """{name: (model, scale, param, weights)}: the tiny ASDN at every offered scale (x3 has a
    ×1.5 step), a tiny two-factor FSDN at x3."""
    keras.utils.set_random_seed(5)
    fsdn = ncnn_export.fixed_scale_model(asdn_tf.build_fsdn("tiny", (2, 3)), 3)
    cases = {f"asdn-x{scale}": (tiny_model, scale) for scale in command_checks.NCNN_SCALES}
    cases["fsdn-x3"] = (fsdn, 3)
    return {name: (model, scale, *ncnn_export.convert_ncnn(model, scale))
            for name, (model, scale) in cases.items()}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["asdn-x2", "asdn-x3", "asdn-x4", "asdn-x8", "fsdn-x3"])
def test_files_run_in_ncnn_at_several_sizes(converted, photo, tmp_path, name):
    model, scale, param, weights = converted[name]
    assert "Input asdn_tf 0 1 data" in param and param.splitlines()[-1].split()[5] == "output"
    assert ("PixelShuffle" in param) == name.startswith("fsdn")
    net = _net(tmp_path, param, weights)
    for height, width in SIZES if scale < 8 else SIZES[:2]:
        crop = photo[200:200 + height, 150:150 + width]
        output = ncnn_export.run_net(net, crop)
        expected = np.asarray(verification.keras_reference(model, crop[None], float(scale)))[0]
        assert output.shape == (height * scale, width * scale, 3)
        assert np.abs(output - expected).max() <= verification.MAX_ABS_DIFFERENCE, (height, width)


def _run(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "asdn_tf.export", "ncnn", *args],
                          capture_output=True, text=True, cwd=ROOT, env=env)


def _error_lines(result):
    return [line for line in result.stderr.splitlines()
            if line.startswith("export:") or "Traceback" in line]


@pytest.mark.slow
def test_command_writes_the_files_upscayl_loads(pnnx, tmp_path, tiny_weights_file, photo):
    weights = tiny_weights_file
    folder = tmp_path / "models"
    status, out, err = export_cli("ncnn", f"--weights={weights}", "--scale=3", f"--output={folder}")
    assert status == 0, err
    assert "blobs data -> output" in out
    assert "ncnn vs Keras on 2 crops of grace_hopper.jpg" in out
    assert "requirement max abs <= 0.000784: met" in out
    assert sorted(path.name for path in folder.iterdir()) == ["asdn-x3.bin", "asdn-x3.param"]
    assert output_kinds.is_ncnn_export(folder / "asdn-x3.param")
    net = ncnn_export.load_net(folder / "asdn-x3.param", folder / "asdn-x3.bin")
    assert ncnn_export.run_net(net, photo[:31, :17]).shape == (93, 51, 3)
    again = export_cli("ncnn", f"--weights={weights}", "--scale=3", f"--output={folder}")
    assert again[0] == 1 and again[2].splitlines() == [
        f"export: {folder / 'asdn-x3.param'} already exists (pass overwrite / --overwrite to "
        "replace an earlier export)"]


@pytest.mark.slow
@pytest.mark.parametrize("args,line", [
    (["--scale=2.5"], "export: --scale must be one of 2, 3, 4, 8 for NCNN, got 2.5: upscayl and "
                      "realesrgan-ncnn-vulkan tile by a whole scale they read from the model's "
                      "name"),
    (["--scale=2", "--output={tmp}/file"], "export: --output must be a folder, and {tmp}/file "
                                           "is a file"),
    (["--scale=2", "--layout=nchw"], "export: --layout does not apply to ncnn"),
])
def test_command_errors_are_one_line(tmp_path, args, line):
    (tmp_path / "file").write_text("")
    args = [arg.format(tmp=tmp_path) for arg in args]
    if not any(arg.startswith("--output") for arg in args):
        args.append(f"--output={tmp_path / 'models'}")
    result = _run(*args)
    assert result.returncode != 0 and _error_lines(result) == [line.format(tmp=tmp_path)]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["file"]
