"""Upscale image files by any factor with ASDN: the `asdn-upscale` command, and `upscale_file`
for one path from Python.

    python -m asdn_tf.upscale --input=photo.jpg --output=big.png --scale=3.3
    python -m asdn_tf.upscale --input=photos/ --output=big/ --width=3840 --recursive
    asdn-upscale --input='shots/*.png' --output=big/ --size=1920x1080 --weights=mine.weights.h5

--input is a file, a folder (--recursive for its subfolders too) or a glob; --output a file
(for one input) or a folder, created if missing. Give one of --scale, --size, --width or
--height. `asdn-upscale --version` says which version is installed.

Every error a user can cause (a bad path, image, scale or size, a missing or unfitting weights
file, an output that exists or cannot be written) is found before the network runs, and ends in
one line on stderr and a non-zero exit status; outputs are written atomically. An image's size
comes from its header, so a request too large for it, an input above --max_input_pixels, or a
file that claims more pixels than its bytes hold is refused before its pixels are decoded,
and TensorFlow is imported only once an image is known to need the network: `--help`,
`--version` and every refusal are immediate.

`asdn_tf.upscale` is the function for arrays (`asdn_tf.inference.upscale`), not this module:
the package keeps that name when this module is imported. Reach the module by
`from asdn_tf.upscale import upscale_file, run_cli`.

Example:
    >>> upscale_file("photo.jpg", "big.png", scale=3.3, model=model)
    PosixPath('big.png')
"""

import contextlib
import importlib.metadata
import math
import os
import pathlib
import re
import sys
import time
import warnings

from absl import app, flags

from asdn_tf import cli, config, image_io, lfr, progress, weights_io
from asdn_tf import precision as precision_lib

# A 4096×2160 frame at ×4.
DEFAULT_MAX_PIXELS = 4096 * 2160 * 16
DEFAULT_QUALITY = 95
# Whole numbers as people write them: int() also takes 1_000, other scripts' digits and, for
# absl's integer flags, 0x10.
_INTEGER = re.compile(r"\s*[+-]?\d+\s*", re.ASCII)
_SIZE = re.compile(r"\s*(\d+)\s*[x×]\s*(\d+)\s*", re.IGNORECASE | re.ASCII)


def target_size(input_size, scale=None, size=None, width=None, height=None,
                max_scale=lfr.DEFAULT_MAX_SCALE, max_pixels=None):
    """The (scale, (height, width)) of the output for exactly one of the four requests.

    Args:
        input_size: (height, width) of the input.
        scale: the factor (a number, or a string of a decimal number).
        size: (height, width) of the output; the scale is the larger of the two ratios.
        width, height: one side of the output; the other keeps the aspect ratio.
        max_scale: the largest accepted scale.
        max_pixels: if given, the most pixels the output may have.

    Raises:
        ValueError: none or several requests, an output that is not an upscaling, or one of
            more than `max_pixels` pixels.
    """
    in_h, in_w = input_size
    given = [name for name, value in zip(("scale", "size", "width", "height"),
                                         (scale, size, width, height)) if value is not None]
    if len(given) != 1:
        raise ValueError("give exactly one of scale, size, width or height"
                         + (f", not {' and '.join(given)}" if given else ""))
    if scale is not None:
        scale = lfr.check_scale(_decimal(scale, "scale", max_scale)
                                if isinstance(scale, str) else scale, max_scale)
        out_h, out_w = lfr.output_size(in_h, in_w, scale)
        if (out_h, out_w) == (in_h, in_w):
            raise ValueError(f"scale {scale:g} is too small for a {in_w}x{in_h} image to grow by "
                             f"a pixel; the smallest that does is "
                             f"{_smallest_growing_scale(in_h, in_w):g}")
    elif size is not None:
        out_h, out_w = _pixels(size[0], "height"), _pixels(size[1], "width")
        if out_h < in_h or out_w < in_w or (out_h, out_w) == (in_h, in_w):
            raise ValueError(f"output {out_w}x{out_h} is not larger than the input {in_w}x{in_h} "
                             "(width x height)")
        scale = max(out_h / in_h, out_w / in_w)
    elif width is not None:
        out_w = _pixels(width, "width")
        if out_w <= in_w:
            raise ValueError(f"width {out_w} is not larger than the input width {in_w}")
        scale = out_w / in_w
        out_h = lfr.output_size(in_h, in_w, scale)[0]
    else:
        out_h = _pixels(height, "height")
        if out_h <= in_h:
            raise ValueError(f"height {out_h} is not larger than the input height {in_h}")
        scale = out_h / in_h
        out_w = lfr.output_size(in_h, in_w, scale)[1]
    if given[0] != "scale":
        scale = lfr.check_scale(scale, max_scale, name=f"the scale that {given[0]} asks for")
    if max_pixels is not None and out_h * out_w > max_pixels:
        raise ValueError(f"output {out_w}x{out_h} would have {out_h * out_w:,} pixels, more than "
                         f"the limit of {max_pixels:,} (max_pixels)")
    return scale, (out_h, out_w)


def _smallest_growing_scale(height, width):
    """The smallest scale, to four decimals, that adds a pixel to the longer side."""
    scale = math.ceil((1 + 0.5 / max(height, width)) * 1e4) / 1e4
    while lfr.output_size(height, width, scale) == (height, width):
        scale += 1e-4
    return scale


def _decimal(text, name, max_scale=lfr.DEFAULT_MAX_SCALE):
    """The float a decimal number such as "3.3" or "2" stands for; raises ValueError naming
    `name` for anything else, including what float() alone would take ("1_5", "nan")."""
    if not lfr.DECIMAL.fullmatch(text):
        raise ValueError(f"{name} must be a number in (1, {max_scale:g}] written in decimal, "
                         f"e.g. 3.3, got {text!r}")
    return float(text)


def _pixels(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive number of pixels, got {value!r}")
    return value


def output_path(source, destination, image_format=None):
    """Where `source` is written: `destination`, or the same name inside it if it is a folder.

    With `image_format`, a name chosen here gets that format's extension.
    """
    destination = pathlib.Path(destination)
    if not destination.is_dir():
        return destination
    return destination / _output_name(pathlib.Path(source).name, image_format)


def _output_name(name, image_format):
    if image_format is not None:
        wanted = image_io.output_format(name, image_format)
        if image_io.FORMATS.get(pathlib.Path(name).suffix.lower()) != wanted:
            return pathlib.Path(name).stem + image_io.FORMAT_EXTENSIONS[wanted]
    return name


def upscale_file(source, destination, scale=None, *, size=None, width=None, height=None,
                 model=None, tile=None, tile_overlap=None, image_format=None,
                 quality=DEFAULT_QUALITY, overwrite=False, max_pixels=DEFAULT_MAX_PIXELS,
                 max_scale=lfr.DEFAULT_MAX_SCALE, progress=None, precision="auto",
                 max_input_pixels=image_io.MAX_INPUT_PIXELS):
    """Upscales the image file `source` into `destination`; every check comes before the work.

    The request is checked against the size in the image's header before the pixels are
    decoded: a small file that decodes to billions of pixels is refused in well under a second
    (`image_io.check_decode_cost`).
    Grayscale stays grayscale, alpha is kept (resized with bicubic), 16-bit PNGs stay 16-bit,
    EXIF orientation is applied and the ICC profile is kept where the output format allows. Of
    an animated image or a multi-page TIFF the first frame is used, with an
    `image_io.FirstFrameWarning`.

    Args:
        source: a PNG, JPEG, BMP, WebP or TIFF file.
        destination: a file name, or an existing folder (the output keeps the source's name).
        scale, size, width, height: exactly one, as `target_size`.
        model: an `ASDN`; by default the weights bundled with the package, loaded once per
            process and precision.
        tile, tile_overlap: as `asdn_tf.upscale` (by default large outputs are tiled).
        image_format: "png", "jpeg", "bmp", "webp" or "tiff" to override the extension.
        quality: JPEG and WebP quality, 1–100.
        overwrite: replace an existing output file (never a folder, never the source).
        max_pixels: refuse outputs of more pixels than this.
        max_input_pixels: refuse inputs of more pixels than this.
        max_scale: the largest accepted scale.
        progress: optional callable(done, total), called after each network pass.
        precision: of the bundled model, when `model` is None: "auto" (bfloat16 where the
            hardware runs it fast), "float32" or "bfloat16".

    Returns:
        The path written.

    Raises:
        FileNotFoundError, FileExistsError, OSError, ValueError: with a message naming the
            problem; nothing is written.
    """
    request = {"scale": scale, "size": size, "width": width, "height": height,
               "max_scale": max_scale, "max_pixels": max_pixels}
    output = {"image_format": image_format, "overwrite": overwrite, "quality": quality}
    precision_lib.check_precision(precision)
    destination = output_path(source, destination, image_format)
    header = _check_file(source, destination, request, max_input_pixels)
    image_io.check_output(destination, header.alpha, **output)
    return _upscale_checked(source, destination, request, output, model, tile, tile_overlap,
                            progress, precision)


def _check_file(source, destination, request, max_input_pixels):
    """The checks of one file that need no decoding; returns its `image_io.Header`."""
    source = pathlib.Path(source)
    if not source.is_file():
        raise FileNotFoundError(f"no such image file: {source}")
    if destination.exists() and os.path.samefile(source, destination):
        raise ValueError(f"output {destination} is the input itself; choose another name or folder")
    header = image_io.read_header(source)
    target_size((header.height, header.width), **request)
    # After the output's limit, whose message says more to most users; a header is cheap.
    return image_io.check_decode_cost(source, max_input_pixels)


def _upscale_checked(source, destination, request, output, model, tile, tile_overlap, progress,
                     precision="auto"):
    """Decodes, upscales and writes a file that `_check_file` passed."""
    from asdn_tf import inference  # imports TensorFlow
    pixels, profile = image_io.read_image_and_profile(source)
    # Again on the decoded size: a PNG may store its orientation after the pixels.
    scale, size = target_size(pixels.shape[:2], **request)
    image_io.check_output(destination, image_io.has_alpha(pixels), **output)
    result = inference.upscale(pixels, scale, model=model, size=size,
                               max_scale=request["max_scale"], tile=tile,
                               tile_overlap=tile_overlap, progress=progress,
                               precision=precision)
    return image_io.write_image(destination, result, output["image_format"], profile,
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
        image_io.check_folder(destination.parent)
        pairs = [(sources[0], destination)]
    else:
        _check_output_folder(destination)
        pairs = [(path, destination / _mirrored(path, source_path if recursive else None,
                                                image_format)) for path in sources]
    _check_pairs(pairs)
    return pairs


def _check_output_folder(folder):
    if folder.is_dir():
        image_io.check_folder(folder)
    elif folder.exists():
        raise ValueError(f"output {folder} is a file, not a folder; several inputs need a folder")
    elif not folder.parent.is_dir():
        raise FileNotFoundError(f"cannot create the output folder {folder}: its parent "
                                f"{folder.parent} does not exist")
    else:
        image_io.check_folder(folder.parent)


def _mirrored(path, root, image_format):
    """The output name of `path`: its name, or its place under `root` when given."""
    relative = path.relative_to(root) if root is not None else pathlib.Path(path.name)
    return relative.parent / _output_name(relative.name, image_format)


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


def load_model(weights=None, preset=None, precision="auto", name=None):
    """The model for the command: `weights` (with `preset`), or the bundled model `name` (by
    default `weights_io.UPSCALE_MODEL`), computing in `precision`. What "auto" chose is said
    on stderr, once per process."""
    global _precision_said
    from asdn_tf.model import ASDN  # imports TensorFlow
    if weights is None:
        if preset is not None:
            raise ValueError("--preset only applies to --weights; give both, or neither for the "
                             "bundled weights")
        model = weights_io.shared_pretrained(precision, name)
    else:
        if name is not None:
            raise ValueError("give --model (a bundled model) or --weights (a file), not both")
        model = weights_io.load_model(weights, preset, precision=precision)
        if not isinstance(model, ASDN):
            raise ValueError(f"{weights} is not an ASDN model ({type(model).__name__}); "
                             "upscaling by any scale needs one")
    if precision == "auto" and not _precision_said:
        _precision_said = True
        used, reason = precision_lib.precision_of(model), precision_lib.auto_precision()[1]
        print(f"upscale: precision auto -> {used} ({reason})", file=sys.stderr)
    return model


# Whether the precision "auto" chose was said in this process.
_precision_said = False


class _PlainIntegerParser(flags.IntegerParser):
    """absl's integer parser taking digits only: int() alone reads 1_000 and 0x10."""

    def convert(self, argument):
        if isinstance(argument, str) and not _INTEGER.fullmatch(argument):
            raise ValueError(f"expected a whole number in digits, got {argument!r}")
        return super().convert(argument)


def define_flags(flag_values=flags.FLAGS):
    """Defines the command's flags on `flag_values`; returns them."""
    defined = []

    def define(kind, name, default, text):
        if kind == "integer":
            defined.append(flags.DEFINE(_PlainIntegerParser(), name, default, text,
                                        flag_values=flag_values,
                                        serializer=flags.ArgumentSerializer()))
        else:
            defined.append(getattr(flags, f"DEFINE_{kind}")(name, default, text,
                                                            flag_values=flag_values))

    define("string", "input", None, "An image file, a folder of images, or a glob ('a/*.png'); "
                                    "hidden files are skipped.")
    define("string", "output", None,
           "The output file (one input) or a folder, created if missing (outputs keep the input "
           "names).")
    define("bool", "recursive", False,
           "Also upscale the images in --input's subfolders; the outputs mirror them.")
    define("string", "scale", None, f"The factor, in (1, {lfr.DEFAULT_MAX_SCALE:g}], e.g. 3.3.")
    define("string", "size", None, "The output size WIDTHxHEIGHT, e.g. 1920x1080.")
    define("integer", "width", None, "The output width; the height keeps the aspect ratio.")
    define("integer", "height", None, "The output height; the width keeps the aspect ratio.")
    define("string", "weights", None,
           "A .weights.h5 or .keras file; by default the weights bundled with the package.")
    define("string", "model", None,
           f"A bundled model: {', '.join(weights_io.BUNDLED)}; by default "
           f"{weights_io.UPSCALE_MODEL}.")
    define("string", "preset", None,
           f"The preset --weights were trained with, one of {sorted(config.PRESETS)}; by "
           "default their JSON sidecar's config, else 'default'.")
    defined.append(flags.DEFINE_enum(
        "precision", "auto", list(precision_lib.PRECISION_CHOICES),
        "Compute precision. auto: bfloat16 where the hardware computes it (CPUs with AMX or "
        "AVX512_BF16, GPUs of compute capability 8.0 and above), which runs 1.5-2.4x faster "
        "there for under 0.01 dB on Set5; float32 elsewhere, where bfloat16 is slower.",
        flag_values=flag_values))
    # asdn_tf.tiling's DEFAULT_TILE, written out: that module imports TensorFlow, which --help
    # does not wait for (test_help_states_the_tiling_defaults checks they agree).
    define("integer", "tile", None,
           "Side of the regions the network runs on at once, in its input pixels; 0 never "
           f"tiles. By default outputs above {config.MAX_PASS_PIXELS / 1e6:.1f} M pixels use 512.")
    define("integer", "tile_overlap", None,
           "Context around each region; by default the model's receptive radius, which makes "
           "tiles seamless.")
    define("string", "format", None, "Output format png, jpeg, bmp, webp or tiff; by default "
                                     "from the output's extension.")
    define("integer", "quality", DEFAULT_QUALITY, "JPEG and WebP quality, 1-100.")
    define("bool", "overwrite", False,
           "Replace existing output files (never a folder or an input). Without it a folder "
           "run skips the images whose output exists.")
    define("bool", "fail_fast", False, "Stop at the first file that fails.")
    define("integer", "max_pixels", DEFAULT_MAX_PIXELS,
           "Refuse outputs of more pixels than this (default: a 4096x2160 frame at x4).")
    define("integer", "max_input_pixels", image_io.MAX_INPUT_PIXELS,
           "Refuse inputs of more pixels than this, from their header (default: 8192x8192); "
           "decoding takes 3-4 bytes a pixel.")
    define("bool", "version", False, "Print the version and exit.")
    return defined


def _request(values):
    """The scale/size/width/height request from the flags, validated; raises ValueError."""
    given = [f"--{name}" for name in ("scale", "size", "width", "height")
             if getattr(values, name) is not None]
    if len(given) != 1:
        raise ValueError("give exactly one of --scale, --size=WIDTHxHEIGHT, --width or --height"
                         + (f", not {' and '.join(given)}" if given else ""))
    if values.scale is not None:
        return {"scale": lfr.check_scale(_decimal(values.scale, "--scale"), name="--scale")}
    if values.size is not None:
        match = _SIZE.fullmatch(values.size)
        if not match or min(int(match[1]), int(match[2])) < 1:
            raise ValueError(f"--size must be WIDTHxHEIGHT in pixels, e.g. 1920x1080, "
                             f"got {values.size!r}")
        return {"size": (int(match[2]), int(match[1]))}
    name = "width" if values.width is not None else "height"
    return {name: _pixels(getattr(values, name), f"--{name}")}


def _check_flags(values):
    """Validates every flag that needs no image; returns (request, output, tiles): the options
    of `target_size`, `image_io.check_output` and the tiling."""
    missing = [f"--{name}" for name in ("input", "output") if getattr(values, name) is None]
    if missing:
        raise ValueError(f"give {' and '.join(missing)} (see --help)")
    request = {**_request(values), "max_scale": lfr.DEFAULT_MAX_SCALE,
               "max_pixels": values.max_pixels}
    tiles = {"tile": values.tile, "tile_overlap": values.tile_overlap}
    if values.tile is not None or values.tile_overlap is not None:
        from asdn_tf import tiling  # imports TensorFlow: only when there is a flag to check
        tiles = {"tile": tiling.check_tile(values.tile),
                 "tile_overlap": tiling.check_overlap(values.tile_overlap)}
    if values.format is not None:
        image_io.output_format("", values.format)
    image_io.check_quality(values.quality)
    for name in ("max_pixels", "max_input_pixels"):
        if getattr(values, name) < 1:
            raise ValueError(f"--{name} must be a positive number, got {getattr(values, name)}")
    output = {"image_format": values.format, "overwrite": values.overwrite,
              "quality": values.quality}
    return request, output, tiles


# Errors a user can cause; anything else is a bug and keeps its traceback. Once TensorFlow is
# loaded, its ResourceExhaustedError is one too.
_USER_ERRORS = (ValueError, OSError, MemoryError)


def _say(error, source=None):
    if _out_of_memory(error):
        message = "out of memory; try a smaller --tile"
    else:
        message = cli.first_line(error)
    if source is not None and str(source) not in message:
        message = f"{source}: {message}"
    print(f"upscale: {message}", file=sys.stderr)


def _out_of_memory(error):
    tf = sys.modules.get("tensorflow")  # which raises its error only once imported
    return isinstance(error, MemoryError) or (
        tf is not None and isinstance(error, tf.errors.ResourceExhaustedError))


def version():
    """The version of the installed asdn_tf."""
    import asdn_tf
    found = getattr(asdn_tf, "__version__", None)
    return found or importlib.metadata.version("asdn_tf")


def execute(values, arguments=()):
    """Runs the command for parsed flags `values`; returns the exit status (0, 1 or 130).

    Every image is checked from its header first; the model is loaded only if one passed. In a
    run over several images, one whose output exists is skipped unless --overwrite.
    """
    if arguments:
        _say(f"unexpected arguments {' '.join(arguments)!r}; every option is a --flag")
        return 1
    if values.version:
        print(f"asdn-upscale {version()}")
        return 0
    try:
        request, output, tiles = _check_flags(values)
        pairs = plan_outputs(values.input, values.output, values.format, values.recursive)
    except _USER_ERRORS as error:
        _say(error)
        return 1
    start = time.perf_counter()
    several = not pathlib.Path(values.input).is_file()
    jobs, skipped, failed = [], 0, 0
    for source, destination in pairs:
        if several and not values.overwrite and destination.exists() \
                and not destination.is_dir():
            skipped += 1
            continue
        try:
            header = _check_file(source, destination, request, values.max_input_pixels)
            destination.parent.mkdir(parents=True, exist_ok=True)
            image_io.check_output(destination, header.alpha, **output)
        except _USER_ERRORS as error:
            _say(error, source)
            failed += 1
            if values.fail_fast:
                break
            continue
        jobs.append((source, destination))
    written, megapixels = 0, 0.0
    if jobs and not (failed and values.fail_fast):
        try:
            model = load_model(values.weights, values.preset, values.precision, values.model)
        except _USER_ERRORS as error:
            _say(error)
            return 1
        try:
            with _warnings_as_lines():
                written, megapixels, run_failed = _run(jobs, len(pairs), model, request, output,
                                                       tiles, values.fail_fast)
        except KeyboardInterrupt:
            return 130
        failed += run_failed
    seconds = time.perf_counter() - start
    summary = (f"upscaled {written} of {len(pairs)} files in {seconds:.1f} s, "
               f"{megapixels / max(seconds, 1e-9):.2f} output megapixels/s")
    if skipped:
        summary += f"; {skipped} skipped (their outputs exist; --overwrite replaces them)"
    if failed:
        summary += f"; {failed} failed" + (", stopped there (--fail_fast)" if values.fail_fast
                                           else "")
    print(summary)
    return 1 if failed else 0


def _run(jobs, total, model, request, output, tiles, fail_fast):
    """Upscales the checked (source, destination) pairs; returns (written, output megapixels,
    failed). An interrupt is said in one line and raised again."""
    import tensorflow as tf
    written, failed, megapixels = 0, 0, 0.0
    for index, (source, destination) in enumerate(jobs, 1):
        began = time.perf_counter()
        try:
            path = _upscale_checked(source, destination, request, output, model, **tiles,
                                    progress=progress.bar(f"[{index}/{total}] {source.name}"))
        except KeyboardInterrupt:
            progress.clear()
            print(f"upscale: interrupted at {source}; {written} written", file=sys.stderr)
            raise
        except (*_USER_ERRORS, tf.errors.ResourceExhaustedError) as error:
            progress.clear()
            _say(error, source)
            failed += 1
            if fail_fast:
                break
            continue
        progress.clear()
        height, width = image_io.read_header(path)[:2]
        megapixels += width * height / 1e6
        written += 1
        print(f"{source} -> {path} ({width}x{height}, {time.perf_counter() - began:.1f} s)")
    return written, megapixels, failed


@contextlib.contextmanager
def _warnings_as_lines():
    """Shows each `image_io.FirstFrameWarning` as one `upscale: warning: ...` line."""
    with warnings.catch_warnings():
        show = warnings.showwarning

        def one_line(message, category, *args, **kwargs):
            if issubclass(category, image_io.FirstFrameWarning):
                print(f"upscale: warning: {message}", file=sys.stderr)
            else:
                show(message, category, *args, **kwargs)

        warnings.showwarning = one_line
        warnings.simplefilter("always", image_io.FirstFrameWarning)
        yield


def run_cli(argv):
    """Runs the command line `argv` (argv[0] is the program) in this process; returns the status.

    Uses its own flag registry, so it can run many times and beside other absl programs.
    """
    values = flags.FlagValues()
    define_flags(values)
    try:
        arguments = values(argv)[1:]
    except flags.Error as error:
        _say(error)
        return 1
    return execute(values, arguments)


def main(argv):
    return execute(flags.FLAGS, argv[1:])


def run():
    """The `asdn-upscale` console script and `python -m asdn_tf.upscale`."""
    define_program_flags(flags.FLAGS)
    app.run(main, flags_parser=cli.one_line_flags_parser("upscale"))


def define_program_flags(flag_values):
    """`define_flags`, listed by --help as the flags of the program run (sys.argv[0])."""
    for holder in define_flags(flag_values):
        flag_values.register_key_flag_for_module(sys.argv[0], flag_values[holder.name])


if __name__ == "__main__":
    run()
