"""Training: python -m asdn_tf.train --flagfile=configs/cpu.txt

The flags mirror `ModelConfig` (asdn_tf/nn/config.py), `DataConfig` (asdn_tf/data/config.py)
and `TrainConfig` (asdn_tf/training/config.py); `--preset` picks the base model config and
any model flag given explicitly overrides it. The TensorFlow loop is
asdn_tf/training/train_tf.py, the JAX one asdn_tf/training/train_jax.py.
"""

import dataclasses
import sys

from absl import app, flags

from asdn_tf.cli import config_flags
from asdn_tf.inference.weights_io import BUNDLED
from asdn_tf.io import errors
from asdn_tf.data.config import DataConfig
from asdn_tf.nn import config as config_lib
from asdn_tf.training.config import TrainConfig
from asdn_tf.training.errors import TrainingError


_CONFIG_CLASSES = (config_lib.ModelConfig, DataConfig, TrainConfig)


def define_flags(flag_values=flags.FLAGS):
    """Defines one flag per config field (`config_flags.define_config_flags`) plus the run's flags."""
    for cls in _CONFIG_CLASSES:
        config_flags.define_config_flags(cls, flag_values)
    fv = {"flag_values": flag_values}
    flags.DEFINE_string("preset", "default",
                        f"Base model config: {sorted(config_lib.PRESETS)}.", **fv)
    flags.DEFINE_string("output_dir", "runs/default",
                        "Checkpoints, logs and weights go here.", **fv)
    flags.DEFINE_enum("model", "asdn", ["asdn", "fsdn"],
                      "Any-scale ASDN or fixed-scale FSDN.", **fv)
    flags.DEFINE_list("scale", None, "FSDN's fixed integer scale, or several (2,3,4): one "
                      "head each on one shared trunk, one drawn per update.", **fv)
    flags.DEFINE_string("init_from", None,
                        "Warm-start weights (FSDN from ASDN): a .weights.h5 file, or the name "
                        f"of a model bundled in the package ({', '.join(BUNDLED)}).", **fv)
    flags.DEFINE_bool("restart", False,
                      "Start from step 0: the files of an earlier run in --output_dir "
                      "(checkpoints, state, curve, weights, logs) move to previous-<time>/ "
                      "there. Without it a run resumes, or stops when no checkpoint can be "
                      "restored.", **fv)
    flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multiworker", "tpu"],
                      "tf.distribute strategy.", **fv)
    flags.DEFINE_enum("mixed_precision", "none", ["none", "float16", "bfloat16"],
                      "Mixed-precision compute dtype.", **fv)
    flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"],
                      "XLA for the train step; auto: on only with a GPU.", **fv)


@dataclasses.dataclass(frozen=True)
class RunConfigs:
    """The three configs a run trains with."""
    model: config_lib.ModelConfig
    data: DataConfig
    train: TrainConfig


def configs_from_flags(values):
    """The `RunConfigs` of parsed flags; raises ValueError if invalid. The model config is the
    --preset's, with the model flags given explicitly over it."""
    model_config = config_flags.config_from_flags(config_lib.ModelConfig, values,
                                                base=config_lib.preset(values.preset))
    return RunConfigs(model=model_config,
                      data=config_flags.config_from_flags(DataConfig, values),
                      train=config_flags.config_from_flags(TrainConfig, values))


def run_from_flags(values):
    """Validates the parsed flags and trains; raises TrainingError, ValueError or OSError
    (a missing file, a full disk) with a one-line message for anything a user got wrong."""
    configs = configs_from_flags(values)
    if not configs.data.sources:
        raise TrainingError("--sources is empty: give image folders, globs or tfds:div2k")
    return _trainer_for_backend()(
        configs.model, configs.data, configs.train, output_dir=values.output_dir,
        model=values.model, scale=fsdn_scale(values.scale), init_from=values.init_from,
        strategy=values.strategy, jit_compile=values.jit_compile,
        mixed_precision=values.mixed_precision, preset_name=values.preset,
        restart=values.restart)


def fsdn_scale(items):
    """--scale's value: None, an int, or a tuple of ints (several heads); raises ValueError
    naming the flag for an item that is not an integer."""
    if not items:
        return None
    try:
        factors = tuple(int(item) for item in items)
    except ValueError:
        raise ValueError(f"--scale takes integers, got {','.join(items)!r}") from None
    return factors[0] if len(factors) == 1 else factors


def _trainer_for_backend():
    """The `train` function for Keras's backend (KERAS_BACKEND): train_tf's for TensorFlow,
    `asdn_tf.training.train_jax`'s (the same recipe, no TensorFlow needed) for JAX."""
    import keras
    backend = keras.backend.backend()
    if backend == "jax":
        from asdn_tf.training import train_jax
        return train_jax.train
    from asdn_tf.training import train_tf
    if backend != "tensorflow":
        raise TrainingError(f"training runs on Keras's TensorFlow or JAX backend, not {backend}: "
                            "set KERAS_BACKEND=tensorflow or jax")
    return train_tf.train


def main(argv):
    if len(argv) > 1:
        sys.exit(f"train: unexpected arguments {argv[1:]}")
    try:
        run_from_flags(flags.FLAGS)
    except (TrainingError, ValueError, OSError) as error:
        sys.exit(f"train: {error}")
    except KeyboardInterrupt:
        print(f"train: interrupted; the same command resumes from the newest checkpoint in "
              f"{flags.FLAGS.output_dir}", file=sys.stderr)
        sys.exit(130)


def run():
    define_flags()
    app.run(main, flags_parser=errors.one_line_flags_parser("train"))


if __name__ == "__main__":
    run()
