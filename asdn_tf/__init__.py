"""asdn_tf: ASDN arbitrary-scale super-resolution in TensorFlow / Keras 3.

Example:
    >>> import asdn_tf
    >>> model = asdn_tf.build_model("tiny")
    >>> big = asdn_tf.upscale(image, 3.3, model=model)

The public names load their module (and TensorFlow) on first use, so `import asdn_tf` and
`asdn-upscale --help` start quickly.
"""

import importlib as _importlib
import logging as _logging
import os as _os

from absl import logging as _absl_logging

__version__ = "0.1.0"

# Every submodule imports TensorFlow, and this runs first. Its C++ log would otherwise print
# start-up lines users read as errors ("failed call to cuInit" on a machine without a GPU, the
# CPU-instruction notice); a user's own setting wins. Python errors are raised as before.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# TensorFlow's Python INFO records, which absl's command lines would show.
if _logging.getLogger("tensorflow").level == _logging.NOTSET:
    _logging.getLogger("tensorflow").setLevel(_logging.WARNING)
# TensorFlow's checkpoint writer logs "Sharding callback duration" through absl at every save,
# where the training's own progress is logged too: only that record is dropped.
_absl_logging.get_absl_logger().addFilter(
    lambda record: not str(record.msg).startswith("Sharding callback duration"))

_EXPORTS = {
    "ModelConfig": "asdn_tf.nn.config",
    "PRESETS": "asdn_tf.nn.config",
    "preset": "asdn_tf.nn.config",
    "upscale": "asdn_tf.inference.engine",
    "upscale_tensor": "asdn_tf.inference.engine",
    "ASDN": "asdn_tf.nn.model",
    "FSDN": "asdn_tf.nn.model",
    "build_fsdn": "asdn_tf.nn.model",
    "build_model": "asdn_tf.nn.model",
    "init_from_asdn": "asdn_tf.nn.model",
    "load_model": "asdn_tf.inference.weights_io",
    "load_pretrained": "asdn_tf.inference.weights_io",
    "upscale_file": "asdn_tf.inference.files",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    """Loads a public name from its module on first use (PEP 562)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'asdn_tf' has no attribute {name!r}")
    value = getattr(_importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted({*(name for name in globals() if not name.startswith("_")), *_EXPORTS,
                   "__version__"})
