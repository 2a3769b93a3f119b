"""16-bit PNGs, which Pillow cannot hold in colour: TensorFlow's codec reads and writes them
(imported on first use, so that nothing else waits for TensorFlow), and the ICC profile chunk
its encoder omits is added here."""

import struct
import zlib

import numpy as np

from asdn_tf.io import errors


def bit_depth(path):
    """The bit depth in a PNG file's header (8 when the header is short)."""
    with open(path, "rb") as stream:
        header = stream.read(25)
    return header[24] if len(header) == 25 else 8


def decode(data):
    """PNG bytes as H×W (gray) or H×W×3 / H×W×4 uint16; raises ValueError (one line)."""
    import tensorflow as tf
    try:
        pixels = tf.io.decode_png(data, channels=0, dtype=tf.uint16).numpy()
    except tf.errors.OpError as error:
        raise ValueError(errors.first_line(error)) from None
    if pixels.shape[2] == 1:
        return pixels[..., 0]
    if pixels.shape[2] == 2:
        return np.concatenate([np.repeat(pixels[..., :1], 3, axis=2), pixels[..., 1:]], axis=2)
    return pixels


def encode(pixels, icc_profile=None):
    """H×W or H×W×C uint16 pixels as PNG bytes, with `icc_profile` in an iCCP chunk."""
    import tensorflow as tf
    png = tf.io.encode_png(pixels if pixels.ndim == 3 else pixels[..., None]).numpy()
    return _with_icc_profile(png, icc_profile) if icc_profile else png


def _with_icc_profile(png, profile):
    """PNG bytes with an iCCP chunk after IHDR (TensorFlow's encoder writes none)."""
    data = b"ICC Profile\0\0" + zlib.compress(profile)
    body = b"iCCP" + data
    chunk = struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    end_of_header = 8 + 8 + 13 + 4  # signature, IHDR length and type, IHDR data, CRC
    return png[:end_of_header] + chunk + png[end_of_header:]
