"""ONNX export: an ASDN at one scale or at any, or an FSDN, as ONNX with dynamic H and W.

    python -m asdn_tf.export onnx --scale=2.5 --output=asdn_x2.5.onnx
    python -m asdn_tf.export onnx --any_scale --output=asdn_any.onnx
    python -m asdn_tf.export onnx --weights=fsdn_x2.weights.h5 --scale=2 --output=fsdn_x2.onnx

The file takes `image`, float32 N×H×W×3 in [0, 1] (N×3×H×W with --layout=nchw), and returns
`sr`, the image upscaled (round(s·H) × round(s·W), clipped to [0, 1]). The bicubic
pre-upsampling (MATLAB's, `asdn_tf.data.imresize`) and, above ×2, the recursion run inside the
graph. A fixed-scale file unrolls the recursion for its scale and runs two branches a step;
an any-scale file (--any_scale) takes a second input, `scale` (float64 scalar), loops over the
steps and runs every branch (`_blend_all`: tf2onnx cannot convert the model's `switch_case`).
The scale, layout and range are in the file's metadata (`metadata_props`) too.

Before it is written, the file is run in ONNX Runtime on real images (by default the quick
start's photograph) against the Keras model, and refused when the two differ by more than
`MAX_ABS_DIFFERENCE`.
"""

import logging
import pathlib
import time
import warnings

import numpy as np
import tensorflow as tf

from asdn_tf.data.imresize import imresize
from asdn_tf.evaluation import metrics
from asdn_tf.export import onnx_resize
from asdn_tf.export.output_files import ONNX_MARK
from asdn_tf.inference import recursion
from asdn_tf.inference.engine import compiled_upscaler
from asdn_tf.io import pixels
from asdn_tf.io.image_io import list_images, read_image
from asdn_tf.nn import lfr
from asdn_tf.nn.model import ASDN, FSDN

OPSET = 17
LAYOUTS = ("nhwc", "nchw")
# Largest |ONNX Runtime − Keras| in [0, 1] units a file may show: a fifth of a grey level, so
# its 8-bit output is within one grey level of `asdn_tf.upscale`'s.
MAX_ABS_DIFFERENCE = 0.2 / 255
# Verification crops are at most this side, and smaller at large scales so that an output stays
# near VERIFY_OUTPUT_SIDE pixels a side.
VERIFY_MAX_SIDE = 96
VERIFY_OUTPUT_SIDE = 1024
INPUT_NAME, SCALE_NAME, OUTPUT_NAME = "image", "scale", "sr"
# The scales an any-scale file is checked at: a blend, a level, one recursion, three.
ANY_SCALE_CHECKS = (1.35, 2.0, 3.3, 7.3)


def quick_start_image():
    """The quick start's photograph (Grace Hopper, shipped with matplotlib)."""
    import matplotlib.cbook

    return pathlib.Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def upscale_fixed(model, images, scale):
    """`model` upscaling float32 N×H×W×3 `images` by the Python number `scale`: an FSDN by its
    own scale (`fsdn_static`), an ASDN through `lfr.recursion_plan(scale)` unrolled (each step a
    Python scale, so each blend is one fixed pair of branches: no `switch_case`, which tf2onnx
    cannot convert). Each bicubic step is `onnx_resize.resize`, constant parameters only, so
    the file's output size follows from its input's (`static_sizes` checks the rounding).
    What `asdn_tf.upscale` computes (`keras_reference`)."""
    if isinstance(model, FSDN):
        return tf.clip_by_value(tf.cast(fsdn_static(model, images), tf.float32), 0.0, 1.0)
    def step(image, step_scale):
        x_up = onnx_resize.resize(image, *onnx_resize.step_ratio(step_scale))
        return tf.clip_by_value(tf.cast(model(x_up, scale=step_scale), tf.float32), 0.0, 1.0)

    return recursion.run_unrolled(images, scale, step)


def fsdn_static(fsdn, images):
    """`fsdn(images)` in operations whose output sizes are constant arithmetic on the input's:
    the learned stride-s transposed convolution (kernel s, so its output blocks do not
    overlap) as a 1×1 convolution to s·s·features channels and DepthToSpace, and the bicubic
    skip as `onnx_resize.resize` (Keras's versions slice and shape by `tf.shape`)."""
    s = fsdn.scale
    # A single-factor FSDN: its one head (compress, upsample, branch), or the FSDN itself
    # where those layers are its own.
    head = getattr(fsdn, "heads", [fsdn])[0]
    features = head.compress(fsdn.trunk(images))
    kernel = head.upsample.kernel.value  # (s, s, out, in): output (s·y + i, s·x + j) gets [i, j]
    out_channels = kernel.shape[2]
    pointwise = tf.reshape(tf.transpose(kernel, [3, 0, 1, 2]), [1, 1, -1, s * s * out_channels])
    upsampled = tf.nn.depth_to_space(
        tf.nn.conv2d(features, pointwise, 1, "VALID") + tf.tile(head.upsample.bias.value, [s * s]),
        s)
    return head.branch([upsampled, onnx_resize.resize(images, s, 1)])


def static_sizes(scale, sides=range(1, 4097)):
    """Raises ValueError unless the unrolled steps' integer sizes (`onnx_resize.output_length`)
    give `lfr.output_size` for every side in `sides`: the file's output size is the command's."""
    ratios = [onnx_resize.step_ratio(step) for step in lfr.recursion_plan(scale)]
    for side in sides:
        length = side
        for p, q in ratios:
            length = onnx_resize.output_length(length, p, q)
        if length != lfr.output_size(side, side, scale)[0]:
            raise ValueError(f"at x{scale:g} a side of {side} gives {length} rows in the file "
                             f"but {lfr.output_size(side, side, scale)[0]} in asdn_tf.upscale")


def upscale_any(model, images, scale):
    """An ASDN upscaling `images` by the float64 scalar tensor `scale`, as `upscale_tensor`
    does, but in ops tf2onnx converts: the recursion is the same `tf.while_loop` (an ONNX
    Loop), and each step runs every reconstruction branch and weighs them (`_blend_all`)
    where the model picks two with `switch_case`. A scale outside [1, 32] is clamped into it:
    an ONNX graph cannot refuse it."""
    scale = tf.clip_by_value(tf.cast(scale, tf.float64), 1.0, lfr.DEFAULT_MAX_SCALE)

    def step(image, step_scale, target):
        x_up = imresize(image, scale=step_scale, size=target)
        return tf.clip_by_value(_blend_all(model, x_up, step_scale), 0.0, 1.0)

    size = lfr.output_size_ops(tf.shape(images)[1], tf.shape(images)[2], scale)
    return recursion.run_ops(images, scale, size, step)


def _blend_all(model, x_up, scale):
    """`model(x_up, scale=scale)` for a scale tensor with every branch run and the two that
    `lfr.level_and_weight_ops` picks weighted 1 − w and w (the others 0): about 10 % more
    arithmetic than running two (the trunk dominates), and no `switch_case`."""
    features = model.trunk(x_up)
    upper, weight = lfr.level_and_weight_ops(scale, model.num_levels)
    kernel, bias = (tf.concat([getattr(branch.to_rgb, name).value for branch in model.branches],
                              axis=-1) for name in ("kernel", "bias"))
    rgb = tf.nn.conv2d(features, kernel, 1, "VALID") + bias
    outputs = tf.stack([branch.finish(rgb[..., 3 * level:3 * level + 3], x_up)
                        for level, branch in enumerate(model.branches)])
    weights = (tf.one_hot(upper, model.num_levels) * (1.0 - weight)
               + tf.one_hot(upper - 1, model.num_levels) * weight)
    return tf.tensordot(weights, outputs, axes=1)


def check_model_scale(model, scale):
    """`scale` as a float (None: any scale), if `model` can be exported at it; else ValueError
    naming the range."""
    if isinstance(model, FSDN):
        if scale != model.scale:
            raise ValueError(f"the FSDN upscales by {model.scale} only; pass --scale="
                             f"{model.scale}, or ASDN weights for other scales")
        return float(scale)
    if not isinstance(model, ASDN):
        raise ValueError(f"the ONNX export takes an ASDN or FSDN, got a {type(model).__name__}")
    return None if scale is None else lfr.check_scale(scale, lfr.DEFAULT_MAX_SCALE)


def convert_onnx(model, scale, layout="nhwc", description="", input_size=None):
    """Converts `model` (float32 ASDN or FSDN) at `scale` to an ONNX model.

    Args:
        model: a built `ASDN` or `FSDN` computing in float32.
        scale: float in (1, 32] for an ASDN; the FSDN's own scale for an FSDN; None for an ASDN
            graph with a second input, `scale` (float64 scalar), that serves every scale.
        layout: "nhwc" (N×H×W×3) or "nchw" (N×3×H×W), for input and output alike.
        description: what the model is, stored in the metadata.
        input_size: (height, width) of a fixed input (OpenCV 4.x's importer needs one), or
            None for dynamic height and width; fixed-scale files only.

    Returns:
        The serialized ONNX model (bytes).
    """
    scale = check_model_scale(model, scale)
    if scale is not None:
        static_sizes(scale)
    elif input_size is not None:
        raise ValueError("a fixed input size is for fixed-scale files, not --any_scale")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    tf2onnx = _tf2onnx()
    nchw = layout == "nchw"
    shape = [None, 3, None, None] if nchw else [None, None, None, 3]
    spec = [tf.TensorSpec(shape, tf.float32, name=INPUT_NAME)]
    if scale is None:
        # float64, so that output sizes round as `asdn_tf.upscale` rounds them (see
        # keras_reference); each step's scale is float32 as there.
        spec.append(tf.TensorSpec([], tf.float64, name=SCALE_NAME))

    def call(image, *scale_input):
        images = tf.transpose(image, [0, 2, 3, 1]) if nchw else image
        output = (upscale_any(model, images, scale_input[0]) if scale is None
                  else upscale_fixed(model, images, scale))
        return tf.transpose(output, [0, 3, 1, 2]) if nchw else output

    function = tf.function(call, input_signature=spec, autograph=False)
    proto, _ = tf2onnx.convert.from_function(
        function, input_signature=spec, opset=OPSET,
        custom_op_handlers={"FloorMod": (_floor_mod, []),
                            **{op: (onnx_resize.convert_marker, [])
                               for op in onnx_resize.MARKER_OPS}})
    _name_outputs(proto, layout)
    _single_axis_unsqueezes(proto)
    if input_size is not None:
        _fix_input_size(proto, layout, input_size)
    scale_text = "any" if scale is None else f"{scale:g}"
    metadata = {ONNX_MARK: scale_text, "asdn_tf:layout": layout.upper(),
                "asdn_tf:range": "float32 in [0, 1], RGB", "asdn_tf:model": description}
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = (f"x{scale_text} super-resolution ({description}); input "
                        f"{layout.upper()} float32 RGB in [0, 1], "
                        + ("dynamic height and width" if input_size is None
                           else "{}x{}".format(*input_size)))
    return proto.SerializeToString()


def _tf2onnx():
    """tf2onnx, patched as Keras's own ONNX export patches it (numpy 2), and quiet."""
    try:
        import tf2onnx
        from keras.src.export.tf2onnx_lib import patch_tf2onnx
    except ImportError as error:
        raise ValueError(f"the ONNX export needs tf2onnx, onnx and onnxruntime ({error}); "
                         "pip install 'asdn_tf[onnx]'") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the patch's np.object probe
        patch_tf2onnx()
    tf2onnx.logging.set_level(logging.ERROR)
    return tf2onnx


def _floor_mod(ctx, node, name, args):
    """TF FloorMod as ONNX Mod(fmod=0), Python's modulo. tf2onnx's own conversion computes
    x - (x / y)·y with a truncating integer division: wrong for the negative tap indices
    `imresize` mirrors at the image's top and left borders (an edge band off by 0.2)."""
    del ctx, name, args
    node.type = "Mod"
    node.set_attr("fmod", 0)


def _name_outputs(proto, layout):
    """Names the output `sr` (tf2onnx calls it after the TF tensor, "Identity:0") and the
    dynamic dimensions after what they are."""
    graph = proto.graph
    old = graph.output[0].name
    for node in graph.node:
        node.output[:] = [OUTPUT_NAME if name == old else name for name in node.output]
    graph.output[0].name = OUTPUT_NAME
    axes = ("batch", "channels", "{}height", "{}width") if layout == "nchw" else (
        "batch", "{}height", "{}width", "channels")
    for value, prefix in ((graph.input[0], ""), (graph.output[0], "out_")):
        for dim, axis in zip(value.type.tensor_type.shape.dim, axes):
            if not dim.HasField("dim_value"):
                dim.dim_param = axis.format(prefix)


def _single_axis_unsqueezes(proto):
    """Each Unsqueeze of several axes (tf2onnx's for `weights[:, None, None, :]`) as a chain of
    one-axis Unsqueezes: OpenCV 4.x refuses the former ("Multidimensional unsqueeze")."""
    import onnx
    from onnx import numpy_helper

    graph = proto.graph
    constants = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    nodes = []
    for node in graph.node:
        axes = (constants.get(node.input[1])
                if node.op_type == "Unsqueeze" and len(node.input) > 1 else None)
        if axes is None or axes.size < 2:
            nodes.append(node)
            continue
        value = node.input[0]
        for index, axis in enumerate(sorted(int(axis) for axis in axes)):
            name = f"{node.name}/axis{axis}"
            graph.initializer.append(numpy_helper.from_array(np.array([axis], np.int64), name))
            output = node.output[0] if index == axes.size - 1 else name + ":0"
            nodes.append(onnx.helper.make_node("Unsqueeze", [value, name], [output], name=name))
            value = output
    del graph.node[:]
    graph.node.extend(nodes)


def _fix_input_size(proto, layout, input_size):
    """Gives the input the fixed `input_size` and the output the sizes that shape inference
    (strict, constants only) derives from it."""
    import onnx

    dims = [1, 3, *input_size] if layout == "nchw" else [1, *input_size, 3]
    for dim, value in zip(proto.graph.input[0].type.tensor_type.shape.dim, dims):
        dim.dim_value = value
    inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=True).graph.output[0]
    for dim, value in zip(proto.graph.output[0].type.tensor_type.shape.dim,
                          inferred.type.tensor_type.shape.dim):
        dim.dim_value = value.dim_value


def verification_cases(images, scale, input_size=None):
    """(crop, scale) pairs to check a file of `scale` on (None: ANY_SCALE_CHECKS): two centre
    crops of each image (float32 H×W×3 in [0, 1]) of different sizes, so the dynamic height
    and width are exercised, smaller at large scales so that an output stays near
    VERIFY_OUTPUT_SIDE a side. With a fixed `input_size`, one crop of that size an image."""
    if input_size is not None:
        return [(_centre_crop(image, input_size, scale), scale) for image in images]
    cases = []
    for each in ANY_SCALE_CHECKS if scale is None else (scale,):
        side = max(8, min(VERIFY_MAX_SIDE, int(VERIFY_OUTPUT_SIDE / each)))
        for image in images:
            for height, width in ((side, side), (side * 2 // 3 + 1, side - 3)):
                height, width = min(height, image.shape[0]), min(width, image.shape[1])
                top, left = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
                cases.append((image[top:top + height, left:left + width], each))
    return cases


def _centre_crop(image, size, scale):
    if image.shape[0] < size[0] or image.shape[1] < size[1]:
        raise ValueError(f"an input size of {size[0]}x{size[1]} needs verification images at "
                         f"least that large, got {image.shape[0]}x{image.shape[1]}")
    top, left = (image.shape[0] - size[0]) // 2, (image.shape[1] - size[1]) // 2
    return image[top:top + size[0], left:left + size[1]]


def read_verification_images(images=None):
    """Float32 RGB images from a folder, glob or list of paths (default: the quick start's)."""
    if images is None:
        paths = [quick_start_image()]
    elif isinstance(images, (str, pathlib.Path)):
        paths = list_images(images)
    else:
        paths = list(images)
    if not paths:
        raise ValueError(f"no images found in {images}")
    return [pixels.to_float_rgb(read_image(path)) for path in paths]


def verify_onnx(content, model, cases, layout="nhwc"):
    """Runs the ONNX model in ONNX Runtime and `model` in Keras on each (image, scale) case.

    Returns:
        dict: "max_abs" (largest |difference|, [0, 1] units), "grey_levels" (largest difference
        of the 8-bit outputs), "psnr" (dB, the worst case), "images" (cases), "latency_ms"
        (median ONNX Runtime run) and "ok" (max_abs within MAX_ABS_DIFFERENCE).
    """
    import onnxruntime

    session = onnxruntime.InferenceSession(content, providers=["CPUExecutionProvider"])
    takes_scale = SCALE_NAME in {item.name for item in session.get_inputs()}
    max_abs, grey_levels, worst_psnr, latencies = 0.0, 0, float("inf"), []
    for image, scale in cases:
        batch = np.asarray(image, np.float32)[None]
        feed = {INPUT_NAME: batch.transpose(0, 3, 1, 2) if layout == "nchw" else batch}
        if takes_scale:
            feed[SCALE_NAME] = np.array(scale, np.float64)
        start = time.perf_counter()
        output = session.run([OUTPUT_NAME], feed)[0]
        latencies.append(time.perf_counter() - start)
        if layout == "nchw":
            output = output.transpose(0, 2, 3, 1)
        expected = np.asarray(keras_reference(model, batch, scale))
        if output.shape != expected.shape:
            raise ValueError(f"ONNX Runtime returned {output.shape}, Keras {expected.shape}")
        max_abs = max(max_abs, float(np.max(np.abs(output.astype(np.float64) - expected))))
        grey_levels = max(grey_levels, int(np.max(np.abs(
            pixels.from_float(output[0]).astype(int) - pixels.from_float(expected[0])))))
        worst_psnr = min(worst_psnr, metrics.psnr(output[0] * metrics.PEAK,
                                                  expected[0] * metrics.PEAK, crop_border=0,
                                                  test_y_channel=False))
    return {"max_abs": max_abs, "grey_levels": grey_levels, "psnr": worst_psnr,
            "images": len(cases), "latency_ms": 1e3 * float(np.median(latencies)),
            "ok": max_abs <= MAX_ABS_DIFFERENCE}


def keras_reference(model, batch, scale):
    """What the Keras model gives: for an ASDN, what `asdn_tf.upscale` runs (untiled): its
    graph, the scale as float32 and the output size from the float64 scale (at ×3.3 a side of
    65 gives 215 rows, where a float32 scale gives 214)."""
    if isinstance(model, FSDN):
        return tf.clip_by_value(model(batch), 0.0, 1.0)
    size = lfr.output_size(batch.shape[1], batch.shape[2], scale)
    return compiled_upscaler(model)(tf.constant(batch), tf.constant(scale, tf.float32),
                                    tf.constant(size, tf.int32))
