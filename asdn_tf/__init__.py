"""asdn_tf: ASDN arbitrary-scale super-resolution in TensorFlow / Keras 3.

Example:
    >>> import asdn_tf
    >>> model = asdn_tf.build_model("tiny")
    >>> big = asdn_tf.upscale(image, 3.3, model=model)

The public names load their module (and TensorFlow) on first use, so `import asdn_tf` and
`asdn-upscale --help` start quickly. Importing it sets nothing global: the commands quiet
TensorFlow's logs (asdn_tf/io/logs.py).
"""

import importlib as _importlib

__version__ = "0.1.0"

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
