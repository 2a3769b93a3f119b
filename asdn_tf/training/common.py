"""What the TensorFlow and JAX trainers share: the argument checks, the warm start from a
weights file, and the progress line."""

import pathlib

from absl import logging

from asdn_tf.data import data_folders
from asdn_tf.inference.weights_io import (BUNDLED, WEIGHTS_FOLDER, bundled_weights, load_model,
                                          read_sidecar)
from asdn_tf.io import progress
from asdn_tf.nn import config as config_lib
from asdn_tf.training.errors import TrainingError


def check_arguments(model, scale, mixed_precision):
    if model == "fsdn":
        if scale is None:
            raise TrainingError("--model=fsdn needs --scale, an integer >= 2, or several "
                                "(--scale=2,3,4: one head each)")
        try:
            config_lib.fsdn_scales(scale)
        except ValueError as error:
            raise TrainingError(f"--scale: {error}") from None
    if model not in ("asdn", "fsdn"):
        raise TrainingError(f"--model must be asdn or fsdn, got {model!r}")
    if mixed_precision not in ("none", "float16", "bfloat16"):
        raise TrainingError(f"--mixed_precision must be none, float16 or bfloat16, "
                            f"got {mixed_precision!r}")


def warm_start(network, init_from, model_config, model):
    """Initialises `network` from the weights file `init_from`: an FSDN from an ASDN's trunk
    (`model.init_from_asdn`), anything else weight for weight."""
    # float32, the precision the network's weights are kept in, whatever "auto" picks here.
    source = load_model(init_from, preset=None if read_sidecar(init_from) else model_config,
                        precision="float32")
    from asdn_tf.nn.model import ASDN, init_from_asdn
    if model == "fsdn" and isinstance(source, ASDN):
        init_from_asdn(network, source)
    else:
        network.set_weights(source.get_weights())
    logging.info("initialised from %s", init_from)


def format_eta(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def progress_line(step, total, loss, learning_rate, rate):
    eta = format_eta((total - step) / rate) if rate > 0 else "?"
    progress.bar(log=True)(step, total, f"loss {loss:.4f} lr {learning_rate:.2e} "
                                        f"{rate:.2f} steps/s ETA {eta}")


def resolve_init_from(value):
    """The weights file --init_from names: a bundled model by name (weights_io.BUNDLED, e.g.
    "default"), or a path; a relative path not found from the working directory is looked up
    from the folder that holds the package (the repository root, or site-packages), so
    `asdn_tf/weights/...` works from anywhere.

    Raises:
        TrainingError: no such file.
    """
    if value in BUNDLED:
        path = bundled_weights(value)
        if not path.is_file():
            raise TrainingError(f"--init_from={value}: no {value} weights are bundled in this "
                                f"install ({path})")
        return path
    path = pathlib.Path(value)
    beside_package = WEIGHTS_FOLDER.parent.parent / path
    if not path.is_file() and not path.is_absolute() and beside_package.is_file():
        return beside_package
    if not path.is_file():
        raise TrainingError(f"--init_from weights not found: {value} (looked in "
                            f"{pathlib.Path.cwd()}; a bundled model is named by one of "
                            f"{', '.join(BUNDLED)})")
    return path


def check_validation_dir(folder):
    if not pathlib.Path(folder).is_dir():
        raise TrainingError(f"--validation_dir {data_folders.missing_message(folder)}, or pass "
                            "--validate_every=0")
