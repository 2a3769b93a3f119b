"""Upscaling image files: `upscale_file` for one path, `plan_outputs` for the inputs and
outputs of a file, a folder or a glob. Every check that needs no decoding comes first, then the
decoding (a truncated or corrupt file is refused there), and the output is written atomically;
TensorFlow is imported only once a file has been decoded and needs the network.

Example:
    >>> upscale_file("photo.jpg", "big.png", scale=3.3, model=model)
    PosixPath('big.png')
"""

import dataclasses
import os
import pathlib
import warnings

from asdn_tf.inference import precision as precision_lib
from asdn_tf.inference import weights_io
from asdn_tf.inference.request import DEFAULT_MAX_PIXELS, StretchWarning, stretch, target_size
from asdn_tf.io import image_io, image_write
from asdn_tf.nn import lfr

DEFAULT_QUALITY = 95


def output_path(source, destination, image_format=None):
    """Where `source` is written: `destination`, or the same name inside it if it is a folder.

    With `image_format`, a name chosen here gets that format's extension.
    """
    destination = pathlib.Path(destination)
    if not destination.is_dir():
        return destination
    return destination / output_name(pathlib.Path(source).name, image_format)


def output_name(name, image_format):
    """The output file name of an input named `name`: the same, or with `image_format`'s
    extension when that format is forced and the name's extension says another."""
    if image_format is not None:
        wanted = image_write.output_format(name, image_format)
        if image_io.FORMATS.get(pathlib.Path(name).suffix.lower()) != wanted:
            return pathlib.Path(name).stem + image_io.FORMAT_EXTENSIONS[wanted]
    return name


def upscale_file(source, destination, scale=None, *, size=None, width=None, height=None,
                 model=None, tile=None, tile_overlap=None, image_format=None,
                 quality=DEFAULT_QUALITY, overwrite=False, max_pixels=DEFAULT_MAX_PIXELS,
                 max_scale=lfr.DEFAULT_MAX_SCALE, progress=None, precision="auto",
                 max_input_pixels=image_io.MAX_INPUT_PIXELS, fsdn="auto"):
    """Upscales the image file `source` into `destination`; every check comes before the work.

    The request is checked against the size in the image's header before the pixels are
    decoded: a small file that decodes to billions of pixels is refused in well under a second
    (`image_io.check_decode_cost`). The pixels are decoded before the model loads. A `size` of
    another aspect ratio than the image's stretches it, with a `StretchWarning`.
    Grayscale stays grayscale, alpha is kept (resized with bicubic), 16-bit PNGs stay 16-bit,
    EXIF orientation is applied and the ICC profile is kept where the output format allows. Of
    an animated image or a multi-page TIFF the first frame is used, with an
    `image_io.FirstFrameWarning`.

    Args:
        source: a PNG, JPEG, BMP, WebP or TIFF file.
        destination: a file name, or an existing folder (the output keeps the source's name).
        scale, size, width, height: exactly one, as `target_size`; `size` is (height, width).
        model: an `ASDN`, or a bundled model's name ("default", "photo"); by default
            `weights_io.UPSCALE_MODEL`. A bundled model is loaded once per process and precision.
        tile, tile_overlap: as `asdn_tf.upscale` (by default large outputs are tiled).
        image_format: "png", "jpeg", "bmp", "webp" or "tiff" to override the extension.
        quality: JPEG and WebP quality, 1–100.
        overwrite: replace an existing output file or link (never a folder, never the source).
        max_pixels: refuse outputs of more pixels than this.
        max_input_pixels: refuse inputs of more pixels than this.
        max_scale: the largest accepted scale.
        progress: optional callable(done, total), called after each network pass.
        precision: of the bundled model, when `model` is None: "auto" (bfloat16 where the
            hardware runs it fast), "float32" or "bfloat16".
        fsdn: as `asdn_tf.upscale`: "auto", None (the model's recursion alone) or an `FSDN`.

    Returns:
        The path written.

    Raises:
        FileNotFoundError, OSError, ValueError: with a message naming the problem; nothing is
            written. An existing output without `overwrite` is an `image_write.OutputExistsError`
            (a FileExistsError).
        TypeError: `model` is neither a model nor a name.
    """
    request = {"scale": scale, "size": size, "width": width, "height": height,
               "max_scale": max_scale, "max_pixels": max_pixels}
    output = {"image_format": image_format, "overwrite": overwrite, "quality": quality}
    precision_lib.check_precision(precision)
    if isinstance(model, str):
        weights_io.bundled_weights(model)
    destination = output_path(source, destination, image_format)
    header = check_file(source, destination, request, max_input_pixels)
    image_write.check_output(destination, header.alpha, **output)
    return upscale_checked(source, destination, request, output, model, tile, tile_overlap,
                           progress, precision, fsdn)


def check_file(source, destination, request, max_input_pixels):
    """The checks of one file that need no decoding; returns its `image_io.Header`. Warns with
    a `StretchWarning` when the request's size changes the image's aspect ratio."""
    source = pathlib.Path(source)
    if not source.is_file():
        raise FileNotFoundError(f"no such image file: {source}")
    if destination.exists() and os.path.samefile(source, destination):
        raise ValueError(f"output {destination} is the input itself; choose another name or folder")
    header = image_io.read_header(source)
    _, size = target_size((header.height, header.width), **request)
    # After the output's limit, whose message says more to most users; a header is cheap.
    header = image_io.check_decode_cost(source, max_input_pixels)
    stretched = stretch(header[:2], size) if request.get("size") is not None else None
    if stretched:
        warnings.warn(f"{source}: {stretched}", StretchWarning, stacklevel=3)
    return header


@dataclasses.dataclass(frozen=True)
class Networks:
    """What runs an upscale: the model, and the FSDN for the integer part of the scale or None
    (`asdn_tf.upscale`'s model and fsdn); one object, as Beam's RunInference shares it."""

    model: object
    fsdn: object = None


def upscale_checked(source, destination, request, output, model, tile, tile_overlap, progress,
                    precision="auto", fsdn="auto"):
    """Decodes, upscales and writes a file that `check_file` passed."""
    pixels, profile = image_io.read_image_and_profile(source)
    from asdn_tf.inference import engine  # imports TensorFlow, once decoded
    # Again on the decoded size: a PNG may store its orientation after the pixels.
    scale, size = target_size(pixels.shape[:2], **request)
    image_write.check_output(destination, image_write.has_alpha(pixels), **output)
    result = engine.upscale(pixels, scale, model=model, size=size,
                            max_scale=request["max_scale"], tile=tile,
                            tile_overlap=tile_overlap, progress=progress,
                            precision=precision, fsdn=fsdn)
    return image_write.write_image(destination, result, output["image_format"], profile,
                                   output["quality"], output["overwrite"])


def plan_outputs(source, destination, image_format=None, recursive=False):
    """The (input, output) pairs for the command's --input (file, folder or glob) and --output.

    Several inputs (a folder or a glob) go into the folder `destination`, which the command
    creates when it is missing (not its parent). With `recursive`, a folder's subfolders are
    searched too and the outputs mirror them; a `destination` inside the input folder is not
    searched. Hidden files are never inputs of a folder or a glob.

    Raises:
        FileNotFoundError: nothing at `source`, or neither the output folder nor its parent exists.
        ValueError: no images, several inputs for one output file, two inputs for one output,
            or an output that is one of the inputs.
        OSError: the output folder (or the parent it is to be created in) is not writable.
    """
    source_path = pathlib.Path(os.fspath(source))
    sources = image_io.list_images(source, recursive=recursive)
    if recursive and not source_path.is_dir():
        raise ValueError(f"--recursive needs a folder as the input, not {source_path}; a glob "
                         "searches subfolders with **")
    destination_text = os.fspath(destination)
    destination = pathlib.Path(destination_text)
    several = not source_path.is_file()
    into_folder = several or destination_text.endswith(("/", os.sep)) or destination.is_dir()
    if recursive and destination.is_dir():
        inside = destination.resolve()
        sources = [path for path in sources if inside not in path.resolve().parents
                   or inside == source_path.resolve()]
    if not sources:
        raise ValueError(f"no images in {source_path} (looked for "
                         f"{', '.join(image_io.IMAGE_EXTENSIONS)})")
    if not into_folder:
        image_write.check_folder(destination.parent)
        pairs = [(sources[0], destination)]
    else:
        _check_output_folder(destination)
        pairs = [(path, destination / _mirrored(path, source_path if recursive else None,
                                                image_format)) for path in sources]
    _check_pairs(pairs)
    return pairs


def _check_output_folder(folder):
    if folder.is_dir():
        image_write.check_folder(folder)
    elif folder.exists():
        raise ValueError(f"output {folder} is a file, not a folder; several inputs need a folder")
    elif not folder.parent.is_dir():
        raise FileNotFoundError(f"cannot create the output folder {folder}: its parent "
                                f"{folder.parent} does not exist")
    else:
        image_write.check_folder(folder.parent)


def _mirrored(path, root, image_format):
    """The output name of `path`: its name, or its place under `root` when given."""
    relative = path.relative_to(root) if root is not None else pathlib.Path(path.name)
    return relative.parent / output_name(relative.name, image_format)


def _check_pairs(pairs):
    """Refuses two inputs for one output, and an output that is any of the inputs."""
    inputs = {_file_id(path): path for path, _ in pairs}
    seen = {}
    for path, output in pairs:
        if output in seen:
            raise ValueError(f"{seen[output]} and {path} would both be written to {output}")
        seen[output] = path
        replaced = inputs.get(_file_id(output)) if output.exists() else None
        if replaced is not None:
            which = "the input itself" if replaced == path else f"the input {replaced}"
            raise ValueError(f"output {output} is {which}; choose another name, folder or "
                             "--format")


def _file_id(path):
    status = os.stat(path)
    return status.st_dev, status.st_ino
