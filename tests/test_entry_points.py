"""The package is itself wherever a command runs from."""

import importlib.metadata
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_a_folder_holding_a_clone_does_not_shadow_the_package(tmp_path):
    """python -m puts the working folder first on sys.path: from the folder that holds a clone
    named asdn_tf, the clone (no __init__.py at its root) would be a namespace package, and its
    data/ and serving/ folders would stand in for modules, unless the install puts the real
    package on sys.path (pyproject's package-dir)."""
    try:
        importlib.metadata.distribution("asdn_tf")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("asdn_tf is not installed (pip install -e .)")
    (tmp_path / "asdn_tf").symlink_to(ROOT, target_is_directory=True)
    code = ("import importlib.util, asdn_tf; print(asdn_tf.__file__); "
            "print(*(importlib.util.find_spec(f'asdn_tf.{name}').origin "
            "for name in ('data', 'export', 'train', 'evaluate')), sep='\\n')")
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=tmp_path, env=environment, timeout=120)
    assert result.returncode == 0, result.stderr
    origins = result.stdout.split()
    assert origins[0].endswith(os.path.join("asdn_tf", "__init__.py"))
    package = pathlib.Path(origins[0]).parent
    assert [pathlib.Path(origin).relative_to(package).as_posix() for origin in origins[1:]] == [
        "data/__init__.py", "export/__init__.py", "train.py", "evaluate.py"]
