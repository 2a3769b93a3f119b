"""Shared fixtures. The image sets (Set5, Set14, T91, BSD200) are found through ASDN_DATASETS
(default: the clone's data/, laid out in data/README.md); the MATLAB test vectors ship with the
tests (tests/testvectors)."""

import importlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap
import tomllib

import numpy as np
import pytest
from PIL import Image

from asdn_tf.io import fileio

# precision="auto" picks bfloat16 on CPUs with bfloat16 instructions; the tests compare outputs
# exactly across paths, so they pin it to float32 (child processes inherit it). The tests of
# the choice itself (test_precision.py) unset it.
os.environ.setdefault("ASDN_AUTO_PRECISION", "float32")

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATASETS = pathlib.Path(os.environ.get("ASDN_DATASETS", ROOT / "data"))
TESTVECTORS = ROOT / "tests" / "testvectors"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "install: builds fresh virtual environments from the package index (about "
        "two minutes); part of the README's test command, so CI runs it; deselect with "
        "-m 'not install'")
    config.addinivalue_line(
        "markers", "slow: takes more than a few seconds (training, export, subprocesses); the "
        "fast tier is -m 'not slow and not install'")


def _require(path):
    if (path / "Set5").is_dir():
        return path
    message = (f"{path} is missing (set ASDN_DATASETS to a folder holding Set5, Set14, T91 and "
               "BSD200; data/README.md)")
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def datasets_dir():
    return _require(DATASETS)


@pytest.fixture(scope="session")
def testvectors_dir():
    return TESTVECTORS


@pytest.fixture(scope="session")
def tiny_model():
    import asdn_tf
    import keras
    keras.utils.set_random_seed(0)
    return asdn_tf.build_model("tiny")


@pytest.fixture
def tiny_weights_file(tmp_path, tiny_model):
    """`tiny_model`'s weights as tmp_path/tiny.weights.h5, beside the sidecar (tiny.json) that
    names its config, as a command's --weights takes them."""
    weights = tmp_path / "tiny.weights.h5"
    tiny_model.save_weights(weights)
    (tmp_path / "tiny.json").write_text(json.dumps(
        {"model": "asdn", "model_config": tiny_model.model_config.to_dict()}))
    return weights


@pytest.fixture(scope="session")
def t91_subset(tmp_path_factory, datasets_dir):
    """Six T91 images in a folder of their own: a quick training source."""
    folder = tmp_path_factory.mktemp("t91")
    for path in sorted((datasets_dir / "T91").iterdir())[:6]:
        shutil.copy(path, folder / path.name)
    return folder


def make_run_data(root, datasets_dir, train_images):
    """A tiny training run's data in `root`: `train/` with the first `train_images` T91 images
    and `val/` with one 24×24 crop of Set5's baby (`--sources` and `--validation_dir`)."""
    from PIL import Image
    (root / "train").mkdir()
    (root / "val").mkdir()
    for path in sorted((datasets_dir / "T91").iterdir())[:train_images]:
        shutil.copy(path, root / "train" / path.name)
    with Image.open(datasets_dir / "Set5" / "baby.png") as image:
        image.crop((200, 200, 224, 224)).save(root / "val" / "crop.png")
    return root


# ---------------------------------------------------------------- helpers shared by test files
# Imported as `from conftest import ...`; pytest puts tests/ on sys.path (rootdir conftest).

def leftovers(folder):
    """What a killed write leaves: fileio's temporaries and TF's checkpoint writer's."""
    return [path for path in pathlib.Path(folder).rglob("*")
            if fileio.is_temporary(path) or path.name.endswith("_temp")
            or path.name.startswith("checkpoint.tmp")]


IMRESIZE_CASES = [("down_2", "input_butterfly", 1 / 2), ("down_3", "input_butterfly", 1 / 3),
                  ("down_4", "input_butterfly", 1 / 4), ("down_8", "input_butterfly", 1 / 8),
                  ("down_1_3", "input_butterfly", 1 / 1.3), ("down_1_7", "input_butterfly", 1 / 1.7),
                  ("up_2", "input_crop64", 2), ("up_1_5", "input_crop64", 1.5),
                  ("up_3", "input_crop64", 3), ("up_1_27", "input_crop64", 1.27)]


# Raises on `import tensorflow` in the child: what a machine without TensorFlow does.
BLOCK_TENSORFLOW = """
import sys
class _NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tensorflow_datasets"):
            raise ImportError(f"{name} is blocked")
sys.meta_path.insert(0, _NoTensorFlow())
"""


def run_jax(script, *args, devices=1):
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT)}
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
                            capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


# Every update at ×2: one program to compile, not one per level drawn.
ONE_LEVEL = (0.0,) * 10 + (1.0,)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for index in range(3):
        pixels = rng.integers(0, 256, (40, 48, 3), np.uint8)
        Image.fromarray(pixels).save(folder / f"{index}.png")
    return folder


# The command's module; the name `asdn_tf.upscale` is the function for arrays.
upscale_command = importlib.import_module("asdn_tf.cli.upscale")


@pytest.fixture(scope="module")
def weights(tmp_path_factory, tiny_model):
    path = tmp_path_factory.mktemp("weights") / "tiny.weights.h5"
    tiny_model.save_weights(path)
    return path


@pytest.fixture
def quick_model(monkeypatch, tiny_model, weights):
    """The command loads the tiny weights as the session's model: no rebuild and retrace per run.

    `test_cli_writes_the_same_image_as_the_python_api` checks the real loading gives the same.
    """
    load = upscale_command.load_upscale_model

    def quick(path=None, preset=None, precision="auto", name=None):
        if (path, preset, name) == (str(weights), "tiny", None) and precision != "bfloat16":
            return tiny_model
        return load(path, preset, precision, name)

    monkeypatch.setattr(upscale_command, "load_upscale_model", quick)


def _pixels(shape=(24, 32, 3), seed=0, dtype=np.uint8):
    peak = np.iinfo(dtype).max
    return np.random.default_rng(seed).integers(0, peak + 1, shape, dtype=dtype)


def _save(path, pixels=None, **options):
    Image.fromarray(_pixels() if pixels is None else pixels).save(path, **options)
    return path


def _cli(capsys, *args):
    status = upscale_command.run_cli(["upscale", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


def _files(folder):
    return sorted(p.name for p in pathlib.Path(folder).iterdir())


def _process(args, tmp_path):
    paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    return subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)


def _console_script(after=""):
    """What the `asdn-upscale` script that pyproject.toml declares runs, as a `python -c`
    program; `after` runs once it has exited. (tests/test_install.py runs the installed one.)"""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, function = scripts["asdn-upscale"].split(":")
    return (f"import sys; from {module} import {function}; sys.argv[0] = 'asdn-upscale'"
            f"\ntry:\n    {function}()\nfinally:\n    {after or 'pass'}")


# Runs in a child process, which measures its own peak memory (VmHWM) and the CPU time of each
# request (wall time on a busy test machine would measure the machine).
MEASURE_REQUESTS = """
import json, sys, time
import asdn_tf
from asdn_tf.cli.upscale import run_cli

def peak_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024

base = peak_mb()
for kind, args in json.loads(sys.argv[1]):
    began = time.process_time()
    try:
        result = (run_cli(["upscale", *args]) if kind == "cli"
                  else str(asdn_tf.upscale_file(*args)))
    except ValueError as error:
        result = str(error)
    print(json.dumps([result, time.process_time() - began, peak_mb() - base]), flush=True)
"""


def export_cli(*args):
    """`python -m asdn_tf.export ARGS` in this process (`run_cli`): (exit status, stdout,
    stderr). For tests that are not about the process boundary: no TensorFlow start-up."""
    import contextlib
    import io
    from asdn_tf.cli import export
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = export.run_cli(["export", *map(str, args)])
    return status, out.getvalue(), err.getvalue()


def train_in_process(args):
    """`python -m asdn_tf.train ARGS` in this process: None when it finished, else the one line
    `main` prints. Any other exception escapes: the command would print a traceback."""
    from absl import flags
    from asdn_tf.cli import train
    values = flags.FlagValues()
    train.define_flags(values)
    values(["train", *args])
    try:
        train.run_from_flags(values)
    except (train.TrainingError, ValueError, OSError) as error:
        return str(error)
    return None
