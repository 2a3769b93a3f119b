"""The upscale command and `upscale_file` against hostile input (refused cheaply, before any
decoding), and the first things a user does: folder runs, reruns, subfolders, --overwrite.

The helpers and the tiny-weights fixtures are test_upscale's.
"""

import json
import resource
import struct
import zlib

import numpy as np
import pytest
from absl import flags
from PIL import Image

import asdn_tf
from asdn_tf.cli import upscale_flags
from asdn_tf.inference import files, tiling
from asdn_tf.inference import request as upscale_request
from asdn_tf.io import image_io, image_write
from asdn_tf.nn import lfr
from conftest import (MEASURE_REQUESTS, _cli, _console_script, _files, _pixels, _process, _save,
                      upscale_command)

# ---------------------------------------------------------------- decompression bombs


def _bomb(path, side, rows=None):
    """A PNG of side×side black pixels: under a megabyte on disk, side²·3 bytes decoded. With
    `rows`, only that many rows of pixel data follow the header."""
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    packer = zlib.compressobj(9)
    row = bytes(1 + 3 * side)
    data = b"".join(packer.compress(row) for _ in range(rows or side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data)
                     + chunk(b"IEND", b""))
    return path


def test_a_decompression_bomb_is_refused_before_decoding(tmp_path, weights):
    """A 420 KB PNG of 12000² pixels (432 MB decoded): the request is refused from the header."""
    bomb = _bomb(tmp_path / "bomb.png", 12000)
    huge = _bomb(tmp_path / "huge.png", 16000, rows=1)  # beyond Pillow's own limit
    assert bomb.stat().st_size < 500_000
    cli = ["--output=out.png", f"--weights={weights}", "--preset=tiny"]
    requests = [
        ("api", ["bomb.png", "out.png", 2.0]),
        ("api", ["bomb.png", "out.png", float("nan")]),
        ("api", ["huge.png", "out.png", 2.0]),
        ("cli", ["--input=bomb.png", "--scale=2", *cli]),
        ("cli", ["--input=bomb.png", "--width=24000", *cli]),
        ("cli", ["--input=huge.png", "--scale=2", "--max_pixels=1000000000000", *cli]),
    ]
    done = _process(["-c", MEASURE_REQUESTS, json.dumps(requests)], tmp_path)
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("[")]
    expected = ["more than the limit of 141,557,760 (max_pixels)", "finite",
                "exceeds limit of 178956970 pixels", 1, 1, 1]
    for (kind, args), (result, seconds, extra_mb), words in zip(requests, results, expected):
        assert words == result if kind == "cli" else words in result, (args, result)
        assert seconds < 1 and extra_mb < 300, (args, seconds, extra_mb)
    assert len(results) == len(requests)
    ours = [line for line in done.stderr.splitlines() if line.startswith("upscale:")]
    assert ours == ["upscale: bomb.png: output 24000x24000 would have 576,000,000 pixels, more "
                    "than the limit of 141,557,760 (max_pixels)"] * 2 + [
        "upscale: cannot read image huge.png: Image size (256000000 pixels) exceeds limit of "
        "178956970 pixels, could be decompression bomb DOS attack."]
    assert _files(tmp_path) == ["bomb.png", "huge.png"]


# ---------------------------------------------------------------- what counts as an input


def test_hidden_files_are_never_inputs(capsys, tmp_path, weights, quick_model):
    inputs = tmp_path / "in"
    (inputs / "sub").mkdir(parents=True)
    (inputs / ".cache").mkdir()
    for name in ("a.png", ".b.png", ".tmp-0123abcd-c.png", "sub/d.png", ".cache/e.png"):
        _save(inputs / name)
    assert image_io.list_images(inputs, recursive=False) == [inputs / "a.png"]
    assert image_io.list_images(inputs) == [inputs / "a.png", inputs / "sub/d.png"]
    assert image_io.list_images(f"{inputs}/.*.png") == []
    assert image_io.list_images(f"{inputs}/**/*.png") == [inputs / "a.png", inputs / "sub/d.png"]
    status, out, err = _cli(capsys, f"--input={inputs}", f"--output={tmp_path}/out",
                            "--scale=2", f"--weights={weights}", "--preset=tiny")
    assert (status, err) == (0, "") and "upscaled 1 of 1 files" in out
    assert _files(tmp_path / "out") == ["a.png"]


# ---------------------------------------------------------------- numbers and scales


@pytest.mark.parametrize("flag,words", [
    ("--scale=1_5", "upscale: --scale must be a number in (1, 32] written in decimal, e.g. 3.3, "
                    "got '1_5'"),
    ("--scale=١.٥", "--scale must be a number"),  # float() reads 1.5
    ("--width=1_000", "upscale: flag --width=1_000: expected a whole number in digits, "
                      "got '1_000'"),
    ("--height=0x40", "flag --height=0x40: expected a whole number in digits"),
    ("--tile=1_6", "flag --tile=1_6: expected a whole number in digits"),
    ("--size=６４x４８", "--size must be WIDTHxHEIGHT in pixels"),
])
def test_numbers_are_plain_decimals(capsys, tmp_path, weights, quick_model, flag, words):
    source = _save(tmp_path / "in.png")
    status, _, err = _cli(capsys, f"--input={source}", f"--output={tmp_path}/o.png", flag,
                          f"--weights={weights}", "--preset=tiny")
    assert status == 1 and err.count("\n") == 1 and words in err, err
    assert _files(tmp_path) == ["in.png"]


def test_a_scale_too_small_to_add_a_pixel_names_the_smallest_that_does(capsys, tmp_path,
                                                                       weights, quick_model):
    source = _save(tmp_path / "in.png", _pixels((48, 64, 3)))
    status, _, err = _cli(capsys, f"--input={source}", f"--output={tmp_path}/o.png",
                          "--scale=1.0001", f"--weights={weights}", "--preset=tiny")
    assert status == 1
    assert err == f"upscale: {source}: scale 1.0001 is too small for a 64x48 image to grow by a " \
                  "pixel; the smallest that does is 1.0079\n"
    assert upscale_request.target_size((48, 64), scale=1.0079)[1] == (48, 65)
    for side in range(1, 3000):
        smallest = upscale_request.smallest_growing_scale(side, 1)
        assert lfr.output_size(side, 1, smallest)[0] == side + 1
        assert lfr.output_size(side, 1, smallest - 1e-4)[0] == side
    with pytest.raises(ValueError, match="scale must be a number in"):
        upscale_request.target_size((48, 64), scale="1_5")


# ---------------------------------------------------------------- several frames


def test_only_the_first_frame_is_used_and_that_is_said(capsys, tmp_path, weights, quick_model,
                                                       tiny_model):
    frames = [Image.fromarray(_pixels(seed=seed)) for seed in range(3)]
    frames[0].save(tmp_path / "pages.tif", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "anim.webp", save_all=True, append_images=frames[1:])
    for name, count in (("pages.tif", "3 pages"), ("anim.webp", "3 frames")):
        source = tmp_path / name
        status, _, err = _cli(capsys, f"--input={source}", f"--output={source}.png",
                              "--scale=2", f"--weights={weights}", "--preset=tiny")
        assert status == 0
        assert err == f"upscale: warning: {source} has {count}; only the first is used\n"
    np.testing.assert_array_equal(image_io.read_image(tmp_path / "pages.tif.png"),
                                  asdn_tf.upscale(_pixels(seed=0), 2, model=tiny_model))
    with pytest.warns(image_io.FirstFrameWarning, match="has 3 pages; only the first is used"):
        files.upscale_file(tmp_path / "pages.tif", tmp_path / "api.png", 2,
                                 model=tiny_model)


# ---------------------------------------------------------------- --help and --version


def test_help_and_version_do_not_wait_for_tensorflow(tmp_path):
    """Importing TensorFlow alone costs about 4 CPU seconds; the help costs a fraction of one."""
    began = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = _process(["-c", _console_script("print('tensorflow' in sys.modules)"), "--help"],
                    tmp_path)
    ended = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds = ended.ru_utime + ended.ru_stime - began.ru_utime - began.ru_stime
    assert "--tile_overlap" in done.stdout and "--[no]recursive" in done.stdout, done.stderr
    assert done.stdout.splitlines()[-1] == "False", "--help imported TensorFlow"
    assert seconds < 1.5, seconds
    done = _process(["-c", _console_script("print('tensorflow' in sys.modules)"), "--version"],
                    tmp_path)
    assert (done.returncode, done.stdout) == (
        0, f"asdn-upscale {upscale_command.version()}\nFalse\n")
    assert upscale_command.version() == asdn_tf.__version__


def test_help_states_the_tiling_defaults():
    values = flags.FlagValues()
    upscale_flags.define_flags(values)
    assert (f"fits in {tiling.MEMORY_BUDGET >> 20} MiB, else on the grid of regions that do "
            "with the least work." in values["tile"].help)


# ---------------------------------------------------------------- folder runs


def _folder(root, names):
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        _save(root / name)
    return root


def test_a_missing_output_folder_is_created_unless_its_parent_is(capsys, tmp_path, weights,
                                                                  quick_model):
    inputs = _folder(tmp_path / "in", ["a.png", "b.png"])
    common = ["--scale=2", f"--weights={weights}", "--preset=tiny"]
    status, _, err = _cli(capsys, f"--input={inputs}", f"--output={tmp_path}/new", *common)
    assert (status, err) == (0, "") and _files(tmp_path / "new") == ["a.png", "b.png"]
    status, _, err = _cli(capsys, f"--input={inputs}/a.png", f"--output={tmp_path}/one/",
                          *common)
    assert (status, err) == (0, "") and _files(tmp_path / "one") == ["a.png"]
    status, _, err = _cli(capsys, f"--input={inputs}", f"--output={tmp_path}/no/new", *common)
    assert status == 1
    assert err == f"upscale: cannot create the output folder {tmp_path}/no/new: its parent " \
                  f"{tmp_path}/no does not exist\n"
    assert _files(tmp_path) == ["in", "new", "one"]


def test_rerunning_a_folder_skips_the_outputs_that_exist(capsys, tmp_path, weights, quick_model):
    inputs = _folder(tmp_path / "in", ["a.png", "b.png", "c.png"])
    out = tmp_path / "out"
    common = [f"--input={inputs}", f"--output={out}", "--scale=2", f"--weights={weights}",
              "--preset=tiny"]
    assert _cli(capsys, *common)[0] == 0
    (out / "b.png").unlink()
    before = {name: (out / name).stat().st_mtime_ns for name in ("a.png", "c.png")}
    status, stdout, err = _cli(capsys, *common)
    assert (status, err) == (0, "")
    assert "upscaled 1 of 3 files" in stdout
    assert "; 2 skipped (their outputs exist; --overwrite replaces them)" in stdout
    assert {name: (out / name).stat().st_mtime_ns for name in before} == before
    status, stdout, _ = _cli(capsys, *common, "--overwrite")
    assert status == 0 and "upscaled 3 of 3 files" in stdout and "skipped" not in stdout
    # One input file is not a folder run: its existing output is an error, as always.
    status, _, err = _cli(capsys, f"--input={inputs}/a.png", f"--output={out}", "--scale=2",
                          f"--weights={weights}", "--preset=tiny")
    assert status == 1 and "already exists; not replaced without --overwrite" in err


def test_recursive_runs_mirror_the_subfolders(capsys, tmp_path, weights, quick_model):
    inputs = _folder(tmp_path / "in", ["a.png", "sub/b.png", "sub/deeper/c.jpg",
                                       ".hidden/d.png"])
    common = ["--scale=2", f"--weights={weights}", "--preset=tiny"]
    assert _cli(capsys, f"--input={inputs}", f"--output={tmp_path}/flat", *common)[0] == 0
    assert _files(tmp_path / "flat") == ["a.png"]
    # The outputs inside the input folder are not inputs of the next run.
    big = inputs / "big"
    args = [f"--input={inputs}", f"--output={big}", "--recursive", "--format=png", *common]
    status, stdout, err = _cli(capsys, *args)
    assert (status, err) == (0, "") and "upscaled 3 of 3 files" in stdout
    assert sorted(p.relative_to(big).as_posix() for p in big.rglob("*") if p.is_file()) == \
        ["a.png", "sub/b.png", "sub/deeper/c.png"]
    status, stdout, _ = _cli(capsys, *args)
    assert status == 0 and "upscaled 0 of 3 files" in stdout and "3 skipped" in stdout
    status, _, err = _cli(capsys, f"--input={inputs}/*.png", f"--output={tmp_path}/g",
                          "--recursive", *common)
    assert status == 1 and err.startswith("upscale: --recursive needs a folder as the input")


# ---------------------------------------------------------------- what --overwrite replaces


def test_overwrite_replaces_files_never_a_folder_or_an_input(capsys, tmp_path, weights,
                                                             quick_model):
    inputs = _folder(tmp_path / "in", ["a.png", "b.png"])
    out = tmp_path / "out"
    (out / "a.png").mkdir(parents=True)
    (out / "a.png" / "keep.txt").write_text("mine")
    common = ["--scale=2", f"--weights={weights}", "--preset=tiny", "--overwrite"]
    status, _, err = _cli(capsys, f"--input={inputs}", f"--output={out}", *common)
    assert status == 1
    assert err == f"upscale: {inputs}/a.png: output {out}/a.png is a folder, not a file name\n"
    assert _files(out / "a.png") == ["keep.txt"] and _files(out) == ["a.png", "b.png"]
    originals = {name: (inputs / name).read_bytes() for name in ("a.png", "b.png")}
    status, _, err = _cli(capsys, f"--input={inputs}", f"--output={inputs}", *common)
    assert status == 1
    assert err == f"upscale: output {inputs}/a.png is the input itself; choose another name, " \
                  "folder or --format\n"
    (tmp_path / "link.png").symlink_to(inputs / "b.png")
    status, _, err = _cli(capsys, f"--input={inputs}/b.png", f"--output={tmp_path}/link.png",
                          *common)
    assert status == 1 and "is the input itself" in err
    assert {name: (inputs / name).read_bytes() for name in originals} == originals
    _save(inputs / "a.jpg")
    status, _, err = _cli(capsys, f"--input={inputs}", f"--output={inputs}", "--format=png",
                          *common)
    assert status == 1 and f"output {inputs}/a.png is the input {inputs}/a.png" in err


def test_an_interrupted_folder_run_says_where_and_exits_130(capsys, tmp_path, weights,
                                                            quick_model, monkeypatch):
    inputs = _folder(tmp_path / "in", ["a.png", "b.png"])
    encode = image_write.encode
    calls = []

    def interrupted_on_the_second(stream, *args):
        calls.append(stream)
        if len(calls) == 2:
            raise KeyboardInterrupt
        encode(stream, *args)

    monkeypatch.setattr(image_write, "encode", interrupted_on_the_second)
    status, _, err = _cli(capsys, f"--input={inputs}", f"--output={tmp_path}/out", "--scale=2",
                          f"--weights={weights}", "--preset=tiny")
    assert status == 130
    assert err == f"upscale: interrupted at {inputs}/b.png; 1 written\n"
    assert _files(tmp_path / "out") == ["a.png"]


def test_running_out_of_memory_is_one_line(capsys, tmp_path, weights, quick_model,
                                           monkeypatch):
    import tensorflow as tf
    from asdn_tf.inference import engine as inference

    def exhausted(*args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor\nmore")

    monkeypatch.setattr(inference, "upscale", exhausted)
    source = _save(tmp_path / "in.png")
    status, _, err = _cli(capsys, f"--input={source}", f"--output={tmp_path}/o.png", "--scale=2",
                          f"--weights={weights}", "--preset=tiny")
    assert (status, err) == (1, f"upscale: {source}: out of memory; try a smaller --tile\n")
    assert _files(tmp_path) == ["in.png"]
