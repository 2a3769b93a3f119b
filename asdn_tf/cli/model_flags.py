"""The flags that choose a model, defined once for the commands that run one (`asdn-upscale`,
evaluate, export): --weights (a file), --preset (its config when it has no sidecar), --model
(a bundled model) and --precision, and the model they choose; --fsdn, what runs the integer
part of a scale (`asdn_tf.upscale`'s fsdn)."""

import pathlib

from absl import flags

from asdn_tf.inference import precision as precision_lib
from asdn_tf.inference import weights_io
from asdn_tf.nn import config


def define_model_flags(weights, preset, model=None, precision=None, flag_values=flags.FLAGS,
                       fsdn=False):
    """Defines --weights and --preset and, where their help is given, --model and --precision,
    each with the command's help text, and with `fsdn` --fsdn (`FSDN_HELP`); returns the
    flags."""
    defined = [flags.DEFINE_string("weights", None, weights, flag_values=flag_values),
               flags.DEFINE_string("preset", None, preset, flag_values=flag_values)]
    if model is not None:
        defined.append(flags.DEFINE_string("model", None, model, flag_values=flag_values))
    if precision is not None:
        defined.append(flags.DEFINE_enum("precision", "auto",
                                         list(precision_lib.PRECISION_CHOICES), precision,
                                         flag_values=flag_values))
    if fsdn:
        defined.append(flags.DEFINE_string("fsdn", "auto", FSDN_HELP, flag_values=flag_values))
    return defined


def check_model_choice(weights=None, preset=None, name=None):
    """Raises ValueError (FileNotFoundError for a missing file), naming the flags, unless they
    choose one model: a weights file (with its preset) or a bundled model (by name or by
    default). Cheap, without TensorFlow: what remains to find when the model loads is weights
    that do not fit their preset and a .keras file that does not load."""
    if weights and name:
        raise ValueError("give --model (a bundled model) or --weights (a file), not both")
    if preset and not weights:
        raise ValueError("--preset needs --weights (the bundled weights carry their config)")
    if name:
        weights_io.bundled_weights(name)
    if preset:
        config.preset(preset)
    if weights:
        if not pathlib.Path(weights).is_file():
            raise FileNotFoundError(f"weights file not found: {weights}")
        if pathlib.Path(weights).suffix != ".keras":
            weights_io.read_sidecar(weights)


def load_chosen_model(weights=None, preset=None, name=None, precision="auto", shared=False):
    """The model the flags choose, computing in `precision`: the weights file, else the bundled
    model `name` ("default" by default; with `shared`, the process's shared copy of `name`, by
    default `weights_io.UPSCALE_MODEL`)."""
    check_model_choice(weights, preset, name)
    if weights:
        return weights_io.load_model(weights, preset, precision=precision)
    if shared:
        return weights_io.shared_pretrained(precision, name)
    return weights_io.load_pretrained(name or "default", precision)


FSDN_HELP = ("What runs the integer part of a scale (x3.3 = x3 then x1.1): auto, the FSDN paired "
             "with the bundled model where the package ships one; none, the model's x2 "
             "recursion alone (the paper's); or an FSDN .weights.h5 file with its sidecar.")


def check_fsdn_choice(value):
    """Raises ValueError (FileNotFoundError for a missing file) unless --fsdn is auto, none or
    an FSDN weights file by its sidecar; cheap, without TensorFlow."""
    if value in ("auto", "none"):
        return
    if not pathlib.Path(value).is_file():
        raise FileNotFoundError(f"--fsdn: weights file not found: {value} (or give auto or none)")
    if weights_io.read_sidecar(value).get("model") != "fsdn":
        raise ValueError(f"--fsdn: {value} is not an FSDN (its sidecar does not say "
                         '"model": "fsdn")')


def load_chosen_fsdn(value, weights=None, name=None, precision="auto"):
    """The FSDN --fsdn chooses, or None: a file; with auto, the one paired with the bundled
    model `name` (none with --weights: a model of your own has no pair)."""
    check_fsdn_choice(value)
    if value == "none" or (value == "auto" and weights):
        return None
    if value == "auto":
        return weights_io.shared_fsdn(precision, name)
    return weights_io.load_model(value, precision=precision)
