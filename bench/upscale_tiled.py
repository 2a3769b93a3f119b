"""Time and peak memory of `upscale_file` with the default preset, one child process per case.

    python -m bench.upscale_tiled                          # 512² at ×2, ×3.3, ×4; 2048² at ×4
    python -m bench.upscale_tiled --cases=2048x4 --json=bench.json
    python -m bench.upscale_tiled --compare=256x4.5,128x4.5 --compare_tile=0,288 --repeats=2

A case "SIDExSCALE" upscales a random SIDE×SIDE RGB PNG by SCALE, as the command does (PNG in
and out, tiles chosen automatically: outputs above 1 M pixels are tiled). Each case runs in a
fresh child process so its peak RSS (`ru_maxrss`, the TensorFlow runtime included) is its own;
the child first upscales a 48×48 image the same way, so tracing is not timed. The model is the
bundled default weights in float32 when present, else the default preset with random weights
(same cost); the table and the JSON say which.

`--compare` times the same image tiled and untiled in this process instead (`asdn_tf.upscale`,
numpy in and out, after a traced warm-up; the two ways alternate `--repeats` times and each
keeps its fastest run): the tiled way uses `--compare_tile` (per case; 0 chooses automatically).
It prints both times (wall and CPU), their ratios, the largest difference in grey levels and
the load average before and after.
"""

import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

import asdn_tf
from asdn_tf.inference import tiling, weights_io
from asdn_tf.io import image_io, image_write
from asdn_tf.inference.files import upscale_file

DEFAULT_CASES = ("512x2", "512x3.3", "512x4", "2048x4")


def _parse_case(case):
    side, scale = case.lower().split("x")
    return int(side), float(scale)


def _model():
    # float32: the same work on every CPU (load_pretrained's "auto" picks bfloat16 where fast).
    if weights_io.PACKAGE_WEIGHTS.exists():
        return weights_io.load_pretrained(precision="float32"), "bundled default weights"
    return asdn_tf.build_model("default"), "default preset, random weights (none bundled yet)"


def _cpu_seconds():
    """User + system CPU time of this process: less sensitive than wall time to other load."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_kib():
    """This process's own peak RSS: VmHWM on Linux. `ru_maxrss` is not used there because a
    child started by subprocess inherits the parent's peak (the kernel folds the parent's
    memory into it at exec), so a large parent would be reported as the child's peak."""
    status = pathlib.Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS


def measure_case(case, tile=None):
    """Runs one case in this process; returns its row."""
    side, scale = _parse_case(case)
    model, weights = _model()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        folder = pathlib.Path(folder)
        source = folder / "in.png"
        warm_up = folder / "warm_up.png"
        image_write.write_image(source, rng.integers(0, 256, (side, side, 3), np.uint8))
        image_write.write_image(warm_up, rng.integers(0, 256, (48, 48, 3), np.uint8))
        output_side = round(side * scale)
        chosen = tiling.choose_tile((output_side, output_side), tile)
        upscale_file(warm_up, folder / "warm_up_out.png", scale, model=model,
                     tile=min(chosen, 32) if chosen else 0)
        cpu_start = _cpu_seconds()
        start = time.perf_counter()
        path = upscale_file(source, folder / "out.png", scale, model=model, tile=tile)
        seconds = time.perf_counter() - start
        cpu_seconds = _cpu_seconds() - cpu_start
        height, width = image_io.read_image(path).shape[:2]
    peak = peak_rss_kib() / 1024
    return {"case": case, "input": [side, side], "scale": scale, "output": [height, width],
            "tile": chosen, "seconds": round(seconds, 2), "cpu_seconds": round(cpu_seconds, 1),
            "output_megapixels_per_s": round(height * width / 1e6 / seconds, 3),
            "peak_rss_mib": round(peak), "weights": weights}


def compare_case(case, tile=None, repeats=1):
    """Times one random case untiled and tiled (`compare`) with the bundled float32 model."""
    side, scale = _parse_case(case)
    model, weights = _model()
    image = np.random.default_rng(0).integers(0, 256, (side, side, 3), np.uint8)
    return {"case": case, **compare(model, image, scale, tile, repeats), "weights": weights}


def compare(model, image, scale, tile=None, repeats=1):
    """Times `image` upscaled untiled and tiled (`tile`, None: automatic) in this process, after
    a traced warm-up, alternating the two `repeats` times (so that a change of load hits both);
    keeps each one's fastest run."""
    warm_up = image[:48, :48]
    asdn_tf.upscale(warm_up, scale, model=model, tile=0)
    asdn_tf.upscale(warm_up, scale, model=model, tile=32)
    load_before = os.getloadavg()
    best, outputs = {}, {}
    for _ in range(repeats):
        for way, way_tile in (("untiled", 0), ("tiled", tile)):
            cpu_start, start = _cpu_seconds(), time.perf_counter()
            outputs[way] = asdn_tf.upscale(image, scale, model=model, tile=way_tile)
            run = (time.perf_counter() - start, _cpu_seconds() - cpu_start)
            best[way] = min(best.get(way, run), run)
    load_after = os.getloadavg()
    (untiled_s, untiled_cpu), (tiled_s, tiled_cpu) = best["untiled"], best["tiled"]
    return {"output": list(outputs["tiled"].shape[:2]), "tile": tile,
            "untiled_seconds": round(untiled_s, 2), "tiled_seconds": round(tiled_s, 2),
            "ratio": round(tiled_s / untiled_s, 3),
            "untiled_cpu_seconds": round(untiled_cpu, 1), "tiled_cpu_seconds": round(tiled_cpu, 1),
            "cpu_ratio": round(tiled_cpu / untiled_cpu, 3),
            "max_grey_difference": int(np.abs(outputs["tiled"].astype(int)
                                              - outputs["untiled"]).max()),
            "load_average": [round(v, 2) for v in load_before + load_after]}


def run_case_in_child(case, tile=None):
    """Runs one case in a fresh Python process (its own peak RSS); returns its row."""
    command = [sys.executable, "-m", "bench.upscale_tiled", f"--child={case}"]
    if tile is not None:
        command.append(f"--tile={tile}")
    done = subprocess.run(command, capture_output=True, text=True,
                          cwd=pathlib.Path(__file__).resolve().parents[1])
    if done.returncode != 0:
        raise RuntimeError(f"case {case} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def format_table(rows):
    lines = [f"{'case':<10}{'output':>12}{'tile':>6}{'seconds':>10}{'out MP/s':>10}"
             f"{'peak RSS MiB':>14}"]
    for row in rows:
        output = "x".join(str(v) for v in row["output"])
        lines.append(f"{row['case']:<10}{output:>12}{row['tile'] or '-':>6}{row['seconds']:>10.1f}"
                     f"{row['output_megapixels_per_s']:>10.3f}{row['peak_rss_mib']:>14}")
    lines.append(f"model: {rows[0]['weights']}")
    return "\n".join(lines)


def main(argv):
    del argv
    values = flags.FLAGS
    if values.child:
        print(json.dumps(measure_case(values.child, values.tile)))
        return
    if values.compare:
        tiles = values.compare_tile or [0] * len(values.compare)
        if len(tiles) != len(values.compare):
            raise app.UsageError("--compare_tile needs one tile per --compare case")
        for case, tile in zip(values.compare, tiles):
            print(json.dumps(compare_case(case, int(tile) or None, values.repeats)), flush=True)
        return
    rows = []
    for case in values.cases:
        _parse_case(case)
        rows.append(run_case_in_child(case, values.tile))
        print(json.dumps(rows[-1]), flush=True)
    print(format_table(rows))
    if values.json:
        pathlib.Path(values.json).write_text(json.dumps({"results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    flags.DEFINE_list("cases", list(DEFAULT_CASES), "SIDExSCALE cases, e.g. 512x3.3,2048x4.")
    flags.DEFINE_integer("tile", None, "Region side; by default the command's automatic choice.")
    flags.DEFINE_string("json", None, "Also write the rows to this JSON file.")
    flags.DEFINE_list("compare", None, "Cases to time tiled against untiled, in this process.")
    flags.DEFINE_list("compare_tile", None, "Per --compare case: the tiled way's tile (0: "
                      "automatic).")
    flags.DEFINE_integer("repeats", 1, "--compare: runs of each way; the best is kept.")
    flags.DEFINE_string("child", None, "Internal: run this one case and print its JSON row.")
    app.run(main)
