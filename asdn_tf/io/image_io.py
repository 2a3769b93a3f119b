"""Finding, reading and writing image files, shared by the data pipeline, evaluation and upscaling.

Writing is atomic: the image goes to a temporary file in the destination folder, which replaces
the destination only once complete, so an interrupted write leaves no partial image.

`read_header` tells an image's size from its header alone, so that a small file which decodes to
billions of pixels (a decompression bomb) is refused before it is decoded: `check_decode_cost`
bounds the pixels, and every reader refuses a PNG or JPEG that claims more pixels than its bytes
can hold (a truncated file, or one whose header was altered), which the decoder would otherwise
fill in. A file that decodes short is an error, never filled in (reading refuses to run while
Pillow's LOAD_TRUNCATED_IMAGES is set). TensorFlow is imported only for 16-bit PNGs, which Pillow cannot hold: the upscale
command's checks do not wait for it. docs/limits.md lists the limits.

Example:
    >>> pixels, profile = read_image_and_profile("photo.jpg")
    >>> write_image("big.png", pixels, icc_profile=profile)
"""

import collections
import contextlib
import glob
import io
import os
import pathlib
import struct
import warnings
import zlib

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from asdn_tf.io import fileio
from asdn_tf.io import pixels as pixels_lib

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
# The most pixels an input may have by default: an 8192x8192 image. Decoding it takes 3-4 bytes
# a pixel (200-270 MB), the network's float copy 12 more; Pillow warns above 89 M pixels.
MAX_INPUT_PIXELS = 8192 * 8192
# The most pixels a byte of a complete file can hold, with a margin. PNG: deflate expands a byte
# at most 1032 times and a pixel takes at least a bit (8256). JPEG: a Huffman-coded 8x8 block
# takes at least a bit in its DC scan (512 for gray). More is a truncated file or an altered
# header, which the decoder would fill in. Other formats (WebP, TIFF, BMP) can hold a blank image
# in a few bytes whatever its size: only the pixel limit bounds them.
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
    """The `Header` of an image file (or its bytes), read without decoding its pixels: cheap for
    any file.

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


def read_image_and_profile(path):
    """`read_image`, keeping all 16 bits of a 16-bit PNG, and the ICC profile (bytes or None).

    Returns (pixels, profile): pixels H×W or H×W×3 / H×W×4, uint8, or uint16 for 16-bit PNGs.
    The profile is dropped when the pixels are no longer in its colour space (CMYK made RGB,
    gray with alpha made RGBA): those conversions are not colour managed.
    """
    with _decoding(path) as image:
        _warn_if_several_frames(image, path)
        profile = image.info.get("icc_profile") or None
        if image.format == "PNG" and _png_bit_depth(path) == 16:
            pixels = _decode_png16(pathlib.Path(path).read_bytes())
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
            with Image.open(io.BytesIO(data) if data is not None else source) as image:
                _check_plausible(image, size)
                yield image
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError) as error:
        reason = "empty file" if size == 0 else _message(error)
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


def _message(error):
    text = getattr(error, "message", None) or str(error)
    lines = text.strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _png_bit_depth(path):
    with open(path, "rb") as stream:
        header = stream.read(25)
    return header[24] if len(header) == 25 else 8


def _decode_png16(data):
    import tensorflow as tf  # Pillow has no 16-bit colour mode; TensorFlow's codec has.
    try:
        pixels = tf.io.decode_png(data, channels=0, dtype=tf.uint16).numpy()
    except tf.errors.OpError as error:
        raise ValueError(_message(error)) from None
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


def check_output(path, alpha=False, image_format=None, overwrite=False, quality=95):
    """Raises the error `write_image` would for an image with (or without) an alpha channel,
    without writing: call it before costly work.

    Raises:
        ValueError: unknown format, bad quality, or a format that cannot hold these pixels.
        FileExistsError: `path` exists and `overwrite` is False.
        OSError: the folder does not exist or is not writable.
    """
    path = pathlib.Path(path)
    found = output_format(path, image_format)
    check_quality(quality)
    if alpha and found not in _ALPHA_FORMATS:
        raise ValueError(f"{found} cannot store the alpha channel of this image; write "
                         f"{path.with_suffix('.png').name} (or .webp, .tiff) instead")
    if path.is_dir():
        raise ValueError(f"output {path} is a folder, not a file name")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; not replaced without --overwrite")
    check_folder(path.parent)
    return found


def has_alpha(pixels):
    """Whether an array of a `read_image` layout has an alpha channel (H×W×4)."""
    return pixels.ndim == 3 and pixels.shape[2] == 4


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
    found = check_output(path, has_alpha(pixels), image_format, overwrite, quality)
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
        import tensorflow as tf  # Pillow cannot write 16-bit colour.
        png = tf.io.encode_png(pixels if pixels.ndim == 3 else pixels[..., None]).numpy()
        stream.write(_with_icc_profile(png, icc_profile) if icc_profile else png)
        return
    if pixels.dtype == np.uint16:
        pixels = pixels_lib.uint16_to_uint8(pixels)
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
