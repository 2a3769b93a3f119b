"""Finding, reading and writing image files, shared by the data pipeline, evaluation and upscaling.

Writing is atomic: the image goes to a temporary file in the destination folder, which replaces
the destination only once complete, so an interrupted write leaves no partial image.

Example:
    >>> pixels, profile = read_image_and_profile("photo.jpg")
    >>> write_image("big.png", pixels, icc_profile=profile)
"""

import contextlib
import glob
import os
import pathlib
import struct
import warnings
import zlib

import numpy as np
import tensorflow as tf
from PIL import Image, ImageOps, UnidentifiedImageError

from asdn_tf import fileio

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".webp": "WEBP",
           ".tif": "TIFF", ".tiff": "TIFF"}
FORMAT_EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "WEBP": ".webp", "TIFF": ".tif"}
# What each format stores as written here: 16 bits per channel only in PNG (Pillow has no 16-bit
# colour mode; TensorFlow's PNG codec does), alpha in PNG, WebP and TIFF, ICC profiles not in BMP.
_ALPHA_FORMATS = ("PNG", "WEBP", "TIFF")
_ICC_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF")
_QUALITY_FORMATS = ("JPEG", "WEBP")
_EXIF_ORIENTATION = 0x0112
# ImageOps.exif_transpose's operations, for arrays Pillow cannot hold (16-bit colour).
_ORIENTATIONS = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a),
}


def is_image_path(path):
    return pathlib.Path(path).suffix.lower() in IMAGE_EXTENSIONS


def list_images(source, recursive=True):
    """Sorted image paths under a folder, matching a glob, or the file itself.

    Raises:
        FileNotFoundError: nothing exists at `source`.
    """
    text = os.fspath(source)
    path = pathlib.Path(text)
    if path.is_dir():
        pattern = "**/*" if recursive else "*"
        return sorted(p for p in path.glob(pattern) if p.is_file() and is_image_path(p))
    if path.is_file():
        return [path]
    if glob.has_magic(text):
        return sorted(pathlib.Path(p) for p in glob.glob(text, recursive=True)
                      if os.path.isfile(p) and is_image_path(p))
    raise FileNotFoundError(f"no such file or folder: {text}")


def read_image(path):
    """Decodes an image file to a numpy array with EXIF orientation applied.

    Returns H×W (gray, uint8 or uint16) or H×W×3 / H×W×4 uint8. Palette images become RGB(A).

    Raises:
        ValueError: the file is empty, truncated or not an image (the message names it).
    """
    with _decoding(path) as image:
        image.load()
        return to_array(ImageOps.exif_transpose(image))


def read_image_and_profile(path):
    """`read_image`, keeping all 16 bits of a 16-bit PNG, and the ICC profile (bytes or None).

    Returns (pixels, profile): pixels H×W or H×W×3 / H×W×4, uint8, or uint16 for 16-bit PNGs.
    The profile is dropped when the pixels are no longer in its colour space (CMYK made RGB,
    gray with alpha made RGBA): those conversions are not colour managed.
    """
    with _decoding(path) as image:
        profile = image.info.get("icc_profile") or None
        if image.format == "PNG" and _png_bit_depth(path) == 16:
            pixels = _decode_png16(pathlib.Path(path).read_bytes())
            pixels = _ORIENTATIONS.get(image.getexif().get(_EXIF_ORIENTATION, 1),
                                       lambda a: a)(pixels)
        else:
            image.load()
            pixels = to_array(ImageOps.exif_transpose(image))
    space = profile[16:20] if profile is not None else None
    return pixels, profile if space == (b"GRAY" if pixels.ndim == 2 else b"RGB ") else None


@contextlib.contextmanager
def _decoding(path):
    """Opens `path` with Pillow; any decoding error in the block becomes one ValueError."""
    path = pathlib.Path(path)
    try:
        with warnings.catch_warnings():
            # Pillow warns above 89 M pixels and refuses above 179 M; the refusal is enough.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                yield image
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            tf.errors.OpError) as error:
        reason = "empty file" if path.exists() and path.stat().st_size == 0 else _message(error)
        raise ValueError(f"cannot read image {path}: {reason}") from None


def _message(error):
    text = getattr(error, "message", None) or str(error)
    lines = text.strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _png_bit_depth(path):
    with open(path, "rb") as stream:
        header = stream.read(25)
    return header[24] if len(header) == 25 else 8


def _decode_png16(data):
    pixels = tf.io.decode_png(data, channels=0, dtype=tf.uint16).numpy()
    if pixels.shape[2] == 1:
        return pixels[..., 0]
    if pixels.shape[2] == 2:
        return np.concatenate([np.repeat(pixels[..., :1], 3, axis=2), pixels[..., 1:]], axis=2)
    return pixels


def to_array(image):
    """A PIL image as a numpy array (see `read_image` for the layouts)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        return np.asarray(image).astype(np.uint16)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode in ("1", "LA", "CMYK", "YCbCr", "HSV", "F"):
        image = image.convert({"1": "L", "LA": "RGBA"}.get(image.mode, "RGB"))
    elif image.mode not in ("L", "RGB", "RGBA"):
        image = image.convert("RGB")
    return np.asarray(image)


def output_format(path, forced=None):
    """"PNG", "JPEG", "BMP", "WEBP" or "TIFF": `forced` (a name or extension), else from `path`."""
    if forced is not None:
        name = str(forced).strip().lower().lstrip(".")
        found = FORMATS.get("." + name) or FORMATS.get("." + {"jpeg": "jpg"}.get(name, name))
        if found is None:
            raise ValueError(f"unknown image format {forced!r}; choose one of png, jpeg, bmp, "
                             "webp, tiff")
        return found
    found = FORMATS.get(pathlib.Path(path).suffix.lower())
    if found is None:
        raise ValueError(f"cannot tell the image format of {path} from its extension; use one of "
                         f"{', '.join(IMAGE_EXTENSIONS)} or name a format")
    return found


def check_output(path, pixels, image_format=None, overwrite=False, quality=95):
    """Raises the error `write_image` would, without writing: call it before costly work.

    Raises:
        ValueError: unknown format, bad quality, or a format that cannot hold these pixels.
        FileExistsError: `path` exists and `overwrite` is False.
        OSError: the folder does not exist or is not writable.
    """
    path = pathlib.Path(path)
    found = output_format(path, image_format)
    check_quality(quality)
    if pixels.ndim == 3 and pixels.shape[2] == 4 and found not in _ALPHA_FORMATS:
        raise ValueError(f"{found} cannot store the alpha channel of this image; write "
                         f"{path.with_suffix('.png').name} (or .webp, .tiff) instead")
    if path.is_dir():
        raise ValueError(f"output {path} is a folder, not a file name")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; not replaced without --overwrite")
    check_folder(path.parent)
    return found


def check_quality(quality):
    """Raises ValueError unless `quality` is an integer in [1, 100]."""
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) \
            or not 1 <= quality <= 100:
        raise ValueError(f"quality must be an integer in [1, 100], got {quality!r}")


def check_folder(folder):
    """Raises FileNotFoundError or OSError unless a file can be created in `folder`."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"output folder {folder} does not exist")
    fileio.check_writable(folder)


def write_image(path, pixels, image_format=None, icc_profile=None, quality=95, overwrite=False):
    """Writes `pixels` (a `read_image` layout, uint8 or uint16) to `path`, atomically.

    Args:
        path: destination; the format comes from its extension unless `image_format` is given.
        pixels: H×W, H×W×1, H×W×3 or H×W×4 array. 16 bits are kept in PNG, rounded to 8 bits
            elsewhere; an alpha channel needs PNG, WebP or TIFF.
        image_format: "png", "jpeg", "bmp", "webp" or "tiff" to override the extension.
        icc_profile: bytes to embed where the format allows (not BMP).
        quality: JPEG and WebP quality, 1–100.
        overwrite: replace an existing `path`.

    Raises:
        as `check_output`.
    """
    path = pathlib.Path(path)
    found = check_output(path, pixels, image_format, overwrite, quality)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    with fileio.atomic_path(path) as temporary:
        with open(temporary, "xb") as stream:
            _encode(stream, pixels, found, icc_profile if found in _ICC_FORMATS else None,
                    quality)
            stream.flush()
            os.fsync(stream.fileno())
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} already exists; not replaced without --overwrite")
    return path


def _encode(stream, pixels, found, icc_profile, quality):
    if pixels.dtype == np.uint16 and found == "PNG":
        png = tf.io.encode_png(pixels if pixels.ndim == 3 else pixels[..., None]).numpy()
        stream.write(_with_icc_profile(png, icc_profile) if icc_profile else png)
        return
    if pixels.dtype == np.uint16:
        pixels = ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)
    options = {}
    if icc_profile:
        options["icc_profile"] = icc_profile
    if found in _QUALITY_FORMATS:
        options["quality"] = int(quality)
    Image.fromarray(pixels).save(stream, format=found, **options)


def _with_icc_profile(png, profile):
    """PNG bytes with an iCCP chunk after IHDR (TensorFlow's encoder writes none)."""
    data = b"ICC Profile\0\0" + zlib.compress(profile)
    body = b"iCCP" + data
    chunk = struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    end_of_header = 8 + 8 + 13 + 4  # signature, IHDR length and type, IHDR data, CRC
    return png[:end_of_header] + chunk + png[end_of_header:]
