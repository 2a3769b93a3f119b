"""Tiled upscaling: a large image goes through the network one region at a time.

Each recursion step pre-upsamples exactly as `asdn_tf.inference.engine` does (bicubic, with the
sampling positions of the whole image) and runs the network on overlapping regions of that
step's input, keeping the centre of each. Tiling after the pre-upsampling, rather than cutting the input, is
what makes any scale work: a cut-out input tile is sampled at (x + 0.5) / scale - 0.5 from its
own corner, which lines up with the whole image's positions only when scale × its offset is a
whole number.

The network is convolutional with a receptive radius of 1 + B·D pixels (a 3×3 head, then B
blocks of D chained 3×3 convolutions), so an overlap of that radius gives every kept pixel the
neighbourhood it has in one pass. The one image-wide quantity is each block's channel attention,
which pools the mean over the image of that block's output, and that output depends on the
earlier blocks' attention. So the regions go through the trunk together, one block at a time
(`FeatureMappingBranch.start` and `resume` pause a pass at every attention): the mean over all
regions' kept parts is handed to every region, which then goes on to the next block. Each
region's features are computed once, and the result equals the untiled pass up to rounding.

The paused regions keep their features (the trunk's output channels per pixel). When those,
with the step's images, would exceed MEMORY_BUDGET, each region instead runs alone, its
attention pooling its own kept part, only to measure the image-wide means; a second pass then
runs every region with those means. Tiled and untiled outputs then differ by well under a grey
level (about 1e-4 of one with the bundled weights), for twice the work.

Besides the pre-upsampling, this module only schedules regions: the network's computation is
all the model's own (`FeatureMappingBranch.start` and `resume`, `ASDN.blend`, and `ASDN.call`
with `channel_means`).

Example:
    >>> rgb = upscale_tiled(model, pixels, 4.0, (2048, 2048), tile=512)
"""

import math
import weakref

import numpy as np
import tensorflow as tf

from asdn_tf.nn import config as config_lib
from asdn_tf.nn import lfr
from asdn_tf.io import pixels as pixels_lib
from asdn_tf.data.resizing import resize_matrix

DEFAULT_TILE = 512
# Outputs of more pixels are tiled unless told otherwise (the memory of one pass).
AUTO_TILE_PIXELS = config_lib.MAX_PASS_PIXELS
MIN_TILE = 8
# Bytes a step holds besides one region's activations: its input and output images, and the
# features of the regions paused at an attention (652 per pixel: float32 default preset).
MEMORY_BUDGET = 1 << 30


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


def upscale_tiled(model, rgb, scale, size, tile=None, overlap=None, progress=None,
                  dtype=np.float32):
    """Upscales one image region by region; the result matches `inference.upscale_tensor`.

    Args:
        model: an `ASDN`.
        rgb: float32 H×W×3 numpy array in [0, 1].
        scale: the factor, already validated; rounded to float32 as the untiled path does.
        size: (height, width) of the output.
        tile: int, side of the kept part of each region, in pixels of the network's input
            (0: the whole image as one region); None chooses per step, as `choose_tile`.
        overlap: int, context around each region; by default `receptive_radius`.
        progress: optional callable(done, total): called once per region of each step, or
            twice where the regions pool the image (the attention rounds, then the output).
        dtype: of the result: float32, or uint8 / uint16 (`pixels.from_float`, applied region
            by region, so that a float copy of a large output never exists: 8192² × 3 is
            805 MB in float32 and 201 MB in uint8).

    Returns:
        h×w×3 numpy array of `dtype`: float32 in [0, 1], or pixels.
    """
    overlap = check_overlap(overlap)
    if overlap is None:
        overlap = receptive_radius(model.model_config)
    scale = float(np.float32(scale))
    height, width = rgb.shape[:2]
    plan, sizes = zip(*lfr.step_sizes(height, width, scale, size, max_scale=math.inf))
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
    last = len(plan) - 1
    for index, (step, step_size, regions) in enumerate(zip(plan, sizes, region_lists)):
        image = _upscale_step(model, image, step, step_size, regions, tick,
                              dtype if index == last else np.float32)
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
    # A float32 step, as imresize computes the pre-upsampling of the whole image.
    matrix = resize_matrix(in_size, out_size, np.float32(float(step)))
    bands = {}
    for start, end in set(spans):
        used = np.flatnonzero(matrix[start:end].any(axis=0))
        first, last = int(used[0]), int(used[-1]) + 1
        bands[start, end] = first, last, matrix[start:end, first:last].copy()
    return bands


def _upscale_step(model, image, step, size, regions, tick, dtype=np.float32):
    """One recursion step: pre-upsampling by `step` to `size`, then the network, by regions;
    the output in `dtype` (`upscale_tiled`)."""
    step = tf.constant(step, tf.float64)
    rows = _bands(image.shape[0], size[0], step, [context[:2] for _, context in regions])
    cols = _bands(image.shape[1], size[1], step, [context[2:] for _, context in regions])

    def region_inputs(context):
        i0, i1, row_weights = rows[context[:2]]
        j0, j1, col_weights = cols[context[2:]]
        return (tf.constant(image[i0:i1, j0:j1]), tf.constant(row_weights),
                tf.constant(col_weights))

    output = np.empty((*size, 3), dtype)

    def keep(result, kept, context):
        top, bottom, left, right = _crop(kept, context)
        part = np.asarray(result[top:bottom, left:right])
        output[kept[0]:kept[1], kept[2]:kept[3]] = (
            part if output.dtype == np.float32 else pixels_lib.from_float(part, output.dtype))
        tick()

    passes = _passes(model)
    if not model.model_config.channel_attention or len(regions) == 1:
        for kept, context in regions:
            keep(passes.run("local", *region_inputs(context), step), kept, context)
        return output
    pixels = sum((bottom - top) * (right - left) for _, (top, bottom, left, right) in regions)
    if pixels * _feature_bytes(model) + image.nbytes + output.nbytes <= MEMORY_BUDGET:
        paused, sums = _attention_rounds(passes, regions, region_inputs, tick)
        means = tf.cast(sums / (size[0] * size[1]), tf.float32)[:, None]
        # Every block already pooled the whole image: finish each region's pass.
        for index, (kept, context) in enumerate(regions):
            x_up, state = paused[index]
            paused[index] = None
            keep(passes.run("finish", state, means[-1], x_up, step), kept, context)
        return output
    sums = sum(_attention_rounds(passes, [region], region_inputs, tick)[1] for region in regions)
    means = tf.cast(sums / (size[0] * size[1]), tf.float32)[:, None]
    for kept, context in regions:
        keep(passes.run("image_wide", *region_inputs(context), step, means), kept, context)
    return output


def _attention_rounds(passes, regions, region_inputs, tick):
    """Brings every region to its last channel attention, one block at a time: each block's
    attention pools the mean over these regions' kept parts.

    Returns each region's (x_up, paused state) and the kept sums of every block's output before
    its attention (B×C, float64). `tick` is called once per region, spread over the rounds.
    """
    num_blocks = passes.model.model_config.num_blocks
    crops = [tf.constant(_crop(kept, context), tf.int32) for kept, context in regions]
    pixels = sum((kept[1] - kept[0]) * (kept[3] - kept[2]) for kept, _ in regions)
    paused, sums, steps = [], [], 0
    for index in range(num_blocks):
        total = 0.0
        for region, ((_, context), crop) in enumerate(zip(regions, crops)):
            if index == 0:
                x_up, state, kept_sum = passes.run("start", *region_inputs(context), crop)
                paused.append((x_up, state))
            else:
                x_up, state = paused[region]
                paused[region] = None  # frees the state it replaces before the next is made
                state, kept_sum = passes.run("resume", state, means, crop)
                paused[region] = x_up, state
            total = total + kept_sum
            steps += 1
            if steps % num_blocks == 0:
                tick()
        sums.append(total)
        means = tf.cast(total / pixels, tf.float32)[None]
    return paused, tf.stack(sums)


def _feature_bytes(model):
    """Bytes per pixel a paused region keeps: the trunk's output channels, and x_up."""
    itemsize = tf.as_dtype(model.trunk.compute_dtype).size
    return model.trunk.output_channels * itemsize + 3 * 4


def _crop(kept, context):
    """`kept` in the coordinates of its `context` box."""
    return (kept[0] - context[0], kept[1] - context[0], kept[2] - context[2],
            kept[3] - context[2])


class _Passes:
    """The traced region passes for one model: `passes.run("start", ...)` calls `_start`, traced
    once per kind of arguments (a paused state's channels) and then for every size."""

    def __init__(self, model):
        self.model = model
        self._traced = {}

    def run(self, name, *args):
        specs = tf.nest.map_structure(_any_size, args)
        key = (name, *tf.nest.flatten(specs))
        if key not in self._traced:
            self._traced[key] = tf.function(getattr(self, "_" + name), input_signature=specs,
                                            autograph=False)
        return self._traced[key](*args)

    def _local(self, patch, rows, cols, scale):
        return _clip(self.model(_pre_upsample(patch, rows, cols), scale=scale))

    def _image_wide(self, patch, rows, cols, scale, means):
        return _clip(self.model(_pre_upsample(patch, rows, cols), scale=scale,
                                channel_means=means))

    def _start(self, patch, rows, cols, crop):
        x_up = _pre_upsample(patch, rows, cols)
        state = self.model.trunk.start(x_up)
        return x_up, state, _kept_sum(state[-1], crop)

    def _resume(self, state, means, crop):
        state = self.model.trunk.resume(state, means)
        return state, _kept_sum(state[-1], crop)

    def _finish(self, state, means, x_up, scale):
        return _clip(self.model.blend(self.model.trunk.resume(state, means), x_up, scale))


def _any_size(tensor):
    """`tensor`'s TensorSpec with every size unknown but an image's channels (its last axis)."""
    shape = [None] * tensor.shape.rank
    if tensor.shape.rank >= 3:
        shape[-1] = tensor.shape[-1]
    return tf.TensorSpec(shape, tensor.dtype)


def _kept_sum(output, crop):
    """Per-channel sum of `output`'s kept part (crop: top, bottom, left, right), as float64 for
    adding up the regions; a region's own sum is as exact in float32 as the untiled mean."""
    kept = tf.cast(output[0, crop[0]:crop[1], crop[2]:crop[3]], tf.float32)
    return tf.cast(tf.reduce_sum(kept, axis=(0, 1)), tf.float64)


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
