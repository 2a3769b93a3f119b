"""The ONNX exports of the bundled default ASDN: file size, agreement with Keras, and latency
in ONNX Runtime beside TensorFlow at 256×256 ×2.

    python -m bench.onnx_latency [--runs=5] [--size=256] [--output_json=runs/bench/onnx.json]

Variants: a fixed ×2 file, a fixed ×3.3 file, and the any-scale file (run with scale 2 for the
latency). Agreement: `onnx_export.verify_onnx` on the quick start's photograph (the crops the
export command checks). Latency: one size×size float32 image at ×2, median of --runs timed
calls after a warm-up, the paths taking turns every round so a busy machine slows them alike:
ONNX Runtime (CPU provider, its default threads) on each ×2 file, and TensorFlow running
`asdn_tf.upscale`'s graph (`inference.engine.compiled_upscaler`) in float32, and in bfloat16 when the
CPU has bfloat16 instructions ("auto" picks it there). The CPU, its vector features, the date
and the load average are printed with the figures.
"""

import datetime
import json
import os
import pathlib
import platform
import statistics
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

from asdn_tf.export import onnx as onnx_export
from asdn_tf.export import verification
from asdn_tf.inference import weights_io
from asdn_tf.inference.engine import compiled_upscaler

_RUNS = flags.DEFINE_integer("runs", 5, "Timed calls per path (after one warm-up).")
_SIZE = flags.DEFINE_integer("size", 256, "Side of the square input.")
_OUTPUT_JSON = flags.DEFINE_string("output_json", None, "Also write the figures here.")
FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu():
    """The CPU's model name and which of FEATURES /proc/cpuinfo lists."""
    text = pathlib.Path("/proc/cpuinfo").read_text() if os.path.exists("/proc/cpuinfo") else ""
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    names = {key.strip(): value.strip() for key, value in fields.items()}
    flags_present = set(names.get("flags", "").split())
    return {"model": names.get("model name", platform.processor()), "cores": os.cpu_count(),
            "features": {feature: feature in flags_present for feature in FEATURES}}


def variants(model):
    """{name: (scale for the ×2 latency or None, file bytes, verification)}."""
    images = verification.read_verification_images()
    found = {}
    for name, scale in (("x2", 2.0), ("x3.3", 3.3), ("any", None)):
        start = time.perf_counter()
        content = onnx_export.convert_onnx(model, scale, description="bundled default")
        seconds = time.perf_counter() - start
        check = onnx_export.verify_onnx(content, model,
                                        verification.verification_cases(images, scale))
        found[name] = {"content": content, "mb": len(content) / 1e6, "export_s": seconds,
                       **{key: check[key] for key in ("max_abs", "grey_levels", "psnr",
                                                      "images", "ok")}}
    return found


def latencies(model, files, size, runs):
    """Median ms per path at ×2 on one size×size image."""
    import onnxruntime

    image = np.random.default_rng(0).random((1, size, size, 3), dtype=np.float32)
    paths = {}
    for name in ("x2", "any"):
        session = onnxruntime.InferenceSession(files[name]["content"],
                                               providers=["CPUExecutionProvider"])
        feed = {"image": image}
        if name == "any":
            feed["scale"] = np.array(2.0, np.float64)
        paths[f"onnxruntime {name} file"] = (lambda s=session, f=feed: s.run(["sr"], f))
    output_size = tf.constant([2 * size, 2 * size], tf.int32)
    tensor, scale = tf.constant(image), tf.constant(2.0)
    precisions = ["float32"] + (["bfloat16"] if cpu()["features"]["avx512_bf16"] else [])
    for precision in precisions:
        keras_model = model if precision == "float32" else weights_io.load_pretrained(
            precision=precision)
        upscaler = compiled_upscaler(keras_model)
        paths[f"tensorflow {precision}"] = (
            lambda u=upscaler: u(tensor, scale, output_size).numpy())
    times = {name: [] for name in paths}
    for round_index in range(runs + 1):
        for name, call in paths.items():
            start = time.perf_counter()
            call()
            if round_index:  # the first round warms up (tracing, allocation)
                times[name].append(1e3 * (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv):
    del argv
    model = weights_io.load_pretrained(precision="float32")
    files = variants(model)
    timing = latencies(model, files, _SIZE.value, _RUNS.value)
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes"),
              "cpu": cpu(), "load_average": [round(v, 2) for v in os.getloadavg()],
              "files": {name: {k: v for k, v in row.items() if k != "content"}
                        for name, row in files.items()},
              "latency_ms": timing, "size": _SIZE.value, "runs": _RUNS.value}
    info = report["cpu"]
    features = ", ".join(name for name, present in info["features"].items() if present)
    print(f"{report['date']} on {info['model']} ({info['cores']} cores; {features}); "
          f"load average {report['load_average']}")
    print("| file | size | max abs vs Keras | 8-bit | PSNR vs Keras | export |")
    print("|---|---|---|---|---|---|")
    for name, row in report["files"].items():
        print(f"| {name} | {row['mb']:.3f} MB | {row['max_abs']:.2g} | {row['grey_levels']} | "
              f"{row['psnr']:.1f} dB | {row['export_s']:.0f} s |")
    print(f"\n{_SIZE.value}x{_SIZE.value} x2, median of {_RUNS.value}:")
    for name, milliseconds in timing.items():
        print(f"  {name}: {milliseconds:.0f} ms")
    if _OUTPUT_JSON.value:
        path = pathlib.Path(_OUTPUT_JSON.value)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    app.run(main)
