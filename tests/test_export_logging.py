"""`python -m asdn_tf.export saved_model` prints its summary, not TensorFlow's INFO log."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_saved_model_export_logs_no_info_lines(tiny_model, tmp_path):
    weights = tmp_path / "asdn.weights.h5"
    tiny_model.save_weights(weights)
    output = tmp_path / "asdn" / "1"
    result = subprocess.run(
        [sys.executable, "-m", "asdn_tf.export", "saved_model", f"--output_dir={output}",
         f"--weights={weights}", "--preset=tiny"],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(f"wrote {output}")
    # Lines TF's C++ runtime writes at import, before any of the command's code runs, are
    # not the command's; absl's Python INFO lines ("I1207 ... signature_serialization.py")
    # are.
    logged = [line for line in result.stderr.splitlines()
              if line[:1] == "I" and ".py:" in line.split("]")[0]]
    assert logged == [], logged[:3]
