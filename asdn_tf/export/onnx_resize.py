"""MATLAB's bicubic upscaling by a fixed factor p/q as ONNX operations with constant parameters.

The project's bicubic (`asdn_tf.data.resizing`) builds its sizes and tap indices from the
input's shape at run time (Shape, Gather, Range, float64 sizes ...), so a graph that contains
it has no static output size: ONNX shape inference with a fixed input leaves the output's
height and width unknown, OpenCV 4.x refuses it, and chaiNNer finds no scale. Here one axis
of the resize is, in NCHW:

    symmetric border (2 rows, Slice + Concat) -> ConvTranspose (stride p, about 4p taps of
    Keys' cubic) -> Slice (constant ends) -> every q-th row (a 1×1 Conv of stride q)

MATLAB samples output x (0-based) at input position (x + 0.5)·q/p - 0.5. Upsampled by p
(ConvTranspose), those positions are every q-th sample of one fixed grid, so a transposed
convolution with fixed taps and a strided slice give exactly MATLAB's weights (positions in
exact rational arithmetic where MATLAB's are float32: 1e-5 apart at most). The output length
is round(n·p/q) (halves up, `asdn_tf.nn.lfr.output_size`), and every size in it is constant
arithmetic on the input's, which shape inference follows.

In the TensorFlow function that tf2onnx converts, the resize is a marker (`resize`, a numpy
function computing the same thing) that `convert_marker` replaces with these nodes.
"""

import fractions
import math

import numpy as np
import tensorflow as tf

from asdn_tf.nn.cubic import cubic

# Border rows the cubic taps read beyond each edge.
BORDER = 2
# The transposed convolution's output is p times the input along an axis before the slice keeps
# every q-th row: above this many phases the memory is not worth it (a 2-decimal scale needs
# up to 200).
MAX_PHASES = 128
# The marker op tf2onnx sees (tf.numpy_function).
MARKER_OPS = ("PyFunc", "PyFuncStateless")


def step_ratio(step):
    """(p, q): the step scale as a fraction in lowest terms; ValueError beyond MAX_PHASES."""
    ratio = fractions.Fraction(float(step)).limit_denominator(1000)
    if abs(float(ratio) - float(step)) > 1e-9 or ratio <= 1:
        raise ValueError(f"a bicubic step of {step:g} is not a ratio of small integers above 1")
    if ratio.numerator > MAX_PHASES:
        raise ValueError(f"a bicubic step of {step:g} = {ratio.numerator}/{ratio.denominator} "
                         f"needs {ratio.numerator} filter phases (at most {MAX_PHASES}); choose "
                         "a scale with fewer decimals, or --any_scale")
    return ratio.numerator, ratio.denominator


def output_length(size, p, q):
    """round(size·p/q), halves up, in integers."""
    return (p * size + q // 2) // q


def axis_kernel(p, q):
    """(taps, start, end): the transposed convolution's taps (float32) and the slice's first
    row and the rows it drops at the end, for one axis upscaled by p/q.

    The transposed convolution's output row m = start + q·x holds output x; tap k weighs the
    padded input row j into output row m = p·j + k, at distance t = (k - start + 1.5p + q/2)/p
    (see the module docstring).
    """
    start = math.ceil(3.5 * p + q / 2 - 1)
    length = math.ceil(start + 0.5 * p - q / 2)
    k = np.arange(length, dtype=np.float64)
    taps = cubic((k - start + 1.5 * p + q / 2) / p).astype(np.float32)
    # The slice keeps ceil((rows - start - end) / q) = round(n·p/q) rows of the
    # (n + 2·BORDER - 1)·p + length rows.
    end = (2 * BORDER - 1) * p + length - start - q // 2 + q - 1
    return taps, start, end


def axis_matrix(size, p, q):
    """The [round(size·p/q), size] float32 matrix the ONNX nodes apply along one axis (numpy):
    the reference `resize` runs and the tests compare with `resizing.resize_matrix`."""
    taps, start, _ = axis_kernel(p, q)
    rows = output_length(size, p, q)
    padded = np.concatenate([[1, 0][:BORDER], np.arange(size), [size - 1, size - 2][:BORDER]])
    padded = np.clip(padded, 0, size - 1)
    matrix = np.zeros((rows, size), np.float64)
    for x in range(rows):
        m = start + q * x
        for j, source in enumerate(padded):
            k = m - p * j
            if 0 <= k < len(taps):
                matrix[x, source] += taps[k]
    return matrix.astype(np.float32)


def resize(images, p, q):
    """N×H×W×C float32 `images` upscaled by p/q on both axes: a marker for `convert_marker`,
    runnable in TensorFlow (a numpy function applying `axis_matrix`)."""

    def apply(batch, ratio):
        p_, q_, _ = (int(value) for value in ratio)
        rows = axis_matrix(batch.shape[1], p_, q_)
        columns = axis_matrix(batch.shape[2], p_, q_)
        return np.einsum("oh,nhwc,pw->nopc", rows, batch, columns).astype(np.float32)

    output = tf.numpy_function(apply, [images, tf.constant([p, q, images.shape[3]], tf.int64)], tf.float32)
    # EnsureShape, not set_shape: tf2onnx reads the rank from the graph, and with it unknown
    # its transpose optimizer reshapes the blend's operands by Shape ops.
    return tf.ensure_shape(output, [images.shape[0], None, None, images.shape[3]])


def convert_marker(ctx, node, name, args):
    """tf2onnx handler: the `resize` marker `node` (NHWC) becomes Transpose, two axes of
    Slice/Concat, ConvTranspose and Slice, and Transpose back; every parameter a constant."""
    del name, args
    from onnx import onnx_pb
    from tf2onnx.utils import make_name

    p, q, channels = (int(value) for value in node.inputs[1].get_tensor_value(as_list=True))
    taps, start, end = axis_kernel(p, q)
    value = ctx.make_node("Transpose", [node.input[0]], attr={"perm": [0, 3, 1, 2]}).output[0]
    for axis in (2, 3):
        value = _symmetric_border(ctx, value, axis)
        shape = (len(taps), 1) if axis == 2 else (1, len(taps))
        kernel = np.zeros((channels, channels, *shape), np.float32)
        for channel in range(channels):
            kernel[channel, channel] = taps.reshape(shape)
        weights = ctx.make_const(make_name("bicubic_taps"), kernel).output[0]
        strides = [p, 1] if axis == 2 else [1, p]
        value = ctx.make_node("ConvTranspose", [value, weights],
                              attr={"strides": strides, "kernel_shape": list(shape)}).output[0]
        value = _slice(ctx, value, axis, start, -end if end else np.iinfo(np.int64).max)
        if q > 1:
            value = _every(ctx, value, axis, q, channels)
    for key in list(node.attr):
        del node.attr[key]
    ctx.replace_inputs(node, [value])
    node.type = "Transpose"
    node.set_attr("perm", [0, 2, 3, 1])
    ctx.set_shape(node.output[0], [-1, -1, -1, channels])
    ctx.set_dtype(node.output[0], onnx_pb.TensorProto.FLOAT)


def _slice(ctx, value, axis, begin, end):
    from tf2onnx.utils import make_name

    constants = [ctx.make_const(make_name("slice"), np.array([number], np.int64)).output[0]
                 for number in (begin, end, axis)]
    return ctx.make_node("Slice", [value, *constants]).output[0]


def _every(ctx, value, axis, step, channels):
    """Every `step`-th row along `axis`: a 1×1 convolution with an identity kernel and that
    stride (ncnn's Crop has no step; ceil(n / step) rows either way)."""
    from tf2onnx.utils import make_name

    identity = np.eye(channels, dtype=np.float32)[:, :, None, None]
    weights = ctx.make_const(make_name("every"), identity).output[0]
    strides = [step, 1] if axis == 2 else [1, step]
    return ctx.make_node("Conv", [value, weights],
                         attr={"strides": strides, "kernel_shape": [1, 1]}).output[0]


def _symmetric_border(ctx, value, axis):
    """BORDER rows mirrored beyond each edge, edge rows included (MATLAB's 'symmetric'):
    rows 1, 0 | 0 ... n-1 | n-1, n-2. Single-row Slices: ONNX's Pad has no symmetric mode."""
    before = [_slice(ctx, value, axis, row, row + 1) for row in range(BORDER - 1, -1, -1)]
    after = [_slice(ctx, value, axis, -row - 1, -row if row else np.iinfo(np.int64).max)
             for row in range(BORDER)]
    return ctx.make_node("Concat", [*before, value, *after], attr={"axis": axis}).output[0]
