"""The recursion every upscale runs: ⌈log2 R⌉ steps, each pre-upsampling and one network pass.

Steps before the last are ×2 and reach round(h · 2^k) × round(w · 2^k); the last takes the
remainder to the requested size (`lfr.step_sizes`). Given an FSDN's integer factors, the
recursion starts with them instead (`plan`): the largest factor that fits what remains, again
while one fits, then ASDN's steps for the rest (×3.3 = ×3 then ×1.1; ×5.7 = ×4 then ×1.425).

The loop over the steps is here, in the three forms its callers need: `run` for an image whose
size is known (the upscale engine, step by step on the whole image or by regions; the JAX
trainer's validation), `run_unrolled` for a Python scale in a graph whose sizes follow from its
input (the fixed-scale ONNX file), and `run_ops` for a scale tensor (`upscale_tensor`, the
SavedModel, the any-scale ONNX file): one `tf.while_loop`, the one function that loads
TensorFlow. How a step runs is the caller's.

Example:
    >>> run(image, 3.3, (66, 99), lambda image, step, size, last: resize(image, size))
"""

import math

from asdn_tf.nn import lfr


# A remainder within this of 1 is none: ×3 in float32 is 3.0000000xx, not ×3 then ×1.00000001.
_NO_REMAINDER = 1e-6


def plan(height, width, scale, size, factors=()):
    """[(step scale, (height, width) of its output)] of the recursion from height×width to
    `size` by `scale` (already checked by the caller: no upper limit here). With `factors`
    (an FSDN's), the steps it runs come first as integers (`fixed_factors`); the plan stays
    ASDN's alone when they would not reach `size` exactly."""
    fixed, remainder = fixed_factors(scale, factors)
    steps, reached = [], (height, width)
    for factor in fixed:
        reached = (reached[0] * factor, reached[1] * factor)
        steps.append((factor, reached))
    if remainder == 1.0:
        steps[-1] = (steps[-1][0], tuple(int(side) for side in size))
        if steps[-1][1] != reached:
            return lfr.step_sizes(height, width, scale, size, max_scale=math.inf)
        return steps
    return steps + lfr.step_sizes(*reached, remainder, size, max_scale=math.inf)


def fixed_factors(scale, factors):
    """([FSDN factors], remainder) of a recursion to `scale`: while one of `factors` fits what
    remains, the largest that does; the remainder (1.0 for none) is ASDN's."""
    chosen, remainder = [], float(scale)
    while remainder > 1.0:
        fits = [factor for factor in factors if factor <= remainder * (1 + _NO_REMAINDER)]
        if not fits:
            break
        chosen.append(max(fits))
        remainder /= chosen[-1]
        if remainder <= 1 + _NO_REMAINDER:
            remainder = 1.0
    return chosen, remainder


def run(image, scale, size, step, fixed_step=None, factors=()):
    """`image` (…×H×W×C, H and W its second- and third-last axes, or H×W×C) through every step
    of `plan`: image = step(image, step scale, (height, width), is the last step); the steps
    of an FSDN's `factors` go to `fixed_step` (same arguments, the step scale an int)."""
    height, width = image.shape[-3:-1]
    steps = plan(height, width, scale, size, factors)
    for index, (step_scale, target) in enumerate(steps):
        run_step = fixed_step if isinstance(step_scale, int) else step
        image = run_step(image, step_scale, target, index == len(steps) - 1)
    return image


def run_unrolled(images, scale, step):
    """`images` through the ASDN steps of a Python `scale` (`lfr.recursion_plan`), unrolled:
    images = step(images, step scale), each step's output size following from its input's."""
    for step_scale in lfr.recursion_plan(scale):
        images = step(images, step_scale)
    return images


def run_ops(images, scale, size, step):
    """`images` (N×H×W×3) through the ASDN steps of the float scale tensor `scale` to `size`
    ((height, width) int32 tensors) in one `tf.while_loop` (`lfr.num_steps_ops` iterations):
    images = step(images, step scale float64 tensor, (height, width) int32 tensors)."""
    # Imported here: the JAX trainer runs `run` where TensorFlow may not be installed.
    import tensorflow as tf

    height, width = tf.shape(images)[1], tf.shape(images)[2]

    def body(index, image):
        step_scale, target = lfr.step_size_ops(scale, index, height, width, size)
        return index + 1, step(image, step_scale, target)

    steps = lfr.num_steps_ops(scale)
    _, output = tf.while_loop(
        lambda index, _: index < steps, body, [tf.constant(0), images],
        shape_invariants=[tf.TensorShape([]), tf.TensorShape([None, None, None, 3])])
    return output
