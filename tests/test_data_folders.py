"""Commands that need images the repository cannot ship stop before any work with one line that
names the folder to fill and where its images come from."""

import os
import pathlib
import subprocess
import sys

import pytest

from asdn_tf.cli import evaluate
from asdn_tf.data import data_folders
from asdn_tf.nn import config
from asdn_tf.data.config import DataConfig
from asdn_tf.training.config import TrainConfig
from asdn_tf.training import train_tf

ROOT = pathlib.Path(__file__).resolve().parents[1]
SET5_LINE = "data/Set5 is missing: put the Set5 images there (data/README.md says where to get them)"


def test_missing_message_names_folder_contents_and_where_to_read():
    assert data_folders.missing_message("data/Set5") == SET5_LINE


def test_require_sources_passes_what_exists_globs_and_tfds(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    data_folders.require_sources([tmp_path, tmp_path / "a.png", tmp_path / "x/*.png",
                                  "tfds:div2k"])
    with pytest.raises(FileNotFoundError, match="T91 is missing: put the T91 images there"):
        data_folders.require_sources([tmp_path, tmp_path / "T91"])


def test_evaluate_names_the_missing_set(tmp_path):
    with pytest.raises(FileNotFoundError, match="Set14 is missing: put the Set14 images there"):
        evaluate.run(tmp_path, ["Set14"], ["2"], "bicubic", output_json=tmp_path / "out.json")
    assert not (tmp_path / "out.json").exists()


def test_training_stops_before_any_work_on_missing_sources(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data_config = DataConfig(sources=("data/T91",))
    train_config = TrainConfig(steps=1, validation_dir="data/Set5")
    with pytest.raises(FileNotFoundError, match="data/T91 is missing: put the T91 images"):
        train_tf.train(config.preset("tiny"), data_config, train_config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def _command(cwd, *args):
    """The last line on stderr of `python -m ARGS` run in `cwd`, which must fail cleanly."""
    env = {key: value for key, value in os.environ.items() if key != "ASDN_DATASETS"}
    result = subprocess.run([sys.executable, "-m", *map(str, args)], cwd=cwd,
                            env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    return result.stderr.strip().splitlines()[-1]


def test_check_data_stops_on_a_missing_folder_before_reading_the_others(tmp_path):
    (tmp_path / "data" / "Set14").mkdir(parents=True)
    line = _command(tmp_path, "asdn_tf.check_data", "data/Set14", "data/Set5", "data/T91")
    assert line == f"check_data: {SET5_LINE} (also missing: data/T91)"


# The shipped flagfiles and README commands, run where data/ holds no images (a fresh clone).
@pytest.mark.slow
@pytest.mark.parametrize("args,prefix", [
    (["asdn_tf.train", f"--flagfile={ROOT / 'configs' / 'tiny.txt'}", "--sources=.",
      "--output_dir=run"], "train: --validation_dir "),
    (["asdn_tf.evaluate", "--sets=Set5", "--scales=2", "--output_json=run/out.json"],
     "evaluate: "),
    (["asdn_tf.export", "tflite", "--scale=2", "--images=data/Set5", "--output=run/x2.tflite",
      f"--weights={ROOT / 'asdn_tf' / 'weights' / 'default.weights.h5'}"], "export: "),
])
def test_commands_name_the_folder_to_fill(tmp_path, args, prefix):
    assert _command(tmp_path, *args).startswith(prefix + SET5_LINE)
    assert not (tmp_path / "run").exists()
