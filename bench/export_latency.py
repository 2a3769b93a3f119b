"""Latency of the exported models: the SavedModel against the in-process ASDN, and TFLite FSDN.

    python -m bench.export_latency [--runs=5] [--size=256] [--output_json=runs/bench/export.json]

SavedModel: one call of a size×size uint8 image at ×2 and ×3.3 through (a) the in-process model
(`asdn_tf.inference.engine.compiled_upscaler`, float in and out, as `asdn_tf.upscale` runs it untiled),
(b) the `serving_default` signature of `tf.saved_model.load`, and (c) the same signature in a TF1
session loaded by `tf.compat.v1.saved_model.loader` (what TF Serving runs). Median of `--runs`
timed calls after one warm-up call; the three take turns in every round, so a busy machine slows
them alike. The overhead ratio is (b) or (c) over (a).

TFLite: an ×2 FSDN with a fixed size×size input for each quantization: file size, median invoke
time (ai-edge-litert, XNNPACK, `--threads`), and its agreement with the Keras FSDN on the Set5
images that have a size×size centre crop.

Refusals: what the `upscale_encoded` signature spends refusing hostile requests (a 17 KB PNG
whose header says 12000×12000, the same with scale NaN, a 600-byte JPEG whose header says
12000×12000), through both loaders, each request in a child process of its own: its time and its
peak RSS above the RSS after loading the model and answering one small request (VmHWM, reset
through /proc/self/clear_refs). `--saved_model_dir` measures an existing export instead, e.g. one
written by an older version:

    python -m bench.export_latency --parts=refusals --saved_model_dir=serving/artifacts/asdn/1

The models use the bundled default weights when they exist, else the "default" preset with
random weights (seed 0); the FSDN takes the ASDN's trunk (`init_from_asdn`). Latency does not
depend on the weights; the agreement figures do a little.
"""

import json
import math
import os
import pathlib
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

import asdn_tf
from asdn_tf.io import pixels
from asdn_tf.export.saved_model import export_saved_model
from asdn_tf.export import tflite
from asdn_tf.inference import weights_io
from asdn_tf.inference.engine import compiled_upscaler

SCALES = (2.0, 3.3)
PARTS = ("saved_model", "tflite", "refusals")
LOADERS = ("saved_model.load", "session")
BOMB_SIDE = 12000
DATASETS = pathlib.Path(os.environ.get("ASDN_DATASETS",
                                      pathlib.Path(__file__).resolve().parents[1] / "data"))


def load_asdn():
    """(model, description): the bundled weights, or the default preset with random weights.

    float32, as the export is built: "auto" would compare a bfloat16 model with it."""
    if weights_io.PACKAGE_WEIGHTS.exists():
        return (weights_io.load_pretrained(precision="float32"),
                f"bundled weights {weights_io.PACKAGE_WEIGHTS.name}")
    keras.utils.set_random_seed(0)
    return asdn_tf.build_model("default"), "preset 'default' with random weights (none bundled)"


def measure_saved_model(model, size=256, runs=5):
    """Rows {"scale", "path", "median_ms", "overhead"} for the three call paths."""
    image = np.random.default_rng(0).integers(0, 256, (1, size, size, 3), np.uint8)
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "1"
        export_saved_model(model, path)
        signature = tf.saved_model.load(str(path)).signatures["serving_default"]
        graph = tf.Graph()
        with graph.as_default():
            session = tf.compat.v1.Session(graph=graph)
            meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(path))
        tensors = meta_graph.signature_def["serving_default"]
        upscaler = compiled_upscaler(model)
        rows = []
        for scale in SCALES:
            out_size = asdn_tf.nn.lfr.output_size(size, size, scale)

            def in_process():
                output = upscaler(tf.constant(image, tf.float32) / 255.0,
                                  tf.constant(scale, tf.float32), tf.constant(out_size))
                return pixels.to_uint8(output.numpy())  # rounded as the signature rounds

            def saved_model():
                return signature(image=tf.constant(image),
                                 scale=tf.constant(scale))["image"].numpy()

            def session_run():
                return session.run(tensors.outputs["image"].name,
                                   {tensors.inputs["image"].name: image,
                                    tensors.inputs["scale"].name: np.float32(scale)})

            paths = {"in-process": in_process, "SavedModel (tf.saved_model.load)": saved_model,
                     "SavedModel (session, as TF Serving)": session_run}
            times = {name: [] for name in paths}
            outputs = {name: call() for name, call in paths.items()}  # warm-up
            for _ in range(runs):
                for name, call in paths.items():
                    start = time.perf_counter()
                    call()
                    times[name].append(time.perf_counter() - start)
            base = statistics.median(times["in-process"])
            for name, seconds in times.items():
                difference = np.abs(outputs[name].astype(int) - outputs["in-process"]).max()
                rows.append({"scale": scale, "path": name,
                             "median_ms": round(statistics.median(seconds) * 1e3, 1),
                             "overhead": round(statistics.median(seconds) / base, 3),
                             "max_grey_level_difference": int(difference)})
        session.close()
    return rows


def bomb_png(side=BOMB_SIDE):
    """A valid black side×side PNG, 1 bit per pixel: 17 KB for 12000, 432 MB decoded as RGB."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    compressor = zlib.compressobj(9)
    row = bytes(1 + (side + 7) // 8)  # filter byte, then the packed pixels
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit gray, no interlace
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data)
            + chunk(b"IEND", b""))


def jpeg_claiming(side=BOMB_SIDE):
    """An 8×8 JPEG whose frame header (SOF0) says side×side: a few hundred bytes."""
    data = bytearray(tf.io.encode_jpeg(tf.zeros([8, 8, 3], tf.uint8)).numpy())
    frame = data.index(b"\xff\xc0") + 5  # marker, length (2), precision (1), height, width
    data[frame:frame + 4] = struct.pack(">HH", side, side)
    return bytes(data)


def refusal_requests():
    """(name, image_bytes, scale) of the hostile requests measured."""
    png = bomb_png()
    return [(f"PNG {len(png) // 1000} KB claiming {BOMB_SIDE}x{BOMB_SIDE}, x2", png, 2.0),
            ("same PNG, scale NaN", png, math.nan),
            (f"JPEG {len(jpeg_claiming())} B claiming {BOMB_SIDE}x{BOMB_SIDE}, x2",
             jpeg_claiming(), 2.0)]


# Runs in a child process: argv is the SavedModel folder, the loader, then pairs of a request
# file and a scale. Prints one JSON line per request.
_REFUSAL_CHILD = r"""
import json, sys, time
import numpy as np
import tensorflow as tf

def status(key):
    with open("/proc/self/status") as file:
        for line in file:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024

folder, loader, pairs = sys.argv[1], sys.argv[2], sys.argv[3:]
if loader == "saved_model.load":
    function = tf.saved_model.load(folder).signatures["upscale_encoded"]
    def call(data, scale):
        return function(image_bytes=tf.constant(data), scale=tf.constant(scale, tf.float32))
else:  # the session loader TF Serving uses
    graph = tf.Graph()
    with graph.as_default():
        session = tf.compat.v1.Session(graph=graph)
        signature = tf.compat.v1.saved_model.loader.load(
            session, ["serve"], folder).signature_def["upscale_encoded"]
    def call(data, scale):
        return session.run(signature.outputs["png_bytes"].name,
                           {signature.inputs["image_bytes"].name: data,
                            signature.inputs["scale"].name: np.float32(scale)})
call(tf.io.encode_png(tf.zeros([8, 8, 3], tf.uint8)).numpy(), 2.0)  # builds the runtime
for path, scale in zip(pairs[::2], pairs[1::2]):
    with open(path, "rb") as file:
        data = file.read()
    try:
        with open("/proc/self/clear_refs", "w") as file:
            file.write("5")  # VmHWM starts again from the current RSS
        base = status("VmRSS")
    except OSError:
        base = status("VmHWM")
    start = time.perf_counter()
    try:
        call(data, float(scale))
        message = None
    except tf.errors.InvalidArgumentError as error:
        lines = [line.strip() for line in error.message.splitlines() if line.strip()]
        message = next((line for line in lines if "assertion failed" in line), lines[-1])
    print(json.dumps({"seconds": time.perf_counter() - start,
                      "extra_mb": status("VmHWM") - base, "refused": message is not None,
                      "message": message}), flush=True)
"""


def measure_refusals(saved_model_dir, loader, requests, timeout=300):
    """Rows {"request", "loader", "seconds", "extra_mb", "refused", "message"}: the requests
    sent to `upscale_encoded` one after the other in one child process (see the module
    docstring). A request that allocates raises the RSS the next ones are measured from."""
    if loader not in LOADERS:
        raise ValueError(f"loader must be one of {LOADERS}, got {loader!r}")
    with tempfile.TemporaryDirectory() as folder:
        arguments = []
        for index, (_, image_bytes, scale) in enumerate(requests):
            path = pathlib.Path(folder) / f"request{index}"
            path.write_bytes(image_bytes)
            arguments += [str(path), repr(float(scale))]
        environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        result = subprocess.run([sys.executable, "-c", _REFUSAL_CHILD, str(saved_model_dir),
                                 loader, *arguments], capture_output=True, text=True,
                                env=environment, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"the {loader} child failed: {result.stderr.strip()[-2000:]}")
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return [{"request": name, "loader": loader, **row}
            for (name, _, _), row in zip(requests, rows)]


def measure_tflite(asdn, size=256, runs=10, threads=2):
    """Rows {"quantize", "bytes", "median_ms", "max_abs", "psnr"} for each quantization."""
    fsdn = asdn_tf.init_from_asdn(asdn_tf.build_fsdn(asdn.model_config, 2), asdn)
    set5 = DATASETS / "Set5"
    images = tflite.verification_images(set5, (size, size))
    rows = []
    for quantize in tflite.QUANTIZATIONS:
        content = tflite.convert_tflite(fsdn, quantize, (size, size), set5)
        agreement = tflite.verify_tflite(content, fsdn, images, quantize, threads)
        rows.append({"quantize": quantize, "bytes": len(content),
                     "median_ms": round(_tflite_latency(content, images[0], runs, threads), 1),
                     "max_abs": agreement["max_abs"], "psnr": round(agreement["psnr"], 2),
                     "requirement": agreement["requirement"], "ok": agreement["ok"]})
    return rows, 4 * fsdn.count_params()


def _tflite_latency(content, image, runs, threads):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content, num_threads=threads)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image[None])
    interpreter.invoke()  # warm-up: XNNPACK packs the weights on the first call
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds) * 1e3


def main(argv):
    del argv
    size, runs = flags.FLAGS.size, flags.FLAGS.runs
    parts = [part.strip() for part in flags.FLAGS.parts.split(",") if part.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise app.UsageError(f"--parts: unknown {', '.join(unknown)}; choose from {PARTS}")
    result = {"size": size, "runs": runs}
    model = None
    if "saved_model" in parts or "tflite" in parts or (
            "refusals" in parts and not flags.FLAGS.saved_model_dir):
        model, source = load_asdn()
        result["model"] = source
        print(f"model: {source}; {model.count_params():,} parameters")
    if "saved_model" in parts:
        print(f"\nSavedModel: {size}x{size} uint8 input; median of {runs} runs after a warm-up")
        saved = measure_saved_model(model, size, runs)
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{'scale':>5}  {'path':<37} {'median ms':>10} {'overhead':>9} {'max diff':>9}")
        for row in saved:
            print(f"{row['scale']:>5}  {row['path']:<37} {row['median_ms']:>10.1f} "
                  f"{row['overhead']:>8.3f}x {row['max_grey_level_difference']:>9}")
        print(f"process peak RSS so far: {peak_rss:.0f} MB")
        result.update(saved_model=saved, peak_rss_mb=round(peak_rss))
    if "tflite" in parts:
        lite, float_bytes = measure_tflite(model, size, 2 * runs, flags.FLAGS.threads)
        print(f"\nTFLite x2 FSDN, {size}x{size} input, {flags.FLAGS.threads} threads "
              f"(float32 weights: {float_bytes / 1e6:.3f} MB)")
        print(f"{'quantize':<9} {'size MB':>8} {'median ms':>10} {'max abs':>9} {'PSNR dB':>8}  "
              "requirement")
        for row in lite:
            print(f"{row['quantize']:<9} {row['bytes'] / 1e6:>8.3f} {row['median_ms']:>10.1f} "
                  f"{row['max_abs']:>9.2e} {row['psnr']:>8.2f}  {row['requirement']}: "
                  f"{'met' if row['ok'] else 'NOT met'}")
        result.update(tflite=lite, tflite_threads=flags.FLAGS.threads)
    if "refusals" in parts:
        result["refusals"] = _refusals(model, flags.FLAGS.saved_model_dir)
    output = pathlib.Path(flags.FLAGS.output_json)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=1))
    print(f"\nwrote {output}")


def _refusals(model, saved_model_dir):
    with tempfile.TemporaryDirectory() as folder:
        if not saved_model_dir:
            saved_model_dir = pathlib.Path(folder) / "1"
            export_saved_model(model, saved_model_dir)
        print(f"\nRefusals by upscale_encoded of {saved_model_dir} (extra: peak RSS above the "
              "RSS after loading)")
        print(f"{'request':<40} {'loader':<17} {'seconds':>8} {'extra MB':>9}  answer")
        rows = []
        for loader in LOADERS:
            # A child per request: memory one request took and freed may stay in the process
            # (RSS) and hide what the next one takes.
            for request in refusal_requests():
                row, = measure_refusals(saved_model_dir, loader, [request])
                answer = f"refused: {row['message']}" if row["refused"] else "answered"
                print(f"{row['request']:<40} {loader:<17} {row['seconds']:>8.3f} "
                      f"{row['extra_mb']:>9.0f}  {answer[:120]}")
                rows.append(row)
    return rows


if __name__ == "__main__":
    flags.DEFINE_integer("size", 256, "Side of the square input.")
    flags.DEFINE_integer("runs", 5, "Timed calls per path (TFLite: twice as many).")
    flags.DEFINE_integer("threads", 2, "TFLite interpreter threads.")
    flags.DEFINE_string("parts", ",".join(PARTS), f"Comma-separated parts to run, of {PARTS}.")
    flags.DEFINE_string("saved_model_dir", None, "refusals: measure this export instead of "
                        "exporting the model.")
    flags.DEFINE_string("output_json", "runs/bench/export_latency.json", "Where to write results.")
    app.run(main)
