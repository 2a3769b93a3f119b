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

This module runs the sections in order; bench/run_setup.py holds the settings, targets and
machine description, bench/run_speed.py the timing sections, bench/run_defaults.py the
defaults section and bench/run_tables.py the tables.
"""


import dataclasses
import functools
import json
import os
import pathlib
import sys
import time
import traceback

import tensorflow as tf
from absl import app, flags

from asdn_tf.io import logs
from bench import engine as engine_bench
from bench import run_speed, run_tables
from bench.run_defaults import measure_defaults
from bench.run_setup import FULL, QUICK, SECTIONS, guard_memory, machine, machine_state



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
                result = run_speed.measure_matmul(settings)
                matmul = result["gflops"]
            elif section == "inference":
                result = run_speed.measure_inference(settings, matmul)
            elif section == "profile":
                result = run_speed.where_time_goes(settings, weights)
            elif section == "saved_model":
                result = run_speed.measure_saved_model(settings, weights)
            elif section == "training":
                result = run_speed.measure_training(settings)
            elif section == "imresize":
                result = run_speed.measure_imresize(settings)
            elif section == "tiled":
                result = run_speed.measure_tiled(tiled_cases or settings.tiled_cases)
            elif section == "jit":
                result = run_speed.measure_jit(settings)
            elif section == "defaults":
                result = measure_defaults(settings, matmul)
            elif section == "engine":
                result = engine_bench.measure(skip_large=settings is QUICK, echo=lambda line: None)
            else:
                raise ValueError(f"unknown section {section!r}")
            table = run_tables.format_section(section, result)
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
        results["matmul_end"] = run_speed.measure_matmul(settings)
        echo(f"\nmatmul again at the end: {results['matmul_end']['gflops']}")
    results["end"] = machine_state()
    rows = run_tables.targets(results)
    results["targets"] = [{"figure": figure, "value": value, "target": target, "met": bool(met)}
                          for figure, value, target, met in rows]
    heading = "targets" + (" (--quick sizes: not the targets' sizes)" if settings == QUICK else "")
    echo(f"\n== {heading}\n" + run_tables.table(["figure", "value", "target", "met"],
                                             [[*row[:3], "yes" if row[3] else "NO"]
                                              for row in rows]))
    echo(f"\nfor docs/performance.md:\n{run_tables.markdown_targets(rows)}")
    echo(f"load average at the end {results['end']['load_average']}; busy: "
         + (", ".join(f"{p['pid']} {p['cpu_percent']}%" for p in results["end"]["busy_processes"])
            or "none"))
    return results


def main(argv):
    del argv
    logs.quiet_tensorflow()  # as the commands do
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
