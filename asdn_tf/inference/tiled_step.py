"""The regions strategy of the upscale engine: one recursion step's network pass, region by region.

The step pre-upsamples exactly as the whole-image strategy does (bicubic, with the sampling
positions of the whole image) and runs the network on overlapping regions of that input,
keeping the centre of each. Tiling after the pre-upsampling, rather than cutting the input, is
what makes any scale work: a cut-out input tile is sampled at (x + 0.5) / scale - 0.5 from its
own corner, which lines up with the whole image's positions only when scale × its offset is a
whole number. asdn_tf/inference/tiling.py plans the regions and holds the memory budget.

The one image-wide quantity is each block's channel attention, which pools the mean over the
image of that block's output, and that output depends on the earlier blocks' attention. The
means come from attention rounds: regions go through the trunk together, one block at a time
(`FeatureMappingBranch.start` and `resume` pause a pass at every attention), each block's
attention pooling the mean over all of their kept parts.

- Exact: when the paused features of every region fit MEMORY_BUDGET (beside one region's
  pass), the rounds run on the regions themselves and each then finishes its pass. The result
  equals the whole-image pass up to float rounding, and each region is computed once.
- Sampled: otherwise the means come from a sample: SAMPLE_CROPS crops of SAMPLE_TILE kept
  pixels a side, on a regular grid over the step, each with its context, go through the trunk
  as one batch whose every attention pools the kept parts of all of them; every region then
  runs once with the sample's means. For the default model the sample costs about 28,000
  pixels of network work whatever the image's size (1.5 % of the quick start's 1.9 M). With
  the bundled weights the output stays within half a grey level of the whole-image pass (0.11
  on the quick start; tests/test_tiling.py): the attention's gates move little with their
  means.

Besides the pre-upsampling, this module only schedules regions: the network's computation is
all the model's own (`FeatureMappingBranch.start` and `resume`, `ASDN.blend`, and `ASDN.call`
with `channel_means`).

Example:
    >>> rgb = upscale_step(model, image, 2.0, (2048, 2048), tile=400, overlap=17, tick=print)
"""

import weakref

import numpy as np
import tensorflow as tf

from asdn_tf.inference import tiling
from asdn_tf.nn.cost import architecture_cost
from asdn_tf.io import pixels as pixels_lib
from asdn_tf.data.resizing import resize_matrix


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
    `size`, then the network on regions of `tile` (a side, or (height, width)) with `overlap`
    pixels of context.

    `tick()` is called as each region's output is kept. Returns size×3 of `dtype`: float32 in
    [0, 1], or uint8 / uint16 (`pixels.from_float`, applied region by region, so that a float
    copy of a large output never exists: 8192² × 3 is 805 MB in float32, 201 MB in uint8).
    """
    regions = tiling.region_boxes(size, tile, overlap)
    attention = model.model_config.channel_attention and len(regions) > 1
    exact = (sum(_area(context) for _, context in regions) * paused_bytes_per_pixel(model)
             + tiling.pass_bytes(model.model_config, max(_area(context) for _, context in regions))
             <= tiling.MEMORY_BUDGET)
    sample = tiling.sample_boxes(size, overlap) if attention and not exact else []
    if attention and not exact and not sample:  # a step too small for the grid: all of it
        sample = regions
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
        top, bottom, left, right = tiling.crop_in_context(kept, context)
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
        if sample is regions:
            sums = _attention_rounds(passes, sample, region_inputs)[1]
            means = tf.cast(sums / sum(_area(kept) for kept, _ in sample), tf.float32)[:, None]
        else:
            means = sample_means(model, tf.concat([_pre_upsample(*region_inputs(context))
                                                   for _, context in sample], 0),
                                 tiling.crop_in_context(*sample[0]))
        for kept, context in regions:
            keep(passes.run("image_wide", *region_inputs(context), step, means), kept, context)
    return output


def _area(box):
    return (box[1] - box[0]) * (box[3] - box[2])


def sample_means(model, batch, crop):
    """The channel means (B×1×C float32) of every block of `model.trunk` over a `batch` of
    equal crops (N×h×w×3, the trunk's input), each attention pooling the kept part `crop`
    (top, bottom, left, right) of all of them: what a large step's regions take as the image's
    means."""
    sums = _passes(model).run("sample_rounds", batch, tf.constant(crop, tf.int32))
    pixels = int(batch.shape[0]) * (crop[1] - crop[0]) * (crop[3] - crop[2])
    return tf.cast(sums / pixels, tf.float32)[:, None]


def _attention_rounds(passes, regions, region_inputs):
    """Brings every region to its last channel attention, one block at a time: each block's
    attention pools the mean over these regions' kept parts.

    Returns each region's (x_up, paused state) and the kept sums of every block's output before
    its attention (B×C, float64).
    """
    num_blocks = passes.model.model_config.num_blocks
    crops = [tf.constant(tiling.crop_in_context(kept, context), tf.int32)
             for kept, context in regions]
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


def paused_bytes_per_pixel(model):
    """Bytes per pixel a paused region keeps: the trunk's output channels in the model's
    compute dtype, and x_up in float32."""
    itemsize = tf.as_dtype(model.trunk.compute_dtype).size
    return architecture_cost(model.model_config).trunk_channels * itemsize + 3 * 4


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

    def _sample_rounds(self, batch, crop):
        """Every block's kept sums over a batch of equal crops (B×C), each attention pooling
        the mean over all of them."""
        trunk = self.model.trunk
        pixels = tf.cast(tf.shape(batch)[0] * (crop[1] - crop[0]) * (crop[3] - crop[2]),
                         tf.float64)
        state, sums = trunk.start(batch), []
        for index in range(trunk.num_blocks):
            if index:
                state = trunk.resume(state, tf.cast(sums[-1] / pixels, tf.float32)[None])
            sums.append(_kept_sum(state[-1], crop, batch=True))
        return tf.stack(sums)

    def _finish(self, state, means, x_up, scale):
        return _clip(self.model.blend(self.model.trunk.resume(state, means), x_up, scale))


def _any_size(tensor):
    """`tensor`'s TensorSpec with every size unknown but an image's channels (its last axis)."""
    shape = [None] * tensor.shape.rank
    if tensor.shape.rank >= 3:
        shape[-1] = tensor.shape[-1]
    return tf.TensorSpec(shape, tensor.dtype)


def _kept_sum(output, crop, batch=False):
    """Per-channel sum of `output`'s kept part (crop: top, bottom, left, right), over its first
    image or, with `batch`, all of them; float64 for adding up the regions (a region's own sum
    is as exact in float32 as the untiled mean)."""
    kept = tf.cast(output[:, crop[0]:crop[1], crop[2]:crop[3]], tf.float32)
    if not batch:
        kept = kept[:1]
    return tf.cast(tf.reduce_sum(kept, axis=(0, 1, 2)), tf.float64)


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
