"""ONNX export: an ASDN at one scale or at any (with an FSDN for the integer part of each
scale), or an FSDN, as ONNX with dynamic H and W.

    python -m asdn_tf.export onnx --scale=2.5 --output=asdn_x2.5.onnx
    python -m asdn_tf.export onnx --scale=2 --output=fsdn_x2.onnx    # the bundled FSDN's head
    python -m asdn_tf.export onnx --any_scale --output=asdn_any.onnx [--fsdn=auto|none|FILE]
    python -m asdn_tf.export onnx --weights=fsdn_x2.weights.h5 --scale=2 --output=fsdn_x2.onnx

The file takes `image`, float32 N×H×W×3 in [0, 1] (N×3×H×W with --layout=nchw), and returns
`sr`, the image upscaled (round(s·H) × round(s·W), clipped to [0, 1]). The bicubic
pre-upsampling (MATLAB's, `asdn_tf.data.imresize`) and, above ×2, the recursion run inside the
graph. A fixed-scale file unrolls the recursion for its scale and runs two branches a step;
without --weights, at a scale the bundled FSDN has (×2, ×3, ×4) it holds that FSDN's head. An
any-scale file (--any_scale) takes a second input, `scale` (float64 scalar), and runs the plan
of `asdn_tf.upscale` in loops (`onnx_graph.upscale_any`): with --fsdn (by default the bundled
FSDN) its integer steps first, then ASDN's, each running every branch. The scale, layout,
range and model are in the file's metadata (`metadata_props`) too.

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

from asdn_tf.export import onnx_resize, verification
from asdn_tf.export.command_checks import LAYOUTS, parse_input_size
from asdn_tf.export.onnx_graph import static_sizes, upscale_any, upscale_fixed
from asdn_tf.export.output_files import write_export
from asdn_tf.export.output_kinds import ONNX_MARK, onnx_problem
from asdn_tf.nn import lfr
from asdn_tf.nn.model import ASDN, FSDN

OPSET = 17
INPUT_NAME, SCALE_NAME, OUTPUT_NAME = "image", "scale", "sr"


def command(options, choose_model, choose_fsdn):
    """`python -m asdn_tf.export onnx`: checks, converts, verifies, and only then writes.
    `options` holds the flags of its row in `formats.FORMATS`; choose_model(scale) gives (the
    float32 model --weights and --preset choose, or the bundled FSDN's head for a scale it
    has, the words that name it) and choose_fsdn() (the FSDN of an any-scale file's plan).
    It runs once `command_checks.check_onnx` has passed."""
    scale = None if options.any_scale else float(options.scale)
    output = pathlib.Path(options.output)
    input_size = parse_input_size(options.input_size)
    images = verification.read_verification_images(options.images)
    model, fsdn, name = _chosen_networks(scale, choose_model, choose_fsdn)
    content = convert_onnx(model, scale, options.layout, name, input_size, fsdn)
    cases = verification.verification_cases(images, scale, input_size)
    result = verify_onnx(content, model, cases, options.layout, fsdn)
    what = "any scale (input 'scale')" if scale is None else f"x{scale:g}"
    shape = "dynamic HxW" if input_size is None else f"input {input_size[0]}x{input_size[1]}"
    print(f"{what} {name}, {options.layout.upper()} float32 [0, 1], {shape}: "
          f"{len(content) / 1e6:.3f} MB")
    print(verification.agreement_line("ONNX Runtime", result, options.images,
                                      () if scale else verification.ANY_SCALE_CHECKS))
    verification.require(result, "ONNX Runtime and Keras disagree")
    write_export(output, lambda path: path.write_bytes(content), onnx_problem,
                 options.overwrite)
    print(f"wrote {output}")


def _chosen_networks(scale, choose_model, choose_fsdn):
    """(the model of a file at `scale` (None: any), the FSDN of an any-scale file's plan or
    None, the words that name them)."""
    model, source = choose_model(scale)
    if scale is None and not isinstance(model, ASDN):
        raise ValueError(f"--any_scale needs an ASDN; {source} holds an "
                         f"x{', x'.join(map(str, model.scales))} FSDN")
    if isinstance(model, FSDN) and scale in model.scales:
        model = model.at_scale(int(scale))
    check_model_scale(model, scale)
    name = f"{type(model).__name__} from {source}"
    fsdn, fsdn_source = choose_fsdn() if scale is None else (None, None)
    if fsdn is not None:
        name += (f", the integer part of each scale (x{', x'.join(map(str, fsdn.scales))}) by "
                 f"the FSDN from {fsdn_source}")
    return model, fsdn, name


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


def convert_onnx(model, scale, layout="nhwc", description="", input_size=None, fsdn=None):
    """Converts `model` (float32 ASDN or FSDN) at `scale` to an ONNX model.

    Args:
        model: a built `ASDN` or `FSDN` computing in float32.
        scale: float in (1, 32] for an ASDN; the FSDN's own scale for an FSDN; None for an ASDN
            graph with a second input, `scale` (float64 scalar), that serves every scale.
        layout: "nhwc" (N×H×W×3) or "nchw" (N×3×H×W), for input and output alike.
        description: what the model is, stored in the metadata.
        input_size: (height, width) of a fixed input (OpenCV 4.x's importer needs one), or
            None for dynamic height and width; fixed-scale files only.
        fsdn: for an any-scale graph, a float32 `FSDN` whose integer steps run first (the plan
            of `asdn_tf.upscale`), or None: ASDN's recursion alone.

    Returns:
        The serialized ONNX model (bytes).
    """
    scale = check_model_scale(model, scale)
    if scale is not None:
        static_sizes(scale)
        if fsdn is not None:
            raise ValueError("an FSDN plan is for any-scale graphs (scale None)")
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
        output = (upscale_any(model, images, scale_input[0], fsdn) if scale is None
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
    _describe(proto, scale, layout, description, input_size)
    return proto.SerializeToString()


def _describe(proto, scale, layout, description, input_size):
    """Writes the file's metadata and doc string."""
    scale_text = "any" if scale is None else f"{scale:g}"
    metadata = {ONNX_MARK: scale_text, "asdn_tf:layout": layout.upper(),
                "asdn_tf:range": "float32 in [0, 1], RGB", "asdn_tf:model": description}
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = (f"x{scale_text} super-resolution ({description}); input "
                        f"{layout.upper()} float32 RGB in [0, 1], "
                        + ("dynamic height and width" if input_size is None
                           else "{}x{}".format(*input_size)))


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


def verify_onnx(content, model, cases, layout="nhwc", fsdn=None):
    """Runs the ONNX model in ONNX Runtime and `model` (with `fsdn`, the plan) in Keras on each
    (image, scale) case.

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
            yield output, np.asarray(verification.keras_reference(model, batch, scale, fsdn))

    result = verification.within_bound(verification.agreement(pairs(), "ONNX Runtime"))
    return {**result, "latency_ms": 1e3 * float(np.median(latencies))}
