"""What the demo page does with an uploaded image: upscale it, or resize it with bicubic.

An upload goes through `asdn_tf.upscale_file`, so the limits and the checks are the command's:
the scale or width, the output's pixel limit (--max_pixels), an image whose header claims more
pixels than that refused before it is decoded, and a file that is not an image. Each refusal is
a ValueError or OSError of one line that names the file as the user did, not by the temporary
folder it was saved in. asdn_tf/demo/server.py receives the uploads and answers with these
functions' PNG files.

Example:
    >>> path, info = upscale_upload(upload_path(folder, fields), fields)
"""

import contextlib
import os
import pathlib
import re

from asdn_tf.inference import weights_io
from asdn_tf.inference.files import upscale_file
from asdn_tf.inference.request import DEFAULT_MAX_PIXELS, target_size
from asdn_tf.io import errors, image_io, image_write, pixels

_WIDTH = re.compile(r"\s*\d+\s*", re.ASCII)
_SAFE_NAME = re.compile(r"[^\w.-]", re.ASCII)


def upscale_upload(source, fields, max_pixels=DEFAULT_MAX_PIXELS):
    """Upscales the uploaded image file `source` as the page's `fields` ask.

    Args:
        source: pathlib.Path, the upload, named as the user named it (`upload_path`).
        fields: {"scale": text} or {"width": text}, and "model" (one of weights_io.BUNDLED).
        max_pixels: the command's limit on the output's pixels.

    Returns:
        (path, info): the result's PNG file (beside `source`) and {"width", "height", "scale",
        "model"}.

    Raises:
        ValueError, OSError: one line naming what is wrong (a bad scale, width, model or image).
    """
    name = fields.get("model") or weights_io.UPSCALE_MODEL
    if name not in weights_io.BUNDLED:
        raise ValueError(f"unknown model {name!r}; the bundled models are "
                         f"{', '.join(weights_io.BUNDLED)}")
    request = _request(fields)
    destination = source.with_name(".result.png")  # hidden: never the upload's name (no dot)
    with _named_as_uploaded(source):
        header = _check_header(source, request, max_pixels)
        model = weights_io.shared_pretrained(name=name)
        upscale_file(source, destination, model=model, max_pixels=max_pixels, **request)
    scale, _ = target_size((header.height, header.width), max_pixels=max_pixels, **request)
    made = image_io.read_header(destination)
    return destination, {"width": made.width, "height": made.height, "scale": scale,
                         "model": name}


def bicubic_upload(source, fields, max_pixels=DEFAULT_MAX_PIXELS):
    """MATLAB bicubic of the uploaded `source` at the size `upscale_upload` gives: (PNG path,
    info), and the same one-line errors."""
    request = _request(fields)
    destination = source.with_name(".bicubic.png")
    with _named_as_uploaded(source):
        _check_header(source, request, max_pixels)
        image = image_io.read_image(source)
        scale, size = target_size(image.shape[:2], max_pixels=max_pixels, **request)
        image_write.write_image(destination, _bicubic(image, scale, size), "png")
    return destination, {"width": size[1], "height": size[0], "scale": scale}


def upload_path(folder, fields):
    """Where an upload is saved in `folder`: under its own (safe) name, which error messages
    then show."""
    upload = _SAFE_NAME.sub("_", pathlib.Path(fields.get("name") or "upload").name)[-100:]
    return pathlib.Path(folder) / (upload.lstrip(".") or "upload")


@contextlib.contextmanager
def _named_as_uploaded(source):
    """Errors inside name the file as the user does, not by its temporary folder."""
    try:
        yield
    except (ValueError, OSError) as error:
        folder = str(source.parent) + os.sep
        raise type(error)(errors.first_line(error).replace(folder, "")) from None


def _check_header(source, request, max_pixels):
    """The command's checks that need no decoding (and no model): the header's size against
    the request and the pixel limit."""
    header = image_io.read_header(source)
    target_size((header.height, header.width), max_pixels=max_pixels, **request)
    return header


def _request(fields):
    """{"scale": text} or {"width": int} from the page's fields; ValueError otherwise."""
    scale, width = fields.get("scale"), fields.get("width")
    if (scale is None) == (width is None):
        raise ValueError("give a scale or a width")
    if scale is not None:
        return {"scale": scale}  # parsed and checked as the command's --scale
    if not _WIDTH.fullmatch(width) or int(width) < 1:
        raise ValueError(f"width must be a positive number of pixels, got {width!r}")
    return {"width": int(width)}


def _bicubic(image, scale, size):
    """`image` resized to `size` with MATLAB's bicubic at `scale`, as the network's input is."""
    from asdn_tf.data.imresize import imresize  # imports TensorFlow

    height, width = image.shape[:2]
    values = pixels.to_float(image).reshape(height, width, -1)
    resized = imresize(values, scale=scale, size=size).numpy()
    del values
    return pixels.from_float(resized.reshape(*size, *image.shape[2:]), image.dtype)
