"""Helpers for the notebooks: a sample photograph, a model to show, and comparison figures.

The photograph is `grace_hopper.jpg` from matplotlib's sample data (a dependency), so the
notebooks need no download.

Example:
    >>> photo = sample_image(192)
    >>> model, label = demo_model()
    >>> comparison_figure(photo, 2.7, {label: asdn_tf.upscale(photo, 2.7, model=model)})
"""

import pathlib

from asdn_tf.inference import weights_io
from asdn_tf.io import image_io, pixels
from asdn_tf.inference import precision as precision_lib
from asdn_tf.data.imresize import imresize
from asdn_tf.nn.model import build_model

# (row, column) of the centre of the face in the 512×600 sample photograph.
FACE_CENTRE = (192, 256)


class Stop(Exception):
    """Raised by a notebook's cell to stop a run with one line, its message, instead of a
    traceback: IPython shows what `_render_traceback_` returns. Elsewhere a plain exception.

    Example:
        >>> raise Stop("no training images: put T91 in data/ or set DATA")
    """

    def _render_traceback_(self):
        return [str(self)]


def sample_image_path():
    """The sample photograph's path, inside matplotlib's installed data (512×600 RGB JPEG)."""
    from matplotlib import cbook

    return pathlib.Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def sample_image(side=None):
    """The sample photograph as uint8 H×W×3, or a square of `side` pixels around the face."""
    image = image_io.read_image(sample_image_path())
    if side is None:
        return image
    side = min(side, *image.shape[:2])
    top = min(max(FACE_CENTRE[0] - side // 2, 0), image.shape[0] - side)
    left = min(max(FACE_CENTRE[1] - side // 2, 0), image.shape[1] - side)
    return image[top:top + side, left:left + side]


def sample_set():
    """The sample photograph as a set of one for `evaluate.evaluate`: [(path, image)]."""
    return [(sample_image_path(), sample_image())]


def demo_model(weights=None, preset=None, precision="auto"):
    """(model, label): the ASDN from `weights`, else the bundled weights, else an untrained one.

    Args:
        weights: optional `.weights.h5` or `.keras` path.
        preset: the config of `weights` when it has no sidecar, or of the untrained fallback
            (default "default").
        precision: "auto" (bfloat16 where the hardware runs it fast), "float32" or "bfloat16".

    The fallback, for an install without bundled weights, is announced in a printed line and
    in the label, so no figure passes it off as trained.
    """
    if weights:
        return (weights_io.load_model(weights, preset, precision=precision),
                f"ASDN ({pathlib.Path(weights).name})")
    try:
        return weights_io.load_pretrained(precision=precision), "ASDN"
    except FileNotFoundError as error:
        preset = preset or "default"
        print(f"{error}.\nShowing an UNTRAINED {preset!r} ASDN instead: its outputs are "
              "bicubic plus the noise of random weights, not super-resolution.")
        return (precision_lib.with_precision(build_model(preset), precision),
                f"ASDN (untrained {preset})")


def bicubic(image, scale, size):
    """uint8 H×W×C upscaled by `scale` to `size` (height, width) with the MATLAB bicubic."""
    output = imresize(pixels.to_float(image), scale=scale, size=size).numpy()
    return pixels.to_uint8(output)


def comparison_figure(image, scale, upscaled, zoom=None):
    """The input, bicubic and each upscaled image side by side, above a zoomed crop of each.

    Args:
        image: uint8 H×W×3, the input.
        scale: float, the factor the upscaled images were made with.
        upscaled: {label: uint8 array}, outputs of one size, e.g. {"ASDN": upscale(image, s)}.
        zoom: (top, left, height, width) of the zoomed region in input pixels; by default the
            central square of a third of the shorter side.

    Returns:
        A matplotlib `Figure` (a notebook displays it).
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    height, width = image.shape[:2]
    size = next(iter(upscaled.values())).shape[:2]
    panels = {"input": image, "bicubic": bicubic(image, scale, size), **upscaled}
    if zoom is None:
        side = max(min(height, width) // 3, 1)
        zoom = ((height - side) // 2, (width - side) // 2, side, side)
    figure = Figure(figsize=(3.2 * len(panels), 7.0), dpi=100, layout="constrained")
    axes = figure.subplots(2, len(panels), squeeze=False)
    for column, (label, pixels) in enumerate(panels.items()):
        factor_y, factor_x = pixels.shape[0] / height, pixels.shape[1] / width
        top, left = round(zoom[0] * factor_y), round(zoom[1] * factor_x)
        bottom = round((zoom[0] + zoom[2]) * factor_y)
        right = round((zoom[1] + zoom[3]) * factor_x)
        axes[0, column].imshow(pixels)
        axes[0, column].add_patch(Rectangle((left - 0.5, top - 0.5), right - left, bottom - top,
                                            fill=False, edgecolor="yellow", linewidth=1.5))
        axes[0, column].set_title(f"{label}\n{pixels.shape[1]}×{pixels.shape[0]}")
        axes[1, column].imshow(pixels[top:bottom, left:right], interpolation="nearest")
        axes[1, column].set_title("zoomed")
    for axis in axes.flat:
        axis.set_axis_off()
    figure.suptitle(f"×{scale:g}")
    return figure
