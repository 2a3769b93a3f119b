"""The Apache Beam pipeline of `python -m asdn_tf.batch`: image files matched by a pattern,
upscaled on any runner into a folder, each output the bytes `asdn-upscale` writes.

    files = MatchFiles(pattern) | ReadMatches()
    planned = files | Plan             # output name; outputs that exist are skipped
    unique = planned | GroupByKey      # one input per output name
    results = unique | RunInference(UpscaleHandler(...))   # the model once per process
    results | Publish                  # temporary name, then renamed: whole or absent
    failures -> ToList -> failures.jsonl (one {"path", "reason"} line per file)

Every file is read and written through Beam's filesystems (local paths, gs://, s3://). A worker
copies an input to a local temporary folder and runs the upscale command's own functions on it
(`files.check_file`, `files.upscale_checked`, which writes with `image_write.write_image`), then
publishes the bytes written: the command's checks, limits, engine and encoder, unchanged. A
file one of them refuses becomes a failure line and the run goes on.

Example:
    >>> with beam.Pipeline(options=options) as pipeline:
    ...     build(pipeline, Job("in/*.png", "out", "out/failures.jsonl", request, output,
    ...                         tiles, max_input_pixels, load_model))
"""

import dataclasses
import json
import os
import pathlib
import secrets
import shutil
import tempfile
from typing import Any, Callable, Tuple

import apache_beam as beam
from apache_beam.io import fileio as beam_fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference

from asdn_tf.inference import files
from asdn_tf.io import errors, fileio, image_io, image_write

# The namespace of the pipeline's counters: matched, skipped, upscaled, failed,
# output_pixels; RunInference's own metrics (load_model_latency_milli_secs: one per model load)
# are in it too.
NAMESPACE = "asdn_tf.batch"
# Errors a file can cause; anything else is a bug, which fails the run with its traceback.
USER_ERRORS = (ValueError, OSError, MemoryError)
FAILED = "failed"


@dataclasses.dataclass(frozen=True)
class Job:
    """What a run does. `request`, `output` and `tiles` are those of
    `asdn_tf.cli.upscale_flags.check_flags` (the options of `target_size`,
    `image_write.check_output` and the tiling); `load_model` is called once per worker process
    and returns the `files.Networks` that `files.upscale_checked` runs, as the upscale command
    loads them."""
    pattern: str
    output_dir: str
    failures_path: str
    request: dict
    output: dict
    tiles: dict
    max_input_pixels: int
    load_model: Callable


def build(pipeline, job):
    """Adds the transforms of `job` to `pipeline`."""
    files_in = (pipeline | "Match" >> beam_fileio.MatchFiles(job.pattern)
                | "Read" >> beam_fileio.ReadMatches())
    planned = files_in | "Plan" >> beam.ParDo(
        Plan(job.output_dir, job.output["image_format"], job.output["overwrite"])
    ).with_output_types(Tuple[str, Any]).with_outputs(FAILED, main="jobs")
    unique = (planned.jobs | "ByOutput" >> beam.GroupByKey()
              | "OnePerOutput" >> beam.FlatMap(one_per_output).with_outputs(FAILED, main="jobs"))
    handler = UpscaleHandler(job.load_model, job.request, job.output, job.tiles,
                             job.max_input_pixels)
    published = (unique.jobs | "Upscale" >> RunInference(handler)
                 | "Publish" >> beam.ParDo(Publish()).with_outputs(FAILED, main="written"))
    ((planned[FAILED], unique[FAILED], published[FAILED]) | "Failures" >> beam.Flatten()
     | "AllFailures" >> beam.combiners.ToList()
     | "WriteFailures" >> beam.Map(write_failures, job.failures_path))


class Plan(beam.DoFn):
    """A matched file -> (output path, file); hidden and non-image files are not inputs, and a
    file whose output exists is skipped unless `overwrite`."""

    def __init__(self, output_dir, image_format, overwrite):
        self.output_dir, self.image_format, self.overwrite = output_dir, image_format, overwrite
        self.matched = Metrics.counter(NAMESPACE, "matched")
        self.skipped = Metrics.counter(NAMESPACE, "skipped")

    def process(self, readable):
        source = readable.metadata.path
        name = FileSystems.split(source)[1]
        if name.startswith(".") or not image_io.is_image_path(name):
            return
        self.matched.inc()
        destination = FileSystems.join(self.output_dir,
                                       files.output_name(name, self.image_format))
        if destination == source:
            yield failure(source, f"output {destination} is the input itself; choose another "
                                  "folder or --format")
        elif not self.overwrite and FileSystems.exists(destination):
            self.skipped.inc()
        else:
            yield destination, readable


def one_per_output(grouped):
    """(output path, files) -> (file, output path), or a failure for each of several files
    that would be written to one output (inputs of one name in several folders)."""
    destination, readables = grouped
    readables = sorted(readables, key=lambda readable: readable.metadata.path)
    if len(readables) == 1:
        yield readables[0], destination
        return
    names = " and ".join(readable.metadata.path for readable in readables)
    for readable in readables:
        yield failure(readable.metadata.path, f"{names} would all be written to {destination}")


class UpscaleHandler(ModelHandler):
    """RunInference's model handler: the model loaded once per worker process (RunInference
    shares it between the process's threads), one file per call of the upscale engine."""

    def __init__(self, load_model, request, output, tiles, max_input_pixels):
        # Images differ in size: one a batch.
        super().__init__(max_batch_size=1)
        self.load, self.request, self.output = load_model, request, output
        self.tiles, self.max_input_pixels = tiles, max_input_pixels

    def load_model(self):
        return self.load()

    def run_inference(self, batch, model, inference_args=None):
        return [PredictionResult(example, self.upscale(*example, model)) for example in batch]

    def get_metrics_namespace(self):
        return NAMESPACE

    def get_num_bytes(self, batch):
        return sum(readable.metadata.size_in_bytes for readable, _ in batch)

    def upscale(self, readable, destination, model):
        """{"data": the output file's bytes, "pixels": its pixels}, or {"reason": why not};
        `model` is `load_model`'s `files.Networks`."""
        import tensorflow as tf  # the engine's; its ResourceExhaustedError is a file's error
        with tempfile.TemporaryDirectory(prefix="asdn-batch-") as folder:
            source = pathlib.Path(folder, "in", FileSystems.split(readable.metadata.path)[1])
            target = pathlib.Path(folder, "out", FileSystems.split(destination)[1])
            try:
                copy_to_local(readable, source)
                target.parent.mkdir()
                header = files.check_file(source, target, self.request, self.max_input_pixels)
                image_write.check_output(target, header.alpha, **self.output)
                files.upscale_checked(source, target, self.request, self.output, model.model,
                                      **self.tiles, progress=None, fsdn=model.fsdn)
                height, width = image_io.read_header(target)[:2]
                return {"data": target.read_bytes(), "pixels": height * width}
            except (*USER_ERRORS, tf.errors.ResourceExhaustedError) as error:
                reason = ("out of memory; try a smaller --tile" if out_of_memory(error)
                          else errors.first_line(error))
                return {"reason": reason.replace(str(source), readable.metadata.path)
                        .replace(str(target), destination)}


def out_of_memory(error):
    import tensorflow as tf
    return isinstance(error, (MemoryError, tf.errors.ResourceExhaustedError))


def copy_to_local(readable, path):
    """Streams a matched file to the local `path` (its folder created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with readable.open(compression_type=CompressionTypes.UNCOMPRESSED) as stream, \
            open(path, "xb") as local:
        shutil.copyfileobj(stream, local, 1 << 20)


class Publish(beam.DoFn):
    """A RunInference result -> the output written (whole or not at all), or a failure."""

    def __init__(self):
        self.upscaled = Metrics.counter(NAMESPACE, "upscaled")
        self.pixels = Metrics.counter(NAMESPACE, "output_pixels")

    def process(self, result):
        (readable, destination), outcome = result.example, result.inference
        source = readable.metadata.path
        if "reason" in outcome:
            yield failure(source, outcome["reason"])
            return
        try:
            publish(outcome["data"], destination)
        except USER_ERRORS as error:
            yield failure(source, f"cannot write {destination}: {errors.first_line(error)}")
            return
        self.upscaled.inc()
        self.pixels.inc(outcome["pixels"])
        yield destination


def failure(path, reason):
    """A failure line's record, in the FAILED output."""
    Metrics.counter(NAMESPACE, "failed").inc()
    return beam.pvalue.TaggedOutput(FAILED, {"path": path, "reason": reason})


def write_failures(records, path):
    """Writes the failure records (any order) to `path` as JSON lines sorted by path; an empty
    file when there are none, so the file always tells the last run's failures."""
    lines = sorted(json.dumps(record, ensure_ascii=False) for record in records)
    publish("".join(line + "\n" for line in lines).encode(), path)


def publish(data, path):
    """Writes `data` to `path` through Beam's filesystems: to a hidden temporary beside it (as
    `fileio.atomic_path` names them), then renamed over it, so `path` appears whole or not at
    all; a failed write removes the temporary."""
    folder, name = FileSystems.split(path)
    temporary = FileSystems.join(folder, f".tmp-{secrets.token_hex(4)}-{name}")
    try:
        with FileSystems.create(temporary, mime_type="application/octet-stream",
                                compression_type=CompressionTypes.UNCOMPRESSED) as stream:
            stream.write(data)
            sync(stream)
        FileSystems.rename([temporary], [path])
    except BaseException:
        if FileSystems.exists(temporary):
            FileSystems.delete([temporary])
        raise


def sync(stream):
    """Flushes a local file to disk before its rename; an object store's stream has no file
    descriptor, and its object appears whole when the stream closes."""
    try:
        descriptor = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return
    stream.flush()
    os.fsync(descriptor)


def sweep_temporaries(folder):
    """Removes the temporaries that `publish` left in `folder` when a run was killed; returns
    how many. Only the names it makes (`fileio.is_temporary`) are touched."""
    found = FileSystems.match([FileSystems.join(folder, ".tmp-*")])[0].metadata_list
    paths = [entry.path for entry in found if fileio.is_temporary(FileSystems.split(entry.path)[1])]
    if paths:
        FileSystems.delete(paths)
    return len(paths)
