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

from asdn_tf.cli.model_flags import load_chosen_fsdn, load_chosen_model
from asdn_tf.cli.upscale_flags import check_flags, define_flags, define_program_flags
from asdn_tf.inference import precision as precision_lib
from asdn_tf.inference.files import Networks, check_file, plan_outputs, upscale_checked
from asdn_tf.inference.request import StretchWarning
from asdn_tf.io import errors, image_io, image_write, progress


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


# Errors a user can cause; anything else is a bug and keeps its traceback. Once TensorFlow is
# loaded, its ResourceExhaustedError is one too.
_USER_ERRORS = (ValueError, OSError, MemoryError)


def _say(error, source=None):
    if _out_of_memory(error):
        message = "out of memory; try a smaller --tile"
    elif isinstance(error, image_write.OutputExistsError):
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
        if several and not values.overwrite and image_write.occupied(destination) \
                and not destination.is_dir():
            skipped += 1
            continue
        try:
            header = check_file(source, destination, request, values.max_input_pixels)
            destination.parent.mkdir(parents=True, exist_ok=True)
            image_write.check_output(destination, header.alpha, **output)
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


if __name__ == "__main__":
    run()
