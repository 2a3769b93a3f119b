"""Laplacian frequency representation arithmetic (docs/method.md).

Which two reconstruction branches a scale blends, with what weight; the chain of steps that
reaches a scale above 2; the size of every step's output. Each rule has a Python form (numbers)
and a tensor form (`*_ops`, `keras.ops` on float64 scalars, for graphs, SavedModels and any
Keras backend) side by side, as BasicSR keeps `calculate_psnr` and `calculate_psnr_pt`, and both
snap with the one constant `SNAP`.

Example:
    >>> level_and_weight(1.27)
    (3, 0.3)
    >>> recursion_plan(5.7)
    [2.0, 2.0, 1.425]
    >>> step_sizes(10, 10, 5.7)
    [(2.0, (20, 20)), (2.0, (40, 40)), (1.425, (57, 57))]
"""

import math
import re

DEFAULT_LEVELS = 11
DEFAULT_MAX_SCALE = 32.0
# Products and logarithms of scales are computed in floating point: (L-1)(r-1) is
# 1.0000000000000009 for r = 1.1, log(8)/log(2) can be 3.0000000000000004, and a float32 scale
# on a level (1.3 → 1.29999995) leaves a weight of 5e-7. Snapping by this much puts such values
# back on the grid.
SNAP = 1e-6
# A scale written as text: a plain decimal number, digits and at most one point (Python's float
# also takes "1_5", "١٫٥", "2e0" and "nan", which a user never means as a scale).
DECIMAL = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)\s*", re.ASCII)


def _ops():
    # Imported on first use: `asdn-upscale --help` checks scales without loading a backend.
    from keras import ops

    return ops


def _float64(value):
    """`value` as a float64 tensor; a Python float keeps all its digits (`ops.cast` would
    round it to float32 first)."""
    return _ops().convert_to_tensor(value, "float64")


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


def level_scale_ops(level, num_levels=DEFAULT_LEVELS):
    """`level_scales(num_levels)[level]` for an int tensor `level`, as float64."""
    return 1.0 + _float64(level) / (num_levels - 1)


def level_and_weight(scale, num_levels=DEFAULT_LEVELS):
    """Returns (i, w) for a scale r in (1, 2]: O_r = O_{r_i} + w * (O_{r_{i-1}} - O_{r_i}).

    i = ceil((L-1)(r-1)) is the upper neighbouring level and w = (L-1)(r_i - r) in [0, 1).
    """
    r = check_scale(scale, max_scale=2.0)
    x = (num_levels - 1) * (r - 1.0)
    i = min(max(math.ceil(x - SNAP), 1), num_levels - 1)
    w = min(max(i - x, 0.0), 1.0)
    if w < SNAP:
        w = 0.0
    return i, round(w, 12)


def level_and_weight_ops(scale, num_levels=DEFAULT_LEVELS):
    """`level_and_weight` for a scale tensor: returns (i int32, w float32) tensors."""
    ops = _ops()
    x = (num_levels - 1) * (_float64(scale) - 1.0)
    level = ops.clip(ops.ceil(x - SNAP), 1, num_levels - 1)
    weight = ops.clip(level - x, 0.0, 1.0)
    weight = ops.where(weight < SNAP, 0.0, weight)
    return ops.cast(level, "int32"), ops.cast(weight, "float32")


def recursion_plan(scale, max_scale=DEFAULT_MAX_SCALE):
    """The step scales reaching `scale`: ×2 steps, then one step with the remainder.

    N = ceil(log2 R) (snapped); steps 1..N-1 are 2 and step N is R / 2^(N-1), each in (1, 2]
    (a remainder above 2 by less than the snap is 2).
    """
    r = check_scale(scale, max_scale=max_scale)
    steps = max(math.ceil(math.log2(r) - SNAP), 1)
    return [2.0] * (steps - 1) + [min(r / 2.0 ** (steps - 1), 2.0)]


def num_steps_ops(scale):
    """`len(recursion_plan(scale))` for a float scale tensor, as int32."""
    ops = _ops()
    steps = ops.ceil(ops.log2(_float64(scale)) - SNAP)
    return ops.cast(ops.maximum(steps, 1.0), "int32")


def output_size(height, width, scale):
    """The exact output size round(R·h) × round(R·w) (halves round up, as MATLAB does)."""
    return _round_half_up(height * scale), _round_half_up(width * scale)


def output_size_ops(height, width, scale, dtype="int32"):
    """`output_size` for tensors: (height, width) in `dtype` (float64 holds sizes whose
    product overflows int64)."""
    ops = _ops()
    scale = _float64(scale)
    return tuple(ops.cast(ops.floor(_float64(side) * scale + 0.5), dtype)
                 for side in (height, width))


def step_sizes(height, width, scale, size=None, max_scale=DEFAULT_MAX_SCALE):
    """[(step scale, (height, width) of its output)] of the recursion reaching `scale`.

    Step k's output is round(h · 2^k) × round(w · 2^k); the last is `size` (by default
    `output_size(height, width, scale)`).
    """
    plan = recursion_plan(scale, max_scale)
    sizes = [output_size(height, width, 2.0 ** (index + 1)) for index in range(len(plan) - 1)]
    sizes.append(output_size(height, width, scale) if size is None
                 else tuple(int(side) for side in size))
    return list(zip(plan, sizes))


def step_size_ops(scale, index, height, width, size):
    """Entry `index` (an int tensor) of `step_sizes(height, width, scale, size)` for tensors:
    (step scale float64, (height, width) int32)."""
    ops = _ops()
    scale = _float64(scale)
    steps = num_steps_ops(scale)
    is_last = ops.equal(index, steps - 1)
    last = ops.minimum(scale / ops.power(2.0, ops.cast(steps - 1, "float64")), 2.0)
    step = ops.where(is_last, last, 2.0)
    reached = output_size_ops(height, width, ops.power(2.0, ops.cast(index + 1, "float64")))
    return step, tuple(ops.where(is_last, ops.cast(final, "int32"), side)
                       for final, side in zip(size, reached))


def _round_half_up(value):
    return int(math.floor(value + 0.5))
