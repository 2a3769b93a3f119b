"""Laplacian frequency representation arithmetic (../shared/docs/ASDN.md §3–4).

Pure functions: which two reconstruction branches a scale blends, with what weight, and the
chain of steps that reaches a scale above 2.

Example:
    >>> level_and_weight(1.27)
    (3, 0.3)
    >>> recursion_plan(5.7)
    [2.0, 2.0, 1.425]
"""

import math
import re

DEFAULT_LEVELS = 11
DEFAULT_MAX_SCALE = 32.0
# (L-1)(r-1) is computed in floating point: 1.1 gives 1.0000000000000009, 1.3 gives
# 3.0000000000000004. Snapping by this much puts such values back on the level grid.
_SNAP = 1e-6
# A scale written as text: a plain decimal number (Python's float also takes "1_5", "١٫٥" and
# "nan", which a user never means as a scale).
DECIMAL = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*", re.ASCII)


def check_scale(scale, max_scale=DEFAULT_MAX_SCALE, name="scale"):
    """Returns `scale` as a float, or raises ValueError naming the accepted range; text must be
    a plain decimal number."""
    try:
        if isinstance(scale, str) and not DECIMAL.fullmatch(scale):
            raise ValueError(scale)
        value = float(scale)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in (1, {max_scale:g}], got {scale!r}") from None
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{name} must be a finite number in (1, {max_scale:g}], got {value}")
    if value <= 1.0:
        raise ValueError(f"{name} must be greater than 1 (1 is not an upscaling) and at most "
                         f"{max_scale:g}, got {value:g}")
    if value > max_scale:
        raise ValueError(f"{name} must be at most {max_scale:g} (the configured maximum), "
                         f"got {value:g}")
    return value


def level_scales(num_levels=DEFAULT_LEVELS):
    """The scales r_l = 1 + l / (L - 1), l = 0..L-1, of the LFR levels."""
    return [1.0 + level / (num_levels - 1) for level in range(num_levels)]


def level_and_weight(scale, num_levels=DEFAULT_LEVELS):
    """Returns (i, w) for a scale r in (1, 2]: O_r = O_{r_i} + w * (O_{r_{i-1}} - O_{r_i}).

    i = ceil((L-1)(r-1)) is the upper neighbouring level and w = (L-1)(r_i - r) in [0, 1).
    """
    r = check_scale(scale, max_scale=2.0)
    x = (num_levels - 1) * (r - 1.0)
    i = min(max(math.ceil(x - _SNAP), 1), num_levels - 1)
    w = min(max(i - x, 0.0), 1.0)
    if w < _SNAP:
        w = 0.0
    return i, round(w, 12)


def recursion_plan(scale, max_scale=DEFAULT_MAX_SCALE):
    """The step scales reaching `scale`: ×2 steps, then one step with the remainder.

    N = ceil(log2 R); steps 1..N-1 are 2 and step N is R / 2^(N-1), each in (1, 2].
    """
    r = check_scale(scale, max_scale=max_scale)
    steps = max(math.ceil(math.log2(r) - 1e-9), 1)
    return [2.0] * (steps - 1) + [r / 2.0 ** (steps - 1)]


def output_size(height, width, scale):
    """The exact output size round(R·h) × round(R·w) (halves round up, as MATLAB does)."""
    return _round_half_up(height * scale), _round_half_up(width * scale)


def _round_half_up(value):
    return int(math.floor(value + 0.5))
