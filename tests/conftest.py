"""Shared fixtures. The image sets (Set5, Set14, T91, BSD200) are found through ASDN_DATASETS
(default: the clone's data/, laid out in data/README.md); the MATLAB test vectors ship with the
tests (tests/testvectors)."""

import os
import pathlib
import shutil

import pytest

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
