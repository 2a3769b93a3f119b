"""bench/run.py's defaults section: what a user meets with the defaults (precision auto, the
bundled model), and its rows of the targets table."""

import json
import re
import subprocess
import sys
import tempfile
import time

from asdn_tf.evaluation import notebook
from asdn_tf.inference import precision as precision_lib
from asdn_tf.inference import weights_io
from asdn_tf.nn.model import flops_per_pixel
from bench import export_latency, op_profile, upscale_tiled
from bench.run_setup import (DEFAULT_MEGAPIXELS_PER_S, EVALUATE_S, FLOAT32_UTILISATION,
                             NEW_SIZE_RATIO, QUICKSTART_UPSCALE_S, QUICKSTART_WALL_S,
                             REPOSITORY, TILED_RATIO, network_pixels, timed)

# Runs in a fresh process: the first call there pays the tracing, as a user's first call does.
_FIRST_CALLS = """
import json, statistics, sys, time
import numpy as np
from asdn_tf.inference import engine as inference, weights_io
from asdn_tf.inference import precision as precision_lib
sizes, scale = json.loads(sys.argv[1])
model = weights_io.shared_pretrained()
upscaler = inference.compiled_upscaler(model)
rng = np.random.default_rng(0)

def call(height, width):
    image = rng.integers(0, 256, (height, width, 3), np.uint8)
    start = time.perf_counter()
    inference.upscale(image, scale, model=model)
    return time.perf_counter() - start

rows = {"precision": precision_lib.precision_of(model)}
# The first call traces; each later pair is a call at a size seen before, then the new size
# (once, then its steady state): a thumbnail and a photograph.
for index, (seen, new) in enumerate(sizes):
    seconds = call(*seen)
    if index == 0:
        rows["first"] = {"size": seen, "seconds": seconds,
                         "traces": upscaler.experimental_get_tracing_count()}
    rows.setdefault("new_sizes", []).append({
        "after": seen, "size": new, "seconds": call(*new),
        "steady": statistics.median(call(*new) for _ in range(3)),
        "traces": upscaler.experimental_get_tracing_count()})
print(json.dumps(rows))
"""


def _child(args, timeout=1800):
    """(completed process, wall seconds) of `python ARGS` in a fresh process at the repository."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=REPOSITORY, capture_output=True,
                          text=True, timeout=timeout)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"python {' '.join(args[:2])} failed: {done.stderr.strip()[-500:]}")
    return done, seconds


def measure_defaults(settings, matmul):
    """What a user meets with the defaults: the quick start, first calls, speed (and float32's
    share of the `matmul` float32 rate), tiled against untiled, evaluate."""
    result = {"auto_precision": "{} ({})".format(*precision_lib.auto_precision())}
    with tempfile.TemporaryDirectory(prefix="bench_defaults_") as folder:
        done, wall = _child(["-m", "asdn_tf.cli.upscale", f"--scale={settings.quickstart_scale:g}",
                             f"--output={folder}/quickstart.png", "--overwrite",
                             f"--input={notebook.sample_image_path()}"])
        width, height, seconds = re.search(r"\((\d+)x(\d+), ([\d.]+) s\)", done.stdout).groups()
        result["quickstart"] = {
            "scale": settings.quickstart_scale, "output": [int(height), int(width)],
            "upscale_s": float(seconds), "wall_s": round(wall, 2),
            "said": [line for line in done.stderr.splitlines() if line.startswith("upscale:")]}
        done, _ = _child(["-c", _FIRST_CALLS, json.dumps([settings.first_call_sizes, 2.0])])
        result["first_calls"] = json.loads(done.stdout.strip().splitlines()[-1])
        done, wall = _child(["-m", "asdn_tf.evaluate", f"--data_dir={export_latency.DATASETS}",
                             f"--sets={','.join(settings.evaluate_sets)}",
                             f"--scales={','.join(settings.evaluate_scales)}",
                             "--method=bicubic,asdn", f"--output_json={folder}/evaluate.json"])
        images, seconds = re.search(r"\((\d+) SR images measured in ([\d.]+) s\)",
                                    done.stdout).groups()
        result["evaluate"] = {
            "sets": list(settings.evaluate_sets), "scales": list(settings.evaluate_scales),
            "images": int(images), "measured_s": float(seconds), "wall_s": round(wall, 2),
            "precision": next(line.split(": ", 1)[1] for line in done.stdout.splitlines()
                              if line.startswith("precision: "))}
    size = settings.sizes[-1]
    for key, precision in (("speed", "auto"), ("speed_float32", "float32")):
        model = weights_io.shared_pretrained(precision)
        call, side = op_profile.upscale_call(model, size, 2.0)
        seconds, _ = timed(call, settings.runs)
        gflops = flops_per_pixel(model.model_config) * network_pixels(side, 2.0, size) / seconds
        result[key] = {"output": size, "scale": 2.0, "median_ms": round(seconds * 1e3, 1),
                       "precision": precision_lib.precision_of(model),
                       "output_megapixels_per_s": round(size * size / seconds / 1e6, 3),
                       "utilisation": round(gflops / 1e9 / matmul["float32"], 3)}
    result["tiled_ratio"] = upscale_tiled.compare_case(settings.tiled_ratio_case,
                                                       settings.tiled_ratio_tile)
    return result


def new_size_rows(first, new_sizes):
    """Rows of the calls on new sizes: no new trace, and each against its own steady state."""
    rows = []
    for new in new_sizes:
        size, seen = ("×".join(map(str, new[key])) for key in ("size", "after"))
        rows.append((f"new size {size} (after {seen}): time, new traces",
                     f"{new['seconds']:.3f} s, {new['traces'] - first['traces']}",
                     "no new trace", new["traces"] == first["traces"]))
        ratio = new["seconds"] / new["steady"]
        rows.append((f"new size {size}: its steady state, the new-size call against it",
                     f"{new['steady']:.3f} s ({ratio:.2f}×)", f"≤ {NEW_SIZE_RATIO:g}×",
                     ratio <= NEW_SIZE_RATIO))
    return rows


def defaults_rows(result):
    """[(figure, value, target or "", met or None)] of the defaults section."""
    quick, calls, speed, measured = (result[key] for key in ("quickstart", "first_calls",
                                                              "speed", "evaluate"))
    speed32, tiles = result["speed_float32"], result["tiled_ratio"]
    output = "×".join(map(str, quick["output"][::-1]))
    first = calls["first"]

    return [
        ("precision auto", result["auto_precision"], "", None),
        (f"quick start ×{quick['scale']:g} → {output}: upscale", f"{quick['upscale_s']:.1f} s",
         f"≤ {QUICKSTART_UPSCALE_S:g} s", quick["upscale_s"] <= QUICKSTART_UPSCALE_S),
        ("quick start: wall, Python start included", f"{quick['wall_s']:.1f} s",
         f"≤ {QUICKSTART_WALL_S:g} s", quick["wall_s"] <= QUICKSTART_WALL_S),
        (f"output MP/s, ×2 to {speed['output']}², default precision ({speed['precision']})",
         f"{speed['output_megapixels_per_s']}", f"≥ {DEFAULT_MEGAPIXELS_PER_S:g}",
         speed["output_megapixels_per_s"] >= DEFAULT_MEGAPIXELS_PER_S),
        (f"float32, ×2 to {speed32['output']}²: share of the float32 matmul rate",
         f"{speed32['utilisation']:.0%} ({speed32['output_megapixels_per_s']} MP/s)",
         f"≥ {FLOAT32_UTILISATION:.0%}", speed32["utilisation"] >= FLOAT32_UTILISATION),
        (f"first call ×2, {'×'.join(map(str, first['size']))}",
         f"{first['seconds']:.2f} s, {first['traces']} trace",
         "", None),
        *new_size_rows(first, calls["new_sizes"]),
        (f"tiled / untiled, {tiles['case']} → {'×'.join(map(str, tiles['output']))}, float32",
         f"{tiles['ratio']:.2f}× ({tiles['tiled_seconds']:.1f} / {tiles['untiled_seconds']:.1f} "
         f"s; CPU {tiles['cpu_ratio']:.2f}×)", f"≤ {TILED_RATIO:g}×",
         tiles["ratio"] <= TILED_RATIO),
        (f"evaluate {'+'.join(measured['sets'])}, {len(measured['scales'])} scales, "
         f"bicubic+asdn ({measured['precision']})",
         f"{measured['measured_s']:.1f} s ({measured['wall_s']:.1f} s wall)",
         f"≤ {EVALUATE_S:g} s", measured["measured_s"] <= EVALUATE_S),
    ]
