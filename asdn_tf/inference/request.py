"""An upscaling request: the output size that a scale, a size, a width or a height asks for,
checked against the input's size and the limits before anything is decoded.

A size (both sides) is exact: it stretches an image of another aspect ratio, which `stretch`
puts in words (the upscale command and `upscale_file` warn with a `StretchWarning`); a width or
a height keeps the aspect ratio.
"""

import math
import re

from asdn_tf.nn import lfr

# A 4096×2160 frame at ×4.
DEFAULT_MAX_PIXELS = 4096 * 2160 * 16
# Whole numbers as people write them: int() also takes 1_000, other scripts' digits and, for
# absl's integer flags, 0x10.
WHOLE_NUMBER = re.compile(r"\s*[+-]?\d+\s*", re.ASCII)
SIZE_TEXT = re.compile(r"\s*(\d+)\s*[x×]\s*(\d+)\s*", re.IGNORECASE | re.ASCII)


class StretchWarning(UserWarning):
    """An output size of another aspect ratio than the input's: the image is stretched."""


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
        scale = lfr.check_scale(decimal(scale, "scale", max_scale)
                                if isinstance(scale, str) else scale, max_scale)
        out_h, out_w = lfr.output_size(in_h, in_w, scale)
        if (out_h, out_w) == (in_h, in_w):
            raise ValueError(f"scale {_number(scale)} is too small for a {in_w}x{in_h} image to "
                             f"grow by a pixel; the smallest that does is "
                             f"{smallest_growing_scale(in_h, in_w):g}")
    elif size is not None:
        out_h, out_w = whole_pixels(size[0], "height"), whole_pixels(size[1], "width")
        if out_h < in_h or out_w < in_w or (out_h, out_w) == (in_h, in_w):
            raise ValueError(f"output {out_w}x{out_h} is not larger than the input {in_w}x{in_h} "
                             "(width x height)")
        scale = max(out_h / in_h, out_w / in_w)
    elif width is not None:
        out_w = whole_pixels(width, "width")
        if out_w <= in_w:
            raise ValueError(f"width {out_w} is not larger than the input width {in_w}")
        scale = out_w / in_w
        out_h = lfr.output_size(in_h, in_w, scale)[0]
    else:
        out_h = whole_pixels(height, "height")
        if out_h <= in_h:
            raise ValueError(f"height {out_h} is not larger than the input height {in_h}")
        scale = out_h / in_h
        out_w = lfr.output_size(in_h, in_w, scale)[1]
    if given[0] != "scale":
        _check_reachable(scale, max_scale, given[0], (in_h, in_w))
    if max_pixels is not None and out_h * out_w > max_pixels:
        raise ValueError(f"output {out_w}x{out_h} would have {out_h * out_w:,} pixels, more than "
                         f"the limit of {max_pixels:,} (max_pixels)")
    return scale, (out_h, out_w)


def _check_reachable(scale, max_scale, request, input_size):
    """Refuses the scale that a size, a width or a height asks for beyond `max_scale`, saying
    how far this image can grow."""
    if scale > max_scale:
        most_h, most_w = lfr.output_size(*input_size, max_scale)
        raise ValueError(f"the scale that {request} asks for must be at most {max_scale:g}, got "
                         f"{scale:.4g}: this {input_size[1]}x{input_size[0]} image grows to "
                         f"{most_w}x{most_h} at most")
    lfr.check_scale(scale, max_scale, name=f"the scale that {request} asks for")


def stretch(input_size, output_size):
    """A sentence saying how `output_size` stretches an image of `input_size` (both (height,
    width)), or None when it keeps the aspect ratio up to a pixel of rounding."""
    (in_h, in_w), (out_h, out_w) = input_size, output_size
    if abs(in_h * out_w / in_w - out_h) <= 1 or abs(in_w * out_h / in_h - out_w) <= 1:
        return None
    return (f"the output {out_w}x{out_h} stretches the {in_w}x{in_h} input (aspect ratio "
            f"{in_w / in_h:.3g} to {out_w / out_h:.3g}); a width or a height alone keeps it")


def _number(value):
    """`value` as typed: 1.0000001 stays 1.0000001 where :g would say 1; 2.0 is 2."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def smallest_growing_scale(height, width):
    """The smallest scale, to four decimals, that adds a pixel to the longer side."""
    scale = math.ceil((1 + 0.5 / max(height, width)) * 1e4) / 1e4
    while lfr.output_size(height, width, scale) == (height, width):
        scale += 1e-4
    return scale


def decimal(text, name, max_scale=lfr.DEFAULT_MAX_SCALE):
    """The float a decimal number such as "3.3" or "2" stands for; raises ValueError naming
    `name` for anything else, including what float() alone would take ("1_5", "nan")."""
    if not lfr.DECIMAL.fullmatch(text):
        raise ValueError(f"{name} must be a number in (1, {max_scale:g}] written in decimal, "
                         f"e.g. 3.3, got {text!r}")
    return float(text)


def whole_pixels(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive number of pixels, got {value!r}")
    return value
