"""The recursion every upscale runs: ⌈log2 R⌉ steps, each pre-upsampling and one network pass.

Steps before the last are ×2 and reach round(h · 2^k) × round(w · 2^k); the last takes the
remainder to the requested size (`lfr.step_sizes`). How a step runs is the caller's: the upscale
engine runs it on the whole image or region by region (`asdn_tf.inference.engine`), the JAX
trainer's validation with `keras.ops` (`asdn_tf.training.train_jax`). This module imports no
backend.

Example:
    >>> run(image, 3.3, (66, 99), lambda image, step, size, last: resize(image, size))
"""

import math

from asdn_tf.nn import lfr


def plan(height, width, scale, size):
    """[(step scale, (height, width) of its output)] of the recursion from height×width to
    `size` by `scale` (already checked by the caller: no upper limit here)."""
    return lfr.step_sizes(height, width, scale, size, max_scale=math.inf)


def run(image, scale, size, step):
    """`image` (…×H×W×C, H and W its second- and third-last axes, or H×W×C) through every step
    of `plan`: image = step(image, step scale, (height, width), is the last step)."""
    height, width = image.shape[-3:-1]
    steps = plan(height, width, scale, size)
    for index, (step_scale, target) in enumerate(steps):
        image = step(image, step_scale, target, index == len(steps) - 1)
    return image
