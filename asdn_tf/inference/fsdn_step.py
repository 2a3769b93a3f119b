"""The FSDN steps of the upscale engine: an integer factor run on the low-resolution image.

An FSDN step takes the step's input itself, without pre-upsampling, through the FSDN's trunk and
the head of its factor (`nn.model.FSDN`). Like ASDN's steps it runs on the whole image when its
pass fits `tiling.MEMORY_BUDGET`, else on square regions of the input with context around each;
the blocks' channel attention then takes its means from a sample of crops over the whole input
(`tiled_step.sample_means`), as a large ASDN step does. A region's output is its kept part, times
the factor.

Example:
    >>> output = upscale_step(fsdn, image, 3, tile=None, overlap=None, tick=print)
"""

import math
import weakref

import numpy as np
import tensorflow as tf

from asdn_tf.inference import tiled_step, tiling
from asdn_tf.io import pixels as pixels_lib
from asdn_tf.nn import config as config_lib


def pass_bytes(model_config, factor, pixels):
    """Bytes of one FSDN pass over `pixels` input pixels at `factor`: the trunk's activations
    (`config.model_cost`) and the head's at the output's resolution (the upsampled features,
    held twice while they are made, and the image)."""
    head = factor * factor * (2 * model_config.features + 3 * 3) * 4
    return pixels * (config_lib.model_cost(model_config)[1] + head)


def choose_tile(model_config, size, factor, tile=None):
    """The input regions of an FSDN step on an input of `size`: `tile` (0: the whole image; N:
    regions of N pixels a side), or when None 0 if the whole pass fits MEMORY_BUDGET, else the
    side of the largest square region whose pass, with the default overlap, fits it."""
    tile = tiling.check_tile(tile)
    if tile is not None:
        return tile
    if pass_bytes(model_config, factor, size[0] * size[1]) <= tiling.MEMORY_BUDGET:
        return 0
    largest = tiling.MEMORY_BUDGET // pass_bytes(model_config, factor, 1)
    side = math.isqrt(largest) - 2 * tiling.default_overlap(model_config)
    return max(side, tiling.MIN_TILE)


def count_passes(model_config, size, factor, tile=None):
    """How many network passes the step makes (for progress)."""
    tile = choose_tile(model_config, size, factor, tile)
    return tiling.count_regions(size, tile) if tile else 1


def upscale_step(fsdn, image, factor, tile, overlap, tick, dtype=np.float32):
    """One FSDN step: `image` (H×W×3 float32 in [0, 1]) upscaled by the integer `factor` (one
    of `fsdn.scales`), on the whole image or by regions (`choose_tile`) with `overlap` input
    pixels of context (by default `tiling.default_overlap`). `tick()` follows each pass.
    Returns (factor·H)×(factor·W)×3 of `dtype` (float32, uint8 or uint16)."""
    cfg = fsdn.model_config
    size = image.shape[:2]
    overlap = tiling.default_overlap(cfg) if overlap is None else overlap
    tile = choose_tile(cfg, size, factor, tile)
    boxes = tiling.region_boxes(size, tile, overlap) if tile else []
    sample = tiling.sample_boxes(size, overlap) if len(boxes) > 1 else []
    passes = _passes(fsdn, fsdn.head_index(factor))
    if not sample:  # one pass: the whole image (small enough whenever the sample is not)
        tick()
        return _kept(passes.whole(tf.constant(image[None]))[0].numpy(), dtype)
    means = None
    if cfg.channel_attention:
        crops = tf.constant(np.stack([_cut(image, context) for _, context in sample]))
        means = tiled_step.sample_means(fsdn, crops, tiling.crop_in_context(*sample[0]))
    output = np.empty((size[0] * factor, size[1] * factor, 3), dtype)
    for kept, context in boxes:
        patch = tf.constant(_cut(image, context)[None])
        result = passes.whole(patch) if means is None else passes.image_wide(patch, means)
        top, bottom, left, right = (side * factor
                                    for side in tiling.crop_in_context(kept, context))
        output[kept[0] * factor:kept[1] * factor, kept[2] * factor:kept[3] * factor] = _kept(
            result[0, top:bottom, left:right].numpy(), dtype)
        tick()
    return output


def _cut(image, box):
    return image[box[0]:box[1], box[2]:box[3]]


def _kept(result, dtype):
    return result if dtype == np.float32 else pixels_lib.from_float(result, dtype)


class _Passes:
    """One FSDN head's traced passes, each traced once for every input size."""

    def __init__(self, fsdn, head):
        image = tf.TensorSpec([None, None, None, 3], tf.float32)
        means = tf.TensorSpec([None, None, None], tf.float32)
        self.whole = tf.function(lambda lr: self._run(fsdn, head, lr),
                                 input_signature=[image], autograph=False)
        self.image_wide = tf.function(lambda lr, channel_means: self._run(fsdn, head, lr,
                                                                          channel_means),
                                      input_signature=[image, means], autograph=False)

    @staticmethod
    def _run(fsdn, head, lr, channel_means=None):
        features = fsdn.trunk(lr, channel_means=channel_means)
        output = fsdn.heads[head]([features, lr])
        return tf.clip_by_value(tf.cast(output, tf.float32), 0.0, 1.0)


_PASSES = weakref.WeakKeyDictionary()


def _passes(fsdn, head):
    heads = _PASSES.setdefault(fsdn, {})
    if head not in heads:
        heads[head] = _Passes(fsdn, head)
    return heads[head]
