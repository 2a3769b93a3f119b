"""Typed configuration of the optimisation recipe (`TrainConfig`) and the learning-rate schedule
it sets for both trainers (`learning_rate_schedule`: pure Keras, loaded when it is called).

Example:
    >>> from asdn_tf.training.config import TrainConfig
    >>> TrainConfig(steps=10).learning_rate
    0.0001
"""

import dataclasses
import math

from asdn_tf.nn import lfr


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


def learning_rate_schedule(train_config):
    """The learning rate per update: multiplied by decay_factor from each of lr_milestones on,
    or every decay_every updates when there are none."""
    # Imported here: the train command reads its flags and flagfile without loading a backend.
    import keras

    rate, factor = train_config.learning_rate, train_config.decay_factor
    milestones = train_config.lr_milestones
    if not milestones:
        return keras.optimizers.schedules.ExponentialDecay(rate, train_config.decay_every, factor,
                                                           staircase=True)
    # PiecewiseConstantDecay keeps values[k] while step <= boundaries[k]: m - 1 makes the new
    # rate start at update m, as the staircase above does.
    return keras.optimizers.schedules.PiecewiseConstantDecay(
        [m - 1 for m in milestones], [rate * factor ** k for k in range(len(milestones) + 1)])
