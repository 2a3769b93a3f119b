"""The flags of `asdn-upscale` (and of `python -m asdn_tf.batch`, which shares them): their
definitions and the checks that need no image.

`check_flags` validates every flag before any file is read and returns the options the run
passes on: the request (`target_size`), the output (`image_write.check_output`) and the tiling.
Nothing here imports TensorFlow, so `--help` and a refused flag are immediate. The command is
asdn_tf/cli/upscale.py.

Example:
    >>> values = flags.FlagValues()
    >>> define_flags(values)
    >>> request, output, tiles = check_flags(values)  # after parsing argv
"""

import sys

from absl import flags

from asdn_tf.cli.model_flags import check_fsdn_choice, check_model_choice, define_model_flags
from asdn_tf.inference import weights_io
from asdn_tf.inference.files import DEFAULT_QUALITY
from asdn_tf.inference.request import (DEFAULT_MAX_PIXELS, SIZE_TEXT, WHOLE_NUMBER, decimal,
                                       whole_pixels)
from asdn_tf.inference.tiling import MEMORY_BUDGET, MIN_TILE
from asdn_tf.io import image_io, image_write
from asdn_tf.nn import config, lfr


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
    define("integer", "tile", None,
           "Side of the regions the network runs on at once, in its input pixels; 0 never "
           "tiles. By default each step runs on the whole image when its pass fits in "
           f"{MEMORY_BUDGET >> 20} MiB, else on the grid of regions that do with the least work.")
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
    of `target_size`, `image_write.check_output` and the tiling."""
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
        image_write.output_format("", values.format)
    image_write.check_quality(values.quality)
    for name in ("max_pixels", "max_input_pixels"):
        if getattr(values, name) < 1:
            raise ValueError(f"--{name} must be a positive number, got {getattr(values, name)}")
    output = {"image_format": values.format, "overwrite": values.overwrite,
              "quality": values.quality}
    return request, output, tiles


def define_program_flags(flag_values):
    """`define_flags`, listed by --help as the flags of the program run (sys.argv[0])."""
    for holder in define_flags(flag_values):
        flag_values.register_key_flag_for_module(sys.argv[0], flag_values[holder.name])
