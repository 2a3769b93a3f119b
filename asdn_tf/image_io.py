"""Finding and reading image files, shared by the data pipeline, evaluation and upscaling."""

import glob
import os
import pathlib

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


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
    path = pathlib.Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        reason = "empty file" if path.exists() and path.stat().st_size == 0 else str(error)
        raise ValueError(f"cannot read image {path}: {reason}") from None
    return to_array(image)


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
