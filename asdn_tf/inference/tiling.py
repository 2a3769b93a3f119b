"""The regions strategy of the upscale engine: one recursion step's network pass, region by region.

The step pre-upsamples exactly as the whole-image strategy does (bicubic, with the sampling
positions of the whole image) and runs the network on overlapping regions of that input,
keeping the centre of each. Tiling after the pre-upsampling, rather than cutting the input, is
what makes any scale work: a cut-out input tile is sampled at (x + 0.5) / scale - 0.5 from its
own corner, which lines up with the whole image's positions only when scale × its offset is a
whole number.

The network is convolutional with a receptive radius of 1 + B·D pixels (a 3×3 head, then B
blocks of D chained 3×3 convolutions), so an overlap of that radius gives every kept pixel the
neighbourhood it has in one pass. The one image-wide quantity is each block's channel attention,
which pools the mean over the image of that block's output, and that output depends on the
earlier blocks' attention. The means come from attention rounds: regions go through the trunk
together, one block at a time (`FeatureMappingBranch.start` and `resume` pause a pass at every
attention), each block's attention pooling the mean over all of their kept parts.

- Exact: when the paused features of every region fit MEMORY_BUDGET (beside one region's
  pass), the rounds run on the regions themselves and each then finishes its pass. The result
  equals the whole-image pass up to float rounding, and each region is computed once.
- Sampled: otherwise the rounds run on a sample, crops of SAMPLE_TILE kept pixels a side (with
  their context) spread evenly over the step, SAMPLE_FRACTION of its pixels; every region then
  runs once with the sample's means. The sample costs about 1.6 × SAMPLE_FRACTION of a pass,
  and the memory of a region's pass stays the step's only large cost. With the bundled weights
  the output is within one grey level of the whole-image pass (tests/test_tiling.py).

The automatic choice (`choose_tile`) follows from the same budget: the whole image when its
pass fits MEMORY_BUDGET (`config.model_cost` gives a pass's bytes per pixel), otherwise regions
as large as the budget allows. Besides the pre-upsampling, this module only schedules regions:
the network's computation is all the model's own (`FeatureMappingBranch.start` and `resume`,
`ASDN.blend`, and `ASDN.call` with `channel_means`).

Example:
    >>> rgb = upscale_step(model, image, 2.0, (2048, 2048), tile=400, overlap=17, tick=print)
"""

import math
import weakref

import numpy as np
import tensorflow as tf

from asdn_tf.nn import config as config_lib
from asdn_tf.io import pixels as pixels_lib
from asdn_tf.data.resizing import resize_matrix

MIN_TILE = 8
# Bytes one step's network may hold: a pass's activations (`config.model_cost`, float32), and
# in the exact strategy the features of the regions paused at an attention. The process holds
# about 0.9 GB besides (the TensorFlow runtime, the model, the images).
MEMORY_BUDGET = 448 << 20
# The sample whose attention rounds give a large step's channel means.
SAMPLE_FRACTION = 0.05
SAMPLE_TILE = 128


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


def pass_bytes(model_config, pixels):
    """Bytes of one network pass over `pixels` pixels (`config.model_cost`'s estimate)."""
    return pixels * config_lib.model_cost(model_config)[1]


def auto_tile(model_config):
    """The side of the kept part of regions whose pass, context included, fits MEMORY_BUDGET;
    at least twice the context (a model too large for the budget then takes more memory rather
    than spend most of its work on overlaps)."""
    radius = receptive_radius(model_config)
    side = math.isqrt(MEMORY_BUDGET // config_lib.model_cost(model_config)[1])
    return max(side - 2 * radius, 2 * radius, MIN_TILE)


def choose_tile(size, tile=None, model_config=None):
    """The region side for a step's output `size`: `tile` (0 = the whole image), or when None
    0 if the whole image's pass fits MEMORY_BUDGET, else `auto_tile`."""
    tile = check_tile(tile)
    if tile is not None:
        return tile
    model_config = model_config or config_lib.ModelConfig()
    if pass_bytes(model_config, size[0] * size[1]) <= MEMORY_BUDGET:
        return 0
    return auto_tile(model_config)


def check_overlap(overlap):
    """`overlap` as an int >= 0, or None (the model's receptive radius)."""
    if overlap is None:
        return None
    if isinstance(overlap, bool) or not isinstance(overlap, (int, np.integer)) or overlap < 0:
        raise ValueError(f"tile overlap must be an integer >= 0, got {overlap!r}")
    return int(overlap)


def count_regions(size, tile):
    """How many regions of side `tile` cover an image of `size`."""
    return len(_spans(size[0], tile)) * len(_spans(size[1], tile))


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


def upscale_step(model, image, step, size, tile, overlap, tick, dtype=np.float32):
    """One recursion step by regions: pre-upsampling `image` (H×W×3 float32) by `step` to
    `size`, then the network on regions of side `tile` with `overlap` pixels of context.

    `tick()` is called as each region's output is kept. Returns size×3 of `dtype`: float32 in
    [0, 1], or uint8 / uint16 (`pixels.from_float`, applied region by region, so that a float
    copy of a large output never exists: 8192² × 3 is 805 MB in float32, 201 MB in uint8).
    """
    regions = _regions(size, tile, overlap)
    attention = model.model_config.channel_attention and len(regions) > 1
    context_pixels = sum(_area(context) for _, context in regions)
    largest = max(_area(context) for _, context in regions)
    exact = (context_pixels * _feature_bytes(model) + pass_bytes(model.model_config, largest)
             <= MEMORY_BUDGET)
    sample = _sample(size, overlap) if attention and not exact else []
    step = tf.constant(step, tf.float64)
    boxes = [context for _, context in regions + sample]
    rows = _bands(image.shape[0], size[0], step, [box[:2] for box in boxes])
    cols = _bands(image.shape[1], size[1], step, [box[2:] for box in boxes])

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
    if not attention:
        for kept, context in regions:
            keep(passes.run("local", *region_inputs(context), step), kept, context)
    elif not sample:
        paused, sums = _attention_rounds(passes, regions, region_inputs)
        means = tf.cast(sums / (size[0] * size[1]), tf.float32)[:, None]
        # Every block already pooled the whole image: finish each region's pass.
        for index, (kept, context) in enumerate(regions):
            x_up, state = paused[index]
            paused[index] = None
            keep(passes.run("finish", state, means[-1], x_up, step), kept, context)
    else:
        sums = _attention_rounds(passes, sample, region_inputs)[1]
        means = tf.cast(sums / sum(_area(kept) for kept, _ in sample), tf.float32)[:, None]
        for kept, context in regions:
            keep(passes.run("image_wide", *region_inputs(context), step, means), kept, context)
    return output


def _area(box):
    return (box[1] - box[0]) * (box[3] - box[2])


def _sample(size, overlap):
    """Regions of side SAMPLE_TILE (with their context), SAMPLE_FRACTION of `size`'s pixels,
    picked at even intervals in reading order: spread over every band of rows."""
    crops = _regions(size, SAMPLE_TILE, overlap)
    count = max(1, round(SAMPLE_FRACTION * size[0] * size[1] / SAMPLE_TILE**2))
    return [crops[int((index + 0.5) * len(crops) / count)] for index in range(min(count,
                                                                                 len(crops)))]


def _attention_rounds(passes, regions, region_inputs):
    """Brings every region to its last channel attention, one block at a time: each block's
    attention pools the mean over these regions' kept parts.

    Returns each region's (x_up, paused state) and the kept sums of every block's output before
    its attention (B×C, float64).
    """
    num_blocks = passes.model.model_config.num_blocks
    crops = [tf.constant(_crop(kept, context), tf.int32) for kept, context in regions]
    pixels = sum(_area(kept) for kept, _ in regions)
    paused, sums = [], []
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
