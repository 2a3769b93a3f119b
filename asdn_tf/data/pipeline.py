"""tf.data training pipelines: image folders or DIV2K through tfds, degraded on the fly.

Each batch comes from one LFR level drawn at random (as the paper trains): HR patches of
round(p · r_l) pixels matching p×p LR patches, LR made with the exact `imresize`, and the
network input x_up made from the LR by bicubic pre-upsampling. Patches are flipped and rotated
before degradation, so input and target always agree.

Example:
    >>> dataset = training_dataset(DataConfig(sources=("data/T91",)))
    >>> batch = next(iter(dataset))     # {"x_up", "hr", "level"}
"""

import numpy as np
import tensorflow as tf

from asdn_tf.data.config import DEGRADATIONS
from asdn_tf.nn import config as config_lib
from asdn_tf.data import degradation as degradation_lib, photo_mix
from asdn_tf.io import pixels
from asdn_tf.nn import lfr
from asdn_tf.data.folder_data import TFDS_PREFIX, hr_patch_size, load_folder_images
from asdn_tf.data.imresize import imresize

def _tfds_images(name, data_dir):
    import tensorflow_datasets as tfds
    dataset = tfds.load(name, split="train", data_dir=data_dir or None, shuffle_files=True)
    return dataset.map(lambda example: example["hr"], num_parallel_calls=tf.data.AUTOTUNE)


def image_dataset(data_config, min_size):
    """An unbatched dataset of RGB uint8 HR images from every source, decoded once and cached."""
    datasets = []
    folders = [s for s in data_config.sources if not s.startswith(TFDS_PREFIX)]
    if folders:
        images = load_folder_images(folders, min_size, data_config.strict)
        datasets.append(tf.data.Dataset.from_generator(
            lambda: iter(images), output_signature=tf.TensorSpec([None, None, 3], tf.uint8)))
    for source in data_config.sources:
        if source.startswith(TFDS_PREFIX):
            name = source[len(TFDS_PREFIX):]
            # Only the HR images are read; of the builder's configs (each pairs them with one
            # LR set) bicubic_x8 has the smallest LR archives to download: 74 MB, not 1.04 GB.
            name = "div2k/bicubic_x8" if name == "div2k" else name
            datasets.append(_tfds_images(name, data_config.tfds_data_dir))
    if not datasets:
        raise ValueError("no training data: give at least one source (folder, glob or tfds:div2k)")
    combined = datasets[0]
    for other in datasets[1:]:
        combined = combined.concatenate(other)
    return combined.cache()


def random_patch(image, crop, seed):
    """A random `crop`×`crop` patch of one H×W×3 image, randomly flipped and turned by a
    multiple of 90°; stateless, so the int [2] `seed` alone decides it."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3)
    patch = tf.image.stateless_random_crop(image, [crop, crop, 3], seeds[0])
    patch = tf.image.stateless_random_flip_left_right(patch, seeds[1])
    return tf.image.rot90(patch, tf.random.stateless_uniform([], seeds[2], 0, 4, tf.int32))


def training_pair(hr_patches, level, patch_size, num_levels=lfr.DEFAULT_LEVELS, photo=None,
                  seed=None):
    """(x_up, hr, passes) for a batch of HR patches at least round(p · r_l) pixels square.

    `level` is a Python int (static sizes: XLA friendly) or an int tensor. The HR patch is the
    top-left round(p · r_l) square, LR = imresize(HR, 1/r) at p×p (or, with a
    `PhotoDegradation` as `photo`, a random photo degradation drawn from the int [2]
    `seed`), x_up = imresize(LR, r). `passes` is 1, or 2 for a photo pair whose x_up is the
    first step's input (`_photo_pair`).
    """
    if isinstance(level, int):
        scale = lfr.level_scales(num_levels)[level]
        size = hr_patch_size(patch_size, level, num_levels)
    else:
        scale = lfr.level_scale_ops(level, num_levels)
        size = lfr.output_size_ops(patch_size, patch_size, scale)[0]
    if photo is not None:
        return _photo_pair(hr_patches, scale, patch_size, photo, seed)
    hr = pixels.to_float_ops(hr_patches[:, :size, :size, :])
    lr = make_lr(hr, (patch_size, patch_size), scale, photo, seed)
    x_up = imresize(lr, scale=scale, size=(size, size))
    return x_up, hr, 1


def _photo_pair(hr_patches, scale, patch_size, photo, seed):
    """(x_up, target, passes) of one update at step scale r under the photo degradation; the
    pair's kind and patch sides are `photo_mix.pair_kind` and `photo_mix.pair_sides`.

    With `photo.recursion_probability` the pair is the first step of a recursion instead: the LR
    is made from the HR by r·k (k = 1.5 or 2: the ×3 and ×4 recursions start with a ×2 step on
    an LR decimated by 3 or 4) and the target is the HR brought down by k with the exact
    bicubic, the clean image that step should produce. Without it a resizing kernel without
    antialiasing decimated by 4 aliases more than any single step trains on.

    Otherwise, with `photo.own_step_probability`, it is the second step of a ×2r recursion:
    `passes` is 2 and x_up is the ×2 first step's input (the LR made from the HR by 2r, brought
    up ×2); the train step runs the network on it and trains the ×r step on what it made, the
    input that step gets at inference. `passes` is 1 for every other pair.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3)
    kind = photo_mix.pair_kind(photo, tf.random.stateless_uniform([], seeds[0]),
                               tf.random.stateless_uniform([], seeds[1], 0, 2, tf.int32),
                               tf.where)
    own_step = tf.equal(kind, photo_mix.OWN_STEP)
    recursion = ~own_step & tf.not_equal(kind, photo_mix.PLAIN)
    factor = tf.gather(tf.constant(photo_mix.FACTORS, tf.float64), kind)
    scale = tf.cast(scale, tf.float64)
    sides = photo_mix.pair_sides(patch_size, scale, factor, tf.math.floor,
                                 lambda side, by: lfr.output_size_ops(side, side, by)[0])
    hr = pixels.to_float_ops(hr_patches[:, :sides.region, :sides.region, :])
    lr = degradation_lib.random_lr(hr, (sides.lr, sides.lr), scale * factor, photo, seeds[2])
    step, first_step, own = (sides.step,) * 2, (sides.first_step,) * 2, sides.own_step
    target = tf.case([(recursion, lambda: imresize(hr, scale=1.0 / factor, size=step)),
                      (own_step, lambda: hr[:, :own, :own, :])],
                     default=lambda: hr)
    x_up = tf.cond(own_step, lambda: imresize(lr, scale=factor, size=first_step),
                   lambda: imresize(lr, scale=scale, size=step))
    return x_up, target, tf.gather(tf.constant(photo_mix.PASSES, tf.int32), kind)


def make_lr(hr, size, scale, photo=None, seed=None):
    """LR patches of `size` from float HR patches: the exact bicubic, or a photo degradation."""
    if photo is None:
        return imresize(hr, scale=1.0 / scale, size=size)
    return degradation_lib.random_lr(hr, size, scale, photo, seed)


def level_sampler(num_levels, weights=(), seed=0):
    """Infinite dataset of int32 LFR levels: uniform, or in proportion to `weights`."""
    draws = tf.data.Dataset.random(seed=seed)
    if not weights:
        return draws.map(lambda value: tf.cast(value % num_levels, tf.int32))
    if len(weights) != num_levels:
        raise ValueError(f"level_weights has {len(weights)} values; the model has {num_levels} "
                         "levels")
    bounds = np.cumsum(weights, dtype=np.float64) / np.sum(weights, dtype=np.float64)
    bounds = tf.constant(bounds[:-1])  # level i where bounds[i - 1] <= u < bounds[i]

    def draw(value):
        uniform = tf.cast(value % (1 << 32), tf.float64) / float(1 << 32)  # draws are 32-bit
        return tf.cast(tf.searchsorted(bounds, uniform[None], side="right")[0], tf.int32)

    return draws.map(draw)


def _each_replica(stream, replicas):
    """`stream` with each element repeated `replicas` times, in a row."""
    return stream.map(lambda value: tf.repeat(value[None], replicas, axis=0)).unbatch()


def training_dataset(data_config, num_levels=lfr.DEFAULT_LEVELS, seed=0, fixed_scale=None,
                     input_context=None):
    """Infinite dataset of training batches; HR patches are float32 in [0, 1].

    ASDN batches are {"x_up", "hr", "level"} ({"hr", "level"} with `degrade_in_step`); "level"
    holds the batch's level once per patch. Under a photo degradation they also hold "passes",
    the update's network passes (`_photo_pair`) once per patch. With a `fixed_scale` (FSDN: an
    integer, or a tuple of them) batches are {"lr", "hr", "level"}: p×p LR and (p·s)×(p·s) HR,
    "level" the index of the update's factor s in the tuple.

    With a `tf.distribute.InputContext` (`distribute_datasets_from_function`), this pipeline
    yields the per-replica batches of its own replicas, in replica order, one after the other:
    the global batch of `data_config.batch_size` patches is the one a single process makes from
    the same seed, cut in equal parts, so any number of workers trains on the same patches at
    the same levels (the step is traced per level: every replica must agree on it). Each
    pipeline crops and degrades only its own part. The photo degradation of an update draws
    from one seed on every replica, since its draws may set the patch size, which must agree
    too; so its per-patch draws repeat from one replica's part of the batch to the next.
    """
    factors = config_lib.fsdn_scales(fixed_scale) if fixed_scale is not None else ()
    crop = (data_config.patch_size * max(factors) if factors
            else hr_patch_size(data_config.patch_size, num_levels - 1, num_levels))
    images = image_dataset(data_config, crop)
    photo = DEGRADATIONS[data_config.degradation]
    pipelines, pipeline, replicas = 1, 0, 1
    if input_context is not None:
        pipelines = input_context.num_input_pipelines
        pipeline = input_context.input_pipeline_id
        replicas = input_context.num_replicas_in_sync
    local_replicas = replicas // pipelines
    batch_size = data_config.batch_size // replicas
    share = batch_size * local_replicas  # patches of each global batch this pipeline makes
    patches = _patch_batches(images, crop, seed, data_config.batch_size, batch_size, share,
                             pipelines, pipeline)
    # Drawn alike in every pipeline, one for all the replicas of an update: the photo
    # degradation's seed and the level (an FSDN's head).
    seeds = _each_replica(tf.data.Dataset.random(seed=seed + 1).batch(2), local_replicas)
    if factors:
        # One head per update, as ASDN draws a level.
        heads = _each_replica(level_sampler(len(factors), data_config.level_weights, seed),
                              local_replicas)
        return _fixed_scale_batches(patches, heads, seeds, data_config.patch_size, factors,
                                    photo)
    levels = _each_replica(level_sampler(num_levels, data_config.level_weights, seed),
                           local_replicas)

    def make(batch, level, batch_seed):
        levels_per_patch = tf.fill([batch_size], level)
        if data_config.degrade_in_step:
            return {"hr": batch, "level": levels_per_patch}
        x_up, hr, passes = training_pair(batch, level, data_config.patch_size, num_levels,
                                         photo, batch_seed)
        if photo is None:
            return {"x_up": x_up, "hr": hr, "level": levels_per_patch}
        return {"x_up": x_up, "hr": hr, "level": levels_per_patch,
                "passes": tf.fill([batch_size], passes)}

    return (tf.data.Dataset.zip(patches, levels, seeds)
            .map(make, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def _patch_batches(images, crop, seed, global_batch, batch_size, share, pipelines, pipeline):
    """Batches of `batch_size` random crop×crop patches: pipeline `pipeline` of `pipelines`
    makes its `share` of each global batch of `global_batch` patches."""
    # Every random choice is stateless, drawn from seeded streams, so that a seed gives the same
    # batches in any process (stateful ops in a parallel map are drawn in thread order).
    patch_seeds = tf.data.Dataset.random(seed=seed + 2).batch(2)
    patches = tf.data.Dataset.zip(images.repeat().shuffle(256, seed=seed), patch_seeds)
    if pipelines > 1:
        # The filter hides that the stream is endless; told, a distributed iterator skips the
        # check that every worker still has data (an all-reduce per update).
        patches = (patches.enumerate()
                   .filter(lambda index, _: index % global_batch // share == pipeline)
                   .map(lambda _, image_and_seed: image_and_seed)
                   .apply(tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY)))
    patches = (patches.map(lambda image, patch_seed: random_patch(image, crop, patch_seed),
                           num_parallel_calls=tf.data.AUTOTUNE)
               .batch(batch_size, drop_remainder=True))
    return patches


def _fixed_scale_batches(patches, heads, seeds, patch_size, factors, photo):
    """FSDN batches {"lr", "hr", "level"}: p×p LR and (p·s)×(p·s) HR patches, s the factor of
    the update's head ("level", its index in `factors`, once per patch)."""
    factor_of = tf.constant(factors, tf.int32)

    def make_fixed(batch, head, batch_seed):
        factor = tf.gather(factor_of, head)
        side = patch_size * factor
        hr = pixels.to_float_ops(batch[:, :side, :side])
        lr = make_lr(hr, (patch_size,) * 2, tf.cast(factor, tf.float64), photo, batch_seed)
        return {"lr": lr, "hr": hr, "level": tf.fill([tf.shape(batch)[0]], head)}

    return (tf.data.Dataset.zip(patches, heads, seeds)
            .map(make_fixed, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))
