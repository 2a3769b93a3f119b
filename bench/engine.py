"""The upscale engine's figures as ratios within one run: tiling's cost, peak memory, speed.

    python -m bench.engine                       # every figure (about 15 minutes on 2 cores)
    python -m bench.engine --skip_large          # without the 8192² output (about 5 minutes)
    python -m bench.engine --output_json=runs/bench/engine.json

It prints, on the CPU it runs on (named with its AVX-512, VNNI, bfloat16 and AMX flags):

- the reference: a float32 matrix product of 0.3 TFLOP (5313²), timed in this process;
- the quick start (the sample photograph ×2.5 → 1280×1500) as a fresh `asdn-upscale` process
  in float32, its upscale time (as the command prints it) over the reference, and its peak RSS
  (VmHWM); the same in bfloat16 where this CPU computes it;
- tiled (the automatic choice) against untiled (`--tile=0`) in this process, in float32 and in
  bfloat16: the quick start and 1024² ×2 → 2048², the two alternating, each one's fastest of
  --repeats runs, and the largest difference in grey levels;
- peak RSS of a fresh process upscaling a 2048² PNG ×4 → 8192² (the bundled model, float32).

Other work on the machine spoils the times; the load average is printed before and after.
"""

import contextlib
import io
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

MATMUL_SIDE = 5313  # 2 · 5313³ = 0.300 TFLOP
QUICKSTART_SCALE = 2.5
REPOSITORY = pathlib.Path(__file__).resolve().parents[1]


def cpu_features():
    """The CPU's name and the flags that decide its speed here, from /proc/cpuinfo."""
    name, flags_line = "unknown", ""
    info = pathlib.Path("/proc/cpuinfo")
    if info.exists():
        for line in info.read_text().splitlines():
            if line.startswith("model name") and name == "unknown":
                name = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags_line:
                flags_line = line.split(":", 1)[1]
    present = set(flags_line.split())
    wanted = {"AVX-512": "avx512f", "VNNI": "avx512_vnni", "AVX512_BF16": "avx512_bf16",
              "AMX": "amx_bf16"}
    return {"cpu": name, "cores": os.cpu_count(),
            **{label: flag in present for label, flag in wanted.items()}}


def matmul_seconds(runs=5):
    """Median seconds of one 0.3 TFLOP float32 matrix product."""
    import tensorflow as tf

    a = tf.random.stateless_normal([MATMUL_SIDE] * 2, [0, 1])
    b = tf.random.stateless_normal([MATMUL_SIDE] * 2, [0, 2])
    product = tf.function(tf.matmul)
    product(a, b).numpy()
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        product(a, b).numpy()
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds))


def sample_photo():
    from asdn_tf.evaluation import notebook

    return notebook.sample_image_path()


def command_in_child(arguments):
    """Runs `asdn-upscale arguments` in a fresh process; its row: the upscale's seconds as the
    command prints them (decode, upscale and write of the file, after the model is loaded), the
    whole command's seconds (imports and model load included), and the peak RSS (VmHWM, MiB)."""
    done = subprocess.run([sys.executable, "-m", "bench.engine", "--child", "--", *arguments],
                          capture_output=True, text=True, cwd=REPOSITORY)
    if done.returncode != 0:
        raise RuntimeError(f"asdn-upscale {' '.join(arguments)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def child(arguments):
    """In the child: the command, then its figures as one JSON line."""
    from asdn_tf.cli import upscale as command

    said = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(said):
        status = command.run_cli(["asdn-upscale", *arguments])
    seconds = time.perf_counter() - start
    from bench.upscale_tiled import peak_rss_kib  # after the command: its imports are timed

    upscale_s = float(re.search(r"\(\d+x\d+, ([\d.]+) s\)", said.getvalue()).group(1))
    print(json.dumps({"status": status, "seconds": upscale_s, "command_s": round(seconds, 2),
                      "peak_rss_mib": round(peak_rss_kib() / 1024)}))


def tiled_against_untiled(image, scale, precision, repeats):
    """In this process: the automatic choice and --tile=0 alternating; each one's best."""
    from asdn_tf.inference import weights_io
    from bench import upscale_tiled

    model = weights_io.load_pretrained(precision=precision)
    row = upscale_tiled.compare(model, image, scale, repeats=repeats)
    return {"input": list(image.shape[:2]), "scale": scale, "precision": precision, **row}


def measure(repeats=2, skip_large=False, echo=print):
    """Every figure, and the printed lines under "lines"; `echo` gets each as it is measured."""
    from asdn_tf.inference import precision as precision_lib
    from asdn_tf.io import image_io, image_write

    lines = []

    def say(line):
        lines.append(line)
        echo(line)

    result = {"machine": cpu_features(), "load_before": os.getloadavg(), "lines": lines}
    say(f"machine: {result['machine']}; load {result['load_before']}")
    reference = result["matmul_s"] = round(matmul_seconds(), 3)
    say(f"0.3 TFLOP float32 matmul: {reference:.3f} s")
    photo = sample_photo()
    bfloat16 = precision_lib.auto_precision()[0] == "bfloat16"
    precisions = ["float32", "bfloat16"] if bfloat16 else ["float32"]
    with tempfile.TemporaryDirectory(prefix="bench_engine_") as folder:
        for precision in precisions:
            row = command_in_child([f"--input={photo}", f"--output={folder}/q.png", "--overwrite",
                                    f"--scale={QUICKSTART_SCALE}", f"--precision={precision}"])
            row["over_matmul"] = round(row["seconds"] / reference, 2)
            result[f"quickstart_{precision}"] = row
            say(f"quick start ×{QUICKSTART_SCALE} {precision}: upscale {row['seconds']} s = "
                 f"{row['over_matmul']}× the matmul (whole command {row['command_s']} s), peak "
                 f"RSS {row['peak_rss_mib']} MiB")
        image = image_io.read_image(photo)
        square = _square(image, 1024)
        for precision in precisions:
            for name, picture, scale in (("quickstart", image, QUICKSTART_SCALE),
                                         ("1024x2", square, 2.0)):
                row = tiled_against_untiled(picture, scale, precision, repeats)
                result[f"tiled_{name}_{precision}"] = row
                say(f"tiled / untiled, {name} {precision}: {row['ratio']}× "
                    f"({row['tiled_seconds']} / {row['untiled_seconds']} s), largest difference "
                    f"{row['max_grey_difference']} grey level(s)")
        if not skip_large:
            source = pathlib.Path(folder) / "large.png"
            image_write.write_image(source, _square(image, 2048))
            row = command_in_child([f"--input={source}", f"--output={folder}/large_x4.png",
                                    "--scale=4", "--precision=float32"])
            result["large_2048x4"] = row
            say(f"2048² ×4 → 8192² float32: upscale {row['seconds']} s, peak RSS "
                 f"{row['peak_rss_mib']} MiB")
    result["load_after"] = os.getloadavg()
    say(f"load after: {result['load_after']}")
    return result


def _square(image, side):
    """The photograph's central square, resized (bicubic) to side × side."""
    from PIL import Image

    height, width = image.shape[:2]
    crop = min(height, width)
    top, left = (height - crop) // 2, (width - crop) // 2
    square = Image.fromarray(image[top:top + crop, left:left + crop])
    return np.asarray(square.resize((side, side), Image.BICUBIC))


def main(argv):
    values = flags.FLAGS
    if values.child:
        child(argv[1:])
        return
    result = measure(values.repeats, values.skip_large)
    if values.output_json:
        path = pathlib.Path(values.output_json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    flags.DEFINE_integer("repeats", 2, "Runs of each way for tiled against untiled.")
    flags.DEFINE_bool("skip_large", False, "Leave out the 2048² ×4 → 8192² process.")
    flags.DEFINE_string("output_json", None, "Also write every figure to this JSON file.")
    flags.DEFINE_bool("child", False, "Internal: run asdn-upscale with the arguments after --.")
    app.run(main)
