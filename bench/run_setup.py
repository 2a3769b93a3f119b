"""bench/run.py's settings (`FULL`, `QUICK`), targets and the machine it runs on: the timing
helpers every section shares, the machine's description and load, and the memory guard."""

import contextlib
import dataclasses
import datetime
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import threading
import time

import keras
import psutil
import tensorflow as tf

from asdn_tf.inference import precision as precision_lib
from asdn_tf.inference import weights_io
from asdn_tf.inference.precision import dtype_policy
from asdn_tf.nn import lfr
from asdn_tf.nn.model import build_model
from bench import export_latency

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
