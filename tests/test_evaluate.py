import csv
import json
import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import asdn_tf
from asdn_tf.cli import evaluate
from asdn_tf.evaluation import benchmark
from asdn_tf.io import errors, fileio

ROOT = pathlib.Path(__file__).resolve().parents[1]

# docs/protocol.md: MATLAB bicubic, PSNR / SSIM on Y.
LITERATURE = {
    ("Set5", 2): (33.66, 0.9299), ("Set5", 3): (30.39, 0.8682),
    ("Set5", 4): (28.42, 0.8104), ("Set5", 8): (24.40, 0.6580),
    ("Set14", 2): (30.24, 0.8688), ("Set14", 3): (27.55, 0.7742),
    ("Set14", 4): (26.00, 0.7027), ("Set14", 8): (23.10, 0.5660),
}


@pytest.mark.slow
def test_bicubic_reproduces_the_literature_table(datasets_dir):
    results = benchmark.evaluate(benchmark.load_sets(datasets_dir, ["Set5", "Set14"]),
                                [2, 3, 4, 8], "bicubic")
    measured = {(row["set"], int(row["scale"])): (row["psnr"], row["ssim"]) for row in results}
    assert measured.keys() == LITERATURE.keys()
    for key, (psnr, ssim) in LITERATURE.items():
        assert measured[key][0] == pytest.approx(psnr, abs=0.03), key
        assert measured[key][1] == pytest.approx(ssim, abs=0.002), key
    assert {row["set"]: row["images"] for row in results} == {"Set5": 5, "Set14": 14}


@pytest.mark.parametrize("scale,hr_size,lr_size", [
    (2, (12, 16), (6, 8)), (3, (12, 15), (4, 5)), (1.5, (13, 17), (9, 12))])
def test_degrade_crops_integer_scales_only(scale, hr_size, lr_size):
    hr, lr = benchmark.benchmark_pair(np.zeros((13, 17, 3), np.uint8), scale)
    assert hr.shape[:2] == hr_size
    assert lr.shape == (*lr_size, 3) and lr.dtype == np.uint8


def test_measure_keeps_gray_images_gray_and_the_hr_size(tiny_model):
    gray = np.random.default_rng(0).integers(0, 256, (40, 45), dtype=np.uint8)
    for method, model in (("bicubic", None), ("asdn", tiny_model)):
        psnr, ssim, sr = benchmark.measure(gray, 2.5, method, model)
        assert sr.shape == gray.shape and sr.dtype == np.uint8
        assert math.isfinite(psnr) and 0 < ssim <= 1


@pytest.fixture(scope="module")
def bad_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("sets")
    (root / "Empty").mkdir()
    (root / "Broken").mkdir()
    Image.new("RGB", (32, 32)).save(root / "Broken" / "fine.png")
    (root / "Broken" / "text.png").write_text("not an image")
    (root / "Small").mkdir()
    Image.new("RGB", (12, 12)).save(root / "Small" / "tiny.png")
    return root


@pytest.mark.parametrize("overrides,words", [
    ({"sets": ["Missing"]}, "Missing is missing: put the Missing images there"),
    ({"sets": ["Empty"]}, "no images in"),
    ({"sets": ["Broken"]}, "text.png"),
    ({"sets": ["Small"]}, "tiny.png"),
    ({"scales": ["1"]}, "greater than 1"),
    ({"scales": ["two"]}, "'two'"),
    ({"method": "nearest"}, "--method"),
    ({"method": ["bicubic", "nearest"]}, "one or more of bicubic, asdn, got 'nearest'"),
    ({"method": []}, "--method is empty"),
    ({"data_dir": None}, "ASDN_DATASETS"),
    ({"sets": []}, "--sets is empty"),
    ({"weights": "w.weights.h5"}, "--method=asdn"),
    ({"model_name": "photo"}, "--method=asdn"),
    ({"method": "asdn", "model_name": "sharp"}, "unknown model 'sharp'; the bundled models are"),
    ({"method": "asdn", "model_name": "photo", "weights": "w.weights.h5"}, "not both"),
    ({"method": "asdn", "preset": "tiny"}, "--preset needs --weights"),
    ({"method": "asdn", "weights": "missing.weights.h5"}, "not found"),
])
def test_run_rejects_bad_input_and_writes_nothing(bad_data, tmp_path, overrides, words):
    arguments = {"data_dir": bad_data, "sets": ["Small"], "scales": ["2"], "method": "bicubic",
                 "output_json": tmp_path / "out.json", **overrides}
    with pytest.raises((ValueError, OSError), match=words):
        evaluate.run(**arguments)
    assert not (tmp_path / "out.json").exists()


def test_every_missing_set_is_named_in_one_line(bad_data):
    with pytest.raises(FileNotFoundError) as caught:
        evaluate.run(bad_data, ["Set5", "Small", "Set14", "Set7"], ["2"])
    assert str(caught.value) == (
        f"{bad_data / 'Set5'}, {bad_data / 'Set14'} and {bad_data / 'Set7'} are missing: put "
        "the Set5, Set14 and Set7 images there (data/README.md says where to get them)")


def test_help_keeps_the_example_on_its_lines():
    # absl's --help prints the module docstring: a backslash continuation there, unescaped,
    # joined the example's two lines into one with a run of spaces.
    lines = evaluate.__doc__.splitlines()
    first = next(number for number, line in enumerate(lines) if "python -m asdn_tf" in line)
    assert lines[first].endswith("--sets=Set5,Set14 \\")
    assert lines[first + 1].strip().startswith("--scales=")


def test_run_rejects_weights_that_do_not_fit_the_preset(datasets_dir, tmp_path):
    asdn_tf.build_model("tiny").save_weights(tmp_path / "m.weights.h5")
    with pytest.raises(ValueError, match="do not fit preset default"):
        evaluate.run(datasets_dir, ["Set5"], ["2"], "asdn", weights=tmp_path / "m.weights.h5",
                     preset="default")


def _process(*args):
    return subprocess.run([sys.executable, "-m", "asdn_tf.evaluate", *map(str, args)], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=300)


class _Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def _cli(capsys, *args):
    """`python -m asdn_tf.evaluate ARGS` in this process (evaluate.run_cli): one TensorFlow
    start-up fewer per run. test_cli_error_is_one_line_and_nonzero runs the real process."""
    capsys.readouterr()
    status = evaluate.run_cli(["evaluate", *map(str, args)])
    out, err = capsys.readouterr()
    return _Result(status, out, err)


@pytest.mark.slow
def test_cli_error_is_one_line_and_nonzero(datasets_dir, tmp_path):
    result = _process(f"--data_dir={datasets_dir}", "--sets=Set5", "--scales=2,x3",
                      f"--output_json={tmp_path / 'out.json'}")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    # Lines before ours come from TensorFlow's native logging at import.
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("evaluate: ") and "'x3'" in lines[-1]
    assert sum(line.startswith("evaluate") for line in lines) == 1
    assert not (tmp_path / "out.json").exists()


def test_flag_errors_are_one_line(capsys):
    # absl prints two lines for a bad flag; the entry points use this parser instead.
    parse = errors.one_line_flags_parser("evaluate")
    with pytest.raises(SystemExit, match=r"^evaluate: Unknown command line flag 'no_such_flag'$"):
        parse(["evaluate", "--no_such_flag"])
    capsys.readouterr()
    assert evaluate.run_cli(["evaluate", "--no_such_flag"]) == 1
    assert evaluate.run_cli(["evaluate", "Set5"]) == 1
    assert capsys.readouterr() == ("", "evaluate: Unknown command line flag 'no_such_flag'\n"
                                       "evaluate: unexpected arguments Set5\n")


@pytest.mark.slow
def test_cli_bicubic_writes_json_csv_and_plot(capsys, datasets_dir, tmp_path):
    result = _cli(capsys, f"--data_dir={datasets_dir}", "--sets=Set5", "--scales=2",
                  f"--output_json={tmp_path / 'r.json'}", f"--output_csv={tmp_path / 'r.csv'}",
                  f"--plot={tmp_path / 'r.png'}")
    assert result.returncode == 0, result.stderr
    [row] = json.loads((tmp_path / "r.json").read_text())["results"]
    assert (row["set"], row["scale"], row["method"], row["images"]) == ("Set5", 2.0, "bicubic", 5)
    assert row["psnr"] == pytest.approx(33.66, abs=0.03)
    assert len(row["per_image"]) == 5
    with open(tmp_path / "r.csv", newline="") as stream:
        [csv_row] = list(csv.DictReader(stream))
    assert float(csv_row["psnr"]) == row["psnr"] and float(csv_row["ssim"]) == row["ssim"]
    assert f"{row['psnr']:.2f}/{row['ssim']:.4f}" in result.stdout
    with Image.open(tmp_path / "r.png") as plot:
        assert plot.format == "PNG" and plot.size[0] > 100
    assert not [path for path in tmp_path.rglob("*") if fileio.is_temporary(path)]


@pytest.mark.slow
def test_cli_asdn_with_saved_weights(capsys, datasets_dir, tmp_path, tiny_model):
    tiny_model.save_weights(tmp_path / "m.weights.h5")
    result = _cli(capsys, f"--data_dir={datasets_dir}", "--sets=Set5", "--scales=2",
                  "--method=asdn", f"--weights={tmp_path / 'm.weights.h5'}", "--preset=tiny",
                  f"--output_json={tmp_path / 'r.json'}", f"--save_images={tmp_path / 'sr'}")
    assert result.returncode == 0, result.stderr
    [row] = json.loads((tmp_path / "r.json").read_text())["results"]
    assert (row["method"], row["images"]) == ("asdn", 5)
    assert math.isfinite(row["psnr"]) and 0 < row["ssim"] <= 1
    with Image.open(tmp_path / "sr" / "asdn" / "Set5" / "x2" / "bird.png") as image:
        assert image.size == (288, 288)


@pytest.mark.slow
def test_cli_both_methods_give_the_comparison_and_one_plot(capsys, datasets_dir, tmp_path,
                                                            tiny_model):
    tiny_model.save_weights(tmp_path / "m.weights.h5")
    result = _cli(capsys, f"--data_dir={datasets_dir}", "--sets=Set5", "--scales=2,1.5",
                  "--method=bicubic,asdn", f"--weights={tmp_path / 'm.weights.h5'}",
                  "--preset=tiny", f"--output_json={tmp_path / 'r.json'}",
                  f"--plot={tmp_path / 'r.png'}")
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "r.json").read_text())["results"]
    assert [(row["method"], row["scale"]) for row in rows] == [
        ("bicubic", 2.0), ("bicubic", 1.5), ("asdn", 2.0), ("asdn", 1.5)]
    by = {(row["method"], row["scale"]): row for row in rows}
    assert "| scale | Set5 bicubic | Set5 asdn |" in result.stdout
    for scale in (1.5, 2.0):
        base, ours = by["bicubic", scale], by["asdn", scale]
        gain = round(ours["psnr"], 2) - round(base["psnr"], 2)
        assert (f"| ×{scale:g} | {base['psnr']:.2f} / {base['ssim']:.4f} | "
                f"**{ours['psnr']:.2f}** / {ours['ssim']:.4f} ({gain:+.2f}) |") in result.stdout
    lines = result.stdout.splitlines()
    assert lines[0].startswith("LR: bicubic (the literature's protocol")
    assert lines[1] == "| scale | Set5 bicubic | Set5 asdn |"
    assert sum(line.startswith("| scale") for line in lines) == 1  # one table, not two
    assert "evaluate: measuring 20 SR images (Set5 × 2 scales × bicubic/asdn)" in result.stderr
    with Image.open(tmp_path / "r.png") as plot:
        assert plot.format == "PNG"


def test_a_tiny_image_is_named_with_the_reason(tmp_path):
    (tmp_path / "Tiny").mkdir()
    Image.new("RGB", (3, 3)).save(tmp_path / "Tiny" / "dot.png")
    with pytest.raises(ValueError, match=r"dot.png at ×4: 3×3 pixels is too small for ×4: the "
                       r"protocol crops it to 0×0"):
        evaluate.run(tmp_path, ["Tiny"], ["4"], "bicubic")


def test_fsdn_weights_at_another_scale_are_refused_with_the_reason(datasets_dir):
    fsdn = asdn_tf.build_fsdn("tiny", scale=2)
    sets = benchmark.load_sets(datasets_dir, ["Set5"])
    with pytest.raises(ValueError, match=r"FSDN weights for ×2 only; measure them with "
                       r"--scales=2"):
        benchmark.evaluate(sets, [3], "asdn", fsdn)


@pytest.mark.slow
def test_other_degradations_are_named_in_the_table(capsys, datasets_dir, tmp_path):
    result = _cli(capsys, f"--data_dir={datasets_dir}", "--sets=Set5", "--scales=2",
                  "--degradation=bicubic,jpeg75", f"--output_json={tmp_path / 'r.json'}")
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "r.json").read_text())["results"]
    assert [row["degradation"] for row in rows] == ["bicubic", "jpeg75"]
    assert rows[1]["psnr"] < rows[0]["psnr"] - 0.5  # JPEG costs the bicubic upscale
    assert "LR: jpeg75 (the protocol's LR saved as JPEG quality 75)" in result.stdout
    assert "| scale | method  | LR      | Set5" in result.stdout
    bad = _cli(capsys, f"--data_dir={datasets_dir}", "--sets=Set5", "--degradation=sharpen")
    assert bad.returncode == 1 and bad.stderr == (
        "evaluate: unknown degradation 'sharpen'; choose one of bicubic, bicubic_noaa, "
        "jpeg75, blur_noise\n")


def test_commands_share_one_progress_bar(monkeypatch):
    import io
    from asdn_tf.io import progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert progress.bar("x", io.StringIO()) is None  # not a terminal: no bar
    stream = Terminal()
    progress.bar("evaluate", stream)(3, 8, "Set5 ×2 bird.png")
    assert stream.getvalue() == "\revaluate █████████··············· 3/8 Set5 ×2 bird.png\033[K"
    from asdn_tf.cli.upscale import progress as upscale_progress
    assert upscale_progress is progress and evaluate.progress is progress


def test_the_protocol_runs_without_tensorflow():
    """Crop, LR size, quantisation and the shaved Y-PSNR take their LR maker and super-resolver
    as arguments: a backend without TensorFlow (the JAX trainer) measures as evaluate does."""
    script = """
import sys
import numpy as np
from asdn_tf.evaluation import protocol
hr = np.random.default_rng(0).integers(0, 256, (13, 17, 3), dtype=np.uint8)
def make_lr(image, size):
    return image[:size[0], :size[1]]
def super_resolve(lr, size):
    return np.repeat(np.repeat(lr, 2, axis=0), 2, axis=1)[:size[0], :size[1]] / 255.0
cropped, sr = protocol.sr_image(hr, 2, make_lr, super_resolve)
print(cropped.shape, sr.shape, sr.dtype, protocol.lr_size(12, 16, 3))
print(round(protocol.y_psnr(sr, cropped, 2), 4) == round(protocol.y_psnr(sr, cropped, 2.0), 4))
print(sorted(name for name in ("tensorflow", "keras") if name in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["(12, 16, 3) (12, 16, 3) uint8 (4, 6)", "True", "[]"]
