"""Side-by-side crops of one photograph upscaled by bicubic and by each bundled model.

    python -m bench.model_crops --scale=2.5 --output=docs/results/photo_crops.png

By default the photograph is the README quick start's (Grace Hopper, a JPEG shipped with
matplotlib). The crops, left to right, are bicubic (the exact `imresize`), then each model in
`--models`, each labelled, enlarged `--zoom` times with nearest neighbour so pixels stay visible.
"""

import numpy as np
from absl import app, flags
from PIL import Image, ImageDraw

import asdn_tf
from asdn_tf.inference import weights_io
from asdn_tf.io import image_io, image_write
from asdn_tf.nn import lfr
from asdn_tf.data.imresize import imresize

_INPUT = flags.DEFINE_string("input", None, "The photograph (default: the quick start's).")
_SCALE = flags.DEFINE_float("scale", 2.5, "Upscaling factor.")
_MODELS = flags.DEFINE_list("models", list(weights_io.BUNDLED), "Bundled models to compare.")
_BOX = flags.DEFINE_list("box", ["190", "310", "96", "96"],
                         "Crop of the output: top, left, height, width.")
_ZOOM = flags.DEFINE_integer("zoom", 3, "Nearest-neighbour enlargement of each crop.")
_OUTPUT = flags.DEFINE_string("output", "runs/photo_crops.png", "PNG to write.")


def _quick_start_photo():
    import matplotlib.cbook
    return matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)


def main(argv):
    del argv
    path = _INPUT.value or _quick_start_photo()
    image = image_io.read_image(path)[..., :3]
    size = lfr.output_size(*image.shape[:2], _SCALE.value)
    outputs = {"bicubic": np.asarray(imresize(image.astype(np.float32) / 255.0,
                                              scale=_SCALE.value, size=size))}
    for name in _MODELS.value:
        # float32: the published crops do not depend on the machine that made them.
        model = weights_io.load_pretrained(name, precision="float32")
        outputs[name] = asdn_tf.upscale(image, _SCALE.value, model=model) / 255.0
    top, left, height, width = map(int, _BOX.value)
    tiles = []
    for label, output in outputs.items():
        crop = np.clip(output[top:top + height, left:left + width] * 255.0 + 0.5, 0, 255)
        tile = Image.fromarray(crop.astype(np.uint8)).resize(
            (width * _ZOOM.value, height * _ZOOM.value), Image.NEAREST)
        ImageDraw.Draw(tile).text((6, 4), label, fill=(255, 255, 0))
        tiles.append(tile)
    sheet = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), tiles[0].height))
    for index, tile in enumerate(tiles):
        sheet.paste(tile, (index * (tile.width + 4), 0))
    image_write.write_image(_OUTPUT.value, np.asarray(sheet), overwrite=True)
    print(f"wrote {_OUTPUT.value}: {', '.join(outputs)} at ×{_SCALE.value:g}, crop {height}×{width} "
          f"at ({top}, {left}) of {size[1]}×{size[0]}")


if __name__ == "__main__":
    app.run(main)
