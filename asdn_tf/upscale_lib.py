"""Upscaling image files: `upscale_file` for one path, and the `upscale` command built on it.

    python -m asdn_tf.upscale --input=photo.jpg --output=big.png --scale=3.3
    python -m asdn_tf.upscale --input=photos/ --output=big/ --width=3840 --overwrite
    asdn-upscale --input='shots/*.png' --output=big/ --size=1920x1080 --weights=mine.weights.h5

The command's code lives here, and `asdn_tf/upscale.py` only runs it, because importing a
submodule named `upscale` would replace the function `asdn_tf.upscale` on the package.

Every error a user can cause (a bad path, image, scale or size, a missing or unfitting weights
file, an output that exists or cannot be written) is found before the network runs, and ends in
one line on stderr and a non-zero exit status; outputs are written atomically.

Example:
    >>> upscale_file("photo.jpg", "big.png", scale=3.3, model=model)
    PosixPath('big.png')
"""

import os
import pathlib
import re
import sys
import time

import tensorflow as tf
from absl import app, flags
from PIL import Image

from asdn_tf import cli, config, image_io, inference, lfr, pretrained, tiling
from asdn_tf.model import ASDN

# A 4096×2160 frame at ×4.
DEFAULT_MAX_PIXELS = 4096 * 2160 * 16
DEFAULT_QUALITY = 95
_SIZE = re.compile(r"^\s*(\d+)\s*[x×]\s*(\d+)\s*$", re.IGNORECASE)


def target_size(input_size, scale=None, size=None, width=None, height=None,
                max_scale=lfr.DEFAULT_MAX_SCALE):
    """The (scale, (height, width)) of the output for exactly one of the four requests.

    Args:
        input_size: (height, width) of the input.
        scale: the factor.
        size: (height, width) of the output; the scale is the larger of the two ratios.
        width, height: one side of the output; the other keeps the aspect ratio.
        max_scale: the largest accepted scale.

    Raises:
        ValueError: none or several requests, or an output that is not an upscaling.
    """
    in_h, in_w = input_size
    given = [name for name, value in zip(("scale", "size", "width", "height"),
                                         (scale, size, width, height)) if value is not None]
    if len(given) != 1:
        raise ValueError("give exactly one of scale, size, width or height"
                         + (f", not {' and '.join(given)}" if given else ""))
    if scale is not None:
        scale = lfr.check_scale(scale, max_scale)
        return scale, lfr.output_size(in_h, in_w, scale)
    if size is not None:
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
    scale = lfr.check_scale(scale, max_scale, name=f"the scale that {given[0]} asks for")
    return scale, (out_h, out_w)


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
    name = pathlib.Path(source).name
    if image_format is not None:
        wanted = image_io.output_format(name, image_format)
        if image_io.FORMATS.get(pathlib.Path(name).suffix.lower()) != wanted:
            name = pathlib.Path(name).stem + image_io.FORMAT_EXTENSIONS[wanted]
    return destination / name


def upscale_file(source, destination, scale=None, *, size=None, width=None, height=None,
                 model=None, tile=None, tile_overlap=None, image_format=None,
                 quality=DEFAULT_QUALITY, overwrite=False, max_pixels=DEFAULT_MAX_PIXELS,
                 max_scale=lfr.DEFAULT_MAX_SCALE, progress=None):
    """Upscales the image file `source` into `destination`; every check comes before the work.

    Grayscale stays grayscale, alpha is kept (resized with bicubic), 16-bit PNGs stay 16-bit,
    EXIF orientation is applied and the ICC profile is kept where the output format allows.

    Args:
        source: a PNG, JPEG, BMP, WebP or TIFF file.
        destination: a file name, or an existing folder (the output keeps the source's name).
        scale, size, width, height: exactly one, as `target_size`.
        model: an `ASDN`; by default the weights bundled with the package.
        tile, tile_overlap: as `asdn_tf.upscale` (by default large outputs are tiled).
        image_format: "png", "jpeg", "bmp", "webp" or "tiff" to override the extension.
        quality: JPEG and WebP quality, 1–100.
        overwrite: replace an existing output.
        max_pixels: refuse outputs of more pixels than this.
        max_scale: the largest accepted scale.
        progress: optional callable(done, total), called after each network pass.

    Returns:
        The path written.

    Raises:
        FileNotFoundError, FileExistsError, OSError, ValueError: with a message naming the
            problem; nothing is written.
    """
    source = pathlib.Path(source)
    if not source.is_file():
        raise FileNotFoundError(f"no such image file: {source}")
    destination = output_path(source, destination, image_format)
    if destination.exists() and os.path.samefile(source, destination):
        raise ValueError(f"output {destination} is the input itself; choose another name or folder")
    pixels, profile = image_io.read_image_and_profile(source)
    scale, size = target_size(pixels.shape[:2], scale, size, width, height, max_scale)
    if size[0] * size[1] > max_pixels:
        raise ValueError(f"output {size[1]}x{size[0]} would have {size[0] * size[1]:,} pixels, "
                         f"more than the limit of {max_pixels:,} (max_pixels)")
    image_io.check_output(destination, pixels, image_format, overwrite, quality)
    output = inference.upscale(pixels, scale, model=model, size=size, max_scale=max_scale,
                               tile=tile, tile_overlap=tile_overlap, progress=progress)
    return image_io.write_image(destination, output, image_format, profile, quality, overwrite)


def plan_outputs(source, destination, image_format=None):
    """The (input, output) pairs for the command's --input (file, folder or glob) and --output.

    Raises:
        FileNotFoundError: nothing at `source`, or the output folder does not exist.
        ValueError: no images, several inputs for one output file, or two inputs for one output.
        OSError: the output folder is not writable.
    """
    sources = image_io.list_images(source, recursive=False)
    if not sources:
        raise ValueError(f"no images in {source} (looked for "
                         f"{', '.join(image_io.IMAGE_EXTENSIONS)})")
    destination_text = os.fspath(destination)
    destination = pathlib.Path(destination_text)
    several = not pathlib.Path(os.fspath(source)).is_file()
    wants_folder = several or destination_text.endswith(("/", os.sep))
    if wants_folder and not destination.is_dir():
        if destination.exists():
            raise ValueError(f"output {destination} must be a folder when the input names "
                             "several images")
        raise FileNotFoundError(f"output folder {destination} does not exist")
    image_io.check_folder(destination if destination.is_dir() else destination.parent)
    pairs = [(path, output_path(path, destination, image_format)) for path in sources]
    seen = {}
    for path, output in pairs:
        if output in seen:
            raise ValueError(f"{seen[output]} and {path} would both be written to {output}")
        seen[output] = path
    return pairs


def load_model(weights=None, preset=None, precision="float32"):
    """The model for the command: `weights` (with `preset`), or the bundled default, computing
    in `precision`."""
    if weights is None:
        if preset is not None:
            raise ValueError("--preset only applies to --weights; give both, or neither for the "
                             "bundled weights")
        return pretrained.load_pretrained(precision)
    model = pretrained.load_model(weights, preset, precision=precision)
    if not isinstance(model, ASDN):
        raise ValueError(f"{weights} is not an ASDN model ({type(model).__name__}); upscaling "
                         "by any scale needs one")
    return model


def define_flags(flag_values=flags.FLAGS):
    """Defines the command's flags on `flag_values`; returns them."""
    defined = []

    def define(kind, name, default, text):
        defined.append(getattr(flags, f"DEFINE_{kind}")(name, default, text,
                                                        flag_values=flag_values))

    define("string", "input", None, "An image file, a folder of images, or a glob ('a/*.png').")
    define("string", "output", None,
           "The output file (one input) or an existing folder (outputs keep the input names).")
    define("string", "scale", None, "The factor, in (1, 32], e.g. 3.3.")
    define("string", "size", None, "The output size WIDTHxHEIGHT, e.g. 1920x1080.")
    define("integer", "width", None, "The output width; the height keeps the aspect ratio.")
    define("integer", "height", None, "The output height; the width keeps the aspect ratio.")
    define("string", "weights", None,
           "A .weights.h5 or .keras file; by default the weights bundled with the package.")
    define("string", "preset", None,
           f"The preset --weights were trained with, one of {sorted(config.PRESETS)}; by "
           "default their JSON sidecar's config, else 'default'.")
    defined.append(flags.DEFINE_enum(
        "precision", "float32", list(pretrained.PRECISIONS),
        "Compute precision: bfloat16 runs about 2.4x faster on CPUs with AMX (Intel Sapphire "
        "Rapids and later) for -0.03 dB on Set5, and slower on other CPUs.",
        flag_values=flag_values))
    define("integer", "tile", None,
           f"Side of the regions the network runs on at once, in its input pixels; 0 never "
           f"tiles. By default outputs above {tiling.AUTO_TILE_PIXELS / 1e6:.1f} M pixels use "
           f"{tiling.DEFAULT_TILE}.")
    define("integer", "tile_overlap", None,
           "Context around each region; by default the model's receptive radius, which makes "
           "tiles seamless.")
    define("string", "format", None, "Output format png, jpeg, bmp, webp or tiff; by default "
                                     "from the output's extension.")
    define("integer", "quality", DEFAULT_QUALITY, "JPEG and WebP quality, 1-100.")
    define("bool", "overwrite", False, "Replace existing outputs.")
    define("bool", "fail_fast", False, "Stop at the first file that fails.")
    define("integer", "max_pixels", DEFAULT_MAX_PIXELS,
           "Refuse outputs of more pixels than this (default: a 4096x2160 frame at x4).")
    flags.mark_flags_as_required(["input", "output"], flag_values=flag_values)
    return defined


def _request(values):
    """The scale/size/width/height request from the flags, validated; raises ValueError."""
    given = [f"--{name}" for name in ("scale", "size", "width", "height")
             if getattr(values, name) is not None]
    if len(given) != 1:
        raise ValueError("give exactly one of --scale, --size=WIDTHxHEIGHT, --width or --height"
                         + (f", not {' and '.join(given)}" if given else ""))
    if values.scale is not None:
        return {"scale": lfr.check_scale(values.scale, name="--scale")}
    if values.size is not None:
        match = _SIZE.match(values.size)
        if not match or min(int(match[1]), int(match[2])) < 1:
            raise ValueError(f"--size must be WIDTHxHEIGHT in pixels, e.g. 1920x1080, "
                             f"got {values.size!r}")
        return {"size": (int(match[2]), int(match[1]))}
    name = "width" if values.width is not None else "height"
    return {name: _pixels(getattr(values, name), f"--{name}")}


def _check_flags(values):
    """Validates every flag that does not need an image; returns upscale_file's options."""
    options = _request(values)
    options["tile"] = tiling.check_tile(values.tile)
    options["tile_overlap"] = tiling.check_overlap(values.tile_overlap)
    if values.format is not None:
        image_io.output_format("", values.format)
    image_io.check_quality(values.quality)
    if values.max_pixels < 1:
        raise ValueError(f"--max_pixels must be a positive number, got {values.max_pixels}")
    return {**options, "image_format": values.format, "quality": values.quality,
            "overwrite": values.overwrite, "max_pixels": values.max_pixels}


# Errors a user can cause; anything else is a bug and keeps its traceback.
_USER_ERRORS = (ValueError, OSError, MemoryError, tf.errors.ResourceExhaustedError)


def _say(error, source=None):
    if isinstance(error, (MemoryError, tf.errors.ResourceExhaustedError)):
        message = "out of memory; try a smaller --tile"
    else:
        message = str(getattr(error, "message", None) or error).strip().splitlines()[0]
    if source is not None and str(source) not in message:
        message = f"{source}: {message}"
    print(f"upscale: {message}", file=sys.stderr)


def execute(values, arguments=()):
    """Runs the command for parsed flags `values`; returns the exit status (0, 1 or 130)."""
    if arguments:
        _say(f"unexpected arguments {' '.join(arguments)!r}; every option is a --flag")
        return 1
    try:
        options = _check_flags(values)
        pairs = plan_outputs(values.input, values.output, values.format)
        model = load_model(values.weights, values.preset, values.precision)
    except _USER_ERRORS as error:
        _say(error)
        return 1
    failed, written, megapixels = 0, 0, 0.0
    start = time.perf_counter()
    for index, (source, destination) in enumerate(pairs, 1):
        began = time.perf_counter()
        try:
            path = upscale_file(source, destination, model=model, **options,
                                progress=_progress_bar(f"[{index}/{len(pairs)}] {source.name}"))
        except KeyboardInterrupt:
            _clear()
            print(f"upscale: interrupted at {source}; {written} written", file=sys.stderr)
            return 130
        except _USER_ERRORS as error:
            _clear()
            _say(error, source)
            failed += 1
            if values.fail_fast:
                break
            continue
        _clear()
        with Image.open(path) as image:
            megapixels += image.width * image.height / 1e6
            size = f"{image.width}x{image.height}"
        written += 1
        print(f"{source} -> {path} ({size}, {time.perf_counter() - began:.1f} s)")
    seconds = time.perf_counter() - start
    summary = (f"upscaled {written} of {len(pairs)} files in {seconds:.1f} s, "
               f"{megapixels / max(seconds, 1e-9):.2f} output megapixels/s")
    if failed:
        summary += f"; {failed} failed" + (", stopped there (--fail_fast)" if values.fail_fast
                                           else "")
    print(summary)
    return 1 if failed else 0


def _progress_bar(label):
    """A callback drawing `label ████···· 3/8` on stderr if it is a terminal; None otherwise."""
    if not sys.stderr.isatty():
        return None

    def draw(done, total):
        filled = 24 * done // total
        sys.stderr.write(f"\r{label} {'█' * filled}{'·' * (24 - filled)} {done}/{total}\033[K")
        sys.stderr.flush()
    return draw


def _clear():
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()


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
