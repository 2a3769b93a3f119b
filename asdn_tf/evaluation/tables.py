"""The results as text, files and a plot: the paper's table layout, the README's side-by-side
comparison, JSON, CSV and a PSNR-versus-scale plot."""

import csv
import io
import json

from asdn_tf.data import degradation as degradation_lib
from asdn_tf.io import fileio

CSV_FIELDS = ("set", "scale", "method", "psnr", "ssim", "images", "shave")


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
