"""NCNN export: an ASDN or FSDN at one whole scale as NCNN `.param` and `.bin` files, named and
wired the way upscayl and the realesrgan-ncnn-vulkan tools load custom models.

    python -m asdn_tf.export ncnn --scale=4 --output=runs/models

The network is exported as a fixed-scale NCHW ONNX graph (`onnx.convert_onnx`: the bicubic from
constant operations, no size computed at run time), which pnnx, ncnn's own converter (the
`pnnx` wheel of the package index), turns into NCNN files with float32 weights. The input blob
is `data` and the output blob `output`, float32 RGB in [0, 1], C×H×W (what realesrgan-ncnn-
vulkan feeds and reads); the file names hold the scale (`asdn-x4.param`), which is how upscayl
tells a model's scale. Before anything is written, the files run in the `ncnn` Python package
on real images against the Keras model (`verify_ncnn`). docs/ncnn.md has the details.
"""

import pathlib
import subprocess
import tempfile

import numpy as np

from asdn_tf.export import onnx as onnx_export
from asdn_tf.export import verification
from asdn_tf.export.command_checks import pnnx_binary
from asdn_tf.export.output_files import check_output, write_export
from asdn_tf.export.output_kinds import NCNN_MARK, ncnn_problem
from asdn_tf.nn.model import ASDN, FSDN

INPUT_BLOB, OUTPUT_BLOB = "data", "output"
NCNN_INSTALL = "pip install 'asdn_tf[ncnn]'"
# The input shape pnnx converts at. Every size in the graph is constant arithmetic on the
# input's, and the files keep it so (tests/test_ncnn.py runs them at other sizes); pnnx's
# second shape (inputshape2), meant for dynamic sizes, makes it write wrong crop ends here
# (a 96×96 input gave 426×426 at ×4).
TRACE_SHAPE = "[1,3,64,64]f32"


def command(options, choose_model, choose_fsdn):
    """`python -m asdn_tf.export ncnn`: checks, converts (ONNX, then pnnx), verifies in ncnn,
    and only then writes the two files. `options` holds the flags of its row in
    `formats.FORMATS`; choose_model(scale) gives (the float32 model --weights and --preset
    choose, or the bundled FSDN's head for a scale it has, the words that name it). It runs
    once `command_checks.check_ncnn` has passed."""
    del choose_fsdn  # --fsdn is the SavedModel's
    scale = int(options.scale)
    folder = pathlib.Path(options.output)
    images = verification.read_verification_images(options.images)
    model, source = choose_model(scale)
    model = fixed_scale_model(model, scale)
    name = model_name(model, scale)
    for suffix in (".param", ".bin"):
        check_output(folder / f"{name}{suffix}", ncnn_problem, options.overwrite)
    description = f"{type(model).__name__} from {source}"
    param, weights = convert_ncnn(model, scale, description)
    result = verify_ncnn(param, weights, model, verification.verification_cases(images, scale))
    print(f"x{scale} {description}: {name}.param, {name}.bin ({len(weights) / 1e6:.3f} MB, "
          f"float32), blobs {INPUT_BLOB} -> {OUTPUT_BLOB}, RGB in [0, 1]")
    print(verification.agreement_line("ncnn", result, options.images))
    verification.require(result, "ncnn and Keras disagree")
    paths = write_ncnn(folder, name, param, weights, options.overwrite)
    print(f"wrote {paths[0]} and {paths[1]}")
    if folder.resolve().name != "models":
        print(f"note: upscayl loads custom models only from a folder named models, not "
              f"{folder.resolve().name}")


def model_name(model, scale):
    """The files' name without its ending: `asdn-x4`, `fsdn-x2` (the scale where upscayl
    looks for it, and no other "x<digit>" or "<digit>x")."""
    return f"{'fsdn' if isinstance(model, FSDN) else 'asdn'}-x{scale}"


def fixed_scale_model(model, scale):
    """`model` at `scale`: an ASDN as it is, an FSDN's single-factor copy for that scale (an
    FSDN holding another factor is refused)."""
    if isinstance(model, FSDN):
        if scale not in model.scales:
            raise ValueError(f"the FSDN upscales by {', '.join(map(str, model.scales))} only, "
                             f"not {scale}; pass one of those, or ASDN weights")
        return model.at_scale(scale)
    if not isinstance(model, ASDN):
        raise ValueError(f"the NCNN export takes an ASDN or FSDN, got a {type(model).__name__}")
    return model


def _require_ncnn():
    try:
        import ncnn
    except ImportError:
        raise ValueError(f"the NCNN export needs the ncnn package: {NCNN_INSTALL}") from None
    return ncnn


def convert_ncnn(model, scale, description=""):
    """Converts `model` (float32 ASDN, or single-factor FSDN) at the whole `scale` to NCNN.

    Returns:
        (param, weights): the `.param` text (blobs `data` and `output`, the Input layer named
        `NCNN_MARK`) and the `.bin` bytes (float32 weights).
    """
    binary = pnnx_binary()
    _require_ncnn()
    content = crd_depth_to_space(onnx_export.convert_onnx(model, float(scale), layout="nchw",
                                                          description=description))
    with tempfile.TemporaryDirectory(prefix="asdn_ncnn_") as folder:
        folder = pathlib.Path(folder)
        (folder / "model.onnx").write_bytes(content)
        outputs = {key: folder / f"out.{key}" for key in (
            "ncnnparam", "ncnnbin", "ncnnpy", "pnnxparam", "pnnxbin", "pnnxpy", "pnnxonnx")}
        command = [str(binary), str(folder / "model.onnx"), f"inputshape={TRACE_SHAPE}", "fp16=0",
                   *(f"{key}={path}" for key, path in outputs.items())]
        result = subprocess.run(command, cwd=folder, capture_output=True, text=True)
        if result.returncode != 0 or not outputs["ncnnparam"].is_file():
            said = (result.stderr.strip() or result.stdout.strip()).splitlines()
            raise ValueError(f"pnnx could not convert the model (exit {result.returncode}): "
                             f"{said[-1] if said else 'no output'}")
        param = name_blobs(outputs["ncnnparam"].read_text())
        return param, outputs["ncnnbin"].read_bytes()


def crd_depth_to_space(content):
    """The ONNX model `content` with each DepthToSpace in TensorFlow's channel order (DCR, what
    tf2onnx writes for an FSDN's upsampling) turned into PyTorch's (CRD) by reordering the
    output channels of the Conv that feeds it: pnnx turns only CRD into ncnn's PixelShuffle,
    and leaves DCR as a layer ncnn does not have ("layer DepthToSpace not exists")."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load_from_string(content)
    graph = proto.graph
    producers = {name: node for node in graph.node for name in node.output}
    readers = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    constants = {tensor.name: tensor for tensor in graph.initializer}
    for node in graph.node:
        attributes = {item.name: onnx.helper.get_attribute_value(item) for item in node.attribute}
        if node.op_type != "DepthToSpace" or attributes.get("mode", b"DCR") != b"DCR":
            continue
        conv = producers.get(node.input[0])
        if conv is None or conv.op_type != "Conv" or readers[conv.output[0]] != 1 or not all(
                name in constants for name in conv.input[1:]):
            raise ValueError("a DepthToSpace the NCNN export cannot reorder (not fed by a Conv "
                             "of constant weights alone)")
        block = attributes["blocksize"]
        channels = numpy_helper.to_array(constants[conv.input[1]]).shape[0] // block ** 2
        order = [phase * channels + channel for channel in range(channels)
                 for phase in range(block ** 2)]
        for index in range(1, len(conv.input)):
            values = numpy_helper.to_array(constants[conv.input[index]])[order]
            name = f"{conv.input[index]}/crd"
            graph.initializer.append(numpy_helper.from_array(values, name))
            conv.input[index] = name
        del node.attribute[:]
        node.attribute.extend([onnx.helper.make_attribute("blocksize", block),
                               onnx.helper.make_attribute("mode", "CRD")])
    return proto.SerializeToString()


def name_blobs(param):
    """The `.param` text with pnnx's blob names `in0` and `out0` renamed `data` and `output`
    (what realesrgan-ncnn-vulkan asks for), and its Input layer named `NCNN_MARK`."""
    renames = {"in0": INPUT_BLOB, "out0": OUTPUT_BLOB}
    lines = param.splitlines()
    found = set()
    for index, line in enumerate(lines[2:], start=2):
        tokens = line.split()
        blobs = 4 + int(tokens[2]) + int(tokens[3])
        for position in range(4, blobs):
            if tokens[position] in renames:
                found.add(tokens[position])
                tokens[position] = renames[tokens[position]]
        if tokens[0] == "Input":
            tokens[1] = NCNN_MARK
        lines[index] = " ".join(tokens)
    if found != set(renames):
        raise ValueError(f"pnnx wrote no blob {', '.join(sorted(set(renames) - found))}")
    return "\n".join(lines) + "\n"


def load_net(param_path, bin_path):
    """An `ncnn.Net` of the files, computing in float32 (no fp16 or bf16 storage)."""
    ncnn = _require_ncnn()
    net = ncnn.Net()
    for option in ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic",
                   "use_bf16_storage"):
        setattr(net.opt, option, False)
    if net.load_param(str(param_path)) != 0 or net.load_model(str(bin_path)) != 0:
        raise ValueError(f"ncnn cannot load {param_path} and {bin_path}")
    return net


def run_net(net, image):
    """`net` on one float32 H×W×3 image in [0, 1]; returns its output, H'×W'×3.

    The input is an ncnn-allocated Mat filled in place: `ncnn.Mat(numpy_array)` keeps numpy's
    channel stride (H·W), and ncnn's Crop and Permute layers, which expect it rounded up to 16
    bytes, then read the wrong rows whenever H·W is not a multiple of 4.
    """
    ncnn = _require_ncnn()
    height, width, _ = image.shape
    mat = ncnn.Mat(width, height, 3)
    np.array(mat, copy=False)[...] = np.transpose(image, (2, 0, 1))
    extractor = net.create_extractor()
    extractor.input(INPUT_BLOB, mat)
    status, output = extractor.extract(OUTPUT_BLOB)
    if status != 0:
        raise ValueError(f"ncnn failed on a {height}x{width} input (status {status})")
    return np.array(output).transpose(1, 2, 0)


def verify_ncnn(param, weights, model, cases):
    """Runs the files in ncnn and `model` in Keras on each (image, scale) case
    (`verification.verification_cases`).

    Returns:
        dict: "max_abs", "grey_levels", "psnr", "images" and "ok" (max_abs within
        `verification.MAX_ABS_DIFFERENCE`, a fifth of a grey level), as `onnx.verify_onnx`.
    """
    with tempfile.TemporaryDirectory(prefix="asdn_ncnn_") as folder:
        param_path, bin_path = pathlib.Path(folder) / "m.param", pathlib.Path(folder) / "m.bin"
        param_path.write_text(param)
        bin_path.write_bytes(weights)
        net = load_net(param_path, bin_path)

        def pairs():
            for image, scale in cases:
                batch = np.asarray(image, np.float32)[None]
                yield run_net(net, batch[0]), np.asarray(
                    verification.keras_reference(model, batch, scale))[0]

        return verification.within_bound(verification.agreement(pairs(), "ncnn"))


def write_ncnn(folder, name, param, weights, overwrite=False):
    """Writes `name`.param and `name`.bin into `folder`; each goes to a temporary name first
    and the `.bin` is renamed into place only once the `.param` is (`write_export`).

    Returns:
        (param_path, bin_path).
    """
    folder = pathlib.Path(folder)
    param_path, bin_path = folder / f"{name}.param", folder / f"{name}.bin"

    def write_pair(temporary):
        temporary.write_bytes(weights)
        write_export(param_path, lambda path: path.write_text(param), ncnn_problem, overwrite)

    write_export(bin_path, write_pair, ncnn_problem, overwrite)
    return param_path, bin_path


def run_tiled(net, image, scale, tile=200, padding=10):
    """`net` on a float32 H×W×3 image the way upscayl and realesrgan-ncnn-vulkan run it: tiles
    of `tile`×`tile` pixels, each with `padding` pixels of context (the image mirrored beyond
    its edges, the edge pixel not repeated), and each tile's output cut to `scale`× the tile.
    upscayl's tile is 200 on GPUs with more than 1.9 GB free (100, 64 or 32 below) and its
    padding 10."""
    height, width, _ = image.shape
    padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)), mode="reflect")
    output = np.zeros((height * scale, width * scale, 3), np.float32)
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            bottom, right = min(top + tile, height), min(left + tile, width)
            region = padded[top:bottom + 2 * padding, left:right + 2 * padding]
            result = run_net(net, np.ascontiguousarray(region))
            output[top * scale:bottom * scale, left * scale:right * scale] = result[
                padding * scale:(padding + bottom - top) * scale,
                padding * scale:(padding + right - left) * scale]
    return output
