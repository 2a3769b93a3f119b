"""Upscale images by any factor with ASDN.

    python -m asdn_tf.upscale --input=photo.jpg --output=big.png --scale=3.3
    python -m asdn_tf.upscale --input=photos/ --output=big/ --width=3840 --overwrite
    python -m asdn_tf.upscale --input='shots/*.png' --output=big/ --size=1920x1080 \
        --weights=mine.weights.h5 --preset=default

--input is a file, a folder (--recursive for its subfolders too) or a glob; --output a file
(for one input) or a folder, created if missing. Give one of --scale, --size, --width or
--height. Also installed as `asdn-upscale`; `asdn-upscale --version` says which.
"""

# The flags, and `upscale_file` for Python, live in asdn_tf.upscale_lib: importing a submodule
# named `upscale` would replace the function `asdn_tf.upscale` on the package.
from asdn_tf.upscale_lib import run

if __name__ == "__main__":
    run()
