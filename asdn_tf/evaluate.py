"""Benchmark tables: Y-channel PSNR / SSIM of bicubic or ASDN on image sets, at any scales.

    python -m asdn_tf.evaluate --data_dir=data --sets=Set5,Set14 \
        --scales=2,3,4,8,1.5 --method=bicubic --output_json=runs/bicubic.json --plot=runs/bicubic.png

The protocol is the literature's (docs/protocol.md): for an integer scale s the HR
image is cropped to a multiple of s; LR = imresize(HR, 1/s) (MATLAB-exact, ceil(H/s) pixels),
quantised to uint8 as the benchmark LR PNGs are; the SR is made at exactly the HR size and
quantised to uint8; PSNR and SSIM are measured on BT.601 Y (gray images on their values)
with ceil(s) pixels shaved from every border. Decimal scales skip the crop.

Example (notebook):
    >>> sets = load_sets("data", ["Set5"])
    >>> results = evaluate(sets, [2, 4], "bicubic")
    >>> print(format_table(results))
"""

import csv
import io
import json
import math
import os
import pathlib
import sys
import time

import numpy as np
from absl import app, flags

from asdn_tf import cli, data_folders, degradation as degradation_lib, fileio, image_io, lfr
from asdn_tf import metrics
from asdn_tf import precision as precision_lib
from asdn_tf import progress, weights_io
from asdn_tf.imresize import imresize
from asdn_tf.inference import compiled_upscaler
from asdn_tf.model import ASDN
from asdn_tf.pixels import to_float, to_rgb, to_uint8

METHODS = ("bicubic", "asdn")
CSV_FIELDS = ("set", "scale", "method", "psnr", "ssim", "images", "shave")


def parse_scales(values):
    """Scales as floats from numbers or strings ("2", "1.5"); raises ValueError naming a bad one."""
    scales = [lfr.check_scale(value) for value in values]
    if not scales:
        raise ValueError("no scales given")
    return scales


def load_set(folder):
    """[(path, image)] for the images of one set: uint8 H×W (gray) or H×W×3 (RGB).

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: the folder holds no images, or an image is unreadable or not 8-bit
            (the message names it).
    """
    folder = pathlib.Path(folder)
    data_folders.require_folder(folder)
    paths = image_io.list_images(folder)
    if not paths:
        raise ValueError(f"no images in {folder}")
    images = []
    for path in paths:
        image = image_io.read_image(path)
        if image.dtype != np.uint8:
            raise ValueError(f"{path} is {image.dtype.itemsize * 8}-bit; the benchmark protocol "
                             "measures 8-bit images")
        images.append((path, image[..., :3] if image.ndim == 3 else image))
    return images


def load_sets(data_dir, names):
    """{name: load_set(data_dir / name)} in the order given."""
    return {name: load_set(pathlib.Path(data_dir) / name) for name in names}


def shave(scale):
    """Border pixels left out of the metrics: s, or ceil(s) for a decimal scale."""
    return math.ceil(scale - 1e-9)


def benchmark_pair(hr, scale, degradation="bicubic"):
    """(HR cropped to a multiple of an integer scale, LR uint8 of ceil(H/s) × ceil(W/s)).

    The LR is the protocol's (MATLAB bicubic, quantised) or another of
    `degradation.EVALUATION` ("bicubic_noaa", "jpeg75", "blur_noise").

    Raises:
        ValueError: the image is too small to measure at `scale` (the message says why).
    """
    original = hr.shape[:2]
    if float(scale).is_integer():
        factor = int(scale)
        height, width = hr.shape[:2]
        hr = hr[:height - height % factor, :width - width % factor]
    height, width = hr.shape[:2]
    border = shave(scale)
    if min(height, width) <= 2 * border:
        raise ValueError(f"{original[0]}×{original[1]} pixels is too small for ×{scale:g}: the "
                         f"protocol crops it to {height}×{width} and shaves {border} pixels "
                         "from each border, which leaves nothing to measure")
    size = (math.ceil(height / scale - 1e-9), math.ceil(width / scale - 1e-9))
    return hr, degradation_lib.fixed_lr(hr, size, scale, degradation)


def super_resolve(lr, scale, size, method, model=None):
    """LR uint8 H×W×C (C = 1 or 3) → float32 size×C SR image in [0, 1].

    A gray image goes through the model as R = G = B and comes back as the mean of the three.
    """
    pixels = to_float(lr)
    if method == "bicubic":
        return imresize(pixels, scale=scale, size=size).numpy()
    rgb = to_rgb(pixels)
    if isinstance(model, ASDN):
        # One graph for every image, size and scale (as float32, as `asdn_tf.upscale` takes
        # it): nothing is traced per image.
        output = compiled_upscaler(model)(rgb[None], float(scale), size)[0].numpy()
    else:  # FSDN: a fixed-scale network on the LR image.
        if float(scale) != model.scale:
            raise ValueError(f"these are FSDN weights for ×{model.scale} only; measure them "
                             f"with --scales={model.scale}, or use ASDN weights for ×{scale:g}")
        output = np.clip(np.asarray(model(rgb[None]), np.float32)[0], 0.0, 1.0)
    return output.mean(axis=2, keepdims=True) if pixels.shape[2] == 1 else output


def measure(hr, scale, method, model=None, degradation="bicubic"):
    """(PSNR, SSIM, SR uint8) of one HR image (uint8 H×W or H×W×3) at `scale`, its LR made by
    `degradation` (the protocol's by default)."""
    hr, lr = benchmark_pair(hr, scale, degradation)
    sr = super_resolve(lr, scale, hr.shape[:2], method, model)
    sr = to_uint8(sr).reshape(hr.shape)
    border = shave(scale)
    return (metrics.psnr(sr, hr, crop_border=border), metrics.ssim(sr, hr, crop_border=border),
            sr)


def evaluate(sets, scales, method="bicubic", model=None, save_images=None, progress=None,
             degradation="bicubic", precision="auto"):
    """Mean PSNR / SSIM per set and scale.

    Args:
        sets: {name: [(path, uint8 image)]}, e.g. from `load_sets`.
        scales: numbers > 1 (integer and decimal).
        method: "bicubic" or "asdn".
        model: the ASDN (or an FSDN, at its own scale) for method "asdn"; by default the
            bundled pretrained model.
        save_images: optional folder; SR images go to FOLDER/METHOD/SET/xSCALE/NAME.png.
        progress: optional callable(done, total, label), called after every image.
        degradation: how the LR is made: "bicubic" (the protocol) or another name in
            `degradation.EVALUATION`.
        precision: of the bundled model when `model` is None ("auto", "float32", "bfloat16").

    Returns:
        A list of dicts {"set", "scale", "method", "degradation", "psnr", "ssim", "images",
        "shave", "per_image": [{"image", "psnr", "ssim"}]}, scale by scale, set by set; asdn's
        also say the "precision" the model computed in.

    Raises:
        ValueError: a bad method or scale, or an image too small for the scale (named).
        FileNotFoundError: method "asdn" without a model and no bundled weights.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    scales = parse_scales(scales)
    degradation_lib.check_name(degradation)
    if method == "asdn" and model is None:
        model = weights_io.load_pretrained(precision=precision)
    total = sum(len(images) for images in sets.values()) * len(scales)
    done = 0
    results = []
    for scale in scales:
        for name, images in sets.items():
            if not images:
                raise ValueError(f"set {name} has no images")
            scores, per_image = [], []
            for path, hr in images:
                path = pathlib.Path(path)
                try:
                    psnr, ssim, sr = measure(hr, scale, method, model, degradation)
                except ValueError as error:
                    raise ValueError(f"{path} at ×{scale:g}: {error}") from None
                if save_images:
                    folder = pathlib.Path(save_images) / method / name / f"x{scale:g}"
                    if degradation != "bicubic":
                        folder = folder / degradation
                    folder.mkdir(parents=True, exist_ok=True)
                    image_io.write_image(folder / f"{path.stem}.png", sr, overwrite=True)
                scores.append((psnr, ssim))
                per_image.append({"image": path.name, "psnr": round(psnr, 4),
                                  "ssim": round(ssim, 5)})
                done += 1
                if progress:
                    progress(done, total, f"{name} ×{scale:g} {path.name}")
            psnr, ssim = np.mean(scores, axis=0)
            results.append({"set": name, "scale": scale, "method": method,
                            "degradation": degradation, "psnr": round(float(psnr), 4), "ssim": round(float(ssim), 5),
                            "images": len(images), "shave": shave(scale),
                            "per_image": per_image})
            if method == "asdn":
                results[-1]["precision"] = precision_lib.precision_of(model)
    return results


def format_table(results):
    """The layout of the paper's Table 1: a row per scale and method, "PSNR/SSIM" per set; with
    LR made otherwise than by the protocol, a column names the degradation."""
    sets = list(dict.fromkeys(row["set"] for row in results))
    degradations = {row.get("degradation", "bicubic") for row in results}
    rows = list(dict.fromkeys((row["scale"], row["method"], row.get("degradation", "bicubic"))
                              for row in results))
    cells = {(row["scale"], row["method"], row.get("degradation", "bicubic"), row["set"]):
             f"{row['psnr']:.2f}/{row['ssim']:.4f}" for row in results}
    named = degradations != {"bicubic"}
    table = [["scale", "method", *(["LR"] if named else []), *sets]]
    table += [[f"×{scale:g}", method, *([lr] if named else []),
               *(cells.get((scale, method, lr, name), "-") for name in sets)]
              for scale, method, lr in rows]
    widths = [max(len(line[column]) for line in table) for column in range(len(table[0]))]
    lines = ["| " + " | ".join(text.ljust(width) for text, width in zip(line, widths)) + " |"
             for line in table]
    lines.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(lines)


def format_comparison(results, method="asdn", baseline="bicubic"):
    """Markdown: a row per scale, for each set the baseline's and the method's PSNR / SSIM, the
    method's PSNR in bold with its gain over the baseline (the README's results table)."""
    sets = list(dict.fromkeys(row["set"] for row in results))
    cells = {(row["scale"], row["method"], row["set"]): row for row in results}
    scales = sorted({row["scale"] for row in results})
    header = ["scale"] + [f"{name} {label}" for name in sets for label in (baseline, method)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for scale in scales:
        line = [f"×{scale:g}"]
        for name in sets:
            base, ours = cells.get((scale, baseline, name)), cells.get((scale, method, name))
            line.append(f"{base['psnr']:.2f} / {base['ssim']:.4f}" if base else "-")
            if ours and base:
                gain = round(ours["psnr"], 2) - round(base["psnr"], 2)
                line.append(f"**{ours['psnr']:.2f}** / {ours['ssim']:.4f} ({gain:+.2f})")
            else:
                line.append(f"{ours['psnr']:.2f} / {ours['ssim']:.4f}" if ours else "-")
        lines.append("| " + " | ".join(line) + " |")
    return "\n".join(lines)


def write_json(path, results):
    text = json.dumps({"results": results}, indent=1)
    fileio.write_atomically(path, text + "\n")


def write_csv(path, results):
    text = io.StringIO()
    writer = csv.DictWriter(text, CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(results)
    fileio.write_atomically(path, text.getvalue())


def plot(path, results):
    """PSNR versus scale, a line per set and method (the paper's Fig. 4), as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for name, method in dict.fromkeys((row["set"], row["method"]) for row in results):
        points = sorted((row["scale"], row["psnr"]) for row in results
                        if row["set"] == name and row["method"] == method)
        axes.plot(*zip(*points), marker="o", label=f"{name} ({method})")
    axes.set_xlabel("scale")
    axes.set_ylabel("PSNR on Y (dB)")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    image = io.BytesIO()
    figure.savefig(image, format="png")
    fileio.write_atomically(path, image.getvalue())


def describe_degradation(name):
    """The line above a table that says how its LR images were made."""
    if name == "bicubic":
        return "LR: bicubic (the literature's protocol: MATLAB imresize, antialiased)"
    return f"LR: {name} ({degradation_lib.DESCRIPTIONS[name]})"


def run(data_dir, sets, scales, method="bicubic", weights=None, preset=None, output_json=None,
        output_csv=None, save_images=None, plot_path=None, progress=None,
        degradation="bicubic", announce=None, model_name=None, precision="auto"):
    """What the command does; returns the report. Raises ValueError / OSError on bad input.

    `method` is "bicubic", "asdn", or a list of them ("bicubic,asdn" on the command line);
    `degradation` one name of `degradation.EVALUATION` or a list. Every method is measured
    under every degradation; the report is one table, or with bicubic and asdn together the
    README's side-by-side comparison (one per degradation). `announce(text)` is told what will
    be measured before the work starts. `model_name` picks a bundled model ("default",
    "photo") for asdn instead of `weights`; asdn computes in `precision` ("auto", "float32",
    "bfloat16"), which the report states.
    """
    degradations = ([degradation] if isinstance(degradation, str)
                    else list(dict.fromkeys(degradation)))
    if not degradations:
        raise ValueError(f"--degradation is empty: name one or more of "
                         f"{', '.join(degradation_lib.EVALUATION)}")
    for name in degradations:
        degradation_lib.check_name(name)
    methods = [method] if isinstance(method, str) else list(dict.fromkeys(method))
    for name in methods:
        if name not in METHODS:
            raise ValueError(f"--method must be one or more of {', '.join(METHODS)}, "
                             f"got {name!r}")
    if not methods:
        raise ValueError(f"--method is empty: name one or more of {', '.join(METHODS)}")
    if (weights or preset or model_name) and "asdn" not in methods:
        raise ValueError("--weights, --preset and --model need --method=asdn")
    if weights and model_name:
        raise ValueError("give --model (a bundled model) or --weights (a file), not both")
    if model_name:
        weights_io.bundled_weights(model_name)
    if preset and not weights:
        raise ValueError("--preset needs --weights (the bundled weights know their preset)")
    precision_lib.check_precision(precision)
    if not data_dir:
        raise ValueError("pass --data_dir (a folder with one folder per set) or set ASDN_DATASETS")
    if not sets:
        raise ValueError("--sets is empty: name at least one set folder inside --data_dir")
    scales = parse_scales(scales)
    loaded = load_sets(data_dir, sets)
    model = None
    if "asdn" in methods:
        model = (weights_io.load_model(weights, preset, precision=precision) if weights
                 else weights_io.load_pretrained(model_name or "default", precision))
        if announce and precision == "auto":
            announce(f"precision auto -> {precision_lib.precision_of(model)} "
                     f"({precision_lib.auto_precision()[1]})")
    count = sum(len(images) for images in loaded.values()) * len(scales)
    if announce:
        announce(f"measuring {count * len(methods) * len(degradations)} SR images "
                 f"({', '.join(sets)} × {len(scales)} scales × {'/'.join(methods)}"
                 + (f" × {'/'.join(degradations)} LR" if degradations != ["bicubic"] else "")
                 + ")")
    start = time.perf_counter()
    results = []
    for lr_name in degradations:
        for name in methods:
            results += evaluate(loaded, scales, name, model, save_images, progress, lr_name)
    seconds = time.perf_counter() - start
    if output_json:
        write_json(output_json, results)
    if output_csv:
        write_csv(output_csv, results)
    if plot_path:
        plot(plot_path, results)
    images = sum(row["images"] for row in results)
    if {"asdn", "bicubic"} <= set(methods):
        report = "\n\n".join(
            describe_degradation(name) + "\n" + format_comparison(
                [row for row in results if row["degradation"] == name])
            for name in degradations)
    else:
        report = ("\n".join(describe_degradation(name) for name in degradations) + "\n"
                  + format_table(results))
    if model is not None:
        report += f"\nprecision: {precision_lib.describe_precision(model, precision)}"
    return f"{report}\n({images} SR images measured in {seconds:.1f} s)"


def main(argv):
    if len(argv) > 1:
        sys.exit(f"evaluate: unexpected arguments {' '.join(argv[1:])}")
    options = flags.FLAGS
    try:
        table = run(options.data_dir or os.environ.get("ASDN_DATASETS") or "data", options.sets,
                    options.scales, options.method, options.weights, options.preset,
                    options.output_json, options.output_csv, options.save_images, options.plot,
                    progress.bar("evaluate"), options.degradation,
                    lambda text: print(f"evaluate: {text}", file=sys.stderr, flush=True),
                    options.model, options.precision)
    except (ValueError, OSError) as error:
        progress.clear()
        sys.exit(f"evaluate: {error}")
    progress.clear()
    print(table)


if __name__ == "__main__":
    # Flags are defined here, not at import, so importing the library defines none.
    flags.DEFINE_string("data_dir", None, "Folder with one folder per set (default: the "
                        "ASDN_DATASETS environment variable, else data, laid out in "
                        "data/README.md).")
    flags.DEFINE_list("sets", ["Set5", "Set14"], "Set folders inside --data_dir.")
    flags.DEFINE_list("scales", ["2", "3", "4", "8", "1.5"], "Scales > 1, integer or decimal.")
    flags.DEFINE_list("method", ["bicubic"], "bicubic, asdn, or both (bicubic,asdn: the table "
                      "then ends with the side-by-side comparison).")
    flags.DEFINE_string("weights", None, "asdn: .weights.h5 or .keras file (default: the "
                        "weights bundled in the package).")
    flags.DEFINE_string("preset", None, "asdn: model preset for --weights without a sidecar.")
    flags.DEFINE_string("model", None, "asdn: a bundled model, default or photo, instead of "
                        "--weights (default: the default model).")
    flags.DEFINE_string("output_json", None, "Write {\"results\": [...]} (with per-image scores).")
    flags.DEFINE_string("output_csv", None, "Write the results as CSV.")
    flags.DEFINE_string("save_images", None, "Folder for the SR images (PNG).")
    flags.DEFINE_string("plot", None, "PNG path for a PSNR-versus-scale plot.")
    flags.DEFINE_enum("precision", "auto", list(precision_lib.PRECISION_CHOICES),
                      "asdn: compute precision; auto is bfloat16 where the hardware runs it "
                      "fast (AMX, AVX512_BF16, GPUs of compute capability 8.0+), else float32. "
                      "The report states it; the README's table is float32.")
    flags.DEFINE_list("degradation", ["bicubic"], "How LR images are made: bicubic (the "
                      "literature's protocol), bicubic_noaa, jpeg75, blur_noise, or several.")
    app.run(main, flags_parser=cli.one_line_flags_parser("evaluate"))
