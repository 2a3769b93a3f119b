"""Typed configuration for ASDN and FSDN, with named presets.

Configs are the single source of defaults: the training flags mirror these fields, each typed
by its annotation and explained by its class docstring's Args (asdn_tf/cli/config_flags.py).

Example:
    >>> from asdn_tf.nn import config
    >>> config.preset("tiny").num_blocks
    2
"""

import dataclasses
import math

from asdn_tf.nn import lfr


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of the ASDN network (docs/method.md).

    Args:
        num_blocks: int, B, the number of dense attention blocks in the trunk.
        num_layers: int, D, the densely connected 3×3 convolutions in each intra dense block.
        features: int, n_r, channels of H0 and of every block output.
        growth: int, n_g, channels added by each 3×3 convolution inside a block.
        num_levels: int, L, the Laplacian frequency levels r_l = 1 + l / (L - 1).
        ca_reduction: int, channel-attention squeeze ratio.
        sa_features: int, hidden channels of the spatial-attention mask.
        channel_attention: bool, use channel attention in every block.
        spatial_attention: bool, use spatial attention in every reconstruction branch.
        global_skip: bool, add the pre-upsampled input to every branch output.
    """

    num_blocks: int = 4
    num_layers: int = 4
    features: int = 32
    growth: int = 16
    num_levels: int = 11
    ca_reduction: int = 16
    sa_features: int = 16
    channel_attention: bool = True
    spatial_attention: bool = True
    global_skip: bool = True

    def __post_init__(self):
        for name, (low, high) in MODEL_RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
        parameters, activations = model_cost(self)
        if parameters > MAX_PARAMETERS or activations > MAX_ACTIVATION_BYTES_PER_PIXEL:
            raise ValueError(
                f"this config builds {parameters:,} parameters and about {activations:,} bytes "
                f"of activations per output pixel; at most {MAX_PARAMETERS:,} and "
                f"{MAX_ACTIVATION_BYTES_PER_PIXEL:,} are accepted (the paper's: "
                f"{PAPER_COST[0]:,} and {PAPER_COST[1]:,})")

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**values)


# The accepted range of each size of a ModelConfig: wide enough for any real ASDN (the paper's
# is 16 blocks, 8 layers, 64 features, growth 64, 11 levels), so that a sidecar or a `.keras`
# file that asks for 10^12 blocks is refused in one line before anything is built.
MODEL_RANGES = {"num_blocks": (1, 64), "num_layers": (1, 32), "features": (1, 1024),
                "growth": (1, 1024), "num_levels": (2, 64), "ca_reduction": (1, 1024),
                "sa_features": (1, 1024)}
# The most a config may cost: 9 times the paper's parameters (800 MB as float32) and about 5
# times its activations.
MAX_PARAMETERS = 200_000_000
# The largest scale of an FSDN (its transposed convolution holds scale² · features² weights).
MAX_FSDN_SCALE = int(lfr.DEFAULT_MAX_SCALE)
MAX_ACTIVATION_BYTES_PER_PIXEL = 64 * 1024


def fsdn_scales(scale):
    """The tuple of an FSDN's integer factors from an int or a sequence of them (one head
    each); raises ValueError naming the accepted range."""
    factors = tuple(scale) if isinstance(scale, (tuple, list)) else (scale,)
    for factor in factors:
        if isinstance(factor, bool) or not isinstance(factor, int) \
                or not 2 <= factor <= MAX_FSDN_SCALE:
            raise ValueError(f"FSDN scale must be an integer in [2, {MAX_FSDN_SCALE}], "
                             f"got {scale!r}")
    if not factors or len(set(factors)) != len(factors):
        raise ValueError(f"FSDN scales must be distinct integers, got {scale!r}")
    return factors


def model_cost(model_config):
    """(parameters, activation bytes per output pixel) of the ASDN `model_config` describes,
    computed without building it. The activations are an estimate of one pass in float32: the
    trunk's concatenated features and an intra dense block's stack, each held twice while it is
    concatenated (about 2 KB a pixel for the default preset, as measured)."""
    cfg = model_config
    features, growth = cfg.features, cfg.growth
    squeeze = max(features // cfg.ca_reduction, 1)
    parameters = _conv(3, 3, features)
    for block in range(cfg.num_blocks):
        parameters += _conv(1, features * (block + 1), features)
        parameters += sum(_conv(3, features + layer * growth, growth)
                          for layer in range(cfg.num_layers))
        parameters += _conv(1, features + cfg.num_layers * growth, features)
        if cfg.channel_attention:
            parameters += _conv(1, features, squeeze) + _conv(1, squeeze, features)
    trunk_channels = features * (cfg.num_blocks + 1)
    branch = _conv(1, trunk_channels, 3)
    if cfg.spatial_attention:
        branch += _conv(1, 3, cfg.sa_features) + _conv(1, cfg.sa_features, 1)
    parameters += cfg.num_levels * branch
    stack = features + cfg.num_layers * growth
    return parameters, 4 * 2 * (trunk_channels + stack)


def _conv(kernel, inputs, outputs):
    """The parameters of a kernel×kernel convolution with bias (a Dense layer is kernel 1)."""
    return kernel * kernel * inputs * outputs + outputs


@dataclasses.dataclass(frozen=True)
class PhotoDegradation:
    """The ranges of `--degradation=photo`: a patch is clean (the benchmark's LR) with
    `clean_probability`; otherwise its LR is made by one kernel drawn from `kernels`, then (each
    with its probability) blurred, made noisy and JPEG-compressed (asdn_tf/degradation.py; the
    draws come from the pipeline's seeded stream).

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
            or 2 (asdn_tf/data.py).
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
DEGRADATIONS = {"bicubic": None, "photo": PhotoDegradation()}


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
            as the paper trains) or "photo" (a random mix of kernels, blur, noise and JPEG per
            patch, for real photographs; ranges in `PhotoDegradation`).
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


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The optimisation recipe (paper: Adam, L1, 1e-4 halved every 200k of 1M updates).

    Args:
        steps: int, total updates.
        learning_rate: float, initial Adam learning rate.
        decay_every: int, halve the learning rate every this many updates.
        decay_factor: float, the multiplier applied at each decay.
        lr_milestones: tuple of int, the updates from which the learning rate is multiplied
            by decay_factor (increasing); when given, they replace decay_every.
        clip_norm: float, clip each update's global gradient norm to this (0: no clipping,
            as in the paper).
        checkpoint_every: int, updates between checkpoints (one is also written at the end).
        keep_checkpoints: int, how many recent checkpoints to keep.
        validate_every: int, updates between validations (0: never).
        validation_dir: str, folder of HR images to validate on.
        validation_scales: tuple of float, scales measured at each validation.
        log_every: int, updates between TensorBoard loss / learning-rate points.
        seed: int, seeds weights and data order.
    """

    steps: int = 1_000_000
    learning_rate: float = 1e-4
    decay_every: int = 200_000
    decay_factor: float = 0.5
    lr_milestones: tuple[int, ...] = ()
    clip_norm: float = 0.0
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    validate_every: int = 5000
    validation_dir: str = ""
    validation_scales: tuple[float, ...] = (2.0, 3.0, 4.0, 1.5)
    log_every: int = 100
    seed: int = 0

    def __post_init__(self):
        positive = {"steps": self.steps, "decay_every": self.decay_every,
                    "checkpoint_every": self.checkpoint_every,
                    "keep_checkpoints": self.keep_checkpoints, "log_every": self.log_every}
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        # math.isfinite also refuses nan and inf, which the comparisons below let through.
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be a finite number > 0, "
                             f"got {self.learning_rate!r}")
        if not (math.isfinite(self.clip_norm) and self.clip_norm >= 0):
            raise ValueError(f"clip_norm must be a finite number >= 0, got {self.clip_norm!r}")
        if not (math.isfinite(self.decay_factor) and 0 < self.decay_factor <= 1):
            raise ValueError(f"decay_factor must be in (0, 1], got {self.decay_factor!r}")
        if not isinstance(self.validate_every, int) or self.validate_every < 0:
            raise ValueError(f"validate_every must be an integer >= 0, got {self.validate_every!r}")
        milestones = list(self.lr_milestones)
        if (any(not isinstance(m, int) or m < 1 for m in milestones)
                or milestones != sorted(set(milestones))):
            raise ValueError(f"lr_milestones must be increasing positive integers, "
                             f"got {self.lr_milestones!r}")
        for scale in self.validation_scales:
            if not 1 < float(scale) <= lfr.DEFAULT_MAX_SCALE:
                raise ValueError(f"validation_scales must be in (1, {lfr.DEFAULT_MAX_SCALE:g}], "
                                 f"got {scale!r}")


# The most output pixels one pass of the network is given at once: the default preset holds
# about 2.5 KB of activations per output pixel, so 1024 × 1024 pixels peak near 2.5 GB. Larger
# outputs are tiled by `asdn_tf.upscale` (asdn_tf/tiling.py) and refused by an exported
# SavedModel unless its export raises the limit (--max_output_pixels).
MAX_PASS_PIXELS = 1024 * 1024

PRESETS = {
    # The paper: 16 DABs, 8 convolutions per IDB, 64 features (about 22 M parameters).
    "paper": ModelConfig(num_blocks=16, num_layers=8, features=64, growth=64),
    # Sized for training and serving on a CPU; the bundled weights use it.
    "default": ModelConfig(),
    # FSDN's low-resolution trunk for ×2, ×3 and ×4: four times the default's parameters, as
    # cheap per output pixel at ×2 as the default ASDN, since it runs on the LR image.
    "fsdn": ModelConfig(features=64, growth=32),
    # For tests: builds and runs in well under a second.
    "tiny": ModelConfig(num_blocks=2, num_layers=2, features=8, growth=8, sa_features=4),
}
PAPER_COST = model_cost(PRESETS["paper"])


def preset(name):
    """Returns the ModelConfig called `name`; raises ValueError naming the choices."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
