"""Which step of a ×3 or ×4 recursion gains or loses: the whole recursion against its first
step alone, each as Y-PSNR over bicubic under the evaluation protocol.

    python -m bench.recursion_steps --model=photo --degradations=bicubic,bicubic_noaa

For each image the LR is made as `asdn_tf.evaluate` makes it; "recursion" is the model's
upscale (×2, then ×1.5 or ×2 on its own output), "first step" is the model's ×2 step brought the
rest of the way by bicubic. Their difference is what the later step adds. float32 throughout.
"""

import numpy as np
from absl import app, flags

from asdn_tf.evaluation import benchmark, protocol
from asdn_tf.evaluation import metrics
from asdn_tf.inference import weights_io
from asdn_tf.nn import lfr
from bench.export_latency import DATASETS
from asdn_tf.data.imresize import imresize
from asdn_tf.inference.engine import upscale_tensor
from asdn_tf.io.pixels import to_float, to_rgb, to_uint8

_MODEL = flags.DEFINE_string("model", "photo", "Bundled model name, or a .weights.h5 path.")
_DATA_DIR = flags.DEFINE_string("data_dir", str(DATASETS),
                                "Folder holding the benchmark sets (default: ASDN_DATASETS).")
_SETS = flags.DEFINE_list("sets", ["Set5", "Set14"], "Benchmark sets.")
_SCALES = flags.DEFINE_list("scales", ["3", "4"], "Scales above 2.")
_DEGRADATIONS = flags.DEFINE_list("degradations", ["bicubic", "bicubic_noaa", "jpeg75",
                                                   "blur_noise"], "LR makers (evaluate's).")


def first_step_psnr(hr, scale, model, degradation):
    """Y-PSNR of the model's ×2 step on the LR of `hr`, brought to ×`scale` by bicubic."""
    hr, lr = benchmark.benchmark_pair(hr, scale, degradation)
    pixels = to_float(lr)
    middle = lfr.output_size(*lr.shape[:2], 2.0)
    first = upscale_tensor(model, to_rgb(pixels)[None], 2.0, size=middle)
    output = np.asarray(imresize(first, scale=scale / 2, size=hr.shape[:2]))[0]
    if pixels.shape[2] == 1:
        output = output.mean(axis=2, keepdims=True)
    sr = to_uint8(output).reshape(hr.shape)
    return metrics.psnr(sr, hr, crop_border=protocol.shave(scale))


def main(argv):
    del argv
    name = _MODEL.value
    model = (weights_io.load_model(name, precision="float32") if name.endswith(".h5")
             else weights_io.load_pretrained(name, precision="float32"))
    sets = benchmark.load_sets(_DATA_DIR.value, _SETS.value)
    print(f"{name}: gain over bicubic (dB), Y-PSNR, float32")
    print("| LR | scale | set | bicubic | recursion | first step, then bicubic |")
    print("|---|---|---|---|---|---|")
    for degradation in _DEGRADATIONS.value:
        for scale in map(float, _SCALES.value):
            for set_name, images in sets.items():
                rows = np.array([
                    (benchmark.measure(hr, scale, "bicubic", degradation=degradation)[0],
                     benchmark.measure(hr, scale, "asdn", model, degradation)[0],
                     first_step_psnr(hr, scale, model, degradation))
                    for _, hr in images])
                bicubic, recursion, first = rows.mean(axis=0)
                print(f"| {degradation} | ×{scale:g} | {set_name} | {bicubic:.2f} | "
                      f"{recursion - bicubic:+.2f} | {first - bicubic:+.2f} |", flush=True)


if __name__ == "__main__":
    app.run(main)
