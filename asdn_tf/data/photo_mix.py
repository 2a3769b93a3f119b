"""The photo degradation mix (`--degradation=photo`), defined once for `tf.data` and the JAX
path: which damage each LR patch gets, drawn from the ranges of
`asdn_tf.data.config.PhotoDegradation`, and in which order it is applied: downscale, blur,
noise, 8-bit quantisation, JPEG; and which pair each update trains on, a plain step or a step
of a recursion (`pair_kind`), with its patch sides (`pair_sides`).

Clean patches (the benchmark's bicubic LR, only quantised) keep the network exact on clean
input; the others take one kernel drawn from `photo.kernels` and maybe each of the rest. The
arithmetic is a backend's (`degradation.TensorFlowMix`, `photo_degradation.NumpyMix`): its
random draws by name, `where` and the image operations on a batch of N patches. The pair's
draws come from the backend's generator (`pipeline._photo_pair`, `photo_degradation.photo_pair`).
"""

import math
from typing import NamedTuple

from asdn_tf.nn import lfr

KERNELS = ("bicubic", "bicubic_noaa", "bilinear", "area")

# The pairs an update trains on, by kind (`pair_kind`): (factor k, passes) are (1, 1) for a
# plain step at r; (1.5, 1) and (2, 1) for the first step of a ×1.5r or ×2r recursion (the ×3
# and ×4 recursions start with a ×2 step on an LR decimated by 3 or 4); (2, 2) for the second
# step of a ×2r recursion, trained on the network's own first step.
FACTORS = (1.0, 1.5, 2.0, 2.0)
PASSES = (1, 1, 1, 2)
PLAIN, OWN_STEP = 0, 3


class PairSides(NamedTuple):
    """The sides of one pair's square patches: ints, or int32 tensors under tf.data."""
    lr: object  # the LR: floor(p / k)
    step: object  # the step's output, round(r · lr): x_up, and a first step's target
    region: object  # the HR the LR is made from: the step's unrounded output brought up by k
    first_step: object  # an own-step pair's x_up, the ×2 first step's output: round(k · lr)
    own_step: object  # an own-step pair's target, the recursion's output: round(r·k · lr)


def draw(photo, ops):
    """(kernel, blur, noise, quality), each [N]: the index in `KERNELS`, the blur sigma in LR
    pixels, the noise sigma in grey levels and the JPEG quality (0: none of it)."""
    clean = ops.uniform("clean") < photo.clean_probability
    kernel = ops.where(clean, KERNELS.index("bicubic"),
                       ops.choose("kernel", [KERNELS.index(name) for name in photo.kernels]))

    def sometimes(name, probability, low, high):
        return ops.where((ops.uniform(f"{name} applied") < probability) & ~clean,
                         ops.uniform(name, low, high), 0.0)

    blur = sometimes("blur", photo.blur_probability, *photo.blur_sigma)
    noise = sometimes("noise", photo.noise_probability, *photo.noise_sigma)
    quality = ops.round_int(sometimes("jpeg", photo.jpeg_probability, *photo.jpeg_quality))
    return kernel, blur, noise, quality


def random_lr(hr, size, scale, photo, ops):
    """N×size×3 float32 LR patches, quantised to 8 bits, made from N×H×W×3 float HR patches at
    `scale` (HR / LR) by a degradation drawn per patch (`draw`)."""
    kernel, blur, noise, quality = draw(photo, ops)
    lr = ops.downscale(hr, size, scale, kernel)
    lr = ops.gaussian_blur(lr, blur, math.ceil(3 * photo.blur_sigma[1]))
    lr = ops.quantize(ops.add_noise(lr, noise))
    return ops.jpeg(lr, quality)


def _select(condition, x, y):
    return x if condition else y


def _output_side(side, scale):
    return lfr.output_size(side, side, scale)[0]


def pair_kind(photo, draw, half, where=_select):
    """The index in `FACTORS` and `PASSES` of one update's pair: a recursion's first step with
    `photo.recursion_probability` (k = 1.5 for `half` 0, else 2), else an own step with
    `photo.own_step_probability`, else a plain step. `draw` (uniform in [0, 1)) and `half` (0
    or 1) come from the backend's generator, `where` is its select."""
    first_step = draw < photo.recursion_probability
    own_step = draw < photo.recursion_probability + photo.own_step_probability
    return where(first_step, 1 + half, where(own_step, OWN_STEP, PLAIN))


def pair_sides(patch_size, scale, factor, floor=math.floor, output_side=_output_side):
    """The `PairSides` of a pair at step scale `scale` (r) and factor `factor` (k), numbers;
    for tensors pass the backend's `floor` and `output_side(side, scale)`, round(side · scale)
    with halves up (`lfr.output_size`) as an int."""
    lr = floor(patch_size / factor)  # a whole number, a float64 tensor under tf.data
    return PairSides(lr=output_side(lr, 1.0), step=output_side(lr, scale),
                     region=output_side(lr * scale, factor), first_step=output_side(lr, factor),
                     own_step=output_side(lr, scale * factor))
