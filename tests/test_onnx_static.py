"""Fixed-scale ONNX files that other tools load: output sizes that ONNX shape inference derives
from a fixed input (what chaiNNer does to find a model's scale), the bicubic built from
constant-parameter operations, and OpenCV 4.x running the files (with --input_size)."""

import collections

import cv2
import keras
import numpy as np
import onnx
import onnxruntime
import pytest

import asdn_tf
from asdn_tf.data import resizing
from asdn_tf.export import onnx as onnx_export
from asdn_tf.export import onnx_resize, verification
from asdn_tf.nn import lfr

pytestmark = pytest.mark.slow
# The fixed-scale files checked: ASDN at x2 (one step), x3 (x2 then x1.5), x4 (two x2 steps)
# and x2.5 (x2 then x1.25); an FSDN at x3.
SCALES = (2.0, 3.0, 4.0, 2.5)
# Operations that compute sizes at run time (what made chaiNNer and OpenCV 4.x fail).
SIZE_OPS = {"Shape", "Range", "Gather", "ConstantOfShape", "Cast", "Loop", "If"}


@pytest.fixture(scope="module")
def photo():
    return verification.read_verification_images()[0]


@pytest.fixture(scope="module")
def files(tiny_model):
    """NCHW files (what GUI tools expect): {name: (model, scale, bytes)}."""
    keras.utils.set_random_seed(3)
    fsdn = asdn_tf.build_fsdn("tiny", 3)
    cases = {f"asdn_x{scale:g}": (tiny_model, scale) for scale in SCALES}
    cases["fsdn_x3"] = (fsdn, 3)
    return {name: (model, scale, onnx_export.convert_onnx(model, scale, layout="nchw"))
            for name, (model, scale) in cases.items()}


def chainner_scale(content):
    """What chaiNNer's loader reports, replicated from its source (github.com/chaiNNer-org/
    chaiNNer, backend/src/nodes/impl/onnx/load.py `load_onnx_model` and `_detect_size_req`,
    utils.py `ModelShapeInference`, update_model_dims.py; read at commit 1de0be335246): fix the
    input to 1×C×size×size for size in 16, 64, 256, 512 until strict shape inference gives the
    output's height and width, then scale = out // in where out % in == 0, else None."""
    model = onnx.load_from_string(content)
    if len(model.graph.input) != 1:
        return None  # its update_inputs_outputs_dims fails (KeyError): no shape found
    for size in (16, 64, 256, 512):
        probe = onnx.ModelProto()
        probe.CopyFrom(model)
        for dim, value in zip(probe.graph.input[0].type.tensor_type.shape.dim,
                              (1, 3, size, size)):
            dim.dim_value = value
        onnx.checker.check_model(probe)
        output = onnx.shape_inference.infer_shapes(probe, strict_mode=True).graph.output[0]
        dims = output.type.tensor_type.shape.dim
        out_h, out_w = (dims[index].dim_value if dims[index].HasField("dim_value") else None
                        for index in (2, 3))
        if out_h is not None and out_w is not None:
            scales = [out // size if out % size == 0 else None for out in (out_h, out_w)]
            return scales[0] if scales[0] == scales[1] else None
    return None


def test_shape_inference_gives_integer_sizes(files):
    """Every fixed-scale file: with the input fixed, strict shape inference (no data
    propagation) gives round(s·h) × round(s·w); no size arithmetic, no float64 anywhere."""
    for name, (_, scale, content) in files.items():
        model = onnx.load_from_string(content)
        ops = collections.Counter(node.op_type for node in model.graph.node)
        assert not SIZE_OPS & set(ops), (name, ops)
        assert onnx.TensorProto.DOUBLE not in {
            tensor.data_type for tensor in model.graph.initializer}, name
        for height, width in ((16, 16), (37, 53), (65, 20)):
            probe = onnx.ModelProto()
            probe.CopyFrom(model)
            for dim, value in zip(probe.graph.input[0].type.tensor_type.shape.dim,
                                  (1, 3, height, width)):
                dim.dim_value = value
            output = onnx.shape_inference.infer_shapes(probe, strict_mode=True).graph.output[0]
            dims = [dim.dim_value for dim in output.type.tensor_type.shape.dim]
            assert dims == [1, 3, *lfr.output_size(height, width, scale)], (name, dims)


def test_chainner_finds_the_integer_scales(files):
    """chaiNNer's own detection: x2, x3, x4 found; x2.5 has sizes but no integer scale."""
    found = {name: chainner_scale(content) for name, (_, _, content) in files.items()}
    assert found == {"asdn_x2": 2, "asdn_x3": 3, "asdn_x4": 4, "asdn_x2.5": None,
                     "fsdn_x3": 3}
    any_scale = onnx_export.convert_onnx(files["asdn_x2"][0], None)
    assert chainner_scale(any_scale) is None


@pytest.mark.parametrize("step", [2.0, 3.0, 4.0, 1.5, 1.25, 1.65])
def test_bicubic_weights_match_the_projects(step):
    """The constant-parameter resize's weights are MATLAB's (`resizing.resize_matrix`) to
    float32 rounding of the positions, and its sizes are `lfr.output_size`'s."""
    p, q = onnx_resize.step_ratio(step)
    for size in (2, 3, 7, 16, 37, 100, 255):
        matrix = onnx_resize.axis_matrix(size, p, q)
        expected = resizing.resize_matrix(size, lfr.output_size(size, size, step)[0], step)
        assert matrix.shape == expected.shape
        np.testing.assert_allclose(matrix, expected, atol=5e-5)


def test_resize_runs_in_onnx_runtime_as_its_reference(photo):
    """The ONNX nodes compute what `axis_matrix` says, at odd and even sizes."""
    import tensorflow as tf
    import tf2onnx

    for p, q in ((2, 1), (3, 2), (5, 4)):
        spec = [tf.TensorSpec([None, None, None, 3], tf.float32, name="image")]
        function = tf.function(lambda image, p=p, q=q: onnx_resize.resize(image, p, q),
                               input_signature=spec)
        proto, _ = tf2onnx.convert.from_function(
            function, input_signature=spec, opset=onnx_export.OPSET,
            custom_op_handlers={op: (onnx_resize.convert_marker, [])
                                for op in onnx_resize.MARKER_OPS})
        session = onnxruntime.InferenceSession(proto.SerializeToString(),
                                               providers=["CPUExecutionProvider"])
        for height, width in ((9, 14), (20, 7)):
            crop = photo[:height, :width][None]
            output = session.run(None, {"image": crop})[0][0]
            expected = np.einsum("oh,hwc,pw->opc", onnx_resize.axis_matrix(height, p, q),
                                 crop[0], onnx_resize.axis_matrix(width, p, q))
            np.testing.assert_allclose(output, expected, atol=1e-5)


def test_too_many_phases_are_refused(tiny_model):
    with pytest.raises(ValueError, match="needs 237 filter phases"):
        onnx_export.convert_onnx(tiny_model, 2.37)


@pytest.mark.parametrize("name", ["asdn_x2", "asdn_x3", "asdn_x4", "asdn_x2.5", "fsdn_x3"])
def test_opencv_4_runs_each_file(files, photo, name):
    """cv2.dnn (OpenCV 4.x) loads each file with a fixed input size (--input_size; its
    importer refuses dynamic ones) and is within a grey level of ONNX Runtime, at three
    sizes; the same file verifies against Keras."""
    assert cv2.__version__.startswith("4."), cv2.__version__
    model, scale, _ = files[name]
    for height, width in ((16, 16), (37, 53), (48, 31)):
        content = onnx_export.convert_onnx(model, scale, layout="nchw",
                                           input_size=(height, width))
        crop = photo[100:100 + height, 120:120 + width].transpose(2, 0, 1)[None].copy()
        session = onnxruntime.InferenceSession(content, providers=["CPUExecutionProvider"])
        expected = session.run(["sr"], {"image": crop})[0]
        net = cv2.dnn.readNetFromONNX(np.frombuffer(content, np.uint8))
        net.setInput(crop)
        output = net.forward()
        assert output.shape == expected.shape == (1, 3, *lfr.output_size(height, width, scale))
        assert np.abs(np.floor(output * 255 + 0.5) - np.floor(expected * 255 + 0.5)).max() <= 1
        cases = verification.verification_cases([photo], scale, (height, width))
        assert onnx_export.verify_onnx(content, model, cases, layout="nchw")["ok"]


def test_input_size_is_for_fixed_scales(tiny_model):
    with pytest.raises(ValueError, match="fixed-scale files"):
        onnx_export.convert_onnx(tiny_model, None, input_size=(16, 16))
