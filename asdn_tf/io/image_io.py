"""Finding and reading image files, shared by the data pipeline, evaluation and upscaling.

Only Pillow's PNG, JPEG, BMP, WebP and TIFF decoders ever run (`DECODERS`), whatever a file's
name. `read_header` tells an image's size from its header alone, so that a decompression bomb
is refused before it is decoded (`check_decode_cost`), as is a file that claims more pixels
than its bytes can hold (truncated, or its header altered). Data that ends short is an error,
never filled in (reading refuses to run while Pillow's LOAD_TRUNCATED_IMAGES is set), and
`check_pixels` decodes a file in full before costly work. TensorFlow is imported only for
16-bit PNGs (`png16`). Writing is asdn_tf/io/image_write.py. docs/limits.md lists the limits.

Example:
    >>> pixels, profile = read_image_and_profile("photo.jpg")
    >>> header = read_header("photo.jpg")  # its size, without decoding it
"""

import collections
import contextlib
import glob
import io
import os
import pathlib
import warnings

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from asdn_tf.io import errors, png16
from asdn_tf.io import pixels as pixels_lib

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".webp": "WEBP",
           ".tif": "TIFF", ".tiff": "TIFF"}
FORMAT_EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "WEBP": ".webp", "TIFF": ".tif"}
# The only decoders Pillow may run on a file (whatever its name): the formats the docs promise.
DECODERS = tuple(FORMAT_EXTENSIONS)
_EXIF_ORIENTATION = 0x0112
_WIDE_MODES = ("I", "F")
# The most pixels an input may have by default: an 8192x8192 image. Decoding it takes 3-4 bytes
# a pixel (200-270 MB), the network's float copy 12 more; Pillow warns above 89 M pixels.
MAX_INPUT_PIXELS = 8192 * 8192
# The most pixels a byte of a complete file can hold, with a margin. PNG: deflate expands a byte
# at most 1032 times and a pixel takes at least a bit (8256). JPEG: a Huffman-coded 8x8 block
# takes at least a bit in its DC scan (512 for gray). More is a truncated file or an altered
# header, which the decoder would fill in. WebP and compressed BMP and TIFF can hold a blank image
# in a few bytes whatever its size; uncompressed BMP and TIFF need their rows (`_raw_bytes`).
MAX_PIXELS_PER_BYTE = {"PNG": 10_000, "JPEG": 1024}
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


Header = collections.namedtuple("Header", "height width alpha frames")
Header.__doc__ = """What `read_header` tells without decoding: the (height, width) the pixels will
have, whether an alpha channel is kept, and how many frames (or pages) the file holds."""


class FirstFrameWarning(UserWarning):
    """An animated image or a multi-page TIFF was read: only its first frame is used."""


def is_image_path(path):
    return pathlib.Path(path).suffix.lower() in IMAGE_EXTENSIONS


def list_images(source, recursive=True):
    """Sorted image paths under a folder, matching a glob, or the file itself.

    Hidden files, and with `recursive` everything inside hidden folders, are never listed from a
    folder or a glob: they are other programs' data, or temporaries of an interrupted write.

    Raises:
        FileNotFoundError: nothing exists at `source`.
    """
    text = os.fspath(source)
    path = pathlib.Path(text)
    if path.is_dir():
        pattern = "**/*" if recursive else "*"
        return sorted(p for p in path.glob(pattern) if p.is_file() and is_image_path(p)
                      and not _hidden(p.relative_to(path)))
    if path.is_file():
        return [path]
    if glob.has_magic(text):
        return sorted(pathlib.Path(p) for p in glob.glob(text, recursive=True)
                      if os.path.isfile(p) and is_image_path(p)
                      and not pathlib.Path(p).name.startswith("."))
    raise FileNotFoundError(f"no such file or folder: {text}")


def _hidden(relative):
    return any(part.startswith(".") for part in relative.parts)


def check_decode_cost(source, max_pixels=MAX_INPUT_PIXELS):
    """The `Header` of an image (a path, or the bytes of an upload) once its decoding is known to
    be bounded: at most `max_pixels` pixels, and no more than its bytes can hold
    (`MAX_PIXELS_PER_BYTE`). Reads the header only: under a second and a few MB for any file.

    Raises:
        ValueError: one line, for an image over either bound or one that cannot be read.
    """
    header = read_header(source)
    if header.height * header.width > max_pixels:
        raise ValueError(f"{_label(source)} has {header.width}x{header.height} = "
                         f"{header.height * header.width:,} pixels, more than the input limit "
                         f"of {max_pixels:,} (max_input_pixels)")
    return header


def read_header(path):
    """The `Header` of an image file (or its bytes), read without decoding its pixels: cheap.

    The size is the one `read_image` returns, EXIF orientation applied, except for a PNG whose
    orientation is stored after its pixels (rare): that one is known only once decoded.

    Raises:
        ValueError: as `read_image`, and for images beyond Pillow's decompression-bomb limit.
    """
    with _decoding(path) as image:
        width, height = image.size
        if _orientation(image) in (5, 6, 7, 8):  # the transposing ones
            width, height = height, width
        alpha = image.mode in ("RGBA", "LA") or (image.mode == "P"
                                                 and "transparency" in image.info)
        return Header(height, width, alpha, _frames(image))


def _orientation(image):
    # Pillow decodes a PNG to find an EXIF chunk that is not before the pixels.
    if image.format == "PNG" and "exif" not in image.info:
        return 1
    return image.getexif().get(_EXIF_ORIENTATION, 1)


def _frames(image):
    return image.n_frames if getattr(image, "is_animated", False) else 1


def _warn_if_several_frames(image, path):
    frames = _frames(image)
    if frames > 1:
        kind = "pages" if image.format == "TIFF" else "frames"
        warnings.warn(f"{path} has {frames} {kind}; only the first is used", FirstFrameWarning,
                      stacklevel=3)


def read_image(path):
    """Decodes an image file to a numpy array with EXIF orientation applied.

    Returns H×W (gray, uint8 or uint16) or H×W×3 / H×W×4 uint8. Palette images become RGB(A).
    Of an animated image or a multi-page TIFF, the first frame, with a `FirstFrameWarning`.

    Raises:
        ValueError: the file is empty, truncated, claims more pixels than its bytes can hold, or
            is not an image (the message names it).
    """
    with _decoding(path) as image:
        _warn_if_several_frames(image, path)
        _load(image)
        return to_array(ImageOps.exif_transpose(image))


def check_pixels(source):
    """Decodes `source` (a path or bytes) in full, keeping nothing, without TensorFlow (a 16-bit
    PNG goes through Pillow's 8-bit decoder): the ValueError of `read_image` for data that ends
    early or is corrupt, or pixel values it refuses, before costly work."""
    with _decoding(source) as image:
        _load(image)
        if image.mode in _WIDE_MODES:
            pixels_lib.wide_to_uint16(np.asarray(image))


def read_image_and_profile(path):
    """`read_image`, keeping all 16 bits of a 16-bit PNG, and the ICC profile (bytes or None).

    Returns (pixels, profile): pixels H×W or H×W×3 / H×W×4, uint8, or uint16 for 16-bit PNGs.
    The profile is dropped when the pixels are no longer in its colour space (CMYK made RGB,
    gray with alpha made RGBA): those conversions are not colour managed.
    """
    with _decoding(path) as image:
        _warn_if_several_frames(image, path)
        profile = image.info.get("icc_profile") or None
        if image.format == "PNG" and png16.bit_depth(path) == 16:
            pixels = png16.decode(pathlib.Path(path).read_bytes())
            pixels = _ORIENTATIONS.get(image.getexif().get(_EXIF_ORIENTATION, 1),
                                       lambda a: a)(pixels)
        else:
            _load(image)
            pixels = to_array(ImageOps.exif_transpose(image))
    space = profile[16:20] if profile is not None else None
    return pixels, profile if space == (b"GRAY" if pixels.ndim == 2 else b"RGB ") else None


@contextlib.contextmanager
def _decoding(source):
    """Opens `source` (a path or bytes) with Pillow and refuses one that claims more pixels than
    its bytes can hold; any decoding error in the block becomes one ValueError."""
    data = source if isinstance(source, (bytes, bytearray)) else None
    size = None
    try:
        size = len(data) if data is not None else os.stat(source).st_size
        with warnings.catch_warnings():
            # Pillow warns above 89 M pixels and refuses above 179 M. Callers that care check
            # `check_decode_cost` first; the refusal is the last guard.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data) if data is not None else source,
                            formats=DECODERS) as image:
                _check_plausible(image, size)
                yield image
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError) as error:
        reason = "empty file" if size == 0 else errors.first_line(error)
        if isinstance(error, UnidentifiedImageError) and size:
            reason = "cannot identify image file as PNG, JPEG, BMP, WebP or TIFF"
        raise ValueError(f"cannot read {_label(source)}: {reason}") from None


def _load(image):
    """Decodes `image`: data that ends short is an error, never filled in."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise ValueError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set in this process, which "
                         "would fill in missing data; unset it to read images here")
    image.load()


def _label(source):
    if isinstance(source, (bytes, bytearray)):
        return "the image data"
    return f"image {pathlib.Path(source)}"


def _check_plausible(image, size):
    limit = MAX_PIXELS_PER_BYTE.get(image.format)
    width, height = image.size
    if limit is not None and width * height > limit * size:
        raise ValueError(f"its header claims {width}x{height} pixels in {size:,} bytes, more "
                         f"than a complete {image.format} holds ({limit:,} pixels a byte): the "
                         "file is truncated or its header altered")
    needed = _raw_bytes(image)
    if needed > size:
        raise ValueError(f"its header claims {width}x{height} pixels, {needed:,} bytes "
                         f"uncompressed, in {size:,} bytes: the file is truncated or its header "
                         "altered")


def _raw_bytes(image):
    """Where the last uncompressed row of `image` (BMP, TIFF) ends in its file; 0: compressed."""
    ends = [0]
    for name, extents, offset, args in (tile[:4] for tile in image.tile):
        if name == "raw" and isinstance(args, tuple) and len(args) > 1 \
                and isinstance(args[1], int) and args[1] > 0:
            ends.append(offset + args[1] * (extents[3] - extents[1]))
    return max(ends)


def to_array(image):
    """A PIL image as a numpy array (see `read_image` for the layouts). 32-bit gray (Pillow's
    modes "I" and "F", of TIFF's integers and floats) becomes uint16 by `pixels.wide_to_uint16`,
    which refuses values it cannot keep."""
    if image.mode in _WIDE_MODES:
        return pixels_lib.wide_to_uint16(np.asarray(image))
    if image.mode in ("I;16", "I;16B", "I;16L"):
        return np.asarray(image).astype(np.uint16)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode in ("1", "LA", "CMYK", "YCbCr", "HSV"):
        image = image.convert({"1": "L", "LA": "RGBA"}.get(image.mode, "RGB"))
    elif image.mode not in ("L", "RGB", "RGBA"):
        image = image.convert("RGB")
    return np.asarray(image)
