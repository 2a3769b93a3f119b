"""How a recursion step is cut into regions: the memory budget, the automatic choice, the boxes.

The regions strategy (asdn_tf/inference/tiled_step.py) runs the network on overlapping regions
of a step's pre-upsampled input and keeps the centre of each. This module plans them, in plain
arithmetic (no TensorFlow): which regions (`choose_tile`), the context around each
(`default_overlap`), their boxes (`region_boxes`) and the sample grid whose attention rounds
give a large step's channel means (`sample_boxes`).

The network is convolutional with a receptive radius of 1 + B·D pixels (a 3×3 head, then B
blocks of D chained 3×3 convolutions), so an overlap of that radius gives every kept pixel the
neighbourhood it has in one pass. The default overlap is 70 % of that radius (12 pixels for the
default preset, where the radius is 17): what a pixel's farthest context adds reaches it through
every block's convolutions and weighs almost nothing, at most 0.02 grey levels on the quick
start's photograph with the bundled weights, while an overlap of the full radius costs 12 % of
a pass's time there. `--tile_overlap` takes the full radius for an exact tiling.

The automatic choice (`choose_tile`) follows from one budget: the whole image when its pass
fits MEMORY_BUDGET (`config.model_cost` gives a pass's bytes per pixel), otherwise the grid of
regions with the least work whose passes fit it (`auto_regions`).

Example:
    >>> choose_tile((4000, 4000))  # (kept height, kept width) of the regions
    >>> region_boxes((4000, 4000), 400, overlap=12)[0]  # (kept, context) boxes
"""

import numpy as np

from asdn_tf.nn import config as config_lib

MIN_TILE = 8
# Bytes one step's network may hold: a pass's activations (`config.model_cost`, float32), and
# in the exact strategy the features of the regions paused at an attention. The process holds
# about 0.9 GB besides (the TensorFlow runtime, the model, the images); the default model's
# estimate is about 12 % above what a pass takes here, so a 2 M pixel output peaks near 1.4 GB.
MEMORY_BUDGET = 576 << 20
# The sample whose attention rounds give a large step's channel means: a 3 × 3 grid of crops.
SAMPLE_CROPS = 3
SAMPLE_TILE = 32
# The default overlap, as a share of the receptive radius (see above).
OVERLAP_SHARE = 0.7
# A region's pass costs a fixed time besides its pixels (about 20 ms on 2 cores for the
# default model, the time of about 18,000 pixels): fewer, larger regions win a tie.
REGION_CALL_PIXELS = 18_000


def receptive_radius(model_config):
    """Pixels of context, on each side, that one network output depends on."""
    return 1 + model_config.num_blocks * model_config.num_layers


def default_overlap(model_config):
    """The context kept around each region by default: OVERLAP_SHARE of the receptive radius."""
    return max(1, round(OVERLAP_SHARE * receptive_radius(model_config)))


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


def auto_regions(size, model_config):
    """(kept height, kept width) of the regions covering `size` with the least work, each
    region's pass (with the default overlap around it) within MEMORY_BUDGET: the fewest pixels
    computed, counting REGION_CALL_PIXELS for each region's fixed cost. A model too large for
    the budget keeps regions of twice its receptive radius a side."""
    overlap = default_overlap(model_config)
    limit = MEMORY_BUDGET // config_lib.model_cost(model_config)[1]
    best = None
    for rows in range(1, size[0] // MIN_TILE + 1):
        height = -(-size[0] // rows)
        width = limit // (height + 2 * overlap) - 2 * overlap
        if width < MIN_TILE:
            break
        cols = -(-size[1] // width)
        work = ((size[0] + 2 * overlap * (rows - 1)) * (size[1] + 2 * overlap * (cols - 1))
                + REGION_CALL_PIXELS * rows * cols)
        if best is None or work < best[0]:
            best = work, height, -(-size[1] // cols)
    if best is None:
        side = 2 * receptive_radius(model_config)
        return side, side
    return best[1:]


def choose_tile(size, tile=None, model_config=None):
    """The regions for a step's output `size`: `tile` (0 = the whole image; N = regions of N
    pixels a side), or when None 0 if the whole image's pass fits MEMORY_BUDGET, else
    `auto_regions` (a (height, width) pair)."""
    tile = check_tile(tile)
    if tile is not None:
        return tile
    model_config = model_config or config_lib.ModelConfig()
    if pass_bytes(model_config, size[0] * size[1]) <= MEMORY_BUDGET:
        return 0
    return auto_regions(size, model_config)


def check_overlap(overlap):
    """`overlap` as an int >= 0, or None (the model's receptive radius)."""
    if overlap is None:
        return None
    if isinstance(overlap, bool) or not isinstance(overlap, (int, np.integer)) or overlap < 0:
        raise ValueError(f"tile overlap must be an integer >= 0, got {overlap!r}")
    return int(overlap)


def count_regions(size, tile):
    """How many regions of `tile` (a side, or (height, width)) cover an image of `size`."""
    tile = _pair(tile)
    return len(_spans(size[0], tile[0])) * len(_spans(size[1], tile[1]))


def _pair(tile):
    return (tile, tile) if isinstance(tile, (int, np.integer)) else tuple(tile)


def _spans(length, tile):
    """[start, end) intervals of nearly equal length, none longer than `tile`, covering length."""
    count = -(-length // tile)
    edges = [index * length // count for index in range(count + 1)]
    return list(zip(edges[:-1], edges[1:]))


def region_boxes(size, tile, overlap):
    """(kept, context) boxes (top, bottom, left, right) tiling an image of `size` with regions
    of `tile` (a side, or (height, width))."""
    height, width = size
    tile = _pair(tile)
    return [((top, bottom, left, right),
             (max(top - overlap, 0), min(bottom + overlap, height),
              max(left - overlap, 0), min(right + overlap, width)))
            for top, bottom in _spans(height, tile[0]) for left, right in _spans(width, tile[1])]


def sample_boxes(size, overlap):
    """(kept, context) boxes of SAMPLE_CROPS² crops of SAMPLE_TILE² kept pixels on a regular
    grid over `size`, each with its whole context inside the image, so that all have one shape;
    [] if they do not fit."""
    side = SAMPLE_TILE + 2 * overlap
    if min(size) < side:
        return []
    starts = [[round(index * (length - side) / max(SAMPLE_CROPS - 1, 1))
               for index in range(SAMPLE_CROPS)] for length in size]
    return [((top + overlap, top + overlap + SAMPLE_TILE, left + overlap,
              left + overlap + SAMPLE_TILE), (top, top + side, left, left + side))
            for top in starts[0] for left in starts[1]]


def crop_in_context(kept, context):
    """`kept` in the coordinates of its `context` box."""
    return (kept[0] - context[0], kept[1] - context[0], kept[2] - context[2],
            kept[3] - context[2])
