import os
import pathlib
import subprocess
import sys

import pytest
from PIL import Image

from asdn_tf.cli.check_data import format_report, inspect_folder

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def bad_folder(tmp_path):
    Image.new("RGB", (120, 80)).save(tmp_path / "fine.png")
    Image.new("L", (40, 200)).save(tmp_path / "narrow.png")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "text.png").write_text("not an image")
    (tmp_path / "notes.txt").write_text("ignored: not an image name")
    return tmp_path


def test_shared_sets(datasets_dir):
    set5 = inspect_folder(datasets_dir / "Set5", patch_size=96)
    assert (set5.count, dict(set5.modes), set5.small, set5.problem()) == (5, {"RGB": 5}, [], None)
    set14 = inspect_folder(datasets_dir / "Set14", patch_size=300)
    assert set14.count == 14 and dict(set14.modes) == {"RGB": 13, "L": 1}
    assert ("face.png", 276, 276) in set14.small
    text = format_report(set14)
    assert "14 images" in text and "RGB 13, L 1" in text and "max 720×576 (barbara.png)" in text


def test_unreadable_and_small_files_are_named(bad_folder):
    report = inspect_folder(bad_folder, patch_size=64)
    assert report.count == 2 and dict(report.modes) == {"RGB": 1, "L": 1}
    assert [name for name, _ in report.unreadable] == ["empty.png", "nested/text.png"]
    assert report.small == [("narrow.png", 40, 200)]
    assert report.problem() == "2 unreadable file(s)"
    text = format_report(report)
    assert "empty.png (empty file)" in text and "nested/text.png" in text
    assert "narrow.png (40×200)" in text


def test_missing_and_empty_folders(tmp_path):
    assert inspect_folder(tmp_path / "missing").problem() == "not found"
    assert inspect_folder(tmp_path).problem() == "no images"


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "asdn_tf.check_data", *map(str, args)],
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=300)


def test_cli_fails_in_one_line_naming_the_bad_folder(datasets_dir, bad_folder):
    result = _cli(datasets_dir / "Set5", bad_folder)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "empty.png (empty file)" in result.stdout and "Set5: 5 images" in result.stdout
    # Lines before ours come from TensorFlow's native logging at import.
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("check_data: 1 of 2") and str(bad_folder) in lines[-1]
    assert sum(line.startswith("check_data") for line in lines) == 1
