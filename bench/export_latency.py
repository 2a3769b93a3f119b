"""Latency of the exported models: the SavedModel against the in-process ASDN, and TFLite FSDN.

    python -m bench.export_latency [--runs=5] [--size=256] [--output_json=runs/bench/export.json]

SavedModel: one call of a size×size uint8 image at ×2 and ×3.3 through (a) the in-process model
(`asdn_tf.inference.compiled_upscaler`, float in and out, as `asdn_tf.upscale` runs it untiled),
(b) the `serving_default` signature of `tf.saved_model.load`, and (c) the same signature in a TF1
session loaded by `tf.compat.v1.saved_model.loader` (what TF Serving runs). Median of `--runs`
timed calls after one warm-up call; the three take turns in every round, so a busy machine slows
them alike. The overhead ratio is (b) or (c) over (a).

TFLite: an ×2 FSDN with a fixed size×size input for each quantization: file size, median invoke
time (ai-edge-litert, XNNPACK, `--threads`), and its agreement with the Keras FSDN on the Set5
images that have a size×size centre crop.

The models use the bundled default weights when they exist, else the "default" preset with
random weights (seed 0); the FSDN takes the ASDN's trunk (`init_from_asdn`). Latency does not
depend on the weights; the agreement figures do a little.
"""

import json
import os
import pathlib
import resource
import statistics
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

import asdn_tf
from asdn_tf import export, pretrained
from asdn_tf.inference import compiled_upscaler

SCALES = (2.0, 3.3)
DATASETS = pathlib.Path(os.environ.get(
    "ASDN_DATASETS", pathlib.Path(__file__).resolve().parents[2] / "shared" / "datasets"))


def load_asdn():
    """(model, description): the bundled weights, or the default preset with random weights."""
    if pretrained.PACKAGE_WEIGHTS.exists():
        return pretrained.load_pretrained(), f"bundled weights {pretrained.PACKAGE_WEIGHTS.name}"
    keras.utils.set_random_seed(0)
    return asdn_tf.build_model("default"), "preset 'default' with random weights (none bundled)"


def measure_saved_model(model, size=256, runs=5):
    """Rows {"scale", "path", "median_ms", "overhead"} for the three call paths."""
    image = np.random.default_rng(0).integers(0, 256, (1, size, size, 3), np.uint8)
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "1"
        export.export_saved_model(model, path)
        signature = tf.saved_model.load(str(path)).signatures["serving_default"]
        graph = tf.Graph()
        with graph.as_default():
            session = tf.compat.v1.Session(graph=graph)
            meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(path))
        tensors = meta_graph.signature_def["serving_default"]
        upscaler = compiled_upscaler(model)
        rows = []
        for scale in SCALES:
            out_size = asdn_tf.lfr.output_size(size, size, scale)

            def in_process():
                output = upscaler(tf.constant(image, tf.float32) / 255.0,
                                  tf.constant(scale, tf.float32), tf.constant(out_size))
                return np.round(output.numpy() * 255.0).astype(np.uint8)

            def saved_model():
                return signature(image=tf.constant(image), scale=tf.constant(scale))["image"].numpy()

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


def measure_tflite(asdn, size=256, runs=10, threads=2):
    """Rows {"quantize", "bytes", "median_ms", "max_abs", "psnr"} for each quantization."""
    fsdn = asdn_tf.init_from_asdn(asdn_tf.build_fsdn(asdn.model_config, 2), asdn)
    set5 = DATASETS / "Set5"
    images = export.verification_images(set5, (size, size))
    rows = []
    for quantize in export.QUANTIZATIONS:
        content = export.convert_tflite(fsdn, quantize, (size, size), set5)
        agreement = export.verify_tflite(content, fsdn, images, quantize, threads)
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
    model, source = load_asdn()
    print(f"model: {source}; {model.count_params():,} parameters; {size}x{size} uint8 input; "
          f"median of {runs} runs after a warm-up")
    saved = measure_saved_model(model, size, runs)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n{'scale':>5}  {'path':<37} {'median ms':>10} {'overhead':>9} {'max diff':>9}")
    for row in saved:
        print(f"{row['scale']:>5}  {row['path']:<37} {row['median_ms']:>10.1f} "
              f"{row['overhead']:>8.3f}x {row['max_grey_level_difference']:>9}")
    print(f"process peak RSS so far: {peak_rss:.0f} MB")
    lite, float_bytes = measure_tflite(model, size, 2 * runs, flags.FLAGS.threads)
    print(f"\nTFLite x2 FSDN, {size}x{size} input, {flags.FLAGS.threads} threads "
          f"(float32 weights: {float_bytes / 1e6:.3f} MB)")
    print(f"{'quantize':<9} {'size MB':>8} {'median ms':>10} {'max abs':>9} {'PSNR dB':>8}  "
          "requirement")
    for row in lite:
        print(f"{row['quantize']:<9} {row['bytes'] / 1e6:>8.3f} {row['median_ms']:>10.1f} "
              f"{row['max_abs']:>9.2e} {row['psnr']:>8.2f}  {row['requirement']}: "
              f"{'met' if row['ok'] else 'NOT met'}")
    result = {"model": source, "size": size, "runs": runs, "saved_model": saved,
              "peak_rss_mb": round(peak_rss), "tflite": lite,
              "tflite_threads": flags.FLAGS.threads}
    output = pathlib.Path(flags.FLAGS.output_json)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=1))
    print(f"\nwrote {output}")


if __name__ == "__main__":
    flags.DEFINE_integer("size", 256, "Side of the square input.")
    flags.DEFINE_integer("runs", 5, "Timed calls per path (TFLite: twice as many).")
    flags.DEFINE_integer("threads", 2, "TFLite interpreter threads.")
    flags.DEFINE_string("output_json", "runs/bench/export_latency.json", "Where to write results.")
    app.run(main)
