"""asdn_tf: ASDN arbitrary-scale super-resolution in TensorFlow / Keras 3.

Example:
    >>> import asdn_tf
    >>> model = asdn_tf.build_model("tiny")
    >>> big = asdn_tf.upscale(image, 3.3, model=model)
"""

from asdn_tf.config import PRESETS, ModelConfig, preset
from asdn_tf.inference import upscale, upscale_tensor
from asdn_tf.model import ASDN, FSDN, build_fsdn, build_model, init_from_asdn
from asdn_tf.pretrained import load_model, load_pretrained
from asdn_tf.upscale_lib import upscale_file

__all__ = ["ASDN", "FSDN", "build_fsdn", "init_from_asdn", "ModelConfig", "PRESETS", "build_model", "load_model", "load_pretrained",
           "preset", "upscale", "upscale_file", "upscale_tensor"]
