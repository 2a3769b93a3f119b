"""Writing image files: the output format, the checks before costly work, the atomic write.

`check_output` raises, without writing, the error `write_image` would: call it before the
network runs. `write_image` writes through a temporary file in the same folder and renames it
(`fileio.atomic_path`), so an interrupted write leaves nothing half-written; an output that
exists is replaced only with `overwrite`. Reading is asdn_tf/io/image_io.py.

Example:
    >>> pixels, profile = image_io.read_image_and_profile("photo.jpg")
    >>> write_image("big.png", pixels, icc_profile=profile)
"""

import os
import pathlib

import numpy as np
from PIL import Image

from asdn_tf.io import fileio, png16
from asdn_tf.io import pixels as pixels_lib
from asdn_tf.io.image_io import FORMATS, IMAGE_EXTENSIONS

# What each format stores as written here: 16 bits per channel only in PNG (Pillow has no 16-bit
# colour mode; TensorFlow's PNG codec does), alpha in PNG, WebP and TIFF, ICC profiles not in BMP.
_ALPHA_FORMATS = ("PNG", "WEBP", "TIFF")
_ICC_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF")
_QUALITY_FORMATS = ("JPEG", "WEBP")


class OutputExistsError(FileExistsError):
    """An output file (or link) that exists and was not to be replaced; `path` names it."""

    def __init__(self, path):
        self.path = pathlib.Path(path)
        super().__init__(f"{self.path} already exists; not replaced without overwrite=True")


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
        OutputExistsError: `path` exists (or is a link) and `overwrite` is False.
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
    if occupied(path) and not overwrite:
        raise OutputExistsError(path)
    check_folder(path.parent)
    return found


def occupied(path):
    """Whether writing `path` would replace something: a file, a folder or a link, even a
    dangling one (which `Path.exists` calls absent)."""
    path = pathlib.Path(path)
    return path.exists() or path.is_symlink()


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
            encode(stream, pixels, found, icc_profile if found in _ICC_FORMATS else None, quality)
            stream.flush()
            os.fsync(stream.fileno())
        if occupied(path) and not overwrite:
            raise OutputExistsError(path)
    return path


def encode(stream, pixels, found, icc_profile, quality):
    """Writes `pixels` to the binary `stream` as an image file in the format named `found`."""
    if pixels.dtype == np.uint16 and found == "PNG":
        stream.write(png16.encode(pixels, icc_profile))
        return
    if pixels.dtype == np.uint16:
        pixels = pixels_lib.uint16_to_uint8(pixels)
    options = {}
    if icc_profile:
        options["icc_profile"] = icc_profile
    if found in _QUALITY_FORMATS:
        options["quality"] = int(quality)
    Image.fromarray(pixels).save(stream, format=found, **options)

