"""Upscale a collection of images with Apache Beam: `python -m asdn_tf.batch`.

    python -m asdn_tf.batch --input='photos/*.jpg' --output=big/ --scale=2 \\
        --runner=DirectRunner --direct_running_mode=multi_processing --direct_num_workers=2
    python -m asdn_tf.batch --input='gs://BUCKET/photos/**' --output=gs://BUCKET/big \\
        --width=3840 --runner=DataflowRunner --project=PROJECT --region=REGION ...

--input is a Beam file pattern (a local path, gs:// or s3://; `*` stays in a folder, `**`
crosses folders; a folder means its files) and --output a folder, created if missing: each
output has the name `asdn-upscale` gives it, and the same bytes. The upscale command's flags
mean the same here (--scale, --size, --width, --height, --model, --weights, --preset,
--precision, --tile, --tile_overlap, --format, --quality, --overwrite, --max_pixels,
--max_input_pixels); every other --flag=value is a Beam pipeline option (--runner, ...;
docs/batch.md). A file that fails (unreadable, too large, a format that cannot hold it) is
written to --failures (DIR/failures.jsonl: one {"path", "reason"} line each) and the run goes
on; the summary and the exit status (1) say how many. Outputs appear whole or not at all, and
a rerun skips the outputs that exist (unless --overwrite), so a killed run resumes.
"""

import functools
import json
import logging
import os
import sys
import time

from absl import app, flags

from asdn_tf.cli import upscale, upscale_flags
from asdn_tf.cli.model_flags import check_model_choice
from asdn_tf.io import errors, fileio, image_io, image_write

# The upscale command's flags that have no meaning here, or another one.
_NOT_BATCH_FLAGS = ("input", "output", "recursive", "fail_fast")
# Errors a user can cause, as the upscale command's.
_USER_ERRORS = (ValueError, OSError, MemoryError)
# The failure lines shown on stderr after a run; the file has them all.
_FAILURES_SHOWN = 10
_EXTRA = "python -m asdn_tf.batch needs apache-beam: pip install 'asdn_tf[beam]'"


def define_flags(flag_values=flags.FLAGS):
    """Defines the command's flags on `flag_values`: the upscale command's, with its own
    --input, --output and --failures; returns them."""
    defined = [holder for holder in upscale_flags.define_flags(flag_values)
               if holder.name not in _NOT_BATCH_FLAGS]
    for name in _NOT_BATCH_FLAGS:
        delattr(flag_values, name)
    defined += [
        flags.DEFINE_string("input", None, "A Beam file pattern: 'photos/*.png', "
                            "'gs://bucket/photos/**', or a folder (its files); hidden files "
                            "are skipped.", flag_values=flag_values),
        flags.DEFINE_string("output", None, "The output folder (local, gs://, s3://), "
                            "created if missing; outputs keep the input names.",
                            flag_values=flag_values),
        flags.DEFINE_string("failures", None, "Where the failures go, one JSON line per file "
                            "({\"path\", \"reason\"}); by default DIR/failures.jsonl.",
                            flag_values=flag_values)]
    return defined


def parse(argv, flag_values=flags.FLAGS):
    """The command's flags parsed from `argv` into `flag_values`; returns argv[0] and the Beam
    pipeline options. A flag that is neither raises ValueError (flags.Error for a bad value)."""
    rest = flag_values(argv, known_only=True)
    check_beam_options(rest[1:])
    return rest


def check_beam_options(args):
    """Raises ValueError unless every argument is a Beam pipeline option: Beam itself drops an
    unknown one with a warning, which would hide a misspelt flag of this command."""
    for before, arg in zip([None, *args], args):
        if not arg.startswith("-") and not (before and before.startswith("--")
                                            and "=" not in before):
            raise ValueError(f"unexpected argument {arg!r}; every option is a --flag")
    if not args:
        return
    try:
        from apache_beam.options.pipeline_options import PipelineOptions
    except ImportError:
        raise ValueError(f"{' '.join(args)}: {_EXTRA}") from None
    beam_logger = logging.getLogger("apache_beam.options.pipeline_options")
    level = beam_logger.level
    beam_logger.setLevel(logging.ERROR)
    try:
        options = PipelineOptions(args)
        unknown = (set(options.get_all_options(retain_unknown_options=True))
                   - set(options.get_all_options()))
    finally:
        beam_logger.setLevel(level)
    if unknown:
        raise ValueError(f"unknown flag --{sorted(unknown)[0]}: neither this command's (see "
                         "--help) nor a Beam pipeline option")


def _say(message):
    print(f"batch: {message}", file=sys.stderr)


def execute(values, beam_args=()):
    """Runs the command for parsed flags `values` and Beam options `beam_args`; returns the
    exit status: 0, 1 (a refusal, or some files failed) or 130 (interrupted)."""
    if values.version:
        print(f"asdn_tf.batch {upscale.version()}")
        return 0
    try:
        request, output, tiles = upscale_flags.check_flags(values)
        check_model_choice(values.weights, values.preset, values.model)
        import apache_beam  # noqa: F401 - the extra, asked for in one line
    except ImportError:
        _say(_EXTRA)
        return 1
    except _USER_ERRORS as error:
        _say(errors.first_line(error))
        return 1
    from asdn_tf.inference import batch as pipeline_lib
    load = functools.partial(upscale.load_networks, values.weights, values.preset,
                             values.precision, values.model, values.fsdn)
    try:
        options = _pipeline_options(beam_args)
        job = _job(values, request, output, tiles, load, pipeline_lib)
        # Here first: a model that cannot load is one line, not a failed pipeline.
        load()
        _prepare(job, pipeline_lib)
    except _USER_ERRORS as error:
        _say(errors.first_line(error))
        return 1
    start = time.perf_counter()
    try:
        counts = _run(options, job, pipeline_lib)
    except KeyboardInterrupt:
        _say("interrupted; the outputs written are whole, and the same command does the rest")
        return 130
    return _report(values.input, job.failures_path, counts, time.perf_counter() - start)


def _job(values, request, output, tiles, load, pipeline_lib):
    """The run's `pipeline_lib.Job`, its local folders checked; local paths made absolute
    (workers may start elsewhere)."""
    from apache_beam.io.filesystems import FileSystems
    local = lambda path: FileSystems.get_scheme(path) is None  # noqa: E731
    pattern = values.input
    if local(pattern):
        pattern = os.path.abspath(os.path.expanduser(pattern))
        if os.path.isdir(pattern):
            pattern = os.path.join(pattern, "*")
    output_dir = values.output
    failures = values.failures or FileSystems.join(output_dir, "failures.jsonl")
    if local(output_dir):
        output_dir = os.path.abspath(os.path.expanduser(output_dir))
        if os.path.exists(output_dir) and not os.path.isdir(output_dir):
            raise ValueError(f"output {output_dir} is a file, not a folder")
        if not os.path.isdir(os.path.dirname(output_dir)):
            raise FileNotFoundError(f"cannot create the output folder {output_dir}: its parent "
                                    f"{os.path.dirname(output_dir)} does not exist")
    if local(failures):
        failures = os.path.abspath(os.path.expanduser(failures))
        if os.path.dirname(failures) != output_dir:
            image_write.check_folder(os.path.dirname(failures))
    return pipeline_lib.Job(pattern, output_dir, failures, request, output, tiles,
                            values.max_input_pixels, load)


def _prepare(job, pipeline_lib):
    """Creates a local output folder, and removes the temporaries a killed run left."""
    from apache_beam.io.filesystems import FileSystems
    if FileSystems.get_scheme(job.output_dir) is None:
        os.makedirs(job.output_dir, exist_ok=True)
        fileio.check_writable(job.output_dir)
    for folder in {job.output_dir, FileSystems.split(job.failures_path)[0]}:
        pipeline_lib.sweep_temporaries(folder)


def _pipeline_options(beam_args):
    """Beam's options from `beam_args`. Beam logs errors only (its warnings on a local run are
    about its own setup), unless --default_sdk_harness_log_level says otherwise."""
    from apache_beam.options.pipeline_options import PipelineOptions
    args = list(beam_args)
    check_beam_options(args)
    if not any(arg.startswith("--default_sdk_harness_log_level") for arg in args):
        args.append("--default_sdk_harness_log_level=ERROR")
    logging.getLogger("apache_beam").setLevel(logging.ERROR)
    return PipelineOptions(args)


def _run(options, job, pipeline_lib):
    """Runs the pipeline to its end; returns its counters by name, or None where the runner
    reports none."""
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter
    pipeline = beam.Pipeline(options=options)
    pipeline_lib.build(pipeline, job)
    result = pipeline.run()
    result.wait_until_finish()
    try:
        found = result.metrics().query(MetricsFilter().with_namespace(pipeline_lib.NAMESPACE))
    except (NotImplementedError, AttributeError):
        return None
    counts = {}
    for metric in found["counters"] + found["distributions"]:
        value = metric.committed if metric.committed is not None else metric.attempted
        if metric in found["distributions"]:
            # RunInference's: one value per model load.
            name, value = ("model_loads", value.count if value else 0) if \
                metric.key.metric.name == "load_model_latency_milli_secs" else (None, 0)
        else:
            name = metric.key.metric.name
        if name:
            counts[name] = counts.get(name, 0) + (value or 0)
    return counts


def _report(pattern, failures_path, counts, seconds):
    """Prints the failures (the first few) and the summary; returns the exit status."""
    from apache_beam.io.filesystems import FileSystems
    with FileSystems.open(failures_path) as stream:
        lines = stream.read().decode().splitlines()
    for line in lines[:_FAILURES_SHOWN]:
        record = json.loads(line)
        _say(f"{record['path']}: {record['reason']}")
    if len(lines) > _FAILURES_SHOWN:
        _say(f"... and {len(lines) - _FAILURES_SHOWN} more in {failures_path}")
    if counts is None:
        print(f"done in {seconds:.1f} s (this runner reports no counts); "
              f"{len(lines)} failed" + (f" ({failures_path})" if lines else ""))
        return 1 if lines else 0
    if not counts.get("matched"):
        _say(f"no images match {pattern} (looked for {', '.join(image_io.IMAGE_EXTENSIONS)})")
        return 1
    megapixels = counts.get("output_pixels", 0) / 1e6
    loads = counts.get("model_loads", 0)
    summary = (f"upscaled {counts.get('upscaled', 0)} of {counts['matched']} files in "
               f"{seconds:.1f} s"
               + (f" (the model loaded in {loads} worker "
                  f"{'process' if loads == 1 else 'processes'})" if loads else "")
               + f", {megapixels / max(seconds, 1e-9):.2f} output megapixels/s")
    if counts.get("skipped"):
        summary += (f"; {counts['skipped']} skipped (their outputs exist; --overwrite replaces "
                    "them)")
    if lines:
        summary += f"; {len(lines)} failed ({failures_path})"
    print(summary)
    return 1 if lines else 0


def run_cli(argv):
    """Runs the command line `argv` (argv[0] is the program) in this process; returns the
    status. Uses its own flag registry, so it can run many times."""
    values = flags.FlagValues()
    define_flags(values)
    try:
        rest = parse(argv, values)
    except (flags.Error, ValueError) as error:
        _say(errors.first_line(error))
        return 1
    return execute(values, rest[1:])


def _parse_or_exit(argv):
    try:
        return parse(argv)
    except (flags.Error, ValueError) as error:
        sys.exit(f"batch: {errors.first_line(error)}")


def main(argv):
    return execute(flags.FLAGS, argv[1:])


def run():
    """`python -m asdn_tf.batch`."""
    for holder in define_flags(flags.FLAGS):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[holder.name])
    app.run(main, flags_parser=_parse_or_exit)


if __name__ == "__main__":
    run()
