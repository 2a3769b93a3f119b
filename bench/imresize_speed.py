"""Throughput of the exact `imresize` against `tf.image.resize` when downscaling a 2K image.

    python -m bench.imresize_speed [--runs=15] [--height=1356] [--width=2040]

Prints a table and a JSON line of input megapixels per second (median of `--runs` timed calls
after one warm-up call) for: the exact blocked `imresize`, the dense [out, in] matrix products
of `resize_matrix` (how `imresize` used to work), and `tf.image.resize(bicubic, antialias=True)`.
All three run eagerly, as a caller would. The methods take turns in every round, so a busy
machine slows them alike.
"""

import json
import statistics
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

from asdn_tf.data.imresize import imresize
from asdn_tf.data.resizing import resize_matrix

SCALES = (2, 3, 4)


def _dense_matrices(images, factor):
    height, width = images.shape[1], images.shape[2]
    out_h, out_w = -(-height // factor), -(-width // factor)
    resized = tf.einsum("oh,nhwc->nowc", resize_matrix(height, out_h, 1 / factor), images)
    return tf.einsum("pw,nowc->nopc", resize_matrix(width, out_w, 1 / factor), resized)


def _tf_image_resize(images, factor):
    size = (-(-images.shape[1] // factor), -(-images.shape[2] // factor))
    return tf.image.resize(images, size, "bicubic", antialias=True)


METHODS = {
    "imresize (exact)": lambda images, factor: imresize(images, scale=1 / factor),
    "dense matrices (exact)": _dense_matrices,
    "tf.image.resize": _tf_image_resize,
}


def measure(height=1356, width=2040, runs=15):
    """Rows {"method", "scale", "megapixels_per_s", "median_ms"} for each method and 1/2, 1/3, 1/4."""
    images = tf.constant(np.random.default_rng(0).random((1, height, width, 3), np.float32))
    megapixels = height * width / 1e6
    rows = []
    for factor in SCALES:
        times = {name: [] for name in METHODS}
        for name, method in METHODS.items():
            method(images, factor).numpy()
        for _ in range(runs):
            for name, method in METHODS.items():
                start = time.perf_counter()
                method(images, factor).numpy()
                times[name].append(time.perf_counter() - start)
        for name, seconds in times.items():
            median = statistics.median(seconds)
            rows.append({"method": name, "scale": f"1/{factor}", "median_ms": round(median * 1e3, 2),
                         "megapixels_per_s": round(megapixels / median, 1)})
    return rows


def format_table(rows):
    reference = {row["scale"]: row["median_ms"] for row in rows
                 if row["method"] == "tf.image.resize"}
    lines = [f"{'method':<24}{'scale':>6}{'MP/s':>9}{'ms':>9}{'× tf time':>11}"]
    for row in rows:
        ratio = row["median_ms"] / reference[row["scale"]]
        lines.append(f"{row['method']:<24}{row['scale']:>6}{row['megapixels_per_s']:>9.1f}"
                     f"{row['median_ms']:>9.1f}{ratio:>11.2f}")
    return "\n".join(lines)


def main(argv):
    del argv
    rows = measure(flags.FLAGS.height, flags.FLAGS.width, flags.FLAGS.runs)
    print(format_table(rows))
    print(json.dumps({"image": [flags.FLAGS.height, flags.FLAGS.width, 3], "runs": flags.FLAGS.runs,
                      "results": rows}))


if __name__ == "__main__":
    flags.DEFINE_integer("runs", 15, "Timed calls per method and scale, after one warm-up call.")
    flags.DEFINE_integer("height", 1356, "Image height (DIV2K's 2040×1356 by default).")
    flags.DEFINE_integer("width", 2040, "Image width.")
    app.run(main)
