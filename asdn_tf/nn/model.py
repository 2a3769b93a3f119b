"""ASDN: one trunk pass, eleven reconstruction branches, a Laplacian blend of two of them.

The model maps a pre-upsampled image x_up (N×H×W×3, float in [0, 1]) to the super-resolved
image at the same size. `scale` in (1, 2] picks and blends two branches (docs/method.md,
LFR); `level` runs a single branch, as training does. Pre-upsampling and the recursion for scales
above 2 live in `asdn_tf.inference.engine`.
"""

import functools

import keras
from keras import ops

from asdn_tf.nn import config as config_lib
from asdn_tf.nn import lfr
from asdn_tf.nn.cost import architecture_cost
from asdn_tf.nn.layers import BicubicUpsample, FeatureMappingBranch, ReconstructionBranch


@keras.saving.register_keras_serializable(package="asdn_tf")
class ASDN(keras.Model):
    """Arbitrary Scale Deep Network (Shen, Wang and Zhang, arXiv 2010.02414).

    Args:
        model_config: `ModelConfig` (or its dict) with the sizes and switches.

    Example:
        >>> model = build_model("tiny")
        >>> model(x_up, scale=1.27).shape == x_up.shape
        True
    """

    def __init__(self, model_config=None, **kwargs):
        # x_up reaches the branches' global skip as given (float32), not in the compute dtype:
        # see `ReconstructionBranch`. The trunk casts its own input.
        super().__init__(**{**kwargs, "autocast": False})
        if model_config is None:
            model_config = config_lib.ModelConfig()
        elif isinstance(model_config, dict):
            model_config = config_lib.ModelConfig.from_dict(model_config)
        self.model_config = model_config
        cfg = model_config
        self.trunk = FeatureMappingBranch(cfg.num_blocks, cfg.features, cfg.growth,
                                          cfg.num_layers, cfg.ca_reduction,
                                          cfg.channel_attention, name="trunk")
        self.branches = [
            ReconstructionBranch(cfg.sa_features, cfg.spatial_attention, cfg.global_skip,
                                 name=f"irb_{level}")
            for level in range(cfg.num_levels)
        ]

    @property
    def num_levels(self):
        return self.model_config.num_levels

    def build(self, input_shape):
        _build_trunk_and(self.trunk, self.branches, input_shape)
        self.built = True

    def call(self, inputs, scale=None, level=None, channel_means=None):
        """Args: inputs x_up; scale in (1, 2] (number or tensor) or level (int or tensor);
        channel_means: optional B×N×C means for the trunk's channel attention (tiled inference
        passes the whole image's; see `FeatureMappingBranch.call`)."""
        if (scale is None) == (level is None):
            raise ValueError("ASDN takes exactly one of `scale` (in (1, 2]) or `level`")
        features = self.trunk(inputs, channel_means=channel_means)
        if level is not None:
            return self.reconstruct(features, inputs, level)
        return self.blend(features, inputs, scale)

    def blend(self, features, inputs, scale):
        """The output for `scale` from the trunk's `features`: branches i and i - 1 blended
        with weight w (lfr.level_and_weight); a number on a level runs one branch."""
        if isinstance(scale, (int, float)):
            upper, weight = lfr.level_and_weight(scale, self.num_levels)
        else:
            upper, weight = lfr.level_and_weight_ops(scale, self.num_levels)
        if isinstance(weight, float) and weight == 0.0:
            return self.reconstruct(features, inputs, upper)
        # Both branches' 1×1 convolutions as one with six outputs, so that the features (the
        # trunk's every block, read at memory speed) are read once: 3 % less time a call.
        kernel, bias = (
            ops.cast(ops.concatenate([ops.take(stacked, level, axis=0)
                                      for level in (upper, upper - 1)], axis=-1), features.dtype)
            for stacked in (ops.stack([branch.to_rgb.kernel.value for branch in self.branches]),
                            ops.stack([branch.to_rgb.bias.value for branch in self.branches])))
        rgb = ops.conv(features, kernel) + bias
        upper_output = self._finish(upper, rgb[..., :3], inputs)
        lower_output = self._finish(upper - 1, rgb[..., 3:], inputs)
        weight = ops.cast(weight, upper_output.dtype)
        return upper_output + weight * (lower_output - upper_output)

    def _finish(self, level, rgb, skip):
        """Branch `level` after its 1×1 convolution (`ReconstructionBranch.finish`)."""
        if isinstance(level, int):
            return self.branches[level].finish(rgb, skip)
        return ops.switch(level, [branch.finish for branch in self.branches], rgb, skip)

    def reconstruct(self, features, skip, level):
        """Output of branch `level`; a Python int runs that branch alone (no others traced)."""
        if isinstance(level, int):
            if not 0 <= level < self.num_levels:
                raise ValueError(f"level must be in [0, {self.num_levels - 1}], got {level}")
            return self.branches[level]([features, skip])
        return ops.switch(level, [functools.partial(_run_branch, branch)
                                  for branch in self.branches], features, skip)

    def get_config(self):
        return {**super().get_config(), "model_config": self.model_config.to_dict()}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="asdn_tf")
class FSDNHead(keras.layers.Layer):
    """One integer factor of an FSDN: from the trunk's low-resolution features to the image.

    A 1×1 conv compresses the trunk's output to `features` channels, a stride-s transposed
    conv upsamples, and the reconstruction branch adds the bicubic-upsampled input.

    Args:
        features: int, channels of the compressed and upsampled features.
        scale: int, the factor.
        sa_features: int, hidden channels of the branch's spatial attention.
        spatial_attention: bool, use the branch's spatial attention.
        global_skip: bool, add the bicubic-upsampled input.
    """

    def __init__(self, features=32, scale=2, sa_features=16, spatial_attention=True,
                 global_skip=True, **kwargs):
        super().__init__(**kwargs)
        self.features, self.scale = features, scale
        self.sa_features, self.spatial_attention = sa_features, spatial_attention
        self.global_skip = global_skip
        self.compress = keras.layers.Conv2D(features, 1, name="compress")
        self.upsample = keras.layers.Conv2DTranspose(features, scale, strides=scale,
                                                     name="upsample")
        self.branch = ReconstructionBranch(sa_features, spatial_attention, global_skip,
                                           name="irb")
        self.skip = BicubicUpsample(scale, name="bicubic")

    def build(self, input_shape):
        features_shape, image_shape = input_shape
        self.compress.build(features_shape)
        self.upsample.build((*features_shape[:-1], self.features))
        self.skip.build(image_shape)
        self.branch.build([(None, None, None, self.features), (None, None, None, image_shape[-1])])
        self.built = True

    def call(self, inputs):
        features, image = inputs
        return self.branch([self.upsample(self.compress(features)), self.skip(image)])

    def get_config(self):
        return {**super().get_config(), "features": self.features, "scale": self.scale,
                "sa_features": self.sa_features, "spatial_attention": self.spatial_attention,
                "global_skip": self.global_skip}


@keras.saving.register_keras_serializable(package="asdn_tf")
class FSDN(keras.Model):
    """Fixed Scale Deep Network: ASDN's trunk on the LR image, one head per integer factor.

    The trunk runs once at LR resolution (post-upsampling); each `FSDNHead` compresses its
    output, upsamples it with a stride-s transposed conv and reconstructs the image over the
    bicubic-upsampled input (docs/method.md). One FSDN may hold several factors sharing the
    trunk (e.g. ×2, ×3, ×4): training draws one factor per update, as ASDN draws a level.
    Initialise a single-factor FSDN from a trained ASDN with `init_from_asdn`.

    Args:
        model_config: `ModelConfig` (or its dict) shared with the ASDN it starts from.
        scale: int, the fixed factor (2, 3, 4, 8, ...), or a tuple of such factors, one head
            each.

    Example:
        >>> fsdn = build_fsdn("tiny", scale=(2, 3))
        >>> fsdn(lr, scale=3).shape  # (N, 3H, 3W, 3)
    """

    def __init__(self, model_config=None, scale=2, **kwargs):
        super().__init__(**kwargs)
        if model_config is None:
            model_config = config_lib.ModelConfig()
        elif isinstance(model_config, dict):
            model_config = config_lib.ModelConfig.from_dict(model_config)
        self.model_config = model_config
        self.scales = config_lib.fsdn_scales(scale)
        cfg = model_config
        self.trunk = FeatureMappingBranch(cfg.num_blocks, cfg.features, cfg.growth,
                                          cfg.num_layers, cfg.ca_reduction,
                                          cfg.channel_attention, name="trunk")
        self.heads = [FSDNHead(cfg.features, factor, cfg.sa_features, cfg.spatial_attention,
                               cfg.global_skip, name=f"head_x{factor}")
                      for factor in self.scales]

    @property
    def scale(self):
        """The factor of a single-factor FSDN; the tuple of factors of one with several."""
        return self.scales[0] if len(self.scales) == 1 else self.scales

    def build(self, input_shape):
        _build_trunk_and(self.trunk, self.heads, input_shape)
        self.built = True

    def call(self, inputs, scale=None, level=None):
        """Args: inputs, the LR image; scale, one of `scales` (a Python int), or level, the
        index of a head (training's draw); a single-factor FSDN needs neither."""
        return self.heads[self.head_index(scale, level)]([self.trunk(inputs), inputs])

    def head_index(self, scale=None, level=None):
        """The index of the head for `scale` (or `level`, already an index)."""
        if level is not None:
            return int(level)
        if scale is None:
            if len(self.scales) > 1:
                raise ValueError(f"this FSDN holds ×{', ×'.join(map(str, self.scales))}: "
                                 "name the scale")
            return 0
        if float(scale) not in self.scales:
            raise ValueError(f"this FSDN upscales by {', '.join(map(str, self.scales))} only, "
                             f"not {scale:g}")
        return self.scales.index(int(scale))

    def at_scale(self, scale):
        """An FSDN for `scale` (an int: the single-factor network the exports and other
        fixed-scale tools take; or a tuple of some of this one's factors) holding copies of
        this one's trunk and of the heads for those factors."""
        factors = config_lib.fsdn_scales(scale)
        if self.scales == factors:
            return self
        indices = [self.head_index(factor) for factor in factors]  # refuses a missing one
        part = build_fsdn(self.model_config, scale)
        part.trunk.set_weights(self.trunk.get_weights())
        for head, index in zip(part.heads, indices):
            head.set_weights(self.heads[index].get_weights())
        return part

    def get_config(self):
        return {**super().get_config(), "model_config": self.model_config.to_dict(),
                "scale": self.scale if len(self.scales) == 1 else list(self.scales)}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def build_fsdn(model_config="default", scale=2):
    """Returns a built FSDN for `scale` (an int, or a tuple of ints: one head each) from a
    preset name, a `ModelConfig` or its dict."""
    if isinstance(model_config, str):
        model_config = config_lib.preset(model_config)
    model = FSDN(model_config, scale)
    model.build((None, None, None, 3))
    for index in range(len(model.scales)):
        model(ops.zeros((1, 8, 8, 3)), level=index)
    return model


def init_from_asdn(fsdn, asdn):
    """Copies the trunk, and the ×2 branch's spatial attention, of a trained ASDN into `fsdn`."""
    if fsdn.model_config != asdn.model_config:
        raise ValueError("FSDN and ASDN configs differ; build the FSDN with the ASDN's config")
    fsdn.trunk.set_weights(asdn.trunk.get_weights())
    source = asdn.branches[-1]
    for head in fsdn.heads:
        if head.branch.sa is not None:
            head.branch.sa.set_weights(source.sa.get_weights())
    return fsdn


def _build_trunk_and(trunk, outputs, input_shape):
    """Builds `trunk` for `input_shape` and each of `outputs` (branches, heads) for the trunk's
    features and the input: [features shape, input shape]."""
    trunk.build(input_shape)
    features_shape = (*input_shape[:-1], trunk.output_channels)
    for output in outputs:
        output.build([features_shape, input_shape])


def _run_branch(branch, features, skip):
    return branch([features, skip])


def build_model(model_config="default"):
    """Returns a built ASDN from a preset name, a `ModelConfig` or its dict.

    Built by calling it on a tensor, so every sublayer has its weights.
    """
    if isinstance(model_config, str):
        model_config = config_lib.preset(model_config)
    model = ASDN(model_config)
    model.build((None, None, None, 3))
    model(ops.zeros((1, 8, 8, 3)), scale=1.95)
    return model


def flops_per_pixel(model_config):
    """Multiply-adds × 2 per output pixel of one any-scale pass (trunk + two branches)."""
    return architecture_cost(model_config).flops_per_pixel
