"""The one pixel convention: halves away from zero, 16 → 8 bits, any image → float RGB."""

import numpy as np
import pytest
from PIL import Image

from asdn_tf.io import image_io, pixels


def _exact_halves(peak):
    """(values, k): float32 values whose float32 product with `peak` is exactly k + 0.5."""
    values = (np.arange(peak, dtype=np.float32) + np.float32(0.5)) / np.float32(peak)
    products = values * np.float32(peak)
    exact = products % 1 == 0.5
    return values[exact], np.floor(products[exact]).astype(np.int64)


@pytest.mark.parametrize("peak,dtype", [(255, np.uint8), (65535, np.uint16)])
def test_halves_round_away_from_zero(peak, dtype):
    values, k = _exact_halves(peak)
    assert np.any(k % 2 == 0)  # halves that round half to even would take down
    np.testing.assert_array_equal(pixels.from_float(values, dtype), k + 1)
    assert np.any(np.round(values * np.float32(peak)) != k + 1)


def test_tensor_form_gives_the_same_bytes():
    values, k = _exact_halves(255)
    grid = np.linspace(-0.1, 1.1, 4001, dtype=np.float32)
    for array in (values, grid, grid.reshape(4001, 1, 1)):
        np.testing.assert_array_equal(np.asarray(pixels.to_uint8_ops(array)),
                                      pixels.to_uint8(array))
    np.testing.assert_array_equal(pixels.to_uint8(values), k + 1)


def test_from_float_clips_and_keeps_the_shape():
    image = np.array([[-0.2, 0.0], [1.0, 7.0]], np.float64)
    assert pixels.to_uint8(image).tolist() == [[0, 0], [255, 255]]
    assert pixels.from_float(image, np.uint16).tolist() == [[0, 0], [65535, 65535]]
    assert pixels.to_uint8(np.float32(0.5 / 255)).shape == ()


def test_uint16_to_uint8_rounds_v_over_257():
    values = np.arange(65536, dtype=np.uint16)
    expected = np.floor(values / 257.0 + 0.5)
    np.testing.assert_array_equal(pixels.uint16_to_uint8(values), expected)
    assert pixels.uint16_to_uint8(np.uint16([128, 129, 385, 386, 65535])).tolist() == [
        0, 1, 1, 2, 255]


def test_to_float_divides_by_the_peak():
    assert pixels.to_float(np.uint8([0, 51, 255])).tolist() == pytest.approx([0, 0.2, 1])
    assert pixels.to_float(np.uint16([0, 65535])).tolist() == [0.0, 1.0]
    assert pixels.to_float(np.float64([-1.0, 0.25, 2.0])).tolist() == [0.0, 0.25, 1.0]
    with pytest.raises(ValueError, match="NaN or infinite"):
        pixels.to_float(np.float32([0.5, np.nan]))
    for array in (np.arange(256, dtype=np.uint8), np.uint16([0, 1, 257, 65535]),
                  np.float32([0.25, 0.5])):
        np.testing.assert_array_equal(np.asarray(pixels.to_float_ops(array)),
                                      pixels.to_float(array))


def _write(tmp_path, name, image, **options):
    path = tmp_path / name
    image.save(path, **options)
    return image_io.read_image(path)


def test_gray_rgba_and_palette_become_float_rgb(tmp_path):
    gray = _write(tmp_path, "gray.png", Image.fromarray(np.uint8([[0, 51], [102, 255]])))
    np.testing.assert_allclose(pixels.to_float_rgb(gray),
                               np.repeat(np.float32([[0, 0.2], [0.4, 1]])[..., None], 3, axis=2))
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 7
    rgba_image = _write(tmp_path, "rgba.png", Image.fromarray(rgba))
    np.testing.assert_array_equal(pixels.to_float_rgb(rgba_image),
                                  np.float32([1, 0, 0]) * np.ones((2, 2, 1), np.float32))
    palette = Image.new("P", (2, 1))
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.putdata([0, 1])
    assert palette.mode == "P"
    palette_image = _write(tmp_path, "palette.png", palette)
    np.testing.assert_array_equal(pixels.to_float_rgb(palette_image),
                                  np.float32([[[1, 0, 0], [0, 0, 1]]]))
    sixteen = np.uint16([[0, 65535]])
    np.testing.assert_array_equal(pixels.to_float_rgb(sixteen),
                                  np.float32([[[0, 0, 0], [1, 1, 1]]]))
    assert pixels.to_rgb(np.zeros((2, 2, 1), np.uint8)).shape == (2, 2, 3)
