"""Benchmark tables' numbers: Y-channel PSNR / SSIM of bicubic or ASDN on image sets, at any
scales, under the protocol of asdn_tf/evaluation/protocol.py, with TensorFlow's LR images
(`degradation.fixed_lr`) and super-resolvers (bicubic `imresize`, the compiled ASDN, an FSDN).

Example (notebook):
    >>> sets = load_sets("data", ["Set5"])
    >>> results = evaluate(sets, [2, 4], "bicubic")
    >>> print(tables.format_table(results))
"""

import pathlib

import numpy as np

from asdn_tf.data import data_folders
from asdn_tf.data import degradation as degradation_lib
from asdn_tf.data.imresize import imresize
from asdn_tf.evaluation.protocol import (METHODS, crop, lr_size, parse_scales, shave, sr_image,
                                         y_psnr, y_ssim)
from asdn_tf.inference import precision as precision_lib
from asdn_tf.inference import weights_io
from asdn_tf.inference import engine
from asdn_tf.io import image_io, image_write
from asdn_tf.io.pixels import to_float, to_rgb
from asdn_tf.nn.model import ASDN


def load_set(folder):
    """[(path, image)] for the images of one set: uint8 H×W (gray) or H×W×3 (RGB).

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: the folder holds no images, or an image is unreadable or not 8-bit
            (the message names it).
    """
    folder = pathlib.Path(folder)
    data_folders.require_folder(folder)
    paths = image_io.list_images(folder)
    if not paths:
        raise ValueError(f"no images in {folder}")
    images = []
    for path in paths:
        image = image_io.read_image(path)
        if image.dtype != np.uint8:
            raise ValueError(f"{path} is {image.dtype.itemsize * 8}-bit; the benchmark protocol "
                             "measures 8-bit images")
        images.append((path, image[..., :3] if image.ndim == 3 else image))
    return images


def load_sets(data_dir, names):
    """{name: load_set(data_dir / name)} in the order given."""
    return {name: load_set(pathlib.Path(data_dir) / name) for name in names}


def evaluate(sets, scales, method="bicubic", model=None, save_images=None, progress=None,
             degradation="bicubic", precision="auto", fsdn=None):
    """Mean PSNR / SSIM per set and scale.

    Args:
        sets: {name: [(path, uint8 image)]}, e.g. from `load_sets`.
        scales: numbers > 1 (integer and decimal).
        method: "bicubic" or "asdn".
        model: the ASDN (or an FSDN, at its own scale) for method "asdn"; by default the
            bundled pretrained model.
        save_images: optional folder; SR images go to FOLDER/METHOD/SET/xSCALE/NAME.png.
        progress: optional callable(done, total, label), called after every image.
        degradation: how the LR is made: "bicubic" (the protocol) or another name in
            `degradation.EVALUATION`.
        precision: of the bundled model when `model` is None ("auto", "float32", "bfloat16").
        fsdn: an FSDN that runs the integer part of each scale for an ASDN `model`, as
            `asdn_tf.upscale` does with one (None: the ASDN's recursion alone).

    Returns:
        A list of dicts {"set", "scale", "method", "degradation", "psnr", "ssim", "images",
        "shave", "per_image": [{"image", "psnr", "ssim"}]}, scale by scale, set by set; asdn's
        also say the "precision" the model computed in.

    Raises:
        ValueError: a bad method or scale, or an image too small for the scale (named).
        FileNotFoundError: method "asdn" without a model and no bundled weights.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    scales = parse_scales(scales)
    degradation_lib.check_name(degradation)
    if method == "asdn" and model is None:
        model = weights_io.load_pretrained(precision=precision)
    total = sum(len(images) for images in sets.values()) * len(scales)
    done = 0

    def tick(label):
        nonlocal done
        done += 1
        if progress:
            progress(done, total, label)

    results = []
    for scale in scales:
        for name, images in sets.items():
            results.append(_measure_set(name, images, scale, method, (model, fsdn),
                                        degradation, save_images, tick))
            if method == "asdn":
                results[-1]["precision"] = precision_lib.precision_of(model)
                results[-1]["fsdn"] = fsdn is not None
    return results


def _measure_set(name, images, scale, method, networks, degradation, save_images, tick):
    """The result row of one set at one scale by (model, fsdn) `networks`; tick(label) after
    every image."""
    if not images:
        raise ValueError(f"set {name} has no images")
    model, fsdn = networks
    scores, per_image = [], []
    for path, hr in images:
        path = pathlib.Path(path)
        try:
            psnr, ssim, sr = measure(hr, scale, method, model, degradation, fsdn)
        except ValueError as error:
            raise ValueError(f"{path} at ×{scale:g}: {error}") from None
        if save_images:
            folder = pathlib.Path(save_images) / method / name / f"x{scale:g}"
            if degradation != "bicubic":
                folder = folder / degradation
            folder.mkdir(parents=True, exist_ok=True)
            image_write.write_image(folder / f"{path.stem}.png", sr, overwrite=True)
        scores.append((psnr, ssim))
        per_image.append({"image": path.name, "psnr": round(psnr, 4), "ssim": round(ssim, 5)})
        tick(f"{name} ×{scale:g} {path.name}")
    psnr, ssim = np.mean(scores, axis=0)
    return {"set": name, "scale": scale, "method": method, "degradation": degradation,
            "psnr": round(float(psnr), 4), "ssim": round(float(ssim), 5),
            "images": len(images), "shave": shave(scale), "per_image": per_image}


def benchmark_pair(hr, scale, degradation="bicubic"):
    """(HR cropped to a multiple of an integer scale, LR uint8 of ceil(H/s) × ceil(W/s)).

    The LR is the protocol's (MATLAB bicubic, quantised) or another of
    `degradation.EVALUATION` ("bicubic_noaa", "jpeg75", "blur_noise").

    Raises:
        ValueError: the image is too small to measure at `scale` (the message says why).
    """
    hr = crop(hr, scale)
    return hr, degradation_lib.fixed_lr(hr, lr_size(*hr.shape[:2], scale), scale, degradation)


def super_resolve(lr, scale, size, method, model=None, fsdn=None):
    """LR uint8 H×W×C (C = 1 or 3) → float32 size×C SR image in [0, 1]; an ASDN `model` runs
    the integer part of the scale on `fsdn` when one is given (`recursion.plan`).

    A gray image goes through the model as R = G = B and comes back as the mean of the three.
    """
    pixels = to_float(lr)
    if method == "bicubic":
        return imresize(pixels, scale=scale, size=size).numpy()
    rgb = to_rgb(pixels)
    if isinstance(model, ASDN):
        # The upscale engine, every step on the whole image (the protocol's exact pass): one
        # traced step for every image, size and scale, nothing traced per image.
        output = engine.run(model, rgb, float(scale), size, tile=0, fsdn=fsdn)
    else:  # FSDN: a fixed-scale network on the LR image.
        if float(scale) not in model.scales:
            factors = ",".join(map(str, model.scales))
            raise ValueError(f"these are FSDN weights for ×{factors.replace(',', ', ×')} only; "
                             f"measure them with --scales={factors}, or use ASDN weights for "
                             f"×{scale:g}")
        output = np.clip(np.asarray(model(rgb[None], scale=int(scale)), np.float32)[0], 0.0, 1.0)
    return output.mean(axis=2, keepdims=True) if pixels.shape[2] == 1 else output


def measure(hr, scale, method, model=None, degradation="bicubic", fsdn=None):
    """(PSNR, SSIM, SR uint8) of one HR image (uint8 H×W or H×W×3) at `scale`, its LR made by
    `degradation` (the protocol's by default)."""
    hr, sr = sr_image(hr, scale,
                      lambda image, size: degradation_lib.fixed_lr(image, size, scale, degradation),
                      lambda lr, size: super_resolve(lr, scale, size, method, model, fsdn))
    return y_psnr(sr, hr, scale), y_ssim(sr, hr, scale), sr
