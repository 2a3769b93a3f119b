"""The notebooks run end to end, headless, with tiny settings (nbclient; any failing cell fails).

Each notebook reads its settings from environment variables in its `parameters` cell, and runs
in a temporary folder, so nothing is written into the repository. The kernel is this
interpreter, with the repository first on its path, so it imports the `asdn_tf` under test.
"""

import json
import os
import pathlib
import re
import sys
import tomllib

import keras
import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

import asdn_tf

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = ("quickstart.ipynb", "train_and_export.ipynb")
KERNEL = "asdn-tf-tests"
CELL_TIMEOUT = 600


@pytest.fixture
def kernel_environment(tmp_path, monkeypatch):
    """A kernel spec for this interpreter, found through JUPYTER_PATH, and a quiet TensorFlow."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "asdn_tf tests", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setenv("ASDN_NB_OUTPUT", str(tmp_path / "runs"))
    return tmp_path


def _execute(name, folder, notebook=None):
    """Runs the notebook (or `notebook`, as read from it) in `folder`; nbclient raises
    CellExecutionError on a failing cell, leaving the outputs so far in `notebook`."""
    notebook = notebook or nbformat.read(ROOT / "notebooks" / name, as_version=4)
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name=KERNEL,
                            resources={"metadata": {"path": str(folder)}})
    client.execute()
    return notebook


def _images(notebook):
    return sum("image/png" in output.get("data", {})
               for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs)


def _text(notebook):
    return "".join(output.get("text", "") + output.get("data", {}).get("text/plain", "")
                   for cell in notebook.cells if cell.cell_type == "code"
                   for output in cell.outputs)


@pytest.mark.slow
def test_quickstart_runs_without_datasets(kernel_environment, monkeypatch):
    """As on Colab: the sample photograph is the evaluation set."""
    keras.utils.set_random_seed(0)
    weights = kernel_environment / "tiny.weights.h5"
    asdn_tf.build_model("tiny").save_weights(weights)
    monkeypatch.delenv("ASDN_DATASETS", raising=False)
    monkeypatch.setenv("ASDN_NB_WEIGHTS", str(weights))
    monkeypatch.setenv("ASDN_NB_PRESET", "tiny")
    monkeypatch.setenv("ASDN_NB_PHOTO_SIDE", "96")
    monkeypatch.setenv("ASDN_NB_EVAL_SCALES", "2,3.5")
    notebook = _execute("quickstart.ipynb", kernel_environment)
    runs = kernel_environment / "runs"
    assert (runs / "asdn_savedmodel" / "1" / "saved_model.pb").is_file()
    assert (runs / "psnr_vs_scale.png").is_file()
    assert _images(notebook) == 4  # three comparisons and the PSNR plot
    assert "sample photograph" in _text(notebook)


@pytest.mark.slow
def test_train_and_export_runs_on_a_folder(kernel_environment, monkeypatch, datasets_dir):
    monkeypatch.setenv("ASDN_DATASETS", str(datasets_dir))
    # Validation and evaluation on Set5's two smallest images: the notebook's steps, not its
    # image count, are under test (all of Set5 tripled the cell's time).
    evaluation = kernel_environment / "eval"
    evaluation.mkdir()
    for name in ("butterfly.png", "woman.png"):
        (evaluation / name).write_bytes((datasets_dir / "Set5" / name).read_bytes())
    monkeypatch.setenv("ASDN_NB_EVAL", str(evaluation))
    for name, value in {"ASDN_NB_STEPS": "20", "ASDN_NB_FSDN_STEPS": "6", "ASDN_NB_PATCH": "8",
                        "ASDN_NB_BATCH": "2", "ASDN_NB_PHOTO_SIDE": "48",
                        "ASDN_NB_EVAL_SCALES": "2,3", "ASDN_NB_TENSORBOARD": "false"}.items():
        monkeypatch.setenv(name, value)
    notebook = _execute("train_and_export.ipynb", kernel_environment)
    runs = kernel_environment / "runs"
    assert json.loads((runs / "asdn" / "final.json").read_text())["steps"] == 20
    assert json.loads((runs / "fsdn_x2" / "final.json").read_text())["scale"] == 2
    assert (runs / "fsdn_x2.tflite").stat().st_size > 0
    assert _images(notebook) == 2  # the ASDN and the TFLite comparisons
    assert ": met)" in _text(notebook)  # the TFLite model agrees with the Keras FSDN


@pytest.mark.slow
@pytest.mark.parametrize("datasets", [None, "empty"])
def test_train_and_export_without_data_stops_with_one_line(kernel_environment, monkeypatch,
                                                            datasets):
    """No training images (no ASDN_DATASETS and no data/T91 beside the notebook's folder, or an
    empty ASDN_DATASETS) and no opt-in to DIV2K: one line says what to do, before any download.
    The notebook used to start DIV2K's 4 GB download and end in a ConnectionError traceback."""
    monkeypatch.delenv("ASDN_DATASETS", raising=False)
    folder = kernel_environment.parent / "data"  # REPO_DIR / "data": `..` of the notebook
    if datasets:
        folder = kernel_environment / datasets
        folder.mkdir()
        monkeypatch.setenv("ASDN_DATASETS", str(folder))
    for name in ("ASDN_NB_DATA", "ASDN_NB_EVAL", "ASDN_NB_DOWNLOAD_DIV2K"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TFDS_DATA_DIR", str(kernel_environment / "tensorflow_datasets"))
    notebook = nbformat.read(ROOT / "notebooks" / "train_and_export.ipynb", as_version=4)
    with pytest.raises(CellExecutionError):
        _execute("train_and_export.ipynb", kernel_environment, notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    failed = [index for index, cell in enumerate(code)
              if any(output.output_type == "error" for output in cell.outputs)]
    assert len(failed) == 1
    error = next(output for output in code[failed[0]].outputs if output.output_type == "error")
    assert len(error.traceback) == 1 and "\n" not in error.traceback[0].strip(), error.traceback
    line = error.traceback[0]
    assert line.startswith("no training images: ") and f"{folder / 'T91'} is missing" in line
    assert "DOWNLOAD_DIV2K = True" in line and "4.06 GB" in line
    assert all(cell.execution_count is None for cell in code[failed[0] + 1:])  # nothing ran
    assert not (kernel_environment / "tensorflow_datasets").exists()
    assert not (kernel_environment / "runs").exists()


def test_the_notebooks_extra_installs_jupyter():
    """`pip install -e ".[notebooks]"` (docs/install.md) brings Jupyter and the kernel."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    names = {re.split(r"[<>=\[ ]", requirement)[0] for requirement in extras["notebooks"]}
    assert {"jupyter", "ipykernel", "nbclient"} <= names
    assert 'pip install -e ".[notebooks]"' in (ROOT / "docs" / "install.md").read_text()


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_are_committed_clean(name):
    """No outputs, one `parameters` cell, no functions or classes (they belong in the library),
    an install cell that installs from the repository folder, not from an address, and the
    README names the notebook."""
    notebook = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code)
    assert sum("parameters" in cell.metadata.get("tags", []) for cell in code) == 1
    assert not [cell.source for cell in code if re.search(r"^\s*(def|class) ", cell.source, re.M)]
    assert "%pip install" in code[0].source and "REPO_DIR" in code[0].source
    # No public address exists: no placeholder or GitHub-style Colab link anywhere.
    readme = (ROOT / "README.md").read_text()
    text = nbformat.writes(notebook)
    for document in (readme, text):
        assert "OWNER" not in document and "colab.research.google.com/github" not in document
    assert f"notebooks/{name}" in readme
