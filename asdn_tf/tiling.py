"""Tiled upscaling: a large image goes through the network one region at a time.

Each recursion step pre-upsamples exactly as `asdn_tf.inference` does (bicubic, with the sampling
positions of the whole image) and runs the network on overlapping regions of that step's input,
keeping the centre of each. Tiling after the pre-upsampling, rather than cutting the input, is
what makes any scale work: a cut-out input tile is sampled at (x + 0.5) / scale - 0.5 from its
own corner, which lines up with the whole image's positions only when scale × its offset is a
whole number.

The network is convolutional with a receptive radius of 1 + B·D pixels (a 3×3 head, then B
blocks of D chained 3×3 convolutions), so an overlap of that radius gives every kept pixel the
neighbourhood it has in one pass. The one image-wide quantity is the channel attention's mean
over the image: a first pass over the regions measures it, and the output pass uses those
image-wide means instead of each region's own. Tiled and untiled outputs then agree to well under
a grey level; with each region's own attention they differ by a few.

Peak memory is one region's activations plus the step's input and output images.

Example:
    >>> rgb = upscale_tiled(model, pixels, 4.0, (2048, 2048), tile=512)
"""

import math
import weakref

import numpy as np
import tensorflow as tf
from keras import ops

from asdn_tf import lfr
from asdn_tf.imresize import resize_matrix
from asdn_tf.model import level_and_weight_ops

DEFAULT_TILE = 512
# An untiled pass of the default preset over 1024×1024 output pixels peaks near 2.5 GB.
AUTO_TILE_PIXELS = 1024 * 1024
MIN_TILE = 8


def receptive_radius(model_config):
    """Pixels of context, on each side, that one network output depends on."""
    return 1 + model_config.num_blocks * model_config.num_layers


def check_tile(tile):
    """`tile` as an int (0: no tiling), or None (automatic); raises ValueError otherwise."""
    if tile is None:
        return None
    if isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) \
            or not (tile == 0 or tile >= MIN_TILE):
        raise ValueError(f"tile must be 0 (no tiling) or an integer >= {MIN_TILE}, got {tile!r}")
    return int(tile)


def choose_tile(size, tile=None):
    """The region side for an output `size`: `tile` (0 = untiled), or automatic when None."""
    tile = check_tile(tile)
    if tile is None:
        return DEFAULT_TILE if size[0] * size[1] > AUTO_TILE_PIXELS else 0
    return tile


def check_overlap(overlap):
    """`overlap` as an int >= 0, or None (the model's receptive radius)."""
    if overlap is None:
        return None
    if isinstance(overlap, bool) or not isinstance(overlap, (int, np.integer)) or overlap < 0:
        raise ValueError(f"tile overlap must be an integer >= 0, got {overlap!r}")
    return int(overlap)


def upscale_tiled(model, rgb, scale, size, tile=None, overlap=None, progress=None):
    """Upscales one image region by region; the result matches `inference.upscale_tensor`.

    Args:
        model: an `ASDN`.
        rgb: float32 H×W×3 numpy array in [0, 1].
        scale: the factor, already validated; rounded to float32 as the untiled path does.
        size: (height, width) of the output.
        tile: int, side of the kept part of each region, in pixels of the network's input
            (0: the whole image as one region); None chooses per step, as `choose_tile`.
        overlap: int, context around each region; by default `receptive_radius`.
        progress: optional callable(done, total), called after each region pass.

    Returns:
        float32 h×w×3 numpy array in [0, 1].
    """
    overlap = check_overlap(overlap)
    if overlap is None:
        overlap = receptive_radius(model.model_config)
    scale = float(np.float32(scale))
    height, width = rgb.shape[:2]
    plan = lfr.recursion_plan(scale, max_scale=math.inf)
    sizes = [lfr.output_size(height, width, 2.0 ** (index + 1)) for index in range(len(plan) - 1)]
    sizes.append(tuple(int(v) for v in size))
    region_lists = [_regions(step_size, choose_tile(step_size, tile) or max(step_size), overlap)
                    for step_size in sizes]
    global_attention = model.model_config.channel_attention
    total = sum(len(regions) * (2 if global_attention and len(regions) > 1 else 1)
                for regions in region_lists)
    done = 0

    def tick():
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    image = np.asarray(rgb, np.float32)
    for step, step_size, regions in zip(plan, sizes, region_lists):
        image = _upscale_step(model, image, step, step_size, regions, tick)
    return image


def _spans(length, tile):
    """[start, end) intervals of nearly equal length, none longer than `tile`, covering length."""
    count = -(-length // tile)
    edges = [index * length // count for index in range(count + 1)]
    return list(zip(edges[:-1], edges[1:]))


def _regions(size, tile, overlap):
    """(kept, context) boxes (top, bottom, left, right) tiling an image of `size`."""
    height, width = size
    return [((top, bottom, left, right),
             (max(top - overlap, 0), min(bottom + overlap, height),
              max(left - overlap, 0), min(right + overlap, width)))
            for top, bottom in _spans(height, tile) for left, right in _spans(width, tile)]


def _bands(in_size, out_size, step, spans):
    """For each [start, end) of output pixels: the input pixels [first, last) they read, and
    those rows and columns of the resize matrix (kept small: the whole one is out × in)."""
    matrix = resize_matrix(in_size, out_size, step).numpy()
    bands = {}
    for start, end in set(spans):
        used = np.flatnonzero(matrix[start:end].any(axis=0))
        first, last = int(used[0]), int(used[-1]) + 1
        bands[start, end] = first, last, matrix[start:end, first:last].copy()
    return bands


def _upscale_step(model, image, step, size, regions, tick):
    """One recursion step: pre-upsampling by `step` to `size`, then the network, by regions."""
    step = tf.constant(step, tf.float64)
    rows = _bands(image.shape[0], size[0], step, [context[:2] for _, context in regions])
    cols = _bands(image.shape[1], size[1], step, [context[2:] for _, context in regions])

    def region_inputs(context):
        i0, i1, row_weights = rows[context[:2]]
        j0, j1, col_weights = cols[context[2:]]
        return image[i0:i1, j0:j1], row_weights, col_weights

    def crop(kept, context):
        return (kept[0] - context[0], kept[1] - context[0], kept[2] - context[2],
                kept[3] - context[2])

    passes = _passes(model)
    attention = None
    if model.model_config.channel_attention and len(regions) > 1:
        sums = 0.0
        for kept, context in regions:
            sums = sums + passes.block_sums(*region_inputs(context), crop(kept, context)).numpy()
            tick()
        attention = passes.attention(tf.constant(sums / (size[0] * size[1]), tf.float32))
    output = np.empty((*size, 3), np.float32)
    for kept, context in regions:
        inputs = region_inputs(context)
        result = (passes.local(*inputs, step) if attention is None
                  else passes.image_wide(*inputs, step, attention))
        top, bottom, left, right = crop(kept, context)
        output[kept[0]:kept[1], kept[2]:kept[3]] = result[top:bottom, left:right]
        tick()
    return output


class _Passes:
    """The traced region passes for one model (one trace each, for every region size)."""

    def __init__(self, model):
        self.model = model
        patch = [tf.TensorSpec([None, None, 3], tf.float32), tf.TensorSpec([None, None], tf.float32),
                 tf.TensorSpec([None, None], tf.float32)]
        scale = tf.TensorSpec([], tf.float64)
        blocks = model.model_config.num_blocks
        weights = tf.TensorSpec([blocks, model.model_config.features], tf.float32)
        self.local = tf.function(self._local, input_signature=[*patch, scale], autograph=False)
        self.image_wide = tf.function(self._image_wide, input_signature=[*patch, scale, weights],
                                      autograph=False)
        self.block_sums = tf.function(self._block_sums,
                                      input_signature=[*patch, tf.TensorSpec([4], tf.int32)],
                                      autograph=False)
        self.attention = tf.function(self._attention,
                                     input_signature=[tf.TensorSpec(weights.shape, tf.float32)],
                                     autograph=False)

    def _local(self, patch, rows, cols, scale):
        x_up = _pre_upsample(patch, rows, cols)
        return _clip(self.model(x_up, scale=scale))

    def _image_wide(self, patch, rows, cols, scale, attention):
        x_up = _pre_upsample(patch, rows, cols)
        features, _ = _trunk(self.model, x_up, attention)
        return _clip(_blend(self.model, features, x_up, scale))

    def _block_sums(self, patch, rows, cols, crop):
        _, before = _trunk(self.model, _pre_upsample(patch, rows, cols))
        return tf.stack([tf.reduce_sum(tf.cast(dense[0, crop[0]:crop[1], crop[2]:crop[3]],
                                               tf.float64), axis=(0, 1)) for dense in before])

    def _attention(self, means):
        """`ChannelAttention.call`'s weights for image-wide means (B×C) of the block outputs."""
        return tf.stack([tf.cast(block.ca.excite(block.ca.squeeze(means[index][None]))[0],
                                 tf.float32) for index, block in enumerate(self.model.trunk.blocks)])


_PASSES = weakref.WeakKeyDictionary()


def _passes(model):
    if model not in _PASSES:
        _PASSES[model] = _Passes(model)
    return _PASSES[model]


def _pre_upsample(patch, rows, cols):
    """`imresize` restricted to a region: the rows, then the columns, of the resize matrices."""
    x_up = tf.einsum("oh,hwc->owc", rows, patch)
    return tf.einsum("pw,owc->opc", cols, x_up)[None]


def _clip(output):
    return tf.clip_by_value(tf.cast(output, tf.float32), 0.0, 1.0)[0]


# `_trunk` and `_blend` follow `FeatureMappingBranch.call` and `ASDN.call`, with the channel
# attention's weights passed in; the tiled-versus-untiled test fails if they drift apart.
def _trunk(model, x_up, attention=None):
    """The trunk's features, and each block's output before its channel attention."""
    trunk = model.trunk
    outputs, before = [trunk.head(x_up)], []
    for index, block in enumerate(trunk.blocks):
        dense = block.idb(ops.concatenate(outputs, axis=-1) if len(outputs) > 1 else outputs[0])
        before.append(dense)
        if block.ca is not None:
            dense = (block.ca(dense) if attention is None
                     else dense * ops.cast(attention[index], dense.dtype))
        outputs.append(dense)
    return ops.concatenate(outputs, axis=-1), before


def _blend(model, features, x_up, scale):
    upper, weight = level_and_weight_ops(scale, model.num_levels)
    upper_output = model.reconstruct(features, x_up, upper)
    lower_output = model.reconstruct(features, x_up, upper - 1)
    return upper_output + ops.cast(weight, upper_output.dtype) * (lower_output - upper_output)
