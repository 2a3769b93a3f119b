"""bench/run.py's tables: each section's printed table and the targets table (also as
docs/performance.md's Markdown)."""

import json

from bench import imresize_speed
from bench.run_defaults import defaults_rows
from bench.run_setup import FLOAT32_UTILISATION, TILED_PEAK_MIB

def table(header, rows):
    widths = [max(len(str(value)) for value in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(value).rjust(width) if index else str(value).ljust(width)
                       for index, (value, width) in enumerate(zip(row, widths)))
             for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def format_section(name, result):
    if name == "engine":
        return "\n".join(result["lines"])
    if name == "matmul":
        return "\n".join(f"dense square matrix product, {dtype}: " + ", ".join(
            f"{side}² {rate} GFLOP/s" for side, rate in rates.items())
            + f"; reference {result['gflops'][dtype]} GFLOP/s"
            for dtype, rates in result["by_side"].items())
    if name == "inference":
        return table(["preset", "policy", "scale", "output", "runs", "ms", "out MP/s", "GFLOP/s",
                       "util (f32 mm)", "util (bf16 mm)"],
                      [[r["preset"], r["policy"], f"×{r['scale']:g}", f"{r['output']}²",
                        r["runs"], r["median_ms"], r["output_megapixels_per_s"], r["gflops"],
                        f"{r['utilisation']:.0%}", f"{r['utilisation_of_bf16_matmul']:.0%}"]
                       for r in result])
    if name == "profile":
        lines = []
        for policy, part in result["policies"].items():
            lines.append(f"default preset, {policy}, ×2 to {result['size']}²: " + ", ".join(
                f"{key} {value} ms" for key, value in part["ms"].items()))
            lines.append(table(["ops by kind", "ms per call", "share"],
                                [[r["category"], r["ms"], f"{r['share']:.0%}"]
                                 for r in part["ops"]]))
        accuracy = result["bf16_accuracy"]
        lines.append(f"bfloat16 against float32 on {accuracy['set']} ({accuracy['model']}):")
        lines.append(table(["scale", "PSNR f32", "PSNR bf16", "Δ dB", "max grey diff"],
                            [[f"×{r['scale']:g}", r["psnr_float32"], r["psnr_bfloat16"],
                              r["delta_db"], r["max_grey_level_difference"]]
                             for r in accuracy["rows"]]))
        return "\n".join(lines)
    if name == "saved_model":
        return f"{result['model']}, {result['input']}² uint8 input\n" + table(
            ["scale", "path", "ms", "overhead", "max grey diff"],
            [[f"×{r['scale']:g}", r["path"], r["median_ms"], f"{r['overhead']:.3f}×",
              r["max_grey_level_difference"]] for r in result["rows"]])
    if name == "training":
        return table(["preset", "policy", "batch", "steps×rounds", "mean x_up side",
                       "memory steps/s", "pipeline steps/s", "input overhead"],
                      [[r["preset"], r["policy"], r["batch"], f"{r['steps']}×{r['rounds']}",
                        r["mean_x_up_side"], r["memory_steps_per_s"], r["pipeline_steps_per_s"],
                        f"{r['input_overhead_percent']:+.1f}%"] for r in result])
    if name == "imresize":
        return imresize_speed.format_table(result)
    if name == "tiled":
        return table(["case", "output", "tile", "seconds", "CPU seconds", "out MP/s",
                       "peak RSS MiB"],
                      [[r["case"], "×".join(map(str, r["output"])), r["tile"] or "-",
                        r["seconds"], r.get("cpu_seconds", "-"), r["output_megapixels_per_s"],
                        r["peak_rss_mib"]] for r in result])
    if name == "defaults":
        return table(["figure", "value", "target", "met"],
                      [[figure, value, target, "" if met is None else ("yes" if met else "NO")]
                       for figure, value, target, met in defaults_rows(result)])
    if name == "jit":
        return table(["what", "policy", "jit_compile", "ms"],
                      [[r["what"], r["policy"], r["jit_compile"], r["median_ms"]]
                       for r in result["rows"]]) + \
            f"\nupscale_tensor under jit_compile: {result['upscale_tensor_under_jit']}"
    return json.dumps(result)


def targets(results):
    """[(figure, value, target, met)] of every target this run has a figure for."""
    rows = []
    for row in results.get("inference") or []:
        if row["preset"] == "default" and row["output"] == 512 and row["policy"] == "float32":
            rows.append((f"float32 default ×{row['scale']:g} 512²: share of the float32 matmul "
                         "rate", f"{row['utilisation']:.0%}", f"≥ {FLOAT32_UTILISATION:.0%}",
                         row["utilisation"] >= FLOAT32_UTILISATION))
    saved = results.get("saved_model")
    if saved and "rows" in saved:
        for row in saved["rows"]:
            if row["path"] != "in-process":
                rows.append((f"SavedModel overhead: ×{row['scale']:g} {row['path']}",
                             f"{row['overhead'] - 1:+.1%}", "≤ 10%", row["overhead"] <= 1.10))
    for row in results.get("training") or []:
        rows.append((f"input overhead: {row['preset']} {row['policy']}",
                     f"{row['input_overhead_percent']:+.1f}%", "≤ 10%",
                     row["input_overhead_percent"] <= 10))
    resize = results.get("imresize")
    if isinstance(resize, list):
        reference = {r["scale"]: r["median_ms"] for r in resize if r["method"] == "tf.image.resize"}
        for row in resize:
            if row["method"] == "imresize (exact)":
                ratio = row["median_ms"] / reference[row["scale"]]
                rows.append((f"imresize against tf.image.resize: {row['scale']}",
                             f"{ratio:.2f}×", "≤ 2×", ratio <= 2))
    defaults = results.get("defaults")
    if defaults and "error" not in defaults:
        rows += [row for row in defaults_rows(defaults) if row[3] is not None]
    for row in results.get("tiled") or []:
        if isinstance(row, dict) and row.get("case") == "2048x4":
            rows.append(("tiled 2048² ×4 → 8192², float32: peak RSS",
                         f"{row['peak_rss_mib']} MiB", f"≤ {TILED_PEAK_MIB:g} MiB",
                         row["peak_rss_mib"] <= TILED_PEAK_MIB))
    return rows


def markdown_targets(rows):
    """`targets` as docs/performance.md's Markdown table."""
    return "\n".join(["| figure | value | target | met |", "|---|---|---|---|",
                      *(f"| {figure} | {value} | {target} | {'yes' if met else 'no'} |"
                        for figure, value, target, met in rows)])
