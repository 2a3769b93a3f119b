"""The SavedModel's request checks, as graph asserts that run in order before anything large
is allocated: the scale, the image's shape, the output's size."""

import tensorflow as tf

from asdn_tf.nn import lfr


def add_check(checks, name, condition, message):
    """Appends to `checks` an Assert that runs after the last one in it.

    `condition` and `message` are callables, so what they compute waits for the earlier checks
    too: a NaN scale is reported as not finite, never as whichever check happened to run first.
    """
    with tf.control_dependencies(checks[-1:]):
        checks.append(tf.debugging.Assert(condition(), [message()], name=name))


def after_checks(checks, tensor):
    """`tensor`, once every check has passed."""
    with tf.control_dependencies(checks):
        return tf.identity(tensor)


def check_scale(checks, scale, max_scale):
    limits = f"in (1, {max_scale:g}]"
    add_check(checks, "check_scale_finite", lambda: tf.math.is_finite(scale),
           lambda: tf.strings.format("scale must be a finite number " + limits + ", got {}",
                                     scale))
    add_check(checks, "check_scale_above_1", lambda: scale > 1.0,
           lambda: tf.strings.format(
               "scale must be greater than 1 (1 is not an upscaling), got {}", scale))
    add_check(checks, "check_scale_at_most_max", lambda: tf.cast(scale, tf.float64) <= max_scale,
           lambda: tf.strings.format(
               f"scale must be at most {max_scale:g} (the export's max_scale), got {{}}", scale))


def check_output_size(checks, batch, height, width, scale, max_output_pixels):
    """Checks that the image is not empty, and that the output (round(h·s) × round(w·s), as
    `upscale_tensor` sizes it) is within max_output_pixels and larger than the input (one side
    at least grows, the rule and message of `python -m asdn_tf.upscale`). The sizes are int64
    scalars."""
    add_check(checks, "check_image_not_empty", lambda: (batch > 0) & (height > 0) & (width > 0),
           lambda: tf.strings.format("image must not be empty, got {} image(s) of {}x{}",
                                     (batch, height, width)))

    def output_size():
        # float64: a header may claim 2^32 pixels a side, whose square overflows int64.
        size = lfr.output_size_ops(height, width, scale, dtype="float64")
        return size, tf.cast(batch, tf.float64) * size[0] * size[1]

    def pixels_message():
        size, count = output_size()
        return tf.strings.format(
            "output of {} image(s) of {}x{} is {} pixels, over the limit of "
            f"{max_output_pixels} (max_output_pixels); use a smaller scale, image or batch",
            (batch, tf.cast(size[0], tf.int64), tf.cast(size[1], tf.int64), count))

    add_check(checks, "check_output_pixels", lambda: output_size()[1] <= float(max_output_pixels),
           pixels_message)

    def grows(value):
        size = tf.stack(lfr.output_size_ops(height, width, value, dtype="float64"))
        return tf.reduce_any(size > tf.cast(tf.stack([height, width]), tf.float64))

    def too_small_message():
        # To four decimals, the smallest scale that adds a pixel to the longer side.
        longer = tf.cast(tf.maximum(height, width), tf.float64)
        smallest = tf.math.ceil((1.0 + 0.5 / longer) * 1e4) / 1e4
        smallest = tf.where(grows(smallest), smallest, smallest + 1e-4)
        return tf.strings.join([
            tf.strings.format("scale {} is too small for a {}x{} image to grow by a pixel; ",
                              (scale, width, height)),
            "the smallest that does is ",
            tf.strings.regex_replace(tf.strings.as_string(smallest, precision=4), r"\.?0+$", "")])

    add_check(checks, "check_output_larger", lambda: grows(tf.cast(scale, tf.float64)),
           too_small_message)


def checked_batch(images, scale, max_scale, max_output_pixels):
    """`images`, an [N, H, W, 3] batch, gated on the checks of the scale, shape and output."""
    checks = []
    check_scale(checks, scale, max_scale)
    shape = tf.shape(images, out_type=tf.int64)
    add_check(checks, "check_image_shape",
           lambda: tf.equal(tf.size(shape), 4) & tf.reduce_all(tf.equal(shape[-1:], 3)),
           lambda: tf.strings.format(
               "image must be [batch, height, width, 3] (RGB), got shape {}", shape))
    images = tf.ensure_shape(after_checks(checks, images), [None, None, None, 3])
    shape = tf.shape(images, out_type=tf.int64)
    check_output_size(checks, shape[0], shape[1], shape[2], scale, max_output_pixels)
    return after_checks(checks, images)
