"""Benchmark tables: Y-channel PSNR / SSIM of bicubic or ASDN on image sets, at any scales.

    python -m asdn_tf.evaluate --data_dir=data --sets=Set5,Set14 \\
        --scales=2,3,4,8,1.5 --method=bicubic --output_json=runs/bicubic.json --plot=runs/bicubic.png

The protocol is in asdn_tf/evaluation/protocol.py, the measuring in benchmark.py beside it and
the tables in tables.py.
"""

import os
import pathlib
import sys
import time

from absl import app, flags

from asdn_tf.cli.model_flags import (check_fsdn_choice, check_model_choice, define_model_flags,
                                     load_chosen_fsdn, load_chosen_model)
from asdn_tf.data import data_folders
from asdn_tf.data import degradation as degradation_lib
from asdn_tf.evaluation import tables
from asdn_tf.evaluation.benchmark import evaluate, load_sets
from asdn_tf.evaluation.protocol import METHODS, parse_scales
from asdn_tf.inference import precision as precision_lib
from asdn_tf.io import errors
from asdn_tf.io import progress

def run(data_dir, sets, scales, method="bicubic", weights=None, preset=None, output_json=None,
        output_csv=None, save_images=None, plot_path=None, progress=None,
        degradation="bicubic", announce=None, model_name=None, precision="auto", fsdn="auto"):
    """What the command does; returns the report. Raises ValueError / OSError on bad input.

    `method` is "bicubic", "asdn", or a list of them ("bicubic,asdn" on the command line);
    `degradation` one name of `degradation.EVALUATION` or a list. Every method is measured
    under every degradation; the report is one table, or with bicubic and asdn together the
    README's side-by-side comparison (one per degradation). `announce(text)` is told what will
    be measured before the work starts. `model_name` picks a bundled model ("default",
    "photo") for asdn instead of `weights`; asdn computes in `precision` ("auto", "float32",
    "bfloat16"), which the report states. `fsdn` ("auto", "none" or an FSDN weights file)
    runs the integer part of each scale for asdn, as `asdn_tf.upscale` does by default.
    """
    methods, degradations = _check_options(method, degradation, weights, preset, model_name,
                                           precision, data_dir, sets)
    scales = parse_scales(scales)
    loaded = load_sets(data_dir, sets)
    model = fsdn_model = None
    check_fsdn_choice(fsdn)
    if "asdn" in methods:
        model = load_chosen_model(weights, preset, model_name, precision)
        fsdn_model = load_chosen_fsdn(fsdn, weights, model_name or "default", precision)
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
            results += evaluate(loaded, scales, name, model, save_images, progress, lr_name,
                                fsdn=fsdn_model)
    seconds = time.perf_counter() - start
    if output_json:
        tables.write_json(output_json, results)
    if output_csv:
        tables.write_csv(output_csv, results)
    if plot_path:
        tables.plot(plot_path, results)
    images = sum(row["images"] for row in results)
    if {"asdn", "bicubic"} <= set(methods):
        report = "\n\n".join(
            tables.describe_degradation(name) + "\n" + tables.format_comparison(
                [row for row in results if row["degradation"] == name])
            for name in degradations)
    else:
        report = ("\n".join(tables.describe_degradation(name) for name in degradations) + "\n"
                  + tables.format_table(results))
    if model is not None:
        report += (f"\nplan: x{', x'.join(map(str, fsdn_model.scales))} by the FSDN, then ASDN"
                   if fsdn_model is not None else "\nplan: ASDN's x2 recursion alone")
        report += f"\nprecision: {precision_lib.describe_precision(model, precision)}"
    return f"{report}\n({images} SR images measured in {seconds:.1f} s)"


def _check_options(method, degradation, weights, preset, model_name, precision, data_dir, sets):
    """(methods, degradations) as lists; raises ValueError naming the flag at fault."""
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
    check_model_choice(weights, preset, model_name)
    precision_lib.check_precision(precision)
    if not data_dir:
        raise ValueError("pass --data_dir (a folder with one folder per set) or set ASDN_DATASETS")
    if not sets:
        raise ValueError("--sets is empty: name at least one set folder inside --data_dir")
    _check_sets_exist(data_dir, sets)
    return methods, degradations


def _check_sets_exist(data_dir, sets):
    """Raises FileNotFoundError naming every set folder that is missing, in one line."""
    missing = [pathlib.Path(data_dir) / name for name in sets
               if not (pathlib.Path(data_dir) / name).is_dir()]
    if len(missing) == 1:
        raise FileNotFoundError(data_folders.missing_message(missing[0]))
    if missing:
        folders = ", ".join(map(str, missing[:-1])) + f" and {missing[-1]}"
        names = ", ".join(path.name for path in missing[:-1]) + f" and {missing[-1].name}"
        raise FileNotFoundError(f"{folders} are missing: put the {names} images there "
                                "(data/README.md says where to get them)")


def execute(values, arguments=()):
    """Runs the command for parsed flags `values`; returns the exit status (0 or 1). The table
    goes to stdout; an error a user can cause is one line, "evaluate: ...", on stderr."""
    if arguments:
        print(f"evaluate: unexpected arguments {' '.join(arguments)}", file=sys.stderr)
        return 1
    try:
        table = run(values.data_dir or os.environ.get("ASDN_DATASETS") or "data", values.sets,
                    values.scales, values.method, values.weights, values.preset,
                    values.output_json, values.output_csv, values.save_images, values.plot,
                    progress.bar("evaluate"), values.degradation,
                    lambda text: print(f"evaluate: {text}", file=sys.stderr, flush=True),
                    values.model, values.precision, values.fsdn)
    except (ValueError, OSError) as error:
        progress.clear()
        print(f"evaluate: {error}", file=sys.stderr)
        return 1
    progress.clear()
    print(table)
    return 0


def run_cli(argv):
    """Runs the command line `argv` (argv[0] is the program) in this process; returns the exit
    status. Uses its own flag registry, so it can run many times and beside other absl
    programs."""
    values = flags.FlagValues()
    define_flags(values)
    try:
        arguments = values(argv)[1:]
    except flags.Error as error:
        print(f"evaluate: {error}", file=sys.stderr)
        return 1
    return execute(values, arguments)


def main(argv):
    sys.exit(execute(flags.FLAGS, argv[1:]))


def define_flags(flag_values=flags.FLAGS):
    """Defines the command's flags in `flag_values`. Called by the command and `run_cli`, not
    at import, so importing the library defines none."""
    def define(kind, *args):
        return getattr(flags, f"DEFINE_{kind}")(*args, flag_values=flag_values)

    define("string", "data_dir", None, "Folder with one folder per set (default: the "
           "ASDN_DATASETS environment variable, else data, laid out in data/README.md).")
    define("list", "sets", ["Set5", "Set14"], "Set folders inside --data_dir.")
    define("list", "scales", ["2", "3", "4", "8", "1.5"], "Scales > 1, integer or decimal.")
    define("list", "method", ["bicubic"], "bicubic, asdn, or both (bicubic,asdn: the table "
           "then ends with the side-by-side comparison).")
    define_model_flags(
        weights="asdn: .weights.h5 or .keras file (default: the weights bundled in the package).",
        preset="asdn: model preset for --weights without a sidecar.",
        model="asdn: a bundled model, default or photo, instead of --weights (default: the "
              "default model).",
        precision="asdn: compute precision; auto is bfloat16 where the hardware runs it fast "
                  "(AMX, AVX512_BF16, GPUs of compute capability 8.0+), else float32. The "
                  "report states it; the README's table is float32.", fsdn=True,
        flag_values=flag_values)
    define("string", "output_json", None, "Write {\"results\": [...]} (with per-image scores).")
    define("string", "output_csv", None, "Write the results as CSV.")
    define("string", "save_images", None, "Folder for the SR images (PNG).")
    define("string", "plot", None, "PNG path for a PSNR-versus-scale plot.")
    define("list", "degradation", ["bicubic"], "How LR images are made: bicubic (the "
           "literature's protocol), bicubic_noaa, jpeg75, blur_noise, or several.")


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=errors.one_line_flags_parser("evaluate"))
