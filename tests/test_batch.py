"""`python -m asdn_tf.batch`: the Beam pipeline on the DirectRunner with 2 worker processes.

Every output is compared byte for byte with what `asdn-upscale` writes with the same flags on
the same file (run in this process), every failure line with the command's own refusal.
"""

import io
import json
import os
import pathlib
import re
import signal
import struct
import subprocess
import sys
import time
import zlib

import pytest
from PIL import Image

from asdn_tf.cli import batch as batch_command
from conftest import ROOT, _cli, _pixels, _save, leftovers

TWO_WORKERS = ["--runner=DirectRunner", "--direct_running_mode=multi_processing",
               "--direct_num_workers=2"]


def _batch(args, **options):
    """Starts `python -m asdn_tf.batch` in a session of its own (so that its worker processes
    can be killed with it)."""
    paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    return subprocess.Popen([sys.executable, "-m", "asdn_tf.batch", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **options)


def _finish(process, timeout=600):
    stdout, stderr = process.communicate(timeout=timeout)
    return process.returncode, stdout, stderr


def _png_claiming(height, width):
    """A 32×32 PNG whose header says height×width (a decompression bomb)."""
    buffer = io.BytesIO()
    Image.fromarray(_pixels((32, 32, 3))).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _outputs(folder):
    """{name: bytes} of the images in `folder` (not hidden, not the failures file)."""
    return {path.name: path.read_bytes() for path in sorted(pathlib.Path(folder).iterdir())
            if path.is_file() and not path.name.startswith(".") and path.suffix != ".jsonl"}


@pytest.fixture
def mixed(tmp_path):
    """Good images (RGB, gray, alpha, JPEG) among corrupt, empty, oversized and bomb files,
    a hidden image and a text file (neither is an input)."""
    folder = tmp_path / "in"
    folder.mkdir()
    _save(folder / "a.png")
    _save(folder / "b.jpg", _pixels((30, 20, 3), seed=1), quality=90)
    _save(folder / "c_gray.png", _pixels((20, 28), seed=2))
    _save(folder / "d_alpha.png", _pixels((16, 24, 4), seed=3))
    data = (folder / "a.png").read_bytes()
    (folder / "truncated.png").write_bytes(data[:len(data) // 2])
    (folder / "text.png").write_text("not a picture\n")
    (folder / "empty.jpg").write_bytes(b"")
    _save(folder / "oversized.png", _pixels((100, 130, 3), seed=4))  # 13,000 > 12,000 pixels
    (folder / "bomb.png").write_bytes(_png_claiming(100_000, 100_000))
    _save(folder / ".hidden.png")
    (folder / "notes.txt").write_text("not an image\n")
    return folder


@pytest.mark.slow
def test_two_workers_write_what_the_command_writes_and_set_bad_files_aside(
        capsys, tmp_path, mixed, weights):
    flags = ["--scale=2.5", "--max_input_pixels=12000", f"--weights={weights}", "--preset=tiny"]
    status, _, upscale_errors = _cli(capsys, f"--input={mixed}", f"--output={tmp_path / 'ref'}",
                                     *flags)
    assert status == 1
    out = tmp_path / "out"
    status, stdout, stderr = _finish(_batch([f"--input={mixed}/*", f"--output={out}", *flags,
                                             *TWO_WORKERS]))
    assert status == 1, stderr[-3000:]
    expected = _outputs(tmp_path / "ref")
    assert sorted(expected) == ["a.png", "b.jpg", "c_gray.png", "d_alpha.png"]
    assert _outputs(out) == expected
    records = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert [pathlib.Path(record["path"]).name for record in records] == [
        "bomb.png", "empty.jpg", "oversized.png", "text.png", "truncated.png"]
    for record in records:
        said = record["reason"] if record["path"] in record["reason"] else \
            f"{record['path']}: {record['reason']}"
        assert f"upscale: {said}" in upscale_errors.splitlines()
    summary = stdout.strip().splitlines()[-1]
    assert summary.startswith("upscaled 4 of 9 files in ")
    # Once per worker process, not once per file; a worker given no file loads none.
    assert re.search(r" \(the model loaded in [12] worker process(es)?\), ", summary)
    assert summary.endswith(f"; 5 failed ({out / 'failures.jsonl'})")
    assert "Traceback" not in stderr and leftovers(out) == []

    # The rerun, in this process on one worker (the two workers above needed the processes).
    before = {path.name: path.stat().st_mtime_ns for path in out.iterdir()}
    capsys.readouterr()
    status = batch_command.run_cli(["batch", f"--input={mixed}/", f"--output={out}", *flags,
                                    "--runner=DirectRunner"])
    stdout = capsys.readouterr().out
    assert status == 1
    assert "upscaled 0 of 9 files in " in stdout and "; 4 skipped (their outputs exist" in stdout
    assert "(the model loaded in 1 worker process), " in stdout  # the failures need it
    assert {name: before[name] for name in expected} == {
        name: (out / name).stat().st_mtime_ns for name in expected}
    assert len((out / "failures.jsonl").read_text().splitlines()) == 5


@pytest.mark.slow
def test_a_killed_run_leaves_whole_outputs_and_the_rerun_does_the_rest(capsys, tmp_path,
                                                                        weights):
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    for index in range(8):
        _save(source / f"photo{index}.png", _pixels((160, 200, 3), seed=index))
    flags = ["--width=600", "--format=webp", "--quality=90", f"--weights={weights}",
             "--preset=tiny"]
    status, _, _ = _cli(capsys, f"--input={source}", f"--output={tmp_path / 'ref'}", *flags)
    assert status == 0
    expected = _outputs(tmp_path / "ref")
    assert len(expected) == 8

    args = [f"--input={source}/*.png", f"--output={out}", *flags, *TWO_WORKERS]
    process = _batch(args)
    deadline = time.monotonic() + 300
    while len(_outputs(out) if out.is_dir() else {}) < 2 and process.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=60)
    done = _outputs(out)
    assert 2 <= len(done) < 8, f"the kill came too late to test anything: {sorted(done)}"
    assert done == {name: expected[name] for name in done}  # whole, never half-written
    inodes = {name: (out / name).stat().st_ino for name in done}

    # The rerun, in this process on one worker: what it skips and does is decided before the
    # pipeline runs, whatever the runner (the SIGKILL above needed the processes).
    capsys.readouterr()
    status = batch_command.run_cli(["batch", *map(str, args[:-len(TWO_WORKERS)]),
                                    "--runner=DirectRunner"])
    stdout, stderr = capsys.readouterr()
    assert status == 0, stderr[-3000:]
    summary = stdout.strip().splitlines()[-1]
    assert summary.startswith(f"upscaled {8 - len(done)} of 8 files")
    assert summary.endswith(f"; {len(done)} skipped (their outputs exist; --overwrite "
                            "replaces them)")
    assert _outputs(out) == expected
    assert {name: (out / name).stat().st_ino for name in done} == inodes
    assert leftovers(out) == [] and (out / "failures.jsonl").read_text() == ""


@pytest.mark.slow
def test_one_output_per_name_and_never_over_an_input(capsys, tmp_path, weights):
    for folder in ("a", "b", "c", "out"):
        (tmp_path / folder).mkdir()
    for path in ("a/x.png", "b/x.png", "c/z.png", "out/y.png"):
        _save(tmp_path / path)
    # In this process on one worker: the names are decided before the pipeline runs.
    status = batch_command.run_cli(["batch", f"--input={tmp_path}/**",
                                    f"--output={tmp_path}/out", "--scale=2",
                                    f"--weights={weights}", "--preset=tiny",
                                    "--runner=DirectRunner"])
    stdout = capsys.readouterr().out
    assert status == 1 and "upscaled 1 of 4 files" in stdout and "; 3 failed (" in stdout
    records = [json.loads(line)
               for line in (tmp_path / "out" / "failures.jsonl").read_text().splitlines()]
    both = f"{tmp_path}/a/x.png and {tmp_path}/b/x.png would all be written to {tmp_path}/out/x.png"
    assert records == [
        {"path": f"{tmp_path}/a/x.png", "reason": both},
        {"path": f"{tmp_path}/b/x.png", "reason": both},
        {"path": f"{tmp_path}/out/y.png", "reason": f"output {tmp_path}/out/y.png is the input "
                                                    "itself; choose another folder or --format"}]
    assert sorted(_outputs(tmp_path / "out")) == ["y.png", "z.png"]
    assert (tmp_path / "out" / "y.png").read_bytes() == (tmp_path / "a" / "x.png").read_bytes()


@pytest.mark.parametrize("args, message", [
    (["--input=in/*", "--scale=2"], "batch: give --output (see --help)\n"),
    (["--input=in/*", "--output=out", "--scale=2", "--width=9"],
     "batch: give exactly one of --scale, --size=WIDTHxHEIGHT, --width or --height, not "
     "--scale and --width\n"),
    (["--input=in/*", "--output=out", "--scale=2", "--recursive"],
     "batch: unknown flag --recursive: neither this command's (see --help) nor a Beam pipeline "
     "option\n"),
    (["--input=in/*", "--output=out", "--scael=2"],
     "batch: unknown flag --scael: neither this command's (see --help) nor a Beam pipeline "
     "option\n"),
    (["--input=in/*", "--output=out", "--scale=2", "extra"],
     "batch: unexpected argument 'extra'; every option is a --flag\n"),
    (["--input=in/*", "--output=out", "--scale=2", "--format=gif"],
     "batch: unknown image format 'gif'; choose one of png, jpeg, bmp, webp, tiff\n"),
    (["--input=in/*", "--output=nowhere/out", "--scale=2"],
     "batch: cannot create the output folder {d}/nowhere/out: its parent {d}/nowhere does not "
     "exist\n"),
    (["--input=in/*", "--output=out", "--scale=2", "--weights=nope.weights.h5"],
     "weights file not found"),
])
def test_a_refusal_is_one_line_before_any_pipeline(capsys, monkeypatch, tmp_path, args,
                                                   message):
    monkeypatch.chdir(tmp_path)
    status = batch_command.run_cli(["batch", *args])
    _, err = capsys.readouterr()
    assert status == 1 and err.count("\n") == 1
    assert message.format(d=tmp_path) in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("beam_args", [[], ["--runner=DirectRunner"]])
def test_without_apache_beam_the_extra_is_named(capsys, monkeypatch, tmp_path, beam_args):
    for name in [name for name in sys.modules if name.split(".")[0] == "apache_beam"] + [
            "apache_beam", "apache_beam.options.pipeline_options"]:
        monkeypatch.setitem(sys.modules, name, None)  # what a base install has
    status = batch_command.run_cli(["batch", f"--input={tmp_path}/*", f"--output={tmp_path}/o",
                                    "--scale=2", *beam_args])
    _, err = capsys.readouterr()
    assert status == 1 and err.count("\n") == 1
    assert err.endswith("python -m asdn_tf.batch needs apache-beam: pip install "
                        "'asdn_tf[beam]'\n")
    assert not (tmp_path / "o").exists()
