"""What an ASDN costs, from its config alone: one walk of the architecture gives its
parameters, its FLOPs per output pixel and its activation bytes per output pixel.

Example:
    >>> from asdn_tf.nn import config, cost
    >>> cost.architecture_cost(config.preset("paper")).parameters
    22438684
"""

import typing


class ArchitectureCost(typing.NamedTuple):
    """What one ASDN config costs.

    Attributes:
        parameters: int, the weights of the whole network (trunk and every level's branch).
        flops_per_pixel: int, multiply-adds × 2 per output pixel of one any-scale pass (the
            trunk and two branches; channel attention's pooled vector is left out).
        activation_bytes: int, an estimate of one pass's float32 activations per output pixel:
            the trunk's concatenated features and an intra dense block's stack, each held twice
            while it is concatenated (about 2 KB a pixel for the default preset, as measured).
        trunk_channels: int, the channels of the trunk's output (what a paused region keeps).
    """

    parameters: int
    flops_per_pixel: int
    activation_bytes: int
    trunk_channels: int


def _convolutions(cfg):
    """(kernel, inputs, outputs, stored, run) of every convolution of the ASDN `cfg`
    describes: `stored` copies of it are in the weights, it runs `run` times a pixel in one
    pass (0 for channel attention, which runs on a pooled vector)."""
    features, growth = cfg.features, cfg.growth
    squeeze = max(features // cfg.ca_reduction, 1)
    yield 3, 3, features, 1, 1
    for block in range(cfg.num_blocks):
        yield 1, features * (block + 1), features, 1, 1
        for layer in range(cfg.num_layers):
            yield 3, features + layer * growth, growth, 1, 1
        yield 1, features + cfg.num_layers * growth, features, 1, 1
        if cfg.channel_attention:
            yield 1, features, squeeze, 1, 0
            yield 1, squeeze, features, 1, 0
    # Each level has its branch; a pass runs two of them (the LFR's neighbouring levels).
    yield 1, features * (cfg.num_blocks + 1), 3, cfg.num_levels, 2
    if cfg.spatial_attention:
        yield 1, 3, cfg.sa_features, cfg.num_levels, 2
        yield 1, cfg.sa_features, 1, cfg.num_levels, 2


def architecture_cost(model_config):
    """The `ArchitectureCost` of the ASDN `model_config` describes, computed without building
    it."""
    parameters = macs = 0
    for kernel, inputs, outputs, stored, run in _convolutions(model_config):
        weights = kernel * kernel * inputs * outputs
        parameters += stored * (weights + outputs)
        macs += run * weights
    trunk_channels = model_config.features * (model_config.num_blocks + 1)
    stack = model_config.features + model_config.num_layers * model_config.growth
    return ArchitectureCost(parameters=parameters, flops_per_pixel=2 * macs,
                            activation_bytes=4 * 2 * (trunk_channels + stack),
                            trunk_channels=trunk_channels)
