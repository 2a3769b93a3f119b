"""Where a traced call spends its time, by kind of op, from a `tf.profiler` trace.

    python -m bench.op_profile [--preset=default] [--size=512] [--scale=2] [--policy=float32]

`op_breakdown(call)` traces `call` a few times under `tf.profiler.experimental` and sums the
duration of every TensorFlow op event on the executor threads, grouped by `category` (3×3
convolutions, 1×1 convolutions, concatenations, ...). Ops of one call can overlap on the two
inter-op threads, so the sum may exceed the wall time; the shares are what to read.
"""

import collections
import glob
import re
import statistics
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

# A private module path, but the only parser of the trace shipped with TensorFlow itself.
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from asdn_tf.inference.engine import compiled_upscaler
from asdn_tf.nn.model import build_model

# "scope/of/the/node:OpType"; the executor's own events ("ExecutorState::Process") do not match.
_OP_EVENT = re.compile(r"^([\w./\-]+):(\w+)$")


def category(scope, op_type):
    """The kind of work an op does in an ASDN upscale, from its name scope and type."""
    if op_type == "ConcatV2":
        return "concatenations"
    if op_type == "Cast":
        return "casts (mixed precision)"
    if "irb_" in scope or "switch_case" in scope:
        return "reconstruction branches (1×1 to RGB, spatial attention)"
    if "Conv2D" in op_type:
        if "/dense_" in scope:
            return "3×3 dense convolutions"
        if "/head" in scope:
            return "3×3 head convolution"
        return "1×1 block convolutions (compress, fuse + residual)"
    if "/ca" in scope:
        return "channel attention (mean, scale)"
    if "asdn" in scope:
        return "other network ops (blend, adds)"
    return "pre-upsampling (imresize), clip, loop"


def op_breakdown(call, runs=3):
    """[(category, ms per call, share)] of the op time of `call()`, largest first."""
    call()
    folder = tempfile.mkdtemp(prefix="op_profile_")
    tf.profiler.experimental.start(folder)
    try:
        for _ in range(runs):
            call()
    finally:
        tf.profiler.experimental.stop()
    space = xplane_pb2.XSpace()
    [path] = glob.glob(f"{folder}/**/*.xplane.pb", recursive=True)
    with open(path, "rb") as file:
        space.ParseFromString(file.read())
    totals = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                match = _OP_EVENT.match(plane.event_metadata[event.metadata_id].name)
                if match:
                    totals[category(*match.groups())] += event.duration_ps / 1e9 / runs
    total = sum(totals.values()) or 1.0
    return [(name, round(ms, 1), round(ms / total, 3)) for name, ms in totals.most_common()]


def upscale_call(model, size, scale, seed=0):
    """A no-argument call of the compiled upscaler to size×size; returns (call, input side)."""
    side = max(int(round(size / scale)), 2)
    images = tf.constant(np.random.default_rng(seed).random((1, side, side, 3), np.float32))
    upscaler = compiled_upscaler(model)
    arguments = (images, tf.constant(scale, tf.float32), tf.constant([size, size], tf.int32))
    return (lambda: upscaler(*arguments).numpy()), side


def main(argv):
    del argv
    values = flags.FLAGS
    keras.mixed_precision.set_global_policy(values.policy)
    model = build_model(values.preset)
    call, _ = upscale_call(model, values.size, values.scale)
    call()
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    print(f"{values.preset} {values.policy} ×{values.scale:g} to {values.size}²: "
          f"{statistics.median(seconds) * 1e3:.1f} ms per call (median of 3)")
    for name, ms, share in op_breakdown(call):
        print(f"  {name:<58}{ms:>9.1f} ms{share:>8.1%}")


if __name__ == "__main__":
    flags.DEFINE_string("preset", "default", "Model preset.")
    flags.DEFINE_integer("size", 512, "Output side.")
    flags.DEFINE_float("scale", 2.0, "Scale.")
    flags.DEFINE_string("policy", "float32", "Keras dtype policy: float32 or mixed_bfloat16.")
    app.run(main)
