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
`verification.MAX_ABS_DIFFERENCE`.
"""

import logging
import pathlib
import time
import warnings

import numpy as np
import tensorflow as tf

from asdn_tf.data.imresize import imresize
from asdn_tf.export import onnx_resize, verification
from asdn_tf.export.output_files import check_output, write_export
from asdn_tf.inference import recursion
from asdn_tf.nn import lfr
from asdn_tf.nn.model import ASDN, FSDN

OPSET = 17
LAYOUTS = ("nhwc", "nchw")
INPUT_NAME, SCALE_NAME, OUTPUT_NAME = "image", "scale", "sr"
# The metadata key an ONNX export of this project carries (its scale, or "any").
ONNX_MARK = "asdn_tf:scale"


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


def command(options, choose_model, choose_fsdn):
    """`python -m asdn_tf.export onnx`: checks, converts, verifies, and only then writes.
    `options` holds the flags of its row in `formats.FORMATS`; choose_model(scale) gives (the
    float32 model --weights and --preset choose, or the bundled FSDN's head for a scale it
    has, the words that name it)."""
    del choose_fsdn  # --fsdn is the SavedModel's
    if not options.output:
        raise ValueError("--output is required for onnx")
    if (options.scale is None) == (not options.any_scale):
        raise ValueError("give --scale (a file for that scale) or --any_scale (a file with a "
                         "scale input), one of them")
    if options.preset and not options.weights:
        raise ValueError("--preset needs --weights (the bundled weights carry their config)")
    scale = None if options.any_scale else lfr.check_scale(
        options.scale, lfr.DEFAULT_MAX_SCALE, name="--scale")
    output = pathlib.Path(options.output)
    if output.suffix != ".onnx":
        raise ValueError(f"--output must end in .onnx, got {output}")
    input_size = verification.parse_input_size(options.input_size)
    if input_size is not None and scale is None:
        raise ValueError("--input_size is for fixed-scale files (--scale), not --any_scale")
    check_output(output, output_problem, options.overwrite)
    images = verification.read_verification_images(options.images)
    model, source = choose_model(scale)
    if scale is None and not isinstance(model, ASDN):
        raise ValueError(f"--any_scale needs an ASDN; {source} holds an "
                         f"x{', x'.join(map(str, model.scales))} FSDN")
    if isinstance(model, FSDN) and scale in model.scales:
        model = model.at_scale(int(scale))
    check_model_scale(model, scale)
    name = f"{type(model).__name__} from {source}"
    content = convert_onnx(model, scale, options.layout, name, input_size)
    cases = verification.verification_cases(images, scale, input_size)
    result = verify_onnx(content, model, cases, options.layout)
    what = "any scale (input 'scale')" if scale is None else f"x{scale:g}"
    shape = "dynamic HxW" if input_size is None else f"input {input_size[0]}x{input_size[1]}"
    print(f"{what} {name}, {options.layout.upper()} float32 [0, 1], {shape}: "
          f"{len(content) / 1e6:.3f} MB")
    print(verification.agreement_line("ONNX Runtime", result, options.images,
                                      () if scale else verification.ANY_SCALE_CHECKS))
    verification.require(result, "ONNX Runtime and Keras disagree")
    write_export(output, lambda path: path.write_bytes(content), output_problem,
                 options.overwrite)
    print(f"wrote {output}")


def check_model_scale(model, scale):
    """`scale` as a float (None: any scale), if `model` can be exported at it; else ValueError
    naming the range."""
    if isinstance(model, FSDN):
        if scale != model.scale:
            raise ValueError(f"the FSDN upscales by {', '.join(map(str, model.scales))} only; "
                             f"pass --scale={' or '.join(map(str, model.scales))}, or ASDN "
                             "weights for other scales")
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


def verify_onnx(content, model, cases, layout="nhwc"):
    """Runs the ONNX model in ONNX Runtime and `model` in Keras on each (image, scale) case.

    Returns:
        dict: "max_abs" (largest |difference|, [0, 1] units), "grey_levels" (largest difference
        of the 8-bit outputs), "psnr" (dB, the worst case), "images" (cases), "latency_ms"
        (median ONNX Runtime run) and "ok" (max_abs within `verification.MAX_ABS_DIFFERENCE`).
    """
    import onnxruntime

    session = onnxruntime.InferenceSession(content, providers=["CPUExecutionProvider"])
    takes_scale = SCALE_NAME in {item.name for item in session.get_inputs()}
    latencies = []

    def pairs():
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
            yield output, np.asarray(verification.keras_reference(model, batch, scale))

    result = verification.within_bound(verification.agreement(pairs(), "ONNX Runtime"))
    return {**result, "latency_ms": 1e3 * float(np.median(latencies))}


def is_onnx_export(path):
    """True if `path` is a regular file holding an ONNX model that asdn_tf.export.onnx wrote."""
    try:
        import onnx
    except ImportError:
        raise ValueError("reading an ONNX file needs onnx: pip install 'asdn_tf[onnx]'") from None

    path = pathlib.Path(path)
    if path.is_symlink() or not path.is_file():
        return False
    try:
        proto = onnx.load(path, load_external_data=False)
    except Exception:  # protobuf raises DecodeError and others for a file that is not ONNX.
        return False
    return any(entry.key == ONNX_MARK for entry in proto.metadata_props)


def output_problem(path):
    """Why `path` is not an ONNX export of this project, or None: what --overwrite may replace
    (`output_files.check_output`)."""
    if path.is_dir():
        return "it is a folder, not an ONNX model"
    if not is_onnx_export(path):
        return "it is not an ONNX export of asdn_tf"
    return None
