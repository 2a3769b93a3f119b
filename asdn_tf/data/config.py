"""Typed configuration of the training data: where patches come from and how their LR is made
(`DataConfig`), and the photo degradation's ranges (`PhotoDegradation`).

Example:
    >>> from asdn_tf.data.config import DataConfig
    >>> DataConfig(sources=("data/T91",)).patch_size
    48
"""

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class PhotoDegradation:
    """The ranges of `--degradation=photo`: a patch is clean (the benchmark's LR) with
    `clean_probability`; otherwise its LR is made by one kernel drawn from `kernels`, then (each
    with its probability) blurred, made noisy and JPEG-compressed (asdn_tf/data/photo_mix.py;
    the draws come from the pipeline's seeded stream).

    Args:
        clean_probability: float, chance of the benchmark's LR, only quantised to 8 bits.
        kernels: tuple of str, downscaling kernels drawn with equal chance: "bicubic"
            (MATLAB's, antialiased: the benchmark's), "bicubic_noaa", "bilinear", "area"
            (`tf.image.resize` without antialiasing, as most image tools resize).
        blur_probability: float, chance of a Gaussian blur of the LR patch.
        blur_sigma: tuple of float, (low, high) blur sigma in LR pixels.
        noise_probability: float, chance of Gaussian noise.
        noise_sigma: tuple of float, (low, high) noise sigma in grey levels of 255.
        jpeg_probability: float, chance of JPEG compression (after 8-bit quantisation).
        jpeg_quality: tuple of float, (low, high) JPEG quality.
        recursion_probability: float, chance that an update trains the first ×r step of a ×1.5r
            or ×2r recursion: LR decimated by 1.5r or 2r, the target the HR brought down by 1.5
            or 2 (asdn_tf/data/photo_mix.py `pair_kind`).
        own_step_probability: float, chance that an update trains the second step of a ×2r
            recursion on the network's own first step instead, as inference runs it: LR
            decimated by 2r, brought up ×2 by the network (no gradient), then ×r by the step
            trained, against the HR. Drawn only when the update is not a first-step pair.
    """

    clean_probability: float = 0.3
    kernels: tuple[str, ...] = ("bicubic", "bicubic_noaa", "bilinear", "area")
    blur_probability: float = 0.3
    blur_sigma: tuple[float, float] = (0.2, 1.2)
    noise_probability: float = 0.4
    noise_sigma: tuple[float, float] = (0.5, 4.0)
    jpeg_probability: float = 0.6
    jpeg_quality: tuple[float, float] = (40.0, 95.0)
    recursion_probability: float = 0.4
    own_step_probability: float = 0.0


# The named LR makers of `DataConfig.degradation`; None is the benchmark's exact bicubic.
# "photo_aliased" draws bicubic without antialiasing twice as often: at ×2 "bilinear" and "area"
# are the same 2×2 box, so "photo" gives an FSDN's ×2 head mostly softer LR than the aliased
# resizes of most tools (docs/training.md, the photo FSDN's second stage).
DEGRADATIONS = {"bicubic": None, "photo": PhotoDegradation(),
                "photo_aliased": PhotoDegradation(
                    kernels=("bicubic", "bicubic_noaa", "bicubic_noaa", "bilinear", "area"))}


# The accepted sizes of a batch of LR patches (the paper's: 16 of 48×48).
DATA_RANGES = {"patch_size": (4, 1024), "batch_size": (1, 4096)}


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where training patches come from and how they are made (docs/method.md).

    Args:
        sources: tuple of str, image folders or globs, or "tfds:div2k" for DIV2K's HR images
            through tensorflow-datasets. Several sources are mixed.
        patch_size: int, LR patch side; the HR patch of level r is round(patch_size · r).
        batch_size: int, patches per update (all from one LFR level).
        strict: bool, an unreadable image is an error instead of a warning.
        degrade_in_step: bool, make LR and x_up inside the train step (XLA-compilable, runs on
            the accelerator) instead of in the tf.data pipeline.
        tfds_data_dir: str, tensorflow-datasets data_dir ("" for its default).
        level_weights: tuple of float, how often each LFR level is drawn, relative to the others
            (one weight per level; e.g. ten 1s and a 10 draw x2 half the time). Empty: every
            level equally often, as the paper trains.
        degradation: str, how LR patches are made: "bicubic" (the benchmark's MATLAB bicubic,
            as the paper trains), "photo" (a random mix of kernels, blur, noise and JPEG per
            patch, for real photographs; ranges in `PhotoDegradation`) or "photo_aliased" (the
            same with bicubic without antialiasing drawn twice as often; `DEGRADATIONS`).
    """

    sources: tuple[str, ...] = ()
    patch_size: int = 48
    batch_size: int = 16
    strict: bool = False
    degrade_in_step: bool = False
    tfds_data_dir: str = ""
    level_weights: tuple[float, ...] = ()
    degradation: str = "bicubic"

    def __post_init__(self):
        if self.degradation not in DEGRADATIONS:
            raise ValueError(f"degradation must be one of {', '.join(DEGRADATIONS)}, "
                             f"got {self.degradation!r}")
        if self.degradation != "bicubic" and self.degrade_in_step:
            raise ValueError(f"degrade_in_step makes bicubic LR only; drop it for "
                             f"degradation={self.degradation}")
        weights = self.level_weights
        if weights and (not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0):
            raise ValueError(f"level_weights must be finite numbers >= 0, not all 0, got {weights!r}")
        for name, (low, high) in DATA_RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
