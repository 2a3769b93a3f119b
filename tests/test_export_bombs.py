"""Hostile requests to the SavedModel: refused at the door, cheaply, through both loaders.

A tiny ASDN is exported once for the module. The memory tests run each loader in a child
process (bench/export_latency.py measures there) and read its peak RSS from /proc.
"""

import importlib.util
import io
import pathlib
import struct

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps

from asdn_tf.export import encoded_image, saved_model
from asdn_tf.io import image_io
from asdn_tf.inference.files import upscale_file

ROOT = pathlib.Path(__file__).resolve().parents[1]
MAX_OUTPUT_PIXELS = 50_000
ROW = "image must be .batch, height, width, 3. .RGB., got shape"


def _load_bench():
    spec = importlib.util.spec_from_file_location("asdn_bench_export_latency",
                                                  ROOT / "bench" / "export_latency.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _load_bench()


@pytest.fixture(scope="module")
def saved_model_dir(tiny_model, tmp_path_factory):
    return saved_model.export_saved_model(tiny_model, tmp_path_factory.mktemp("bombs") / "1",
                                     max_output_pixels=MAX_OUTPUT_PIXELS)


@pytest.fixture(scope="module")
def signatures(saved_model_dir):
    return tf.saved_model.load(str(saved_model_dir)).signatures


@pytest.fixture(scope="module")
def session(saved_model_dir):
    """The session loader TF Serving uses; returns run(signature, **inputs)."""
    graph = tf.Graph()
    with graph.as_default():
        sess = tf.compat.v1.Session(graph=graph)
        meta_graph = tf.compat.v1.saved_model.loader.load(sess, ["serve"], str(saved_model_dir))

    def run(name, **inputs):
        signature = meta_graph.signature_def[name]
        return sess.run({key: value.name for key, value in signature.outputs.items()},
                        {signature.inputs[key].name: value for key, value in inputs.items()})

    yield run
    sess.close()


@pytest.fixture(scope="module")
def picture():
    """An 6×9 RGB image that is no rotation or flip of itself."""
    return np.random.default_rng(0).integers(0, 256, (6, 9, 3), np.uint8)


def _encoded(signatures, image_bytes, scale=2.0):
    return signatures["upscale_encoded"](image_bytes=tf.constant(image_bytes),
                                         scale=tf.constant(scale, tf.float32))["png_bytes"]


@pytest.mark.slow
@pytest.mark.parametrize("loader", ["saved_model.load", "session"])
def test_bombs_are_refused_cheaply(bench, saved_model_dir, loader):
    """A 17 KB PNG and a 600-byte JPEG that claim 12000×12000 (432 MB as RGB, 1.7 GB as float)
    and the PNG with scale NaN: refused in well under a second, with no memory to speak of."""
    rows = bench.measure_refusals(saved_model_dir, loader, bench.refusal_requests())
    assert len(rows) == 3
    for row, words in zip(rows, ["24000x24000 is 576000000 pixels", "finite number",
                                 "24000x24000 is 576000000 pixels"]):
        assert row["refused"] and words in row["message"], row
        assert row["seconds"] < 1.0 and row["extra_mb"] < 300, row


@pytest.mark.slow
@pytest.mark.parametrize("image_bytes,words", [
    (b"", "must be a PNG or JPEG file"),
    (b"GIF89a" + bytes(20), "must be a PNG or JPEG file"),
    (b"BM" + bytes(60), "must be a PNG or JPEG file"),
    (b"RIFF\0\0\0\0WEBPVP8 " + bytes(20), "must be a PNG or JPEG file"),
    (b"\x89PNG\r\n\x1a\n" + bytes(10), "PNG whose header .its IHDR chunk. is malformed"),
    (b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDX" + bytes(17), "PNG whose header"),
    (b"\xff\xd8\xff\xe0\0\x10JFIF", "Invalid JPEG data"),
])
def test_unreadable_headers_are_invalid_argument(signatures, session, image_bytes, words):
    with pytest.raises(tf.errors.InvalidArgumentError, match=words):
        _encoded(signatures, image_bytes)
    with pytest.raises(tf.errors.InvalidArgumentError, match=words):
        session("upscale_encoded", image_bytes=image_bytes, scale=np.float32(2.0))


def test_header_size_is_checked_before_decoding(bench, signatures, session):
    """The claimed size is what the message gives; the scale is checked first."""
    png = bench.bomb_png(300)
    with pytest.raises(tf.errors.InvalidArgumentError, match="600x600 is 360000 pixels"):
        _encoded(signatures, png)
    with pytest.raises(tf.errors.InvalidArgumentError, match="600x600 is 360000 pixels"):
        _encoded(signatures, bench.jpeg_claiming(300))
    with pytest.raises(tf.errors.InvalidArgumentError, match="finite number"):
        session("upscale_encoded", image_bytes=png, scale=np.float32("nan"))
    empty = bench.bomb_png(0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="must not be empty"):
        _encoded(signatures, empty)


@pytest.mark.slow
@pytest.mark.parametrize("shape", [[8, 8, 3], [1, 8, 8, 1], [1, 8, 8, 4], [1, 1, 8, 8, 3], [3]])
def test_batch_signatures_check_rank_and_channels(signatures, session, shape):
    for name, dtype in (("serving_default", np.uint8), ("upscale_float", np.float32)):
        image = np.zeros(shape, dtype)
        with pytest.raises(tf.errors.InvalidArgumentError, match=ROW):
            signatures[name](image=tf.constant(image), scale=tf.constant(2.0))
        with pytest.raises(tf.errors.InvalidArgumentError, match=ROW):
            session(name, image=image, scale=np.float32(2.0))


def test_output_must_be_larger_than_the_input(signatures, session, tiny_model, tmp_path):
    """Scale 1.0000001 rounds 8×8 to 8×8: the CLI refuses that, and so does every signature."""
    zeros = np.zeros((1, 8, 8, 3), np.uint8)
    Image.fromarray(zeros[0]).save(tmp_path / "in.png")
    with pytest.raises(ValueError, match="grow by a pixel|must be larger than the input"):
        upscale_file(tmp_path / "in.png", tmp_path / "out.png", 1.0000001, model=tiny_model)
    words = ("scale 1.00000012 is too small for a 8x8 image to grow by a pixel; the smallest "
             "that does is 1.0625")
    with pytest.raises(tf.errors.InvalidArgumentError, match=words):
        signatures["serving_default"](image=tf.constant(zeros), scale=tf.constant(1.0000001))
    with pytest.raises(tf.errors.InvalidArgumentError, match=words):
        _encoded(signatures, tf.io.encode_png(zeros[0]).numpy(), 1.0000001)
    with pytest.raises(tf.errors.InvalidArgumentError, match=words):
        session("upscale_float", image=zeros.astype(np.float32), scale=np.float32(1.0000001))
    # One side growing is enough, for both: 8×5 at 1.07 is 9×5.
    output = signatures["serving_default"](image=tf.constant(zeros[:, :, :5]),
                                           scale=tf.constant(1.07))["image"]
    assert output.shape == (1, 9, 5, 3)
    Image.fromarray(zeros[0, :, :5]).save(tmp_path / "narrow.png")
    upscale_file(tmp_path / "narrow.png", tmp_path / "out.png", 1.07, model=tiny_model)
    assert image_io.read_image(tmp_path / "out.png").shape == (9, 5, 3)


def _turned_by_pillow(path):
    """The pixels of the file at `path` turned by its EXIF orientation, as Pillow turns them
    (an invalid orientation leaves them as stored)."""
    return np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))


@pytest.mark.parametrize("orientation", range(10))
def test_upright_turns_as_the_cli_does(picture, orientation, tmp_path):
    """The SavedModel's decoder and the command's reader turn a PNG by each EXIF orientation
    (0 and 9 are invalid) as Pillow does."""
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, "PNG", exif=b"Exif\0\0" + _exif(orientation, "II"))
    path = tmp_path / "photo.png"
    path.write_bytes(buffer.getvalue())
    expected = _turned_by_pillow(path)
    assert (expected.shape == picture.shape and np.array_equal(expected, picture)) \
        == (orientation not in range(2, 9))
    np.testing.assert_array_equal(image_io.read_image(path), expected)
    turned = encoded_image.checked_decode(tf.constant(buffer.getvalue()), tf.constant(2.0),
                                          4.0, 10_000)
    np.testing.assert_array_equal(turned.numpy(), expected)


def _exif(orientation, byte_order):
    """EXIF bytes (a TIFF header and one IFD) holding only the orientation tag."""
    if byte_order == "II":
        return (b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", 1)
                + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + bytes(4))
    return (b"MM\0*" + struct.pack(">I", 8) + struct.pack(">H", 1)
            + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + bytes(4))


@pytest.mark.parametrize("image_format,orientation,byte_order", [
    ("JPEG", 6, "II"), ("JPEG", 8, "MM"), ("JPEG", 3, "II"), ("JPEG", 1, "MM"),
    ("PNG", 6, "MM"), ("PNG", 5, "II"), ("PNG", None, None)])
def test_encoded_applies_exif_orientation_as_the_cli_does(signatures, session, picture, tmp_path,
                                                          image_format, orientation, byte_order):
    buffer = io.BytesIO()
    options = {} if orientation is None else {"exif": b"Exif\0\0" + _exif(orientation,
                                                                             byte_order)}
    if image_format == "JPEG":
        options["quality"] = 90
    Image.fromarray(picture).save(buffer, image_format, **options)
    path = tmp_path / f"photo.{image_format.lower()}"
    path.write_bytes(buffer.getvalue())
    upright = image_io.read_image(path)  # the pixels `python -m asdn_tf.upscale` upscales
    np.testing.assert_array_equal(upright, _turned_by_pillow(path))
    expected = signatures["serving_default"](image=tf.constant(upright[None]),
                                             scale=tf.constant(2.0))["image"].numpy()[0]
    png = _encoded(signatures, buffer.getvalue())
    np.testing.assert_array_equal(tf.io.decode_png(png).numpy(), expected)
    served = session("upscale_encoded", image_bytes=buffer.getvalue(), scale=np.float32(2.0))
    assert served["png_bytes"] == png.numpy()
