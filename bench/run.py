"""Every performance figure in one run: speed, utilisation of this machine, memory.

    python -m bench.run --quick                                  # a few minutes, small sizes
    python -m bench.run --output_json=runs/bench/run.json        # docs/performance.md
    python -m bench.run --sections=tiled --tiled_cases=2048x4    # one section
    python -m bench.run --sections=defaults                      # what a new user meets

Each section prints a table as it finishes; the JSON of everything goes to stdout at the end,
or to --output_json. Timings are medians of repeated calls after a warm-up, all in this one
process, so ratios (utilisation, overheads) compare figures taken on the same machine state.
Other work on the machine spoils them: pause it (`kill -STOP PID`, then `kill -CONT PID`); the
load average and the busiest other processes are recorded at the start and the end. The run
stops itself if its RSS passes --max_rss_gib rather than wake the kernel's OOM killer. Sections:

  matmul       square float32 and bfloat16 matrix products, 2048² to 4096²: the best is this
               machine's reference rate.
  inference    output megapixels/s of `compiled_upscaler` (float32 and mixed_bfloat16) for the
               tiny, default and paper presets at ×2 and ×3.3, and the network's FLOP/s
               (`flops_per_pixel` × pixels of every recursion step) over the matmul rate.
  profile      where the time of the default preset goes: trunk, network and pre-upsampling
               timed apart, the ops by kind (bench/op_profile.py); bfloat16 against float32
               PSNR on Set5.
  saved_model  the exported SavedModel against the in-process model (bench/export_latency.py).
  training     steps/s of `Trainer.train_step` (per-level tf.functions, as `train` builds them)
               on batches held in memory against the real tf.data pipeline on T91 + BSD200.
  imresize     the exact imresize against tf.image.resize on a 2040×1356 image
               (bench/imresize_speed.py).
  tiled        time and peak RSS of a tiled upscale in a child process (bench/upscale_tiled.py).
  jit          XLA (jit_compile) on and off for the network pass and a training step.
  defaults     what a user meets with the defaults (precision auto, the bundled model): the
               README quick start as a fresh process (its upscale and its wall time, Python
               start included); the first call, a call on a new size (traces and time) and the
               steady state, in a fresh process; output megapixels/s at 512², and in float32
               its share of the float32 matmul rate; tiled against untiled time for one image
               (256² ×4.5, automatic tiles); and the README's evaluate command (Set5 + Set14,
               14 scales, bicubic and asdn) as a fresh process.
  engine       the upscale engine's figures as ratios within the run (bench/engine.py): the
               quick start over a 0.3 TFLOP float32 matmul, tiled against untiled in float32
               and bfloat16, peak RSS of the quick start and of 2048² ×4 → 8192².

The run ends with one table of every target (issue 17's and the earlier ones) beside its
figure, also as Markdown: docs/performance.md takes its targets table from it.
"""

import contextlib
import dataclasses
import datetime
import functools
import json
import math
import os
import pathlib
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import keras
import numpy as np
import psutil
import tensorflow as tf
from absl import app, flags

from asdn_tf.data import pipeline as data_lib
from asdn_tf.evaluation import benchmark
from asdn_tf.evaluation import notebook
from asdn_tf.inference import weights_io
from asdn_tf.io import errors
from asdn_tf.nn import lfr
from asdn_tf.inference import precision as precision_lib
from asdn_tf.data.config import DataConfig
from asdn_tf.training.config import TrainConfig
from asdn_tf.data.imresize import imresize
from asdn_tf.inference.engine import upscale_tensor
from asdn_tf.nn.model import build_model, flops_per_pixel
from asdn_tf.inference.precision import dtype_policy
from asdn_tf.training.train_step import compile_trainer, per_level_steps, pop_update
from bench import engine as engine_bench
from bench import export_latency, imresize_speed, op_profile, upscale_tiled

SECTIONS = ("matmul", "inference", "profile", "saved_model", "training", "imresize", "tiled",
            "jit", "defaults", "engine")
SCALES = (2.0, 3.3)
POLICIES = ("float32", "mixed_bfloat16")
REPOSITORY = pathlib.Path(__file__).resolve().parents[1]
TRAINING_SOURCES = tuple(str(export_latency.DATASETS / name) for name in ("T91", "BSD200"))
# The README's results table: `python -m asdn_tf.evaluate` on these sets and scales.
README_SETS = ("Set5", "Set14")
README_SCALES = ("1.1", "1.2", "1.3", "1.4", "1.5", "1.6", "1.7", "1.8", "1.9", "2", "2.5", "3",
                 "4", "8")
# The targets of "fast by default" (issue 17).
QUICKSTART_UPSCALE_S = 6.0
QUICKSTART_WALL_S = 10.0
DEFAULT_MEGAPIXELS_PER_S = 1.3
FLOAT32_UTILISATION = 0.6
TILED_RATIO = 1.25
NEW_SIZE_RATIO = 1.1
TILED_PEAK_MIB = 2.5 * 1024
EVALUATE_S = 100.0


@dataclasses.dataclass(frozen=True)
class Settings:
    """How big and how often; `FULL` gives the README figures, `QUICK` checks the code runs."""

    matmul_sides: tuple
    runs: int
    sizes: tuple
    paper_runs: int
    paper_sizes: dict
    profile_size: int
    saved_model_input: int
    saved_model_runs: int
    patch_size: int
    train_batch: dict
    train_steps: dict
    train_rounds: int
    train_policies: dict
    imresize_shape: tuple
    imresize_runs: int
    tiled_cases: tuple
    jit_size: int
    jit_steps: int
    quickstart_scale: float
    first_call_sizes: tuple
    tiled_ratio_case: str
    tiled_ratio_tile: int
    evaluate_sets: tuple
    evaluate_scales: tuple


FULL = Settings(
    matmul_sides=(2048, 3072, 4096), runs=7, sizes=(256, 512),
    # The paper preset costs 45 MFLOP per output pixel: about 20 s for 256² in float32 here.
    paper_runs=2, paper_sizes={"float32": (256,), "mixed_bfloat16": (256, 512)},
    profile_size=512, saved_model_input=128, saved_model_runs=5,
    # The paper preset keeps about 1.4 GiB of activations per 96² patch for the backward pass
    # (bfloat16): batch 16 does not fit in 24 GiB, so it is measured at batch 4.
    patch_size=48, train_batch={"default": 16, "paper": 4},
    train_steps={"default": 12, "paper": 3}, train_rounds=2,
    # The bundled weights train in bfloat16 (configs/cpu.txt); float32 paper steps take minutes.
    train_policies={"default": POLICIES, "paper": ("mixed_bfloat16",)},
    imresize_shape=(1356, 2040), imresize_runs=15, tiled_cases=("2048x4",),
    jit_size=512, jit_steps=5,
    # The README quick start (512×600 → 1280×1500) and evaluate command.
    quickstart_scale=2.5, first_call_sizes=(((128, 128), (144, 120)),
                                             ((384, 512), (360, 480))),
    # The tiling case; its 1152² output is above the automatic tiling threshold.
    tiled_ratio_case="256x4.5", tiled_ratio_tile=None,
    evaluate_sets=README_SETS, evaluate_scales=README_SCALES)

QUICK = Settings(
    matmul_sides=(512,), runs=2, sizes=(64,),
    paper_runs=1, paper_sizes={"float32": (32,), "mixed_bfloat16": (32,)},
    profile_size=96, saved_model_input=32, saved_model_runs=2,
    patch_size=16, train_batch={"default": 2, "paper": 1},
    train_steps={"default": 2, "paper": 1}, train_rounds=1,
    train_policies={"default": POLICIES, "paper": ("mixed_bfloat16",)},
    imresize_shape=(136, 204), imresize_runs=2, tiled_cases=("260x4",),
    jit_size=64, jit_steps=2,
    quickstart_scale=1.2, first_call_sizes=(((32, 32), (36, 30)), ((48, 64), (45, 60))),
    tiled_ratio_case="40x4.5", tiled_ratio_tile=64,
    evaluate_sets=("Set5",), evaluate_scales=("2", "3"))


# ---- helpers ---------------------------------------------------------------------------------


def timed(call, runs, warmups=1):
    """(median seconds, every timing) of `call()` over `runs` calls after `warmups` calls."""
    for _ in range(warmups):
        call()
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), seconds


def network_pixels(side, scale, size):
    """Output pixels of every network pass when a side² image is upscaled to size²."""
    return sum(height * width for _, (height, width) in lfr.step_sizes(side, side, scale,
                                                                        (size, size)))


def build(preset, policy, weights=None):
    """(model, description) of `preset` under `policy`; `weights` only for the default preset."""
    with dtype_policy(policy):
        keras.utils.set_random_seed(0)
        model = build_model(preset)
    if preset != "default":
        return model, f"preset {preset!r}, random weights"
    if weights is None and weights_io.PACKAGE_WEIGHTS.exists():
        weights = weights_io.PACKAGE_WEIGHTS
    if weights is None:
        return model, "preset 'default', random weights (none bundled)"
    model.load_weights(weights)
    return model, f"preset 'default', weights {weights}"


def _cpuinfo(key):
    """The first `key` line of /proc/cpuinfo ("" when there is none)."""
    with contextlib.suppress(OSError):
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    return ""


def machine_state():
    """Load average and the other processes using CPU (sampled over one second)."""
    processes = [p for p in psutil.process_iter(["pid", "name", "cmdline"]) if p.pid != os.getpid()]
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.cpu_percent(None)
    time.sleep(1.0)
    busy = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            percent = process.cpu_percent(None)
            if percent >= 5:
                command = " ".join(process.info["cmdline"] or [process.info["name"] or ""])
                busy.append({"pid": process.pid, "cpu_percent": round(percent),
                             "command": command[:100]})
    return {"time": datetime.datetime.now().isoformat(timespec="seconds"),
            "load_average": [round(value, 2) for value in os.getloadavg()],
            "busy_processes": sorted(busy, key=lambda row: -row["cpu_percent"])}


def machine():
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=REPOSITORY).stdout.strip()
    return {"cpu": _cpuinfo("model name") or platform.processor() or "unknown",
            "cores": os.cpu_count(), "amx_bf16": "amx_bf16" in _cpuinfo("flags").split(),
            "avx512_bf16": "avx512_bf16" in _cpuinfo("flags").split(),
            "auto_precision": "{} ({})".format(*precision_lib.auto_precision()),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "tensorflow": tf.__version__, "keras": keras.__version__,
            "python": platform.python_version(), "commit": commit}


# ---- sections --------------------------------------------------------------------------------


def measure_matmul(settings):
    """GFLOP/s of square matrix products; "gflops" holds the best side's rate per dtype.

    The best of several sides is the reference, so utilisation is not flattered by a size
    oneDNN handles badly (bfloat16 at 4096² runs at half its 3072² rate here).
    """
    product = tf.function(tf.matmul)
    by_side = {}
    for side in settings.matmul_sides:
        for dtype in (tf.float32, tf.bfloat16):
            a = tf.cast(tf.random.stateless_normal([side, side], [0, 1]), dtype)
            b = tf.cast(tf.random.stateless_normal([side, side], [0, 2]), dtype)
            seconds, _ = timed(lambda: product(a, b).numpy(), 5, warmups=2)
            by_side.setdefault(dtype.name, {})[side] = round(2 * side**3 / seconds / 1e9, 1)
    return {"by_side": by_side, "gflops": {name: max(rates.values())
                                           for name, rates in by_side.items()}}


def measure_inference(settings, matmul):
    """A row per preset, policy, output size and scale."""
    rows = []
    for preset in ("tiny", "default", "paper"):
        for policy in POLICIES:
            model, _ = build(preset, policy)
            fpp = flops_per_pixel(model.model_config)
            paper = preset == "paper"
            warm_up, _ = op_profile.upscale_call(model, 16, 2.0)
            warm_up()  # one trace serves every size and scale
            for size in settings.paper_sizes[policy] if paper else settings.sizes:
                for scale in SCALES:
                    call, side = op_profile.upscale_call(model, size, scale)
                    # A paper call is seconds long: the trace is warm, its first call is timed.
                    seconds, _ = timed(call, settings.paper_runs if paper else settings.runs,
                                       warmups=0 if paper else 1)
                    pixels = network_pixels(side, scale, size)
                    gflops = fpp * pixels / seconds / 1e9
                    rows.append({
                        "preset": preset, "policy": policy, "scale": scale,
                        "input": side, "output": size,
                        "runs": settings.paper_runs if paper else settings.runs,
                        "median_ms": round(seconds * 1e3, 1),
                        "output_megapixels_per_s": round(size * size / seconds / 1e6, 3),
                        "network_gflop": round(fpp * pixels / 1e9, 2),
                        "gflops": round(gflops, 1),
                        "utilisation": round(gflops / matmul["float32"], 3),
                        "utilisation_of_bf16_matmul": round(gflops / matmul["bfloat16"], 3)})
            del model
    return rows


def where_time_goes(settings, weights):
    """For the default preset at profile_size² ×2: parts timed apart and ops by kind."""
    size = settings.profile_size
    result = {"size": size, "scale": 2.0, "policies": {}}
    for policy in POLICIES:
        model, _ = build("default", policy, weights)
        full, side = op_profile.upscale_call(model, size, 2.0)
        images = tf.constant(np.random.default_rng(0).random((1, side, side, 3), np.float32))
        x_up = imresize(images, scale=2.0, size=(size, size))
        scale = tf.constant(2.0)
        network = tf.function(lambda x: model(x, scale=scale))
        trunk = tf.function(model.trunk)
        pre_upsample = tf.function(lambda x: imresize(x, scale=2.0, size=(size, size)))
        parts = {"full upscale": full,
                 "network (x_up given)": lambda: network(x_up).numpy(),
                 "trunk alone": lambda: trunk(x_up).numpy(),
                 "pre-upsampling alone": lambda: pre_upsample(images).numpy()}
        times = {name: round(timed(call, settings.runs)[0] * 1e3, 1)
                 for name, call in parts.items()}
        result["policies"][policy] = {
            "ms": times, "ops": [{"category": name, "ms": ms, "share": share}
                                 for name, ms, share in op_profile.op_breakdown(full)]}
    result["bf16_accuracy"] = bf16_accuracy(weights)
    return result


def bf16_accuracy(weights, scales=SCALES):
    """Set5 PSNR of the default model in float32 and in mixed_bfloat16 (same weights)."""
    images = benchmark.load_set(export_latency.DATASETS / "Set5")
    model32, description = build("default", "float32", weights)
    model16, _ = build("default", "mixed_bfloat16")
    model16.set_weights(model32.get_weights())
    rows = []
    for scale in scales:
        scores = {"float32": [], "mixed_bfloat16": []}
        difference = 0
        for _, hr in images:
            outputs = {}
            for policy, model in (("float32", model32), ("mixed_bfloat16", model16)):
                psnr, _, outputs[policy] = benchmark.measure(hr, scale, "asdn", model)
                scores[policy].append(psnr)
            difference = max(difference, int(np.abs(outputs["float32"].astype(int)
                                                    - outputs["mixed_bfloat16"]).max()))
        psnr32, psnr16 = (float(np.mean(values)) for values in scores.values())
        rows.append({"scale": scale, "psnr_float32": round(psnr32, 3),
                     "psnr_bfloat16": round(psnr16, 3), "delta_db": round(psnr16 - psnr32, 3),
                     "max_grey_level_difference": difference})
    return {"model": description, "set": "Set5", "rows": rows}


def measure_saved_model(settings, weights):
    model, description = build("default", "float32", weights)
    rows = export_latency.measure_saved_model(model, settings.saved_model_input,
                                              settings.saved_model_runs)
    return {"model": description, "input": settings.saved_model_input, "rows": rows}


def _trainer(preset, policy, patch_size, jit=False):
    """(network, step function per level) set up as `asdn_tf.training.train_tf.train` does."""
    with dtype_policy(policy):
        keras.utils.set_random_seed(0)
        network = build_model(preset)
        trainer = compile_trainer(network, TrainConfig(), patch_size)
    return network, per_level_steps(trainer, jit_compile=jit)


def _train_steps(step_function, batches):
    """Runs one update per batch as `train`'s loop does: level from the batch, loss to host."""
    for batch in batches:
        batch = dict(batch)
        loss = float(step_function(*pop_update(batch))(batch))
        if not math.isfinite(loss):
            raise RuntimeError(f"training loss became {loss}")


def measure_training(settings):
    """Steps/s on in-memory batches and through the pipeline, for each preset and policy.

    The in-memory batches are the pipeline's own (same levels, same shapes): a fresh iterator
    of the same dataset yields the same level sequence, so both loops do the same work and
    differ only in where the batches come from. The first `skip` batches of every iterator are
    not timed (the shuffle buffer fills then), and every level in the sequence is traced first.
    """
    skip = 2
    rows = []
    for preset, steps in settings.train_steps.items():
        batch_size = settings.train_batch[preset]
        dataset = data_lib.training_dataset(DataConfig(
            sources=TRAINING_SOURCES, patch_size=settings.patch_size, batch_size=batch_size))
        held = list(dataset.take(skip + steps))[skip:]
        levels = [int(batch["level"][0]) for batch in held]
        for policy in settings.train_policies[preset]:
            _, step_function = _trainer(preset, policy, settings.patch_size)
            warmed = set()
            for batch, level in zip(held, levels):  # traces (and runs) each level once
                if level not in warmed:
                    _train_steps(step_function, [batch])
                    warmed.add(level)

            def from_memory():
                _train_steps(step_function, held)

            def from_pipeline():
                iterator = iter(dataset)
                for _ in range(skip):
                    next(iterator)
                start = time.perf_counter()
                _train_steps(step_function, (next(iterator) for _ in range(steps)))
                return time.perf_counter() - start

            memory, pipeline = [], []
            for _ in range(settings.train_rounds):
                memory.append(timed(from_memory, 1, warmups=0)[0])
                pipeline.append(from_pipeline())
            memory_s, pipeline_s = statistics.median(memory), statistics.median(pipeline)
            sides = [data_lib.hr_patch_size(settings.patch_size, level) for level in levels]
            rows.append({
                "preset": preset, "policy": policy, "batch": batch_size,
                "steps": steps, "rounds": settings.train_rounds, "levels": levels,
                "mean_x_up_side": round(float(np.mean(sides)), 1),
                "memory_steps_per_s": round(steps / memory_s, 3),
                "pipeline_steps_per_s": round(steps / pipeline_s, 3),
                "input_overhead_percent": round((pipeline_s / memory_s - 1) * 100, 1)})
    return rows


def measure_imresize(settings):
    height, width = settings.imresize_shape
    return imresize_speed.measure(height, width, settings.imresize_runs)


def measure_tiled(cases):
    return [upscale_tiled.run_case_in_child(case) for case in cases]


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


def measure_jit(settings):
    """Median ms with jit_compile off and on: the network pass, and a training step."""
    rows = []
    size = settings.jit_size
    x_up = tf.constant(np.random.default_rng(0).random((1, size, size, 3), np.float32))
    scale = tf.constant(2.0)
    for policy in POLICIES:
        model, _ = build("default", policy)
        for jit in (False, True):
            network = tf.function(lambda x: model(x, scale=scale), jit_compile=jit)
            seconds, _ = timed(lambda: network(x_up).numpy(), settings.runs, warmups=2)
            rows.append({"what": f"network pass ×2, {size}² (default)", "policy": policy,
                         "jit_compile": jit, "median_ms": round(seconds * 1e3, 1)})
    level, batch_size = 5, settings.train_batch["default"]
    side = data_lib.hr_patch_size(settings.patch_size, level)
    hr = tf.constant(np.random.default_rng(0).integers(0, 256, (batch_size, side, side, 3),
                                                       np.uint8))
    x_up, target, _ = data_lib.training_pair(hr, level, settings.patch_size)
    batch = {"x_up": x_up, "hr": target, "level": tf.fill([batch_size], level)}
    for policy in POLICIES:
        for jit in (False, True):
            _, step_function = _trainer("default", policy, settings.patch_size, jit=jit)
            seconds, _ = timed(lambda: _train_steps(step_function, [batch]), settings.jit_steps,
                               warmups=2)
            rows.append({"what": f"training step, batch {batch_size}, level {level} "
                                 "(default)", "policy": policy, "jit_compile": jit,
                         "median_ms": round(seconds * 1e3, 1)})
    model, _ = build("default", "float32")
    try:
        tf.function(lambda x: upscale_tensor(model, x, 2.0, size=(size, size)),
                    jit_compile=True, autograph=False)(x_up[:, ::2, ::2])
        full_upscale = "compiles"
    except tf.errors.InvalidArgumentError as error:
        full_upscale = f"does not compile: {errors.first_line(error)}"
    return {"rows": rows, "upscale_tensor_under_jit": full_upscale}


# ---- tables ----------------------------------------------------------------------------------


def _table(header, rows):
    widths = [max(len(str(value)) for value in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(value).rjust(width) if index else str(value).ljust(width)
                       for index, (value, width) in enumerate(zip(row, widths)))
             for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def format_section(name, result):
    if name == "engine":
        return "\n".join(result["lines"])
    if name == "matmul":
        return "\n".join(f"dense square matrix product, {dtype}: " + ", ".join(
            f"{side}² {rate} GFLOP/s" for side, rate in rates.items())
            + f"; reference {result['gflops'][dtype]} GFLOP/s"
            for dtype, rates in result["by_side"].items())
    if name == "inference":
        return _table(["preset", "policy", "scale", "output", "runs", "ms", "out MP/s", "GFLOP/s",
                       "util (f32 mm)", "util (bf16 mm)"],
                      [[r["preset"], r["policy"], f"×{r['scale']:g}", f"{r['output']}²",
                        r["runs"], r["median_ms"], r["output_megapixels_per_s"], r["gflops"],
                        f"{r['utilisation']:.0%}", f"{r['utilisation_of_bf16_matmul']:.0%}"]
                       for r in result])
    if name == "profile":
        lines = []
        for policy, part in result["policies"].items():
            lines.append(f"default preset, {policy}, ×2 to {result['size']}²: " + ", ".join(
                f"{key} {value} ms" for key, value in part["ms"].items()))
            lines.append(_table(["ops by kind", "ms per call", "share"],
                                [[r["category"], r["ms"], f"{r['share']:.0%}"]
                                 for r in part["ops"]]))
        accuracy = result["bf16_accuracy"]
        lines.append(f"bfloat16 against float32 on {accuracy['set']} ({accuracy['model']}):")
        lines.append(_table(["scale", "PSNR f32", "PSNR bf16", "Δ dB", "max grey diff"],
                            [[f"×{r['scale']:g}", r["psnr_float32"], r["psnr_bfloat16"],
                              r["delta_db"], r["max_grey_level_difference"]]
                             for r in accuracy["rows"]]))
        return "\n".join(lines)
    if name == "saved_model":
        return f"{result['model']}, {result['input']}² uint8 input\n" + _table(
            ["scale", "path", "ms", "overhead", "max grey diff"],
            [[f"×{r['scale']:g}", r["path"], r["median_ms"], f"{r['overhead']:.3f}×",
              r["max_grey_level_difference"]] for r in result["rows"]])
    if name == "training":
        return _table(["preset", "policy", "batch", "steps×rounds", "mean x_up side",
                       "memory steps/s", "pipeline steps/s", "input overhead"],
                      [[r["preset"], r["policy"], r["batch"], f"{r['steps']}×{r['rounds']}",
                        r["mean_x_up_side"], r["memory_steps_per_s"], r["pipeline_steps_per_s"],
                        f"{r['input_overhead_percent']:+.1f}%"] for r in result])
    if name == "imresize":
        return imresize_speed.format_table(result)
    if name == "tiled":
        return _table(["case", "output", "tile", "seconds", "CPU seconds", "out MP/s",
                       "peak RSS MiB"],
                      [[r["case"], "×".join(map(str, r["output"])), r["tile"] or "-",
                        r["seconds"], r.get("cpu_seconds", "-"), r["output_megapixels_per_s"],
                        r["peak_rss_mib"]] for r in result])
    if name == "defaults":
        return _table(["figure", "value", "target", "met"],
                      [[figure, value, target, "" if met is None else ("yes" if met else "NO")]
                       for figure, value, target, met in defaults_rows(result)])
    if name == "jit":
        return _table(["what", "policy", "jit_compile", "ms"],
                      [[r["what"], r["policy"], r["jit_compile"], r["median_ms"]]
                       for r in result["rows"]]) + \
            f"\nupscale_tensor under jit_compile: {result['upscale_tensor_under_jit']}"
    return json.dumps(result)


def targets(results):
    """[(figure, value, target, met)] of every target this run has a figure for."""
    rows = []
    for row in results.get("inference") or []:
        if row["preset"] == "default" and row["output"] == 512 and row["policy"] == "float32":
            rows.append((f"float32 default ×{row['scale']:g} 512²: share of the float32 matmul "
                         "rate", f"{row['utilisation']:.0%}", f"≥ {FLOAT32_UTILISATION:.0%}",
                         row["utilisation"] >= FLOAT32_UTILISATION))
    saved = results.get("saved_model")
    if saved and "rows" in saved:
        for row in saved["rows"]:
            if row["path"] != "in-process":
                rows.append((f"SavedModel overhead: ×{row['scale']:g} {row['path']}",
                             f"{row['overhead'] - 1:+.1%}", "≤ 10%", row["overhead"] <= 1.10))
    for row in results.get("training") or []:
        rows.append((f"input overhead: {row['preset']} {row['policy']}",
                     f"{row['input_overhead_percent']:+.1f}%", "≤ 10%",
                     row["input_overhead_percent"] <= 10))
    resize = results.get("imresize")
    if isinstance(resize, list):
        reference = {r["scale"]: r["median_ms"] for r in resize if r["method"] == "tf.image.resize"}
        for row in resize:
            if row["method"] == "imresize (exact)":
                ratio = row["median_ms"] / reference[row["scale"]]
                rows.append((f"imresize against tf.image.resize: {row['scale']}",
                             f"{ratio:.2f}×", "≤ 2×", ratio <= 2))
    defaults = results.get("defaults")
    if defaults and "error" not in defaults:
        rows += [row for row in defaults_rows(defaults) if row[3] is not None]
    for row in results.get("tiled") or []:
        if isinstance(row, dict) and row.get("case") == "2048x4":
            rows.append(("tiled 2048² ×4 → 8192², float32: peak RSS",
                         f"{row['peak_rss_mib']} MiB", f"≤ {TILED_PEAK_MIB:g} MiB",
                         row["peak_rss_mib"] <= TILED_PEAK_MIB))
    return rows


def markdown_targets(rows):
    """`targets` as docs/performance.md's Markdown table."""
    return "\n".join(["| figure | value | target | met |", "|---|---|---|---|",
                      *(f"| {figure} | {value} | {target} | {'yes' if met else 'no'} |"
                        for figure, value, target, met in rows)])


# ---- main ------------------------------------------------------------------------------------


def run(settings, sections, weights=None, tiled_cases=None, echo=print, save=None):
    """Runs `sections` in order; returns the results dict. A failing section is recorded
    ({"error": ...}) and the others still run; `save(results)` is called after each section."""
    results = {"command": " ".join(sys.argv), "machine": machine(),
               "start": machine_state(), "settings": dataclasses.asdict(settings)}
    echo(f"{results['machine']['cpu']}, {results['machine']['cores']} cores, "
         f"TF {tf.__version__}; load average {results['start']['load_average']}; busy: "
         + (", ".join(f"{p['pid']} {p['cpu_percent']}%" for p in results["start"]["busy_processes"])
            or "none"))
    matmul = None
    if any(section in sections for section in ("matmul", "inference", "defaults")):
        sections = ["matmul", *[section for section in sections if section != "matmul"]]
    for section in sections:
        started = time.perf_counter()
        try:
            if section == "matmul":
                result = measure_matmul(settings)
                matmul = result["gflops"]
            elif section == "inference":
                result = measure_inference(settings, matmul)
            elif section == "profile":
                result = where_time_goes(settings, weights)
            elif section == "saved_model":
                result = measure_saved_model(settings, weights)
            elif section == "training":
                result = measure_training(settings)
            elif section == "imresize":
                result = measure_imresize(settings)
            elif section == "tiled":
                result = measure_tiled(tiled_cases or settings.tiled_cases)
            elif section == "jit":
                result = measure_jit(settings)
            elif section == "defaults":
                result = measure_defaults(settings, matmul)
            elif section == "engine":
                result = engine_bench.measure(skip_large=settings is QUICK, echo=lambda line: None)
            else:
                raise ValueError(f"unknown section {section!r}")
            table = format_section(section, result)
        except Exception as error:  # one broken section must not lose the others' figures
            traceback.print_exc()
            result = {"error": f"{type(error).__name__}: {error}"}
            table = f"FAILED: {result['error']}"
        results[section] = result
        echo(f"\n== {section} ({time.perf_counter() - started:.0f} s, load average "
             f"{[round(v, 2) for v in os.getloadavg()]})\n{table}", flush=True)
        if save is not None:
            save(results)
    if "matmul" in sections and "inference" in sections:
        results["matmul_end"] = measure_matmul(settings)
        echo(f"\nmatmul again at the end: {results['matmul_end']['gflops']}")
    results["end"] = machine_state()
    rows = targets(results)
    results["targets"] = [{"figure": figure, "value": value, "target": target, "met": bool(met)}
                          for figure, value, target, met in rows]
    heading = "targets" + (" (--quick sizes: not the targets' sizes)" if settings == QUICK else "")
    echo(f"\n== {heading}\n" + _table(["figure", "value", "target", "met"],
                                   [[*row[:3], "yes" if row[3] else "NO"] for row in rows]))
    echo(f"\nfor docs/performance.md:\n{markdown_targets(rows)}")
    echo(f"load average at the end {results['end']['load_average']}; busy: "
         + (", ".join(f"{p['pid']} {p['cpu_percent']}%" for p in results["end"]["busy_processes"])
            or "none"))
    return results


def guard_memory(limit_gib, interval=0.1):
    """Ends the process (status 3) if its RSS passes `limit_gib`: the machine is shared, and
    the kernel's OOM killer might pick someone else's process instead."""
    limit = limit_gib * 2**30
    process = psutil.Process()

    def watch():
        while True:
            rss = process.memory_info().rss
            if rss > limit:
                sys.stderr.write(f"bench.run: stopped, RSS {rss / 2**30:.1f} GiB passed "
                                 f"--max_rss_gib={limit_gib:g}\n")
                sys.stderr.flush()
                os._exit(3)
            time.sleep(interval)

    threading.Thread(target=watch, daemon=True).start()


def main(argv):
    del argv
    values = flags.FLAGS
    guard_memory(values.max_rss_gib)
    sections = values.sections or list(SECTIONS)
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        sys.exit(f"bench.run: unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    settings = QUICK if values.quick else FULL
    path = pathlib.Path(values.output_json) if values.output_json else None

    def save(results):  # after every section, so an interrupted run keeps what it measured
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=1, default=str) + "\n")

    results = run(settings, sections, values.weights, values.tiled_cases,
                  echo=functools.partial(print, file=sys.stdout if path else sys.stderr),
                  save=save if path else None)
    if path:
        save(results)
        print(f"\nwrote {path}")
    else:
        print(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    flags.DEFINE_bool("quick", False, "Small sizes and few repeats: checks the code in minutes.")
    flags.DEFINE_list("sections", None, f"Sections to run, in order (default all): {SECTIONS}.")
    flags.DEFINE_string("output_json", None, "Write the JSON here instead of stdout.")
    flags.DEFINE_string("weights", None, "Default-preset weights for the profile and SavedModel "
                        "sections (default: the bundled ones, else random).")
    flags.DEFINE_float("max_rss_gib", 16.0, "Stop the run if this process's RSS passes this.")
    flags.DEFINE_list("tiled_cases", None, "SIDExSCALE cases of the tiled section "
                      "(default 2048x4; --quick 260x4).")
    app.run(main)
