"""The building blocks of ASDN (docs/method.md) as Keras 3 layers.

Each layer builds its sublayers in `build()`, keeps one attribute per constructor argument and
round-trips through `get_config()`.
"""

import math

import keras
import numpy as np
from keras import layers, ops

from asdn_tf.nn.cubic import cubic

_PACKAGE = "asdn_tf"


def _conv(filters, kernel_size, activation=None, name=None):
    return layers.Conv2D(filters, kernel_size, padding="same", activation=activation, name=name)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ChannelAttention(layers.Layer):
    """Channel attention (RCAN): average pool, squeeze, excite, rescale the channels.

    Args:
        reduction: int, squeeze ratio (channels // reduction hidden units, at least 1).

    Example:
        >>> ChannelAttention(reduction=16)(keras.ops.ones((1, 8, 8, 32))).shape
        (1, 8, 8, 32)
    """

    def __init__(self, reduction=16, **kwargs):
        super().__init__(**kwargs)
        self.reduction = reduction

    def build(self, input_shape):
        channels = input_shape[-1]
        self.squeeze = layers.Dense(max(channels // self.reduction, 1), activation="relu",
                                    name="squeeze")
        self.excite = layers.Dense(channels, activation="sigmoid", name="excite")
        self.squeeze.build((None, channels))
        self.excite.build((None, max(channels // self.reduction, 1)))

    def call(self, inputs, means=None):
        """Args: inputs N×H×W×C; means: optional N×C (or 1×C) channel means pooled instead of
        the inputs' own (tiled inference passes the whole image's)."""
        pooled = ops.mean(inputs, axis=(1, 2)) if means is None else ops.cast(means, inputs.dtype)
        weights = self.excite(self.squeeze(pooled))
        return inputs * weights[:, None, None, :]

    def get_config(self):
        return {**super().get_config(), "reduction": self.reduction}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SpatialAttention(layers.Layer):
    """Spatial attention (CSFM style): a sigmoid H×W mask computed from the input multiplies it.

    Args:
        features: int, hidden channels of the 1×1 convolutions that compute the mask.
    """

    def __init__(self, features=16, **kwargs):
        super().__init__(**kwargs)
        self.features = features

    def build(self, input_shape):
        self.expand = _conv(self.features, 1, activation="relu", name="expand")
        self.mask = _conv(1, 1, activation="sigmoid", name="mask")
        self.expand.build(input_shape)
        self.mask.build((*input_shape[:-1], self.features))

    def call(self, inputs):
        return inputs * self.mask(self.expand(inputs))

    def get_config(self):
        return {**super().get_config(), "features": self.features}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class IntraDenseBlock(layers.Layer):
    """Intra dense block (DBDN): 1×1 compress, D dense 3×3 conv + ReLU, 1×1 fuse, local residual.

    Args:
        features: int, n_r, channels of the compressed input L0 and of the output.
        growth: int, n_g, channels each 3×3 convolution adds.
        num_layers: int, D, densely connected 3×3 convolutions.
    """

    def __init__(self, features=64, growth=64, num_layers=8, **kwargs):
        super().__init__(**kwargs)
        self.features = features
        self.growth = growth
        self.num_layers = num_layers

    def build(self, input_shape):
        spatial = tuple(input_shape[:-1])
        self.compress = _conv(self.features, 1, name="compress")
        self.compress.build(input_shape)
        self.dense_convs = []
        for index in range(self.num_layers):
            conv = _conv(self.growth, 3, activation="relu", name=f"dense_{index}")
            conv.build((*spatial, self.features + index * self.growth))
            self.dense_convs.append(conv)
        self.fuse = _conv(self.features, 1, name="fuse")
        self.fuse.build((*spatial, self.features + self.num_layers * self.growth))

    def call(self, inputs):
        base = self.compress(inputs)
        stack = [base]
        for conv in self.dense_convs:
            stack.append(conv(ops.concatenate(stack, axis=-1) if len(stack) > 1 else base))
        return base + self.fuse(ops.concatenate(stack, axis=-1))

    def get_config(self):
        return {**super().get_config(), "features": self.features, "growth": self.growth,
                "num_layers": self.num_layers}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DenseAttentionBlock(layers.Layer):
    """Dense attention block: an intra dense block followed by channel attention.

    The trunk runs the two halves, `pre_attention` and `attend`, as separate calls (tiled
    inference pauses between them to pool the whole image), so a variant overrides those.

    Args:
        features: int, output channels.
        growth: int, growth of the intra dense block.
        num_layers: int, 3×3 convolutions in the intra dense block.
        ca_reduction: int, channel-attention squeeze ratio.
        channel_attention: bool, False drops the channel attention (an ablation of the paper).
    """

    def __init__(self, features=64, growth=64, num_layers=8, ca_reduction=16,
                 channel_attention=True, **kwargs):
        super().__init__(**kwargs)
        self.features = features
        self.growth = growth
        self.num_layers = num_layers
        self.ca_reduction = ca_reduction
        self.channel_attention = channel_attention

    def build(self, input_shape):
        self.idb = IntraDenseBlock(self.features, self.growth, self.num_layers, name="idb")
        self.idb.build(input_shape)
        self.ca = None
        if self.channel_attention:
            self.ca = ChannelAttention(self.ca_reduction, name="ca")
            self.ca.build((*input_shape[:-1], self.features))

    def call(self, inputs, means=None):
        return self.attend(self.pre_attention(inputs), means)

    def pre_attention(self, inputs):
        """The block's output before its channel attention: what the attention pools."""
        return self.idb(inputs)

    def attend(self, outputs, means=None):
        """`pre_attention`'s outputs rescaled by the channel attention, which pools `means`
        (N×C) instead of the outputs' own when given."""
        return outputs if self.ca is None else self.ca(outputs, means=means)

    def get_config(self):
        return {**super().get_config(), "features": self.features, "growth": self.growth,
                "num_layers": self.num_layers, "ca_reduction": self.ca_reduction,
                "channel_attention": self.channel_attention}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FeatureMappingBranch(layers.Layer):
    """The trunk: conv → H0, then B dense attention blocks with inter-block dense connections.

    Block b sees [H0, ..., H_{b-1}]; the output [H0, ..., H_B] feeds every reconstruction branch.

    Args:
        num_blocks: int, B.
        features, growth, num_layers, ca_reduction, channel_attention: as DenseAttentionBlock.
    """

    def __init__(self, num_blocks=16, features=64, growth=64, num_layers=8, ca_reduction=16,
                 channel_attention=True, **kwargs):
        super().__init__(**kwargs)
        self.num_blocks = num_blocks
        self.features = features
        self.growth = growth
        self.num_layers = num_layers
        self.ca_reduction = ca_reduction
        self.channel_attention = channel_attention

    @property
    def output_channels(self):
        return self.features * (self.num_blocks + 1)

    def build(self, input_shape):
        spatial = tuple(input_shape[:-1])
        self.head = _conv(self.features, 3, name="head")
        self.head.build(input_shape)
        self.blocks = []
        for index in range(self.num_blocks):
            block = DenseAttentionBlock(self.features, self.growth, self.num_layers,
                                        self.ca_reduction, self.channel_attention,
                                        name=f"dab_{index}")
            block.build((*spatial, self.features * (index + 1)))
            self.blocks.append(block)

    def call(self, inputs, channel_means=None):
        """Args: inputs N×H×W×3; channel_means: optional B×N×C (N may be 1), the means block b's
        channel attention pools instead of its own output's (tiled inference passes the whole
        image's)."""
        state = self.start(inputs)
        for index in range(self.num_blocks):
            state = self.resume(state, None if channel_means is None else channel_means[index])
        return state

    # The pass is cut at every channel attention, so that tiled inference can bring all regions
    # to the same attention and hand each the means over the whole image.
    def start(self, inputs):
        """Runs up to the first channel attention. Returns the paused state [H0, ..., H_b
        concatenated (block b's input), block b's output before its attention]."""
        features = self.head(inputs)
        return [features, self.blocks[0].pre_attention(features)]

    def resume(self, state, means=None):
        """Runs the paused attention (pooling `means` N×C, or its input's own when None) and on
        to the next: returns the next paused state, or after the last block the trunk's output."""
        features, before = state
        index = features.shape[-1] // self.features - 1
        features = ops.concatenate([features, self.blocks[index].attend(before, means)], axis=-1)
        if index + 1 == self.num_blocks:
            return features
        return [features, self.blocks[index + 1].pre_attention(features)]

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.output_channels)

    def get_config(self):
        return {**super().get_config(), "num_blocks": self.num_blocks, "features": self.features,
                "growth": self.growth, "num_layers": self.num_layers,
                "ca_reduction": self.ca_reduction, "channel_attention": self.channel_attention}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ReconstructionBranch(layers.Layer):
    """One image reconstruction branch (IRB_l): 1×1 conv to RGB, spatial attention, global skip.

    Called as `branch([features, skip])`; with `global_skip=False` the skip is ignored. Under a
    mixed policy the skip is added in its own dtype, not the compute dtype: it carries most of
    the output, and bfloat16's 8 bits would round it by up to a grey level (−0.13 dB on Set5
    at ×1.1).

    Args:
        sa_features: int, hidden channels of the spatial attention.
        spatial_attention: bool, False drops the spatial attention.
        global_skip: bool, False drops the addition of the pre-upsampled input.
    """

    def __init__(self, sa_features=16, spatial_attention=True, global_skip=True, **kwargs):
        # Without autocast the skip reaches `call` as given; the sublayers still cast theirs.
        super().__init__(**{**kwargs, "autocast": False})
        self.sa_features = sa_features
        self.spatial_attention = spatial_attention
        self.global_skip = global_skip

    def build(self, input_shape):
        features_shape = input_shape[0]
        self.to_rgb = _conv(3, 1, name="to_rgb")
        self.to_rgb.build(features_shape)
        self.sa = None
        if self.spatial_attention:
            self.sa = SpatialAttention(self.sa_features, name="sa")
            self.sa.build((*features_shape[:-1], 3))

    def call(self, inputs):
        features, skip = inputs
        return self.finish(self.to_rgb(features), skip)

    def finish(self, outputs, skip):
        """The branch after its 1×1 convolution (`to_rgb`'s `outputs`): attention and skip."""
        if self.sa is not None:
            outputs = self.sa(outputs)
        return ops.cast(outputs, skip.dtype) + skip if self.global_skip else outputs

    def compute_output_shape(self, input_shape):
        return (*input_shape[0][:-1], 3)

    def get_config(self):
        return {**super().get_config(), "sa_features": self.sa_features,
                "spatial_attention": self.spatial_attention, "global_skip": self.global_skip}


# Two input pixels of symmetric padding cover the 4-tap cubic kernel at every output position.
_SKIP_PAD = 2


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BicubicUpsample(layers.Layer):
    """MATLAB bicubic upsampling by an integer factor as a fixed transposed convolution.

    Equal to `asdn_tf.data.imresize(x, scale)` (a = -0.5, symmetric borders), built from ops that
    convert to TFLite builtins (MIRROR_PAD, TRANSPOSE_CONV), so FSDN's global skip runs on a phone.

    Args:
        scale: int >= 2, the upsampling factor.
    """

    def __init__(self, scale=2, **kwargs):
        # Its kernel is fixed; a config's "trainable" (get_config writes it) is overridden.
        super().__init__(**{**kwargs, "trainable": False})
        self.scale = scale

    def build(self, input_shape):
        s = self.scale
        channels = input_shape[-1]
        # MATLAB maps output X (0-based) to input position (X + 0.5)/s - 0.5 and weights input J
        # by cubic of the distance. A stride-s transposed conv gives output o the taps
        # kernel[o - s·J]; with o = X + s·pad + c the kernel is cubic((m - c + 0.5 - s/2) / s),
        # which fits in 4s taps for c = floor(1.5 s). Keys' kernel sums to one at every phase.
        self._offset = math.floor(1.5 * s)
        taps = np.arange(4 * s)
        kernel_1d = cubic((taps - self._offset + 0.5 - s / 2) / s)
        kernel = np.zeros((4 * s, 4 * s, channels, channels), np.float32)
        for channel in range(channels):
            kernel[:, :, channel, channel] = np.outer(kernel_1d, kernel_1d)
        self.kernel = self.add_weight(shape=kernel.shape, trainable=False, name="kernel",
                                      initializer=keras.initializers.Constant(kernel))

    def call(self, inputs):
        s = self.scale
        padded = ops.pad(inputs, [[0, 0], [_SKIP_PAD, _SKIP_PAD], [_SKIP_PAD, _SKIP_PAD], [0, 0]],
                         mode="symmetric")
        upsampled = ops.conv_transpose(padded, self.kernel, strides=s, padding="valid")
        start = _SKIP_PAD * s + self._offset
        height, width = ops.shape(inputs)[1], ops.shape(inputs)[2]
        return upsampled[:, start:start + height * s, start:start + width * s, :]

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}
