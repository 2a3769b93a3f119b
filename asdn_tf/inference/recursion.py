"""The recursion every upscale runs: ⌈log2 R⌉ steps, each pre-upsampling and one network pass.

Steps before the last are ×2 and reach round(h · 2^k) × round(w · 2^k); the last takes the
remainder to the requested size (`lfr.step_sizes`). Given an FSDN's integer factors, the
recursion starts with them instead (`plan`): the largest factor that fits what remains, again
while one fits, then ASDN's steps for the rest (×3.3 = ×3 then ×1.1; ×5.7 = ×4 then ×1.425).

The loop over the steps is here, in the three forms its callers need: `run` for an image whose
size is known (the upscale engine, step by step on the whole image or by regions; the JAX
trainer's validation), `run_unrolled` for a Python scale in a graph whose sizes follow from its
input (the fixed-scale ONNX file), and `run_ops` for a scale tensor (`upscale_tensor`, the
SavedModel, the any-scale ONNX file): a `tf.while_loop` for each integer factor, from the
largest down (the same steps: once the largest factor no longer fits it never will), then one
for ASDN's steps; the one function that loads TensorFlow. How a step runs is the caller's.

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


def run_ops(images, scale, size, step, fixed_step=None, factors=()):
    """`images` (N×H×W×3) through the steps of `plan` for the float scale tensor `scale` to
    `size` ((height, width) int32 tensors), in `tf.while_loop`s: the integer steps of
    `factors` first (`fixed_counts_ops`), images = fixed_step(images, index into `factors`, a
    Python int), then ASDN's steps for the remainder (`lfr.num_steps_ops` iterations, none
    when it is 1), images = step(images, step scale float64 tensor, (height, width) int32
    tensors)."""
    # Imported here: the JAX trainer runs `run` where TensorFlow may not be installed.
    import tensorflow as tf

    remainder = tf.cast(scale, tf.float64)
    if factors:
        counts, remainder = fixed_counts_ops(remainder, factors, tf.shape(images)[1:3], size)
        for index, count in counts:
            images = _repeat_ops(images, count,
                                 lambda _, image, index=index: fixed_step(image, index))
    height, width = tf.shape(images)[1], tf.shape(images)[2]

    def body(index, image):
        step_scale, target = lfr.step_size_ops(remainder, index, height, width, size)
        return step(image, step_scale, target)

    steps = lfr.num_steps_ops(remainder)
    if factors:  # integer steps that reach the scale leave ASDN none
        steps = tf.where(remainder == 1.0, 0, steps)
    return _repeat_ops(images, steps, body)


def fixed_counts_ops(scale, factors, input_size, size):
    """`fixed_factors` for a float64 scale tensor, as ([(index into `factors`, how many steps
    of it: an int32 tensor)] from the largest factor down, the remainder): the largest factor
    that fits runs while it fits, then the next. No steps, and the whole scale as the
    remainder, when they would not reach `size` exactly from `input_size` ((height, width)
    int32 tensors), as in `plan`."""
    import tensorflow as tf

    counts, remainder, product = [], scale, tf.constant(1)
    for index in sorted(range(len(factors)), key=lambda index: -factors[index]):
        factor = factors[index]

        def body(count, remainder, factor=factor):
            remainder = remainder / factor
            return count + 1, tf.where(remainder <= 1 + _NO_REMAINDER,
                                       tf.constant(1.0, tf.float64), remainder)

        count, remainder = tf.while_loop(
            lambda count, remainder, factor=factor: factor <= remainder * (1 + _NO_REMAINDER),
            body, [tf.constant(0), remainder])
        counts.append((index, count))
        product *= tf.pow(factor, count)
    exact = (remainder > 1.0) | ((input_size[0] * product == size[0])
                                 & (input_size[1] * product == size[1]))
    return ([(index, tf.where(exact, count, 0)) for index, count in counts],
            tf.where(exact, remainder, scale))


def _repeat_ops(images, count, step):
    """images = step(index, images) for index in [0, `count`) (an int32 tensor), in one
    `tf.while_loop` whose images change size."""
    import tensorflow as tf

    def body(index, image):
        return index + 1, step(index, image)

    _, output = tf.while_loop(
        lambda index, _: index < count, body, [tf.constant(0), images],
        shape_invariants=[tf.TensorShape([]), tf.TensorShape([None, None, None, 3])])
    return output
