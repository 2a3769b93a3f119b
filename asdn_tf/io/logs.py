"""What a command's log shows: TensorFlow's start-up lines and per-checkpoint records hidden.

The commands call it (asdn_tf/cli/__init__.py, the demo) before TensorFlow loads;
`import asdn_tf` changes no environment variable and no logger.
"""

import logging
import os

from absl import logging as absl_logging


def _not_sharding_record(record):
    """False for TensorFlow's "Sharding callback duration" record, which its checkpoint writer
    logs through absl at every save, where the training's own progress is logged too."""
    return not str(record.msg).startswith("Sharding callback duration")


def quiet_tensorflow():
    """Hides TensorFlow's C++ log (lines users read as errors: "failed call to cuInit" on a
    machine without a GPU, the CPU-instruction notice) unless the user set
    TF_CPP_MIN_LOG_LEVEL, its Python INFO records unless the user set that logger's level, and
    the "Sharding callback duration" record. Python errors are raised as before. Takes effect
    on a TensorFlow not yet loaded; calling it again changes nothing more."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    tensorflow_logger = logging.getLogger("tensorflow")
    if tensorflow_logger.level == logging.NOTSET:
        tensorflow_logger.setLevel(logging.WARNING)
    absl_logger = absl_logging.get_absl_logger()
    if _not_sharding_record not in absl_logger.filters:
        absl_logger.addFilter(_not_sharding_record)
