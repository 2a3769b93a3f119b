"""The TensorFlow graphs the ONNX export converts (`onnx.convert_onnx`), in operations tf2onnx
converts and ONNX Runtime runs equal to Keras.

A fixed-scale graph (`upscale_fixed`) unrolls the recursion for its Python scale, and each
bicubic step is `onnx_resize.resize` (constant parameters), so that every output size is
constant arithmetic on the input's. An any-scale graph (`upscale_any`) takes the scale as a
tensor and runs the recursion's `tf.while_loop`s (`recursion.run_ops`, ONNX Loops): with an
FSDN, the plan of `asdn_tf.upscale` (its integer steps, then ASDN's for the rest), each step
of a factor its head (`fsdn_head_static`) in that factor's loop, so no `tf.cond` or
`switch_case` is needed (tf2onnx converts neither with the weights inside them).

Example:
    >>> output = upscale_any(asdn, images, tf.constant(3.3, tf.float64), fsdn=fsdn)
"""

import tensorflow as tf

from asdn_tf.data.imresize import imresize
from asdn_tf.export import onnx_resize
from asdn_tf.inference import recursion
from asdn_tf.nn import lfr
from asdn_tf.nn.model import FSDN


def upscale_fixed(model, images, scale):
    """`model` upscaling float32 N×H×W×3 `images` by the Python number `scale`: an FSDN by its
    own scale (`fsdn_static`), an ASDN through `lfr.recursion_plan(scale)` unrolled (each step a
    Python scale, so each blend is one fixed pair of branches: no `switch_case`, which tf2onnx
    cannot convert). Each bicubic step is `onnx_resize.resize`, constant parameters only, so
    the file's output size follows from its input's (`static_sizes` checks the rounding).
    What `asdn_tf.upscale` computes (`keras_reference`)."""
    if isinstance(model, FSDN):
        return tf.clip_by_value(tf.cast(fsdn_static(model, images), tf.float32), 0.0, 1.0)
    def step(image, step_scale):
        x_up = onnx_resize.resize(image, *onnx_resize.step_ratio(step_scale))
        return tf.clip_by_value(tf.cast(model(x_up, scale=step_scale), tf.float32), 0.0, 1.0)

    return recursion.run_unrolled(images, scale, step)


def fsdn_static(fsdn, images):
    """`fsdn(images)` of a single-factor FSDN in operations whose output sizes are constant
    arithmetic on the input's (`fsdn_head_static`)."""
    # Its one head, or the FSDN itself where the head's layers are its own.
    return fsdn_head_static(getattr(fsdn, "heads", [fsdn])[0], fsdn.scale,
                            fsdn.trunk(images), images)


def fsdn_head_static(head, s, features, images):
    """An FSDN head for the factor `s` on the trunk's `features` of `images`: the learned
    stride-s transposed convolution (kernel s, so its output blocks do not overlap) as a 1×1
    convolution to s·s·features channels and DepthToSpace, and the bicubic skip as
    `onnx_resize.resize` (Keras's versions slice and shape by `tf.shape`)."""
    features = head.compress(features)
    kernel = head.upsample.kernel.value  # (s, s, out, in): output (s·y + i, s·x + j) gets [i, j]
    out_channels = kernel.shape[2]
    pointwise = tf.reshape(tf.transpose(kernel, [3, 0, 1, 2]), [1, 1, -1, s * s * out_channels])
    upsampled = tf.nn.depth_to_space(
        tf.nn.conv2d(features, pointwise, 1, "VALID") + tf.tile(head.upsample.bias.value, [s * s]),
        s)
    return head.branch([upsampled, onnx_resize.resize(images, s, 1)])


def static_sizes(scale, sides=range(1, 4097)):
    """Raises ValueError unless the unrolled steps' integer sizes (`onnx_resize.output_length`)
    give `lfr.output_size` for every side in `sides`: the file's output size is the command's."""
    ratios = [onnx_resize.step_ratio(step) for step in lfr.recursion_plan(scale)]
    for side in sides:
        length = side
        for p, q in ratios:
            length = onnx_resize.output_length(length, p, q)
        if length != lfr.output_size(side, side, scale)[0]:
            raise ValueError(f"at x{scale:g} a side of {side} gives {length} rows in the file "
                             f"but {lfr.output_size(side, side, scale)[0]} in asdn_tf.upscale")


def upscale_any(model, images, scale, fsdn=None):
    """An ASDN upscaling `images` by the float64 scalar tensor `scale`, as `upscale_tensor`
    does (with `fsdn`, its plan: the FSDN's integer steps first), but in ops tf2onnx converts:
    the recursion is the same `tf.while_loop`s (ONNX Loops), each ASDN step runs every
    reconstruction branch and weighs them (`_blend_all`) where the model picks two with
    `switch_case`, and each FSDN step is `fsdn_head_static`. A scale outside [1, 32] is
    clamped into it: an ONNX graph cannot refuse it."""
    scale = tf.clip_by_value(tf.cast(scale, tf.float64), 1.0, lfr.DEFAULT_MAX_SCALE)

    def step(image, step_scale, target):
        x_up = imresize(image, scale=step_scale, size=target)
        return tf.clip_by_value(_blend_all(model, x_up, step_scale), 0.0, 1.0)

    def fixed_step(image, head):
        output = fsdn_head_static(fsdn.heads[head], fsdn.scales[head], fsdn.trunk(image), image)
        return tf.clip_by_value(tf.cast(output, tf.float32), 0.0, 1.0)

    size = lfr.output_size_ops(tf.shape(images)[1], tf.shape(images)[2], scale)
    return recursion.run_ops(images, scale, size, step, fixed_step,
                             () if fsdn is None else fsdn.scales)


def _blend_all(model, x_up, scale):
    """`model(x_up, scale=scale)` for a scale tensor with every branch run and the two that
    `lfr.level_and_weight_ops` picks weighted 1 − w and w (the others 0): about 10 % more
    arithmetic than running two (the trunk dominates), and no `switch_case`."""
    features = model.trunk(x_up)
    upper, weight = lfr.level_and_weight_ops(scale, model.num_levels)
    kernel, bias = (tf.concat([getattr(branch.to_rgb, name).value for branch in model.branches],
                              axis=-1) for name in ("kernel", "bias"))
    rgb = tf.nn.conv2d(features, kernel, 1, "VALID") + bias
    outputs = tf.stack([branch.finish(rgb[..., 3 * level:3 * level + 3], x_up)
                        for level, branch in enumerate(model.branches)])
    weights = (tf.one_hot(upper, model.num_levels) * (1.0 - weight)
               + tf.one_hot(upper - 1, model.num_levels) * weight)
    return tf.tensordot(weights, outputs, axes=1)
