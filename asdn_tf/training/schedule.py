"""The learning-rate schedule of both trainers (TensorFlow's `train_step`, JAX's `train_jax`):
pure Keras, so it imports without TensorFlow."""

import keras


def learning_rate_schedule(train_config):
    """The learning rate per update: multiplied by decay_factor from each of lr_milestones on,
    or every decay_every updates when there are none."""
    rate, factor = train_config.learning_rate, train_config.decay_factor
    milestones = train_config.lr_milestones
    if not milestones:
        return keras.optimizers.schedules.ExponentialDecay(rate, train_config.decay_every, factor,
                                                           staircase=True)
    # PiecewiseConstantDecay keeps values[k] while step <= boundaries[k]: m - 1 makes the new
    # rate start at update m, as the staircase above does.
    return keras.optimizers.schedules.PiecewiseConstantDecay(
        [m - 1 for m in milestones], [rate * factor ** k for k in range(len(milestones) + 1)])
