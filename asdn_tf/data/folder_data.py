"""Training batches from image folders with numpy and PIL: no TensorFlow.

The batches are those `asdn_tf.data.pipeline.training_dataset` makes, for any Keras backend (JAX
training): each comes from one LFR level, HR patches of round(p · r_l) pixels cut at random
from the decoded images, flipped and turned by a multiple of 90°, LR made from them with the
MATLAB-exact bicubic (`asdn_tf.data.resizing`) or `--degradation=photo`'s mix
(`asdn_tf.data.photo_degradation`), and x_up made from the LR. The random draws of a
batch come from (seed, step) alone, so a resumed run reads the batches it would have read
(the draws are numpy's, not tf.data's: the two pipelines make different patches).

Example:
    >>> images = load_folder_images(["data/T91"], min_size=96)
    >>> batches = training_batches(images, DataConfig(), start_step=0)
    >>> batch = next(batches)    # {"x_up", "hr", "level"}, numpy float32 / int32
"""

import concurrent.futures
import functools
import os

import numpy as np
from absl import logging
from keras import ops

from asdn_tf.data import data_folders, photo_degradation, resizing
from asdn_tf.data.data_folders import TFDS_PREFIX
from asdn_tf.io import image_io, pixels
from asdn_tf.data.config import DEGRADATIONS
from asdn_tf.nn import lfr


def hr_patch_size(patch_size, level, num_levels=lfr.DEFAULT_LEVELS):
    """HR side matching a `patch_size` LR patch at level `level`: round(p · r_l)."""
    return lfr.output_size(patch_size, patch_size, lfr.level_scales(num_levels)[level])[0]


def _load_rgb(path):
    array = image_io.read_image(path)
    if array.dtype == np.uint16:
        array = pixels.uint16_to_uint8(array)
    return np.ascontiguousarray(pixels.to_rgb(array))


def load_folder_images(sources, min_size, strict=False):
    """Decodes every image under `sources` (folders or globs) into RGB uint8 arrays.

    Images smaller than `min_size` are dropped with one warning that counts them; unreadable
    files are dropped with a warning naming each (an error when `strict`).

    Raises:
        FileNotFoundError: a source does not exist.
        ValueError: a source holds no images, or (strict) an image is unreadable, or no image
            is large enough.
    """
    paths = []
    for source in sources:
        found = image_io.list_images(source)
        if not found:
            raise ValueError(f"no images found in {source}")
        paths.extend(found)
    images, small = [], 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        futures = [pool.submit(_load_rgb, path) for path in paths]
        for path, future in zip(paths, futures):
            try:
                image = future.result()
            except ValueError as error:
                if strict:
                    raise
                logging.warning("skipping %s", error)
                continue
            if min(image.shape[:2]) < min_size:
                small += 1
                continue
            images.append(image)
    if small:
        logging.warning("skipped %d of %d images smaller than the %d-pixel HR patch", small,
                        len(paths), min_size)
    if not images:
        raise ValueError(f"no usable training images in {', '.join(map(str, sources))} "
                         f"(need at least {min_size}×{min_size} pixels)")
    return images


def check_sources(sources):
    """Raises ValueError for a source this module cannot read (tensorflow-datasets)."""
    tfds = [source for source in sources if source.startswith(TFDS_PREFIX)]
    if tfds:
        raise ValueError(f"source {tfds[0]} needs TensorFlow (tensorflow-datasets); under JAX "
                         "give image folders or globs, e.g. DIV2K's HR images unpacked")
    if not sources:
        raise ValueError("no training data: give at least one image folder or glob")
    data_folders.require_sources(sources)


def level_probabilities(num_levels, weights=()):
    """How often each LFR level is drawn: uniform, or in proportion to `weights`."""
    if not weights:
        return np.full(num_levels, 1.0 / num_levels)
    if len(weights) != num_levels:
        raise ValueError(f"level_weights has {len(weights)} values; the model has {num_levels} "
                         "levels")
    weights = np.asarray(weights, np.float64)
    return weights / weights.sum()


def training_batch(images, data_config, step, num_levels=lfr.DEFAULT_LEVELS, seed=0):
    """The batch of update `step`: {"x_up", "hr" float32 N×S×S×3 in [0, 1], "level" int32 [N]},
    and under a photo degradation "passes" int32 [N] (`photo_degradation.photo_pair`).

    Args:
        images: list of RGB uint8 H×W×3 arrays, each at least the largest HR patch.
        data_config: `DataConfig` (patch_size, batch_size, level_weights, degradation).
        step: int, the update; with `seed` it alone decides the draws.
        num_levels: int, the model's LFR levels.
        seed: int, the run's seed.
    """
    rng = np.random.default_rng([seed, step])
    level = int(rng.choice(num_levels, p=level_probabilities(num_levels,
                                                            data_config.level_weights)))
    size = hr_patch_size(data_config.patch_size, level, num_levels)
    patches = random_patches(images, size, data_config.batch_size, rng)
    photo = DEGRADATIONS[data_config.degradation]
    x_up, hr, passes = training_pair(patches, level, data_config.patch_size, num_levels, photo,
                                     rng)
    batch = {"x_up": x_up, "hr": hr, "level": np.full(data_config.batch_size, level, np.int32)}
    if photo is not None:
        batch["passes"] = np.full(data_config.batch_size, passes, np.int32)
    return batch


def random_patches(images, size, count, rng):
    """uint8 count×size×size×3: patches cut at random from `images`, each flipped at random
    and turned by a multiple of 90°, drawn from the numpy Generator `rng`."""
    patches = []
    for index in rng.integers(len(images), size=count):
        image = images[index]
        top = rng.integers(image.shape[0] - size + 1)
        left = rng.integers(image.shape[1] - size + 1)
        patch = image[top:top + size, left:left + size]
        if rng.integers(2):
            patch = patch[:, ::-1]
        patches.append(np.rot90(patch, rng.integers(4)))
    return np.stack(patches)


def fixed_scale_batch(images, data_config, step, scale, seed=0):
    """FSDN's batch of update `step` at the integer `scale`, as `asdn_tf.data.pipeline`'s
    fixed_scale batches: {"lr" float32 N×p×p×3, "hr" N×(p·s)×(p·s)×3}, LR = imresize(HR, 1/s)."""
    patch_size = data_config.patch_size
    hr = pixels.to_float(random_patches(images, patch_size * scale, data_config.batch_size,
                                        np.random.default_rng([seed, step])))
    lr = resizing.imresize(hr, scale=1.0 / scale, size=(patch_size, patch_size))
    return {"lr": ops.convert_to_numpy(lr), "hr": hr}


def training_pair(hr_patches, level, patch_size, num_levels=lfr.DEFAULT_LEVELS, photo=None,
                  rng=None):
    """(x_up, hr, passes) float32 numpy for uint8 HR patches of level `level`'s size, as
    `asdn_tf.data.pipeline.training_pair` makes them: LR = imresize(HR, 1/r) at p×p, x_up =
    imresize(LR, r); or, with a `PhotoDegradation` as `photo`, a photo degradation drawn
    from the numpy Generator `rng` (`photo_degradation.photo_pair`)."""
    scale = lfr.level_scales(num_levels)[level]
    if photo is not None:
        return photo_degradation.photo_pair(hr_patches, scale, patch_size, photo, rng)
    hr = pixels.to_float(hr_patches)
    lr = resizing.imresize(hr, scale=1.0 / scale, size=(patch_size, patch_size))
    x_up = resizing.imresize(lr, scale=scale, size=hr.shape[1:3])
    return ops.convert_to_numpy(x_up), hr, 1


def training_batches(images, data_config, start_step=0, num_levels=lfr.DEFAULT_LEVELS, seed=0,
                     prefetch=None, fixed_scale=None):
    """The endless stream `training_batch(step)` (`fixed_scale_batch(step)` with an integer
    `fixed_scale`) for step = start_step, start_step + 1, ..., made ahead by `prefetch` threads
    (default: the CPU count), in order."""
    prefetch = prefetch or os.cpu_count() or 2
    if fixed_scale is None:
        make = functools.partial(training_batch, images, data_config, num_levels=num_levels,
                                 seed=seed)
    else:
        make = functools.partial(fixed_scale_batch, images, data_config, scale=fixed_scale,
                                 seed=seed)
    with concurrent.futures.ThreadPoolExecutor(max_workers=prefetch) as pool:
        pending = [pool.submit(make, step) for step in range(start_step, start_step + prefetch)]
        next_step = start_step + prefetch
        while True:
            batch = pending.pop(0).result()
            pending.append(pool.submit(make, next_step))
            next_step += 1
            yield batch
