"""The FSDN plan's cost against ASDN alone, as ratios within one run.

    python -m bench.fsdn_plan                       # float32, the engine's automatic tiling
    python -m bench.fsdn_plan --precision=bfloat16  # where the CPU computes it fast

For each case it times the upscale engine (`engine.run`, the bundled default ASDN) alone and with
an FSDN of the `fsdn` preset (×2, ×3, ×4 heads; random weights: time does not depend on their
values) for the integer part, the two alternating, each one's fastest of --repeats runs after a
warm-up, and prints plan/alone. The cases: the quick start's photograph (512×600) at ×2 and ×2.5,
and a 512² image at ×4. A float32 matrix product of 0.3 TFLOP, timed in the same process, is the
reference that makes the seconds comparable across machines (bench/engine.py).
"""

import time

import numpy as np
from absl import app, flags

from bench.engine import cpu_features, matmul_seconds

CASES = (("quick start ×2", (512, 600), 2.0), ("quick start ×2.5", (512, 600), 2.5),
         ("512² ×4", (512, 512), 4.0))

flags.DEFINE_enum("precision", "float32", ["float32", "bfloat16"], "Compute precision.")
flags.DEFINE_integer("repeats", 3, "Timed runs of each plan (the fastest counts).")


def _fastest(function, repeats):
    function()  # traces
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv):
    del argv
    import asdn_tf
    from asdn_tf.inference import engine, precision as precision_lib
    precision = flags.FLAGS.precision
    asdn = asdn_tf.load_pretrained("default", precision)
    with precision_lib.dtype_policy(precision_lib.PRECISIONS[precision]):
        fsdn = asdn_tf.build_fsdn("fsdn", (2, 3, 4))
    print(f"cpu: {cpu_features()}, precision {precision}")
    reference = matmul_seconds()
    print(f"reference matmul (0.3 TFLOP float32): {reference:.3f} s")
    rng = np.random.default_rng(0)
    for label, (height, width), scale in CASES:
        rgb = rng.random((height, width, 3), np.float32)
        size = (round(height * scale), round(width * scale))
        alone = _fastest(lambda: engine.run(asdn, rgb, scale, size, dtype=np.uint8),
                         flags.FLAGS.repeats)
        plan = _fastest(lambda: engine.run(asdn, rgb, scale, size, dtype=np.uint8, fsdn=fsdn),
                        flags.FLAGS.repeats)
        print(f"{label}: ASDN alone {alone:.2f} s ({alone / reference:.1f}× the matmul), "
              f"FSDN plan {plan:.2f} s ({plan / reference:.1f}×): plan/alone {plan / alone:.2f}")


if __name__ == "__main__":
    app.run(main)
