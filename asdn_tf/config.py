"""Typed configuration for ASDN and FSDN, with named presets.

Configs are the single source of defaults: the training flags mirror these fields.

Example:
    >>> from asdn_tf import config
    >>> config.preset("tiny").num_blocks
    2
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of the ASDN network (../shared/docs/ASDN.md §2).

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
        for name in ("num_blocks", "num_layers", "features", "growth", "ca_reduction",
                     "sa_features"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.num_levels, int) or self.num_levels < 2:
            raise ValueError(f"num_levels must be an integer >= 2, got {self.num_levels!r}")

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**values)


PRESETS = {
    # The paper: 16 DABs, 8 convolutions per IDB, 64 features (about 22 M parameters).
    "paper": ModelConfig(num_blocks=16, num_layers=8, features=64, growth=64),
    # Sized for training and serving on a CPU; the bundled weights use it.
    "default": ModelConfig(),
    # For tests: builds and runs in well under a second.
    "tiny": ModelConfig(num_blocks=2, num_layers=2, features=8, growth=8, sa_features=4),
}


def preset(name):
    """Returns the ModelConfig called `name`; raises ValueError naming the choices."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
