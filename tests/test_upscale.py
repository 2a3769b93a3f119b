"""The upscale command, `upscale_file` and tiled upscaling.

Most command lines run in process through `asdn_tf.cli.upscale.run_cli`; a few run as real processes to
check the entry points and that a failure prints no traceback.
"""

import io
import pathlib
import re
import struct
import sys
import zlib

import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from PIL import Image, ImageCms, ImageOps

import asdn_tf
from asdn_tf.cli import upscale_flags
from asdn_tf.inference import files, tiling, weights_io
from asdn_tf.inference import request as upscale_request
from asdn_tf.io import image_io, image_write
from asdn_tf.inference import precision as precision_lib
from asdn_tf.data.imresize import imresize
from conftest import _cli, _console_script, _files, _pixels, _process, _save, upscale_command

ROOT = pathlib.Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- the command, in process


def test_cli_writes_the_same_image_as_the_python_api(capsys, tmp_path, weights, tiny_model):
    source = _save(tmp_path / "in.png")
    status, out, err = _cli(capsys, "--input", source, "--output", tmp_path / "out.png",
                            "--scale=3.3", f"--weights={weights}", "--preset=tiny",
                            "--precision=float32")
    assert (status, err) == (0, "")
    assert re.search(r"upscaled 1 of 1 files in [\d.]+ s, [\d.]+ output megapixels/s", out)
    written = image_io.read_image(tmp_path / "out.png")
    np.testing.assert_array_equal(written, asdn_tf.upscale(_pixels(), 3.3, model=tiny_model))
    assert _files(tmp_path) == ["in.png", "out.png"]


def test_cli_tiles_seamlessly_and_draws_progress(monkeypatch, tmp_path, weights, tiny_model,
                                                 quick_model):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    pixels = _pixels((40, 56, 3), seed=1)
    source = _save(tmp_path / "in.png", pixels)
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    status = upscale_command.run_cli(["upscale", f"--input={source}", f"--output={tmp_path}/t.png",
                                  "--scale=2", "--tile=40", f"--weights={weights}",
                                  "--preset=tiny"])
    assert status == 0
    # 2×3 regions of the 80×112 output, one tick as each is kept.
    assert "\r[1/1] in.png " in terminal.getvalue() and " 6/6" in terminal.getvalue()
    untiled = asdn_tf.upscale(pixels, 2, model=tiny_model, tile=0)
    tiled = image_io.read_image(tmp_path / "t.png")
    assert np.abs(tiled.astype(int) - untiled).max() <= 1


@pytest.mark.slow
def test_cli_bfloat16_precision_is_close_to_float32(capsys, tmp_path, weights, tiny_model):
    pixels = _pixels((40, 56, 3), seed=3)
    source = _save(tmp_path / "in.png", pixels)
    for tile in (0, 24):
        status, _, err = _cli(capsys, "--input", source, "--output", tmp_path / f"{tile}.png",
                              "--scale=2.5", f"--weights={weights}", "--preset=tiny",
                              "--precision=bfloat16", f"--tile={tile}")
        assert (status, err) == (0, "")
    exact = asdn_tf.upscale(pixels, 2.5, model=tiny_model).astype(float)
    untiled, tiled = (image_io.read_image(tmp_path / f"{t}.png").astype(float) for t in (0, 24))
    assert 0 < np.abs(untiled - exact).max()  # it did compute in bfloat16
    for output in (untiled, tiled):
        assert 10 * np.log10(255 ** 2 / np.mean((output - exact) ** 2)) > 40


@pytest.mark.slow
def test_cli_says_what_auto_precision_chose_once(capsys, monkeypatch, tmp_path, weights):
    upscale_command.say_auto_precision.cache_clear()
    monkeypatch.setenv(precision_lib.AUTO_PRECISION_ENV, "bfloat16")
    source = _save(tmp_path / "in.png")
    args = ["--input", source, "--scale=2", f"--weights={weights}", "--preset=tiny"]
    status, _, err = _cli(capsys, *args, "--output", tmp_path / "a.png")
    assert (status, err) == (0, "upscale: precision auto -> bfloat16 (ASDN_AUTO_PRECISION)\n")
    status, _, err = _cli(capsys, *args, "--output", tmp_path / "b.png")
    assert (status, err) == (0, "")  # once per process
    np.testing.assert_array_equal(image_io.read_image(tmp_path / "a.png"),
                                  image_io.read_image(tmp_path / "b.png"))
    status, _, err = _cli(capsys, *args, "--output", tmp_path / "c.png", "--precision=float32")
    assert (status, err) == (0, "")
    first, exact = (image_io.read_image(tmp_path / name) for name in ("a.png", "c.png"))
    assert np.any(first != exact)
    monkeypatch.setenv(precision_lib.AUTO_PRECISION_ENV, "fp8")
    status, _, err = _cli(capsys, *args, "--output", tmp_path / "d.png")
    assert (status, err) == (1, "upscale: ASDN_AUTO_PRECISION must be one of float32, bfloat16, "
                                "got 'fp8'\n")
    assert not (tmp_path / "d.png").exists()


@pytest.mark.parametrize("flag,expected", [("--size=80x60", (60, 80)), ("--width=64", (48, 64)),
                                           ("--height=30", (30, 40))])
def test_cli_size_width_height(capsys, tmp_path, weights, quick_model, flag, expected):
    source = _save(tmp_path / "in.png")
    status, _, err = _cli(capsys, f"--input={source}", f"--output={tmp_path}/o.png", flag,
                          f"--weights={weights}", "--preset=tiny")
    assert (status, err) == (0, "")
    assert image_io.read_image(tmp_path / "o.png").shape == (*expected, 3)


def test_cli_folder_and_glob_inputs(capsys, tmp_path, weights, quick_model):
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    out.mkdir()
    for name in ("a.png", "b.jpg", "c.bmp"):
        _save(inputs / name)
    (inputs / "notes.txt").write_text("not an image")
    common = ["--scale=1.5", f"--weights={weights}", "--preset=tiny"]
    assert _cli(capsys, f"--input={inputs}", f"--output={out}", "--format=webp", *common)[0] == 0
    assert _files(out) == ["a.webp", "b.webp", "c.webp"]
    status, out_text, _ = _cli(capsys, f"--input={inputs}/*.png", f"--output={out}", *common)
    assert status == 0 and "upscaled 1 of 1 files" in out_text
    assert image_io.read_image(out / "a.png").shape == (36, 48, 3)


def test_existing_outputs_need_overwrite(capsys, tmp_path, weights, quick_model):
    source = _save(tmp_path / "in.png")
    target = _save(tmp_path / "out.png", _pixels((5, 5, 3)))
    args = [f"--input={source}", f"--output={target}", "--scale=2", f"--weights={weights}",
            "--preset=tiny"]
    status, _, err = _cli(capsys, *args)
    assert status == 1 and "already exists" in err and "--overwrite" in err
    assert Image.open(target).size == (5, 5)
    assert _cli(capsys, *args, "--overwrite")[0] == 0
    assert Image.open(target).size == (64, 48)


def test_one_bad_file_in_a_folder_run(capsys, tmp_path, weights, quick_model):
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    out.mkdir()
    (inputs / "a_broken.png").write_text("not a png")
    _save(inputs / "b.png")
    _save(inputs / "c.png")
    common = [f"--input={inputs}", f"--output={out}", "--scale=2", f"--weights={weights}",
              "--preset=tiny"]
    status, stdout, err = _cli(capsys, *common, "--fail_fast")
    assert status == 1 and _files(out) == [] and "stopped there (--fail_fast)" in stdout
    status, stdout, err = _cli(capsys, *common)
    assert status == 1 and _files(out) == ["b.png", "c.png"]
    assert err.count("\n") == 1 and "a_broken.png" in err
    assert "upscaled 2 of 3 files" in stdout and "1 failed" in stdout


def _unwritable_folder(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        (folder / "probe").touch()
    except PermissionError:
        return folder
    (folder / "probe").unlink()
    # Root ignores permission bits; sysfs refuses new files even to root.
    return pathlib.Path("/sys")


@pytest.fixture
def bad_inputs(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    _save(folder / "good.png")
    (folder / "empty.png").write_bytes(b"")
    data = (folder / "good.png").read_bytes()
    (folder / "truncated.png").write_bytes(data[:len(data) // 2])
    (folder / "text.png").write_text("hello, I am not a picture\n")
    (tmp_path / "no_images").mkdir()
    (tmp_path / "out").mkdir()
    return tmp_path


BAD = {
    "missing input": (["--input={d}/nope.png"], "no such file or folder"),
    "folder without images": (["--input={d}/no_images"], "no images in"),
    "zero-byte file": (["--input={d}/in/empty.png"], "empty file"),
    "truncated png": (["--input={d}/in/truncated.png"], "truncated"),
    "text named png": (["--input={d}/in/text.png"], "cannot identify image file"),
    "scale 0": (["--scale=0"], "greater than 1"),
    "scale -1": (["--scale=-1"], "greater than 1"),
    "scale 1": (["--scale=1"], "not an upscaling"),
    "scale nan": (["--scale=nan"], "--scale must be a number in (1, 32] written in decimal"),
    "scale inf": (["--scale=inf"], "--scale must be a number in (1, 32] written in decimal"),
    "scale 1000000": (["--scale=1000000"], "at most 32"),
    "scale abc": (["--scale=abc"], "--scale must be a number"),
    "no scale or size": ([], "give exactly one of --scale"),
    "scale and width": (["--scale=2", "--width=64"], "not --scale and --width"),
    "size malformed": (["--size=abc"], "--size must be WIDTHxHEIGHT"),
    "size half": (["--size=64x"], "--size must be WIDTHxHEIGHT"),
    "size zero": (["--size=0x40"], "--size must be WIDTHxHEIGHT"),
    "size smaller": (["--size=30x20"], "not larger than the input 32x24"),
    "width smaller": (["--width=20"], "not larger than the input width 32"),
    "height negative": (["--height=-5"], "--height must be a positive number"),
    "width too large": (["--width=3200"], "the scale that width asks for must be at most 32"),
    "tile too small": (["--tile=3"], "tile must be 0 (no tiling) or an integer >= 8"),
    "tile not a number": (["--tile=big"], "flag --tile=big"),
    "quality": (["--quality=0"], "quality must be an integer in [1, 100]"),
    "unknown format": (["--format=gif"], "unknown image format 'gif'"),
    "output folder missing": (["--output={d}/missing/x.png"], "output folder {d}/missing does"),
    "output folder's parent missing": (["--output={d}/missing/deeper/"],
                                       "cannot create the output folder {d}/missing/deeper: "
                                       "its parent {d}/missing does not exist"),
    "output not writable": (["--output={locked}/x.png"], "cannot write to folder {locked}"),
    "output is the input": (["--output={d}/in/good.png", "--overwrite"], "is the input itself"),
    "over max_pixels": (["--max_pixels=3000"], "3,072 pixels, more than the limit of 3,000"),
    "weights do not fit": (["--preset=default"], "do not fit preset default"),
    "weights missing": (["--weights={d}/nope.weights.h5"], "weights file not found"),
    "unknown flag": (["--sclae=2"], "Unknown command line flag 'sclae'"),
    "unknown precision": (["--precision=fp8"], "--precision=fp8: value should be one of"),
    "stray argument": (["2"], "unexpected arguments"),
    "alpha to jpeg": (["--input={d}/rgba.png", "--output={d}/out/x.jpg"],
                      "JPEG cannot store the alpha channel"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_input_is_one_line_and_writes_nothing(capsys, bad_inputs, weights, quick_model, case):
    _save(bad_inputs / "rgba.png", _pixels((24, 32, 4)))
    locked = _unwritable_folder(bad_inputs) if case == "output not writable" else None
    args, words = BAD[case]
    defaults = {"--input": f"--input={bad_inputs}/in/good.png",
                "--output": f"--output={bad_inputs}/out/x.png", "--scale": "--scale=2",
                "--weights": f"--weights={weights}", "--preset": "--preset=tiny"}
    given = {arg.split("=")[0] for arg in args}
    if given & {"--size", "--width", "--height"} or case == "no scale or size":
        defaults.pop("--scale")
    argv = [arg.format(d=bad_inputs, locked=locked) for arg in args]
    argv += [value for flag, value in defaults.items() if flag not in given]
    before = {p for p in bad_inputs.rglob("*")}
    status, _, err = _cli(capsys, *argv)
    assert status == 1
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("upscale: "), err
    assert words.format(d=bad_inputs, locked=locked) in lines[0]
    assert {p for p in bad_inputs.rglob("*")} == before


def test_without_weights_the_bundled_ones_are_required(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(weights_io, "PACKAGE_WEIGHTS", tmp_path / "default.weights.h5")
    monkeypatch.setattr(weights_io, "UPSCALE_MODEL", "default")
    source = _save(tmp_path / "in.png")
    status, _, err = _cli(capsys, f"--input={source}", f"--output={tmp_path}/o.png", "--scale=2")
    assert status == 1
    assert err == f"upscale: no default weights are bundled in this install ({tmp_path}/" \
                  "default.weights.h5); pass a model or --weights\n"
    status, _, err = _cli(capsys, f"--input={source}", f"--output={tmp_path}/o.png",
                          "--scale=2", "--preset=tiny")
    assert status == 1 and "--preset needs --weights" in err


def test_a_fixed_scale_model_is_refused(capsys, tmp_path):
    fsdn = asdn_tf.build_fsdn("tiny", scale=2)
    fsdn.save(tmp_path / "fsdn.keras")
    source = _save(tmp_path / "in.png")
    status, _, err = _cli(capsys, f"--input={source}", f"--output={tmp_path}/o.png", "--scale=2",
                          f"--weights={tmp_path}/fsdn.keras")
    assert status == 1 and err == f"upscale: {tmp_path}/fsdn.keras is not an ASDN model " \
                                  "(FSDN); upscaling by any scale needs one\n"


# ---------------------------------------------------------------- upscale_file and formats


@pytest.mark.parametrize("extension", [".png", ".jpg", ".bmp", ".webp", ".tif"])
def test_every_input_format(tmp_path, tiny_model, extension):
    source = _save(tmp_path / f"in{extension}")
    path = files.upscale_file(source, tmp_path / "out.png", 2, model=tiny_model)
    assert image_io.read_image(path).shape == (48, 64, 3)


def test_layouts_are_kept(tmp_path, tiny_model):
    gray = _save(tmp_path / "gray.png", _pixels((24, 32)))
    assert Image.open(files.upscale_file(gray, tmp_path / "g.png", 2,
                                               model=tiny_model)).mode == "L"
    rgba = _pixels((24, 32, 4))
    rgba[..., 3] = 255
    rgba[:12, :, 3] = 0
    path = files.upscale_file(_save(tmp_path / "rgba.png", rgba), tmp_path / "a.webp", 2,
                                    model=tiny_model, image_format="png")
    alpha = np.asarray(Image.open(path))[..., 3]
    expected = imresize(rgba[..., 3:].astype(np.float32) / 255, scale=2.0, size=(48, 64))
    np.testing.assert_array_equal(alpha, np.round(np.clip(expected[..., 0], 0, 1) * 255))
    palette = Image.fromarray(_pixels()).convert("P", palette=Image.Palette.ADAPTIVE)
    palette.save(tmp_path / "palette.png")
    path = files.upscale_file(tmp_path / "palette.png", tmp_path / "p.png", 2,
                                    model=tiny_model)
    assert Image.open(path).mode == "RGB"


def test_sixteen_bit_png_stays_sixteen_bit(tmp_path, tiny_model):
    for shape in [(24, 32, 3), (24, 32)]:
        pixels = _pixels(shape, dtype=np.uint16)
        source = tmp_path / "in16.png"
        image_write.write_image(source, pixels, overwrite=True)
        path = files.upscale_file(source, tmp_path / "out16.png", 2, model=tiny_model,
                                        overwrite=True)
        written, _ = image_io.read_image_and_profile(path)
        np.testing.assert_array_equal(written, asdn_tf.upscale(pixels, 2, model=tiny_model))
        assert written.dtype == np.uint16 and np.unique(written % 257).size > 1


def test_exif_orientation_icc_profile_and_quality(tmp_path, tiny_model):
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    image = Image.fromarray(_pixels())
    exif = image.getexif()
    exif[0x0112] = 6  # stored landscape, shown rotated a quarter turn clockwise
    image.save(tmp_path / "in.jpg", exif=exif, icc_profile=profile, quality=95)
    path = files.upscale_file(tmp_path / "in.jpg", tmp_path / "o.png", 2,
                                        model=tiny_model)
    with Image.open(path) as written:
        assert written.size == (48, 64) and written.info["icc_profile"] == profile
    sizes = {}
    for quality in (30, 95):
        path = files.upscale_file(tmp_path / "in.jpg", tmp_path / f"q{quality}.jpg", 2,
                                        model=tiny_model, quality=quality)
        sizes[quality] = path.stat().st_size
        assert Image.open(path).info["icc_profile"] == profile
    assert sizes[30] < sizes[95]
    path = files.upscale_file(tmp_path / "in.jpg", tmp_path / "o.bmp", 2,
                                        model=tiny_model)
    assert "icc_profile" not in Image.open(path).info
    # A profile of another colour space than the output's is not copied.
    _save(tmp_path / "gray.png", _pixels((24, 32)), icc_profile=profile)
    path = files.upscale_file(tmp_path / "gray.png", tmp_path / "g.png", 2,
                                        model=tiny_model)
    assert "icc_profile" not in Image.open(path).info


def test_an_interrupted_write_leaves_nothing(tmp_path, tiny_model, monkeypatch):
    def half_written(stream, *args):
        stream.write(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(image_write, "encode", half_written)
    source = _save(tmp_path / "in.png")
    with pytest.raises(KeyboardInterrupt):
        files.upscale_file(source, tmp_path / "out.png", 2, model=tiny_model)
    assert _files(tmp_path) == ["in.png"]


def test_upscale_file_is_exported_and_checks_before_working(tmp_path, tiny_model):
    assert asdn_tf.upscale_file is files.upscale_file
    assert callable(asdn_tf.upscale)  # importing the command never shadows the function
    source = _save(tmp_path / "in.png")
    with pytest.raises(ValueError, match="give exactly one of scale, size, width or height"):
        asdn_tf.upscale_file(source, tmp_path / "o.png", model=tiny_model)
    with pytest.raises(ValueError, match="more than the limit"):
        asdn_tf.upscale_file(source, tmp_path / "o.png", 4, model=tiny_model, max_pixels=1000)
    path = asdn_tf.upscale_file(source, tmp_path, size=(30, 40), model=tiny_model,
                                image_format="jpeg")
    assert path == tmp_path / "in.jpg" and Image.open(path).size == (40, 30)


def test_target_size():
    assert upscale_request.target_size((24, 32), scale=3.3) == (3.3, (79, 106))
    assert upscale_request.target_size((24, 32), width=100) == (3.125, (75, 100))
    assert upscale_request.target_size((24, 32), height=25)[1] == (25, 33)
    assert upscale_request.target_size((24, 32), size=(30, 64)) == (2.0, (30, 64))


# ---------------------------------------------------------------- tiling


@pytest.mark.parametrize("scale,size", [(1.5, None), (3.3, None), (None, (90, 150))])
def test_tiled_matches_untiled_within_one_grey_level(tiny_model, scale, size):
    image = _pixels((40, 56, 3), seed=2)
    untiled = asdn_tf.upscale(image, scale, model=tiny_model, size=size, tile=0)
    calls = []
    tiled = asdn_tf.upscale(image, scale, model=tiny_model, size=size, tile=24,
                            progress=lambda done, total: calls.append((done, total)))
    assert tiled.shape == untiled.shape
    assert np.abs(tiled.astype(int) - untiled).max() <= 1
    assert [done for done, _ in calls] == list(range(1, calls[0][1] + 1))


def test_tiles_need_their_overlap(tiny_model):
    # Without the receptive radius as overlap the seams show: the test above is not vacuous.
    image = _pixels((40, 56, 3), seed=2)
    untiled = asdn_tf.upscale(image, 2, model=tiny_model, tile=0)
    seams = asdn_tf.upscale(image, 2, model=tiny_model, tile=24, tile_overlap=0)
    assert np.abs(seams.astype(int) - untiled).max() > 8


def test_tiling_keeps_gray_alpha_and_sixteen_bits(tiny_model):
    for image in (_pixels((20, 28)), _pixels((20, 28, 4), seed=3),
                  _pixels((20, 28, 3), dtype=np.uint16)):
        untiled = asdn_tf.upscale(image, 2, model=tiny_model, tile=0)
        tiled = asdn_tf.upscale(image, 2, model=tiny_model, tile=16)
        assert tiled.shape == untiled.shape and tiled.dtype == untiled.dtype
        peak = np.iinfo(image.dtype).max
        assert np.abs(tiled.astype(int) - untiled).max() <= peak // 255


@pytest.mark.slow
def test_large_outputs_are_tiled_automatically(tiny_model, monkeypatch):
    # The automatic choice with a smaller budget: the whole image while its pass fits it
    # (the ×2 step, 120×160), else the grid of regions whose passes fit it with the least work.
    cost = tiling.pass_bytes(tiny_model.model_config, 1)
    monkeypatch.setattr(tiling, "MEMORY_BUDGET", cost * 120 * 160)
    assert tiling.choose_tile((120, 160), None, tiny_model.model_config) == 0
    assert tiling.choose_tile((180, 240), None, tiny_model.model_config) == (180, 80)
    image = _pixels((60, 80, 3), seed=4)
    calls = []
    tiled = asdn_tf.upscale(image, 3, model=tiny_model, progress=lambda *call: calls.append(call))
    # Step ×1.5 (180×240) takes 1×3 regions.
    assert calls[-1] == (1 + 3, 1 + 3)
    untiled = asdn_tf.upscale(image, 3, model=tiny_model, tile=0)
    assert np.abs(tiled.astype(int) - untiled).max() <= 1


def test_automatic_tiling_and_radius():
    default = asdn_tf.preset("default")
    fits = tiling.MEMORY_BUDGET // tiling.pass_bytes(default, 1)
    assert tiling.choose_tile((1, fits)) == 0
    assert tiling.default_overlap(default) == 12
    for size in [(1, fits + 1), (750, 640), (1500, 1280), (2048, 2048), (8192, 8192)]:
        height, width = tiling.choose_tile(size)
        assert tiling.pass_bytes(default, (height + 24) * (width + 24)) <= tiling.MEMORY_BUDGET
    # The quick start's steps: 2 regions, then 4 × 2 (a square grid would take 3 × 3).
    assert tiling.count_regions((750, 640), tiling.choose_tile((750, 640))) == 2
    assert tiling.choose_tile((1500, 1280)) == (375, 640)
    assert tiling.choose_tile((4000, 4000), 0) == 0
    assert tiling.choose_tile((4000, 4000), 100) == 100
    # A model too large for the budget still keeps regions twice its receptive radius.
    assert tiling.choose_tile((5000, 5000), None, asdn_tf.preset("paper")) == (258, 258)
    assert tiling.receptive_radius(asdn_tf.preset("default")) == 17
    with pytest.raises(ValueError, match="tile overlap"):
        tiling.check_overlap(-1)


def test_exif_orientations_match_pillow(tmp_path):
    pixels = _pixels((5, 7, 3))
    for orientation in range(1, 9):
        image = Image.fromarray(pixels)
        exif = image.getexif()
        exif[0x0112] = orientation
        image.save(tmp_path / "o.png", exif=exif)
        with Image.open(tmp_path / "o.png") as opened:
            expected = np.asarray(ImageOps.exif_transpose(opened))
        # The same EXIF in a 16-bit PNG, which is read as an array: oriented as Pillow does.
        png = tf.io.encode_png(pixels.astype(np.uint16) * 257).numpy()
        (tmp_path / "o16.png").write_bytes(_with_exif(png, exif.tobytes()[len(b"Exif\0\0"):]))
        oriented, _ = image_io.read_image_and_profile(tmp_path / "o16.png")
        np.testing.assert_array_equal(oriented, expected.astype(np.uint16) * 257)


def _with_exif(png, exif):
    body = b"eXIf" + exif
    chunk = struct.pack(">I", len(exif)) + body + struct.pack(">I", zlib.crc32(body))
    return png[:33] + chunk + png[33:]


# ---------------------------------------------------------------- real processes


def _only_our_line(stderr):
    """TensorFlow's native start-up log aside, stderr holds one `upscale:` line and nothing else."""
    ours = [line for line in stderr.splitlines() if line.startswith("upscale:")]
    assert len(ours) == 1, stderr
    assert "Traceback" not in stderr and not re.search(r"\w+Warning: ", stderr), stderr
    return ours[0]


@pytest.mark.slow
def test_module_command(tmp_path, weights):
    _save(tmp_path / "in.png")
    done = _process(["-m", "asdn_tf.cli.upscale", "--input=in.png", "--output=out.png",
                     "--scale=2.5", f"--weights={weights}", "--preset=tiny"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "upscaled 1 of 1 files" in done.stdout
    assert Image.open(tmp_path / "out.png").size == (80, 60)


@pytest.mark.slow
def test_console_script_failure_has_no_traceback(tmp_path, weights):
    _save(tmp_path / "in.png")
    done = _process(["-c", _console_script(), "--input=in.png", "--output=o.png", "--scale=2",
                     f"--weights={weights}", "--preset=default"], tmp_path)
    assert done.returncode == 1
    assert _only_our_line(done.stderr).startswith(f"upscale: weights {weights} do not fit "
                                                  "preset default: ")
    assert _files(tmp_path) == ["in.png"]


def test_help_lists_the_flags(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["asdn-upscale"])
    values = flags.FlagValues()
    upscale_flags.define_program_flags(values)
    assert "--tile_overlap" in values.main_module_help()
