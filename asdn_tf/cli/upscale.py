"""Upscale image files by any factor with ASDN: the `asdn-upscale` command.

    asdn-upscale --input=photo.jpg --output=big.png --scale=3.3
    asdn-upscale --input=photos/ --output=big/ --width=3840 --recursive
    asdn-upscale --input='shots/*.png' --output=big/ --size=1920x1080 --weights=mine.weights.h5

--input is a file, a folder (--recursive for its subfolders too) or a glob; --output a file
(for one input) or a folder, created if missing. Give one of --scale, --size, --width or
--height. `asdn-upscale --version` says which version is installed.

Every error a user can cause (a bad path, image, scale or size, a missing or unfitting weights
file, an output that exists or cannot be written) is found before the network runs, and ends in
one line on stderr and a non-zero exit status; outputs are written atomically. The flags are
checked first (--model, --preset and the --weights file included), then each image: from its
header, so a request too large for it, an input above --max_input_pixels, or a file that claims
more pixels than its bytes hold is refused before its pixels are decoded, then by decoding it in
full (a truncated or corrupt file, or pixel values that cannot be read). TensorFlow is imported
and the model loaded only once an image has passed: `--help`, `--version` and those refusals
are immediate. Weights that do not fit their preset are found as the model loads, before any
image is upscaled. In a folder run an image that fails a check (a request its size cannot meet,
such as --width=3840 for one under 120 pixels wide) is reported on its own line and the others
go on; the exit status is then 1. --size sets both sides exactly and warns when that stretches
an image; --width or --height keep the aspect ratio.

The files are upscaled by asdn_tf/inference/files.py (`asdn_tf.upscale_file` for one path from
Python), the array by `asdn_tf.upscale`.
"""

import contextlib
import functools
import importlib.metadata
import pathlib
import sys
import time
import warnings

from absl import app, flags

from asdn_tf.inference import precision as precision_lib
from asdn_tf.cli.model_flags import (check_fsdn_choice, check_model_choice, define_model_flags,
                                     load_chosen_fsdn, load_chosen_model)
from asdn_tf.inference import weights_io
from asdn_tf.inference.files import (DEFAULT_QUALITY, Networks, check_file, plan_outputs,
                                     upscale_checked)
from asdn_tf.inference.request import (DEFAULT_MAX_PIXELS, SIZE_TEXT, WHOLE_NUMBER,
                                       StretchWarning, decimal, whole_pixels)
from asdn_tf.io import errors, image_io, progress
from asdn_tf.nn import config, lfr


def load_upscale_model(weights=None, preset=None, precision="auto", name=None):
    """The model for the command: `weights` (with `preset`), or the bundled model `name` (by
    default `weights_io.UPSCALE_MODEL`), computing in `precision`. What "auto" chose is said
    on stderr, once per process."""
    from asdn_tf.nn.model import ASDN  # imports TensorFlow
    model = load_chosen_model(weights, preset, name, precision, shared=True)
    if not isinstance(model, ASDN):
        raise ValueError(f"{weights} is not an ASDN model ({type(model).__name__}); "
                         "upscaling by any scale needs one")
    if precision == "auto":
        say_auto_precision(precision_lib.precision_of(model), precision_lib.auto_precision()[1])
    return model


@functools.cache
def say_auto_precision(used, reason):
    """Says on stderr what precision "auto" chose and why, once per process for each choice
    (`say_auto_precision.cache_clear()` forgets what was said)."""
    print(f"upscale: precision auto -> {used} ({reason})", file=sys.stderr)


def load_networks(weights=None, preset=None, precision="auto", name=None, fsdn="auto"):
    """The `files.Networks` that the flags choose: `load_upscale_model`'s model and the FSDN for the
    integer part of a scale (`model_flags.load_chosen_fsdn`) or None."""
    return Networks(load_upscale_model(weights, preset, precision, name),
                    load_chosen_fsdn(fsdn, weights, name, precision))


# asdn_tf.inference.tiling's MIN_TILE, written out: that module imports TensorFlow, which a
# refusal does not wait for (tests/test_promises_images.py checks they agree).
MIN_TILE = 8


class _PlainIntegerParser(flags.IntegerParser):
    """absl's integer parser taking digits only: int() alone reads 1_000 and 0x10."""

    def convert(self, argument):
        if isinstance(argument, str) and not WHOLE_NUMBER.fullmatch(argument):
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
    define("string", "size", None, "The output size WIDTHxHEIGHT, e.g. 1920x1080, exactly: an "
                                   "image of another aspect ratio is stretched (with a warning).")
    define("integer", "width", None, "The output width; the height keeps the aspect ratio.")
    define("integer", "height", None, "The output height; the width keeps the aspect ratio.")
    defined += define_model_flags(
        weights="A .weights.h5 or .keras file; by default the weights bundled with the package.",
        model=f"A bundled model: {', '.join(weights_io.BUNDLED)}; by default "
              f"{weights_io.UPSCALE_MODEL}.",
        preset=f"The preset --weights were trained with, one of {sorted(config.PRESETS)}; by "
               "default their JSON sidecar's config, else 'default'.",
        precision="Compute precision. auto: bfloat16 where the hardware computes it (CPUs with "
                  "AMX or AVX512_BF16, GPUs of compute capability 8.0 and above), which runs "
                  "1.5-2.4x faster there for under 0.01 dB on Set5; float32 elsewhere, where "
                  "bfloat16 is slower.",
        flag_values=flag_values, fsdn=True)
    # asdn_tf.inference.tiling's MEMORY_BUDGET, written out: that module imports TensorFlow,
    # which --help does not wait for (test_help_states_the_tiling_defaults checks they agree).
    define("integer", "tile", None,
           "Side of the regions the network runs on at once, in its input pixels; 0 never "
           "tiles. By default each step runs on the whole image when its pass fits in 576 MiB, "
           "else on the grid of regions that do with the least work.")
    define("integer", "tile_overlap", None,
           "Context around each region; by default 70% of the model's receptive radius (12 "
           "pixels for the default model: the farthest context moves the output by at most 0.02 "
           "grey levels); the full radius (17) makes tiles exact.")
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
        return {"scale": lfr.check_scale(decimal(values.scale, "--scale"), name="--scale")}
    if values.size is not None:
        match = SIZE_TEXT.fullmatch(values.size)
        if not match or min(int(match[1]), int(match[2])) < 1:
            raise ValueError(f"--size must be WIDTHxHEIGHT in pixels, e.g. 1920x1080, "
                             f"got {values.size!r}")
        return {"size": (int(match[2]), int(match[1]))}
    name = "width" if values.width is not None else "height"
    return {name: whole_pixels(getattr(values, name), f"--{name}")}


def check_flags(values):
    """Validates every flag that needs no image; returns (request, output, tiles): the options
    of `target_size`, `image_io.check_output` and the tiling."""
    missing = [f"--{name}" for name in ("input", "output") if getattr(values, name) is None]
    if missing:
        raise ValueError(f"give {' and '.join(missing)} (see --help)")
    request = {**_request(values), "max_scale": lfr.DEFAULT_MAX_SCALE,
               "max_pixels": values.max_pixels}
    tiles = {"tile": values.tile, "tile_overlap": values.tile_overlap}
    if values.tile is not None and not (values.tile == 0 or values.tile >= MIN_TILE):
        raise ValueError(f"--tile must be 0 (no tiling) or an integer >= {MIN_TILE}, "
                         f"got {values.tile}")
    if values.tile_overlap is not None and values.tile_overlap < 0:
        raise ValueError(f"--tile_overlap must be an integer >= 0, got {values.tile_overlap}")
    check_model_choice(values.weights, values.preset, values.model)
    check_fsdn_choice(values.fsdn)
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
    elif isinstance(error, image_io.OutputExistsError):
        message = f"{error.path} already exists; not replaced without --overwrite"
    else:
        message = errors.first_line(error)
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
        request, output, tiles = check_flags(values)
        pairs = plan_outputs(values.input, values.output, values.format, values.recursive)
    except _USER_ERRORS as error:
        _say(error)
        return 1
    start = time.perf_counter()
    with _warnings_as_lines():
        jobs, skipped, failed = _checked_jobs(pairs, request, output, values)
    written, megapixels = 0, 0.0
    if jobs and not (failed and values.fail_fast):
        try:
            networks = load_networks(values.weights, values.preset, values.precision,
                                     values.model, values.fsdn)
            model, tiles["fsdn"] = networks.model, networks.fsdn
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


def _checked_jobs(pairs, request, output, values):
    """(jobs, skipped, failed): the (input, output) pairs that passed every check, the full
    decode last; in a run over several images, one whose output exists (a dangling link
    included) is skipped unless --overwrite."""
    several = not pathlib.Path(values.input).is_file()
    jobs, skipped, failed = [], 0, 0
    for source, destination in pairs:
        if several and not values.overwrite and image_io.occupied(destination) \
                and not destination.is_dir():
            skipped += 1
            continue
        try:
            header = check_file(source, destination, request, values.max_input_pixels)
            destination.parent.mkdir(parents=True, exist_ok=True)
            image_io.check_output(destination, header.alpha, **output)
            image_io.check_pixels(source)
        except _USER_ERRORS as error:
            _say(error, source)
            failed += 1
            if values.fail_fast:
                break
            continue
        jobs.append((source, destination))
    return jobs, skipped, failed


def _run(jobs, total, model, request, output, tiles, fail_fast):
    """Upscales the checked (source, destination) pairs; returns (written, output megapixels,
    failed). An interrupt is said in one line and raised again."""
    import tensorflow as tf
    written, failed, megapixels = 0, 0, 0.0
    for index, (source, destination) in enumerate(jobs, 1):
        began = time.perf_counter()
        try:
            path = upscale_checked(source, destination, request, output, model, **tiles,
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
    """Shows each `image_io.FirstFrameWarning` and `StretchWarning` as one `upscale: warning:
    ...` line."""
    ours = (image_io.FirstFrameWarning, StretchWarning)
    with warnings.catch_warnings():
        show = warnings.showwarning

        def one_line(message, category, *args, **kwargs):
            if issubclass(category, ours):
                print(f"upscale: warning: {message}", file=sys.stderr)
            else:
                show(message, category, *args, **kwargs)

        warnings.showwarning = one_line
        for category in ours:
            warnings.simplefilter("always", category)
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
    app.run(main, flags_parser=errors.one_line_flags_parser("upscale"))


def define_program_flags(flag_values):
    """`define_flags`, listed by --help as the flags of the program run (sys.argv[0])."""
    for holder in define_flags(flag_values):
        flag_values.register_key_flag_for_module(sys.argv[0], flag_values[holder.name])


if __name__ == "__main__":
    run()
