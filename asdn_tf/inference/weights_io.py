"""Weights files: loading a user's `.weights.h5` / `.keras` file, and the models bundled in the
package.

A weights file may have a JSON sidecar (`NAME.json` beside `NAME.weights.h5`) whose
"model_config" says how to build the network; otherwise a preset must be named. Every loader
computes in precision "auto" unless told otherwise (`asdn_tf.inference.precision`).

Keras is imported when a network is built, not with this module: the upscale command checks
sidecars before it needs TensorFlow.

Example:
    >>> model = load_model("runs/cpu/best.weights.h5")   # sidecar gives the config
    >>> model = load_pretrained()                         # the weights inside the package
    >>> model = load_pretrained(precision="float32")      # the benchmark tables' precision
"""

import json
import os
import pathlib
import threading

from asdn_tf.io import errors
from asdn_tf.nn import config as config_lib
from asdn_tf.inference import precision as precision_lib

WEIGHTS_FOLDER = pathlib.Path(__file__).parents[1] / "weights"
PACKAGE_WEIGHTS = WEIGHTS_FOLDER / "default.weights.h5"
# The models bundled in the package, by name: "default" is trained on the benchmark's bicubic
# (the literature's protocol), "photo" on a random mix of resizing kernels, blur, noise and JPEG
# (real photographs; docs/photos.md compares them).
BUNDLED = ("default", "photo")
# What `asdn-upscale` and `asdn_tf.upscale` use when no model is named: real inputs are seldom
# made the benchmark's way, and on Set5/Set14 x2-x4 "photo" is at worst 0.27 dB below bicubic
# under other degradations where "default" is up to 3.2 dB below (docs/photos.md). The
# benchmark commands (evaluate, export) use "default".
UPSCALE_MODEL = "photo"

# The FSDN each bundled model pairs with for the integer part of a scale (`asdn_tf.upscale`'s
# fsdn="auto", docs/method.md): `asdn_tf/weights/NAME.weights.h5`, holding the heads for the
# factors where it measured better than the model alone (docs/training.md).
BUNDLED_FSDN = {"default": "fsdn_default", "photo": "fsdn_photo"}

_SHARED = {}
_SHARED_LOCK = threading.Lock()


def sidecar_path(weights_path):
    """`run/best.weights.h5` → `run/best.json`; `model.keras` → `model.json`."""
    name = os.fspath(weights_path)
    for suffix in (".weights.h5", ".keras", ".h5"):
        if name.endswith(suffix):
            return pathlib.Path(name[: -len(suffix)] + ".json")
    return pathlib.Path(name + ".json")


def read_sidecar(weights_path):
    """The sidecar's dict, or {} when there is none.

    What loading reads is checked: the JSON is an object, "model" is "asdn" or "fsdn", an
    FSDN's "scale" is an integer in [2, config.MAX_FSDN_SCALE], and "model_config" is an object
    of ModelConfig fields, each in its range (`config.MODEL_RANGES`), of a bounded cost.
    Other keys are the training run's record (steps, data, scores) and are not checked.

    Raises:
        ValueError: one line naming the sidecar and what is wrong with it.
    """
    path = sidecar_path(weights_path)
    if not path.exists():
        return {}
    try:
        sidecar = json.loads(path.read_text())
        problem = _sidecar_problem(sidecar)
    except RecursionError:  # json's parser recurses once per level of nesting
        raise ValueError(f"cannot read the weights sidecar {path}: its JSON is nested too "
                         "deeply") from None
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read the weights sidecar {path}: {errors.first_line(error)}") \
            from None
    if problem:
        raise ValueError(f"weights sidecar {path} {problem}")
    return sidecar


def _sidecar_problem(sidecar):
    """What is wrong with a sidecar's parsed JSON, or None."""
    if not isinstance(sidecar, dict):
        return f"must hold a JSON object, not {_json_type(sidecar)}"
    model = sidecar.get("model", "asdn")
    if model not in ("asdn", "fsdn"):
        return f'has "model": {json.dumps(model)}; expected "asdn" or "fsdn"'
    scale = sidecar.get("scale")
    if model == "fsdn":
        try:
            config_lib.fsdn_scales(scale)
        except ValueError:
            return (f'has "scale": {json.dumps(scale)[:80]}; an FSDN needs an integer scale in '
                    f"[2, {config_lib.MAX_FSDN_SCALE}] (or a list of distinct ones)")
    if "model_config" not in sidecar:
        return None
    values = sidecar["model_config"]
    if not isinstance(values, dict):
        return f'has "model_config": {_json_type(values)}; expected an object of model ' \
               "config fields"
    try:
        config_lib.ModelConfig.from_dict(values)
    except (TypeError, ValueError) as error:
        return f'has a bad "model_config": {errors.first_line(error)}'
    return None


def _json_type(value):
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def load_model(weights, preset=None, fsdn_scale=None, precision="auto"):
    """Builds the network and loads `weights` (`.weights.h5` or `.keras`).

    Args:
        weights: path to the file.
        preset: preset name or ModelConfig; by default the sidecar's config, else "default".
        fsdn_scale: int, expect an FSDN of this scale. Without it an FSDN is built when the
            sidecar says {"model": "fsdn", "scale": S} (as training writes), else an ASDN.
        precision: "auto" (bfloat16 where the hardware runs it fast, see
            `precision.auto_precision`), "float32" or "bfloat16" (see `precision.PRECISIONS`).

    A `.keras` file is loaded with `safe_mode=True`: one that would run code (a saved lambda) is
    refused rather than executed.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file does not fit the preset or scale, is not a weights file, or its
            sidecar is malformed.
    """
    import keras

    from asdn_tf.nn.model import FSDN, build_fsdn, build_model
    precision = precision_lib.resolve_precision(precision)
    path = pathlib.Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".keras":
        try:
            model = keras.saving.load_model(path, safe_mode=True)
        except Exception as error:  # Keras raises many types for a bad archive.
            raise ValueError(f"cannot load {path} as a .keras model: {errors.first_line(error)}") \
                from None
    else:
        sidecar = read_sidecar(path)
        saved_scale = sidecar.get("scale") if sidecar.get("model") == "fsdn" else None
        saved_scales = config_lib.fsdn_scales(saved_scale) if saved_scale else ()
        if fsdn_scale and saved_scales and fsdn_scale not in saved_scales:
            raise ValueError(f"{path} is an FSDN for x{', x'.join(map(str, saved_scales))} "
                             f"(its sidecar), not x{fsdn_scale}")
        scale = saved_scales or fsdn_scale
        if preset is None:
            preset = (config_lib.ModelConfig.from_dict(sidecar["model_config"])
                      if "model_config" in sidecar else "default")
        # Built in its precision at once: the weights stay float32 under a mixed policy.
        with precision_lib.dtype_policy(precision_lib.PRECISIONS[precision]):
            model = build_fsdn(preset, scale) if scale else build_model(preset)
            _load_weights(model, path, preset)
            if fsdn_scale and isinstance(model, FSDN):
                model = model.at_scale(fsdn_scale)
    if fsdn_scale:
        if not isinstance(model, FSDN):
            raise ValueError(f"{path} holds a {type(model).__name__}, not an FSDN")
        if model.scale != fsdn_scale:
            raise ValueError(f"{path} is an FSDN for x{model.scale}, not x{fsdn_scale}")
    return precision_lib.with_precision(model, precision)


def _load_weights(model, path, preset):
    from asdn_tf.nn.model import FSDN
    try:
        model.load_weights(path)
    except Exception as error:  # h5py and Keras raise many types for a mismatch.
        contents = _h5_contents(path)
        if contents is None:
            raise ValueError(f"{path} is not a readable .weights.h5 file: "
                             f"{errors.first_line(error)}") from None
        stored, refused = contents
        if refused:
            raise ValueError(f"{path} cannot be loaded: {refused}; Keras reads only numbers "
                             "stored in the file itself") from None
        named = isinstance(preset, str)
        label = f"preset {preset}" if named else "the given config"
        network = (f"an x{', x'.join(map(str, model.scales))} FSDN of {label}"
                   if isinstance(model, FSDN) else label)
        needed = model.count_params()
        reason = (f"the file holds {stored:,} parameters, the {'preset' if named else 'config'} "
                  f"needs {needed:,}" if stored != needed else errors.first_line(error))
        raise ValueError(f"weights {path} do not fit {network}: {reason}") from None


def bundled_weights(name="default"):
    """The path of the bundled model `name` (one of BUNDLED); raises ValueError naming them."""
    if name not in BUNDLED:
        raise ValueError(f"unknown model {name!r}; the bundled models are {', '.join(BUNDLED)}")
    return PACKAGE_WEIGHTS if name == "default" else WEIGHTS_FOLDER / f"{name}.weights.h5"


def load_pretrained(name="default", precision="auto"):
    """The bundled model `name` ("default": the benchmark's; "photo": for real photographs),
    computing in `precision` ("auto", "float32" or "bfloat16", as `load_model`)."""
    path = bundled_weights(name)
    if not path.exists():
        raise FileNotFoundError(
            f"no {name} weights are bundled in this install ({path}); "
            "pass a model or --weights")
    return load_model(path, precision=precision)


def shared_pretrained(precision="auto", name=None):
    """The bundled model `name` (by default UPSCALE_MODEL), loaded once per process and
    precision ("auto" is the precision it resolves to): what `asdn_tf.upscale` and
    `asdn_tf.upscale_file` use when given no model, so that later calls neither reload the
    weights nor trace the network again. Do not train or change it; `load_pretrained` gives a
    model of your own."""
    name = name or UPSCALE_MODEL
    precision = precision_lib.resolve_precision(precision)
    key = (bundled_weights(name), precision)
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = load_pretrained(name, precision)
        return _SHARED[key]


def shared_fsdn(precision="auto", name=None):
    """The FSDN paired with the bundled model `name` (BUNDLED_FSDN), loaded once per process
    and precision like `shared_pretrained`; None while the package ships none for it."""
    path = WEIGHTS_FOLDER / f"{BUNDLED_FSDN[name or UPSCALE_MODEL]}.weights.h5"
    if not path.is_file():
        return None
    precision = precision_lib.resolve_precision(precision)
    with _SHARED_LOCK:
        if (path, precision) not in _SHARED:
            _SHARED[path, precision] = load_model(path, precision=precision)
        return _SHARED[path, precision]


def _h5_contents(path):
    """(how many numbers a .weights.h5 file stores, what in it Keras refuses to read or None),
    or None when it is not an HDF5 file."""
    import h5py
    import numpy as np
    sizes, refused = [], []

    def visit(_, item):  # each object once, links not followed
        if isinstance(item, h5py.Group):
            for name in item:
                link = item.get(name, getlink=True)
                if isinstance(link, h5py.ExternalLink):
                    refused.append(f"{item.name.rstrip('/')}/{name} is a link to the file "
                                   f"{link.filename}")
                elif isinstance(link, h5py.SoftLink):
                    refused.append(f"{item.name.rstrip('/')}/{name} is a link")
        elif isinstance(item, h5py.Dataset):
            sizes.append(int(np.prod(item.shape)))
            if item.external:
                refused.append(f"its dataset {item.name} is stored in the external file "
                               f"{os.fsdecode(item.external[0][0])}")
            elif item.is_virtual:
                refused.append(f"its dataset {item.name} is a virtual dataset")

    try:
        with h5py.File(path, "r") as file:
            visit("/", file)
            file.visititems(visit)
    except OSError:
        return None
    return sum(sizes), (refused or [None])[0]
