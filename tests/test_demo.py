"""The page's server without a browser: what an upload may ask, refused in one line before any
model loads (tests/test_demo_browser.py drives the page itself)."""

import io

import numpy as np
import pytest
from PIL import Image

from asdn_tf.demo import server


def _png(height=12, width=16):
    stream = io.BytesIO()
    Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(stream, format="PNG")
    return stream.getvalue()


@pytest.mark.parametrize("fields, message", [
    ({"scale": "2", "model": "nope"}, "unknown model 'nope'"),
    ({"model": "default"}, "give a scale or a width"),
    ({"scale": "2", "width": "30", "model": "default"}, "give a scale or a width"),
    ({"width": "-3", "model": "default"}, "width must be a positive number of pixels"),
])
def test_a_bad_request_is_one_line(fields, message):
    with pytest.raises(ValueError, match=message) as raised:
        server.upscale_upload(_png(), fields)
    assert "\n" not in str(raised.value)


def test_an_output_over_the_limit_is_refused_from_the_header():
    with pytest.raises(ValueError, match="pixels") as raised:
        server.upscale_upload(_png(), {"scale": "8", "model": "default"}, max_pixels=1000)
    assert "\n" not in str(raised.value)


def test_a_file_that_is_no_image_names_the_upload():
    with pytest.raises((ValueError, OSError), match="cannot read image photo.png"):
        server.upscale_upload(b"\x89PNG\r\n\x1a\n" + b"junk" * 4,
                              {"scale": "2", "model": "default", "name": "photo.png"})


def test_the_page_is_served_with_the_package():
    assert b"<html" in server.PAGE.read_bytes().lower()
