"""What a user gets from `pip install -e .` (no test extras) and from the wheel, each checked in
a fresh virtual environment that does not see this interpreter's packages.

The environment installs from the package index (about a minute on 2 cores: TensorFlow is a
570 MB download), so those tests carry the `install` mark; the README's test command, which
CI runs, includes them (`-m "not install"` leaves them out of a quick local run). This
interpreter's pip installs into it (`pip --python`: the venv needs no pip of its own) without
compiling the 8,000 modules it unpacks (`--no-compile`): the venv's processes compile what they
import, once, into a cache beside it (PYTHONPYCACHEPREFIX). The source
is a copy of the repository's files as a fresh clone has them, so no build output of the
working tree reaches the wheel. A quick test checks that `import asdn_tf` itself loads no
TensorFlow.
"""

import os
import pathlib
import shutil
import subprocess
import sys
import textwrap
import typing
import venv
import zipfile

import numpy as np
import pytest
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[1]
PIP_TIMEOUT = 900
RUN_TIMEOUT = 300


def _environment(pycache=None):
    """This process's environment, less what would let the venv see another installation;
    with `pycache`, its processes write the modules they compile there (PYTHONPYCACHEPREFIX)."""
    env = {name: value for name, value in os.environ.items()
           if name not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")
           and not name.startswith("PYTEST")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    if pycache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def _run(argv, cwd, timeout=RUN_TIMEOUT, pycache=None):
    result = subprocess.run([str(arg) for arg in argv], cwd=cwd, env=_environment(pycache),
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (f"{' '.join(map(str, argv))} exited {result.returncode}:\n"
                                    f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def _repository_files():
    """The files a clone of this working tree has: tracked and not-ignored untracked ones."""
    try:
        listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                                  "--exclude-standard"], cwd=ROOT, capture_output=True,
                                 check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git is needed to list the repository's files")
    return [path for path in listing.decode().split("\0") if path and (ROOT / path).is_file()]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clone") / "asdn_tf"
    for relative in _repository_files():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copy2(ROOT / relative, folder / relative)
        except FileNotFoundError:  # removed since the listing (a running job's file)
            pass
    return folder


class _Venv(typing.NamedTuple):
    python: pathlib.Path
    bin_dir: pathlib.Path
    work: pathlib.Path  # a folder outside the source
    pycache: pathlib.Path

    def run(self, argv, cwd, timeout=RUN_TIMEOUT):
        return _run(argv, cwd, timeout, self.pycache)

    def pip(self, *args, cwd, timeout=PIP_TIMEOUT):
        return self.run([sys.executable, "-m", "pip", "--python", self.python, *args], cwd,
                        timeout)


@pytest.fixture(scope="module")
def plain_env(tmp_path_factory, source):
    """A `_Venv` where `pip install -e .` ran in `source`."""
    folder = tmp_path_factory.mktemp("venv")
    venv.create(folder / "env")
    bin_dir = folder / "env" / "bin"
    environment = _Venv(bin_dir / "python", bin_dir, folder / "work", folder / "pycache")
    environment.pip("install", "-q", "--no-compile", "-e", ".", cwd=source)
    environment.work.mkdir()
    return environment


@pytest.mark.install
def test_plain_install_trains_on_div2k_without_the_test_extras(plain_env, tmp_path):
    script = textwrap.dedent(f"""
        import importlib.util

        import tensorflow_datasets as tfds

        from asdn_tf.data import pipeline as data
        from asdn_tf.nn import config
        from asdn_tf.data.config import DataConfig

        extras = [name for name in ("pytest", "nbclient", "tensorflow_serving")
                  if importlib.util.find_spec(name)]
        assert not extras, f"the plain environment sees test extras: {{extras}}"
        # Preparing DIV2K (tfds.load on first use) starts by reading the checksums of the
        # archives it downloads, through the builder's source folder: the step that needs
        # importlib_resources.
        builder = tfds.builder("div2k", data_dir={str(tmp_path / "tfds")!r})
        assert any(url.endswith("DIV2K_train_HR.zip") for url in builder.url_infos)
        with tfds.testing.mock_data(num_examples=4):
            batch = next(iter(data.training_dataset(DataConfig(
                sources=("tfds:div2k",), patch_size=8, batch_size=2))))
        assert batch["hr"].shape[0] == 2, batch["hr"].shape
        print("div2k ok")
    """)
    assert "div2k ok" in plain_env.run([plain_env.python, "-c", script], plain_env.work).stdout


@pytest.mark.install
def test_wheel_holds_weights_flagfiles_and_serving_client(plain_env, source, tmp_path):
    python, bin_dir, work = plain_env.python, plain_env.bin_dir, plain_env.work
    plain_env.pip("wheel", "-q", "--no-deps", "-w", tmp_path, ".", cwd=source)
    (wheel,) = tmp_path.glob("asdn_tf-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    data = next(name.split("/share/")[0] for name in names if "/share/asdn_tf/" in name)
    expected = {"asdn_tf/__init__.py", "asdn_tf/cli/upscale.py", "asdn_tf/train.py",
                *(f"asdn_tf/weights/{path.name}" for path in (source / "asdn_tf" / "weights")
                  .iterdir() if path.name.endswith((".weights.h5", ".json"))),
                "asdn_tf/demo/page.html",
                f"{data}/share/asdn_tf/serving/client.py",
                f"{data}/share/asdn_tf/serving/models.config",
                *(f"{data}/share/asdn_tf/configs/{path.name}"
                  for path in (source / "configs").glob("*.txt"))}
    assert expected <= names, sorted(expected - names)
    assert not [name for name in names if name.startswith(("tests/", "bench/", "training/"))]

    # Installed over the editable install (same dependencies), used from another folder.
    plain_env.pip("install", "-q", "--no-deps", "--force-reinstall", "--no-compile", wheel,
                  cwd=work)
    script = textwrap.dedent("""
        import pathlib, sys

        import asdn_tf

        assert "site-packages" in asdn_tf.__file__, asdn_tf.__file__
        share = pathlib.Path(sys.prefix) / "share" / "asdn_tf"
        assert (share / "configs" / "tiny.txt").is_file() and (share / "serving" / "client.py").is_file()
        print(asdn_tf.__version__)
    """)
    version = plain_env.run([python, "-c", script], work).stdout.split()[-1]
    assert version == _source_version(source)
    assert plain_env.run([bin_dir / "asdn-upscale", "--version"], work).stdout.split() == [
        "asdn-upscale", version]
    photo = work / "photo.png"
    Image.fromarray(np.full((24, 20, 3), 128, np.uint8)).save(photo)
    plain_env.run([bin_dir / "asdn-upscale", f"--input={photo}", f"--output={work / 'big.png'}",
                   "--scale=2"], work)
    assert (work / "big.png").is_file()


def _source_version(source):
    for line in (source / "asdn_tf" / "__init__.py").read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=")[1].strip().strip("\"'")
    raise AssertionError("asdn_tf/__init__.py has no __version__")


@pytest.mark.slow
def test_importing_the_package_loads_no_tensorflow():
    """`import asdn_tf` (as `asdn-upscale --help` does first) is quick; each public name loads
    its module on first use; it sets no environment variable, and the commands turn
    TensorFlow's C++ start-up log off unless the user set it."""
    script = textwrap.dedent("""
        import os, sys

        import asdn_tf

        assert "tensorflow" not in sys.modules and "keras" not in sys.modules
        assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ  # the commands set it, not the library
        from absl import logging as absl_logging
        assert not absl_logging.get_absl_logger().filters
        import asdn_tf.cli.upscale
        assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
        assert set(asdn_tf.__all__) <= set(dir(asdn_tf))
        missing = [name for name in asdn_tf.__all__ if getattr(asdn_tf, name, None) is None]
        assert not missing, missing
        from asdn_tf import upscale
        from asdn_tf.cli import evaluate
        assert callable(upscale) and evaluate.__name__ == "asdn_tf.cli.evaluate"
        print(asdn_tf.__version__)
    """)
    env = {**_environment(), "PYTHONPATH": str(ROOT)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-1] == _source_version(ROOT)
