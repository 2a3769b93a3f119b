"""Images per second of the local Beam pipeline (`python -m asdn_tf.batch` on the DirectRunner,
multi-process) against `asdn-upscale --input=folder/`, on the same images in one run.

    python -m bench.batch                                  # 20 crops of 256², ×2
    python -m bench.batch --images=20 --side=256 --scale=2 --json=batch.json

The images are --images crops (--side² pixels, on a grid) of the sample photo the notebooks use.
Three fresh processes upscale them into empty folders, one after the other, with the bundled
model and its defaults (precision auto, automatic tiling):

- `asdn-upscale --input=folder/`: one process, TensorFlow's default threads (one per core);
- the pipeline with 1 worker process and the same threads: what Beam adds;
- the pipeline with one worker per core, each with 1 thread (TF_NUM_INTRAOP_THREADS=1).

Each row gives the wall time of the whole process (Python start, imports, model loads, worker
start-up included) and the images per second it makes; the overhead per image is the
1-worker pipeline's wall time less the command's, over the images. The peak memory of the
process and of its largest child (a pipeline's worker) is sampled every 0.1 s. The pipeline's
outputs are checked byte-identical to the command's. The CPU's features and the load average
come with the figures.
"""

import datetime
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
from absl import app, flags
from PIL import Image

from bench.engine import cpu_features

REPOSITORY = pathlib.Path(__file__).resolve().parents[1]

_IMAGES = flags.DEFINE_integer("images", 20, "How many images.")
_SIDE = flags.DEFINE_integer("side", 256, "Their side in pixels.")
_SCALE = flags.DEFINE_string("scale", "2", "The upscale factor.")
_JSON = flags.DEFINE_string("json", None, "Also write the figures to this JSON file.")


def make_images(folder, count, side):
    """`count` side×side PNG crops of the sample photo, on a grid, in `folder`."""
    from asdn_tf.evaluation import notebook

    with Image.open(notebook.sample_image_path()) as photo:
        pixels = np.asarray(photo.convert("RGB"))
    columns = int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / columns))
    tops = np.linspace(0, pixels.shape[0] - side, rows).astype(int)
    lefts = np.linspace(0, pixels.shape[1] - side, columns).astype(int)
    for index in range(count):
        top, left = tops[index // columns], lefts[index % columns]
        Image.fromarray(pixels[top:top + side, left:left + side]).save(
            pathlib.Path(folder, f"crop{index:02d}.png"))


def timed(arguments, env=None):
    """Runs `python arguments` to its end: (wall seconds, the peak RSS in MiB of the process
    and of its largest child (a worker; 0 without one), sampled, and its summary line)."""
    import psutil

    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, *arguments], cwd=REPOSITORY,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **(env or {})})
    peak = {}
    stop = threading.Event()

    def sample():
        root = psutil.Process(process.pid)
        while not stop.wait(0.1):
            try:
                for member in [root, *root.children(recursive=True)]:
                    peak[member.pid] = max(peak.get(member.pid, 0), member.memory_info().rss)
            except psutil.Error:
                pass

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    seconds = time.perf_counter() - start
    stop.set()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(arguments)} failed:\n{stderr[-3000:]}")
    summary = stdout.strip().splitlines()[-1]
    children = [rss for pid, rss in peak.items() if pid != process.pid]
    return seconds, peak.get(process.pid, 0) / 2**20, max(children, default=0) / 2**20, summary


def measure(folder, out, count, scale):
    """The three runs' rows."""
    cores = os.cpu_count()
    common = [f"--input={folder}/", f"--scale={scale}"]
    pipeline = ["-m", "asdn_tf.batch", *common, "--runner=DirectRunner",
                "--direct_running_mode=multi_processing"]
    runs = [("asdn-upscale --input=folder/", f"1 process, {cores} threads",
             ["-m", "asdn_tf.cli.upscale", *common, f"--output={out}/command"], None),
            ("pipeline, DirectRunner", f"1 worker, {cores} threads",
             [*pipeline, f"--output={out}/one", "--direct_num_workers=1"], None),
            ("pipeline, DirectRunner", f"{cores} workers, 1 thread each",
             [*pipeline, f"--output={out}/each", f"--direct_num_workers={cores}"],
             {"TF_NUM_INTRAOP_THREADS": "1"})]
    rows = []
    for name, workers, arguments, env in runs:
        seconds, peak_mib, worker_mib, summary = timed(arguments, env)
        inner = float(re.search(r" in ([\d.]+) s", summary).group(1))
        rows.append({"run": name, "workers": workers, "wall_s": round(seconds, 1),
                     "images_per_s": round(count / seconds, 3), "own_time_s": inner,
                     "peak_rss_mib": round(peak_mib), "worker_peak_rss_mib": round(worker_mib)})
    expected = _files(pathlib.Path(out, "command"))
    for name in ("one", "each"):
        if _files(pathlib.Path(out, name)) != expected:
            raise AssertionError(f"the pipeline's outputs ({name}) differ from the command's")
    return rows


def _files(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.glob("*.png"))}


def main(argv):
    del argv
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as root:
        folder = pathlib.Path(root, "in")
        folder.mkdir()
        make_images(folder, _IMAGES.value, _SIDE.value)
        rows = measure(folder, root, _IMAGES.value, _SCALE.value)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPOSITORY,
                            capture_output=True, text=True).stdout.strip() or "unknown"
    report = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "commit": commit,
              "images": _IMAGES.value, "side": _SIDE.value, "scale": _SCALE.value,
              **cpu_features(), "load_before": [round(x, 1) for x in load_before],
              "load_after": [round(x, 1) for x in os.getloadavg()], "rows": rows,
              "overhead_per_image_s": round((rows[1]["wall_s"] - rows[0]["wall_s"])
                                            / _IMAGES.value, 2)}
    print(f"{report['images']} images of {report['side']}², ×{report['scale']}, "
          f"{report['date']}, {commit}, {report['cpu']}, load {report['load_before']} -> "
          f"{report['load_after']}")
    print("| run | workers and threads | wall, s | images/s | own time, s | peak RSS, MiB: "
          "process, largest worker |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['run']} | {row['workers']} | {row['wall_s']} | {row['images_per_s']} | "
              f"{row['own_time_s']} | {row['peak_rss_mib']}, {row['worker_peak_rss_mib']} |")
    print(f"overhead per image (1 worker against the command): "
          f"{report['overhead_per_image_s']} s")
    if _JSON.value:
        pathlib.Path(_JSON.value).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report))


if __name__ == "__main__":
    app.run(main)
