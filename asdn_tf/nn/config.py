"""Typed configuration of the ASDN and FSDN networks (`ModelConfig`), with named presets, the
accepted ranges and what a config costs.

Configs are the single source of defaults: the training flags mirror these fields, each typed
by its annotation and explained by its class docstring's Args (asdn_tf/cli/config_flags.py).
The data's config is asdn_tf/data/config.py, the optimisation's asdn_tf/training/config.py.

Example:
    >>> from asdn_tf.nn import config
    >>> config.preset("tiny").num_blocks
    2
"""

import dataclasses

from asdn_tf.nn import cost, lfr


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
    computed without building it (`cost.architecture_cost`, which also gives its FLOPs)."""
    found = cost.architecture_cost(model_config)
    return found.parameters, found.activation_bytes


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
