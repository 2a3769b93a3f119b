"""A PNG or JPEG request inside the SavedModel graph: its size read from the header and
checked before decoding (a small file that claims a huge image costs nothing), then the image
decoded and turned upright by its EXIF orientation, as `asdn-upscale` reads files."""

import tensorflow as tf

from asdn_tf.io.image_io import MAX_PIXELS_PER_BYTE
from asdn_tf.export.request_checks import after_checks, add_check, check_output_size, check_scale

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_START = b"\xff\xd8\xff"
_EXIF_ORIENTATION_TAG = 0x0112
# The JPEG segments or PNG chunks read looking for the EXIF orientation; metadata further in is
# not looked for (real files have a handful before it).
_MAX_METADATA_SEGMENTS = 256


def checked_decode(image_bytes, scale, max_scale, max_output_pixels):
    """The upright H×W×3 uint8 image of a PNG or JPEG, decoded only once the scale, the format
    and the size its header gives have passed the checks, so a small file that claims a huge
    image costs nothing."""
    checks = []
    check_scale(checks, scale, max_scale)
    length = tf.cast(tf.strings.length(image_bytes), tf.int64)
    is_png = tf.equal(tf.strings.substr(image_bytes, 0, len(_PNG_SIGNATURE)), _PNG_SIGNATURE)
    is_jpeg = tf.equal(tf.strings.substr(image_bytes, 0, len(_JPEG_START)), _JPEG_START)
    add_check(checks, "check_image_format", lambda: is_png | is_jpeg,
           lambda: "image_bytes must be a PNG or JPEG file (other formats are not accepted)")
    # A PNG starts with its IHDR chunk: length 13, "IHDR", width and height (big-endian).
    ihdr = _read(image_bytes, length, 8, 16)
    add_check(checks, "check_png_header",
           lambda: ~is_png | ((length >= 33) & (_number(ihdr[:4]) == 13)
                              & tf.equal(_read_text(image_bytes, length, 12, 4), "IHDR")),
           lambda: "image_bytes is a PNG whose header (its IHDR chunk) is malformed")
    with tf.control_dependencies(checks):
        # The JPEG branch runs only for a JPEG; a malformed one fails there, undecoded.
        size = tf.cond(is_png, lambda: tf.stack([_number(ihdr[12:16]), _number(ihdr[8:12])]),
                       lambda: tf.image.extract_jpeg_shape(image_bytes, tf.int64)[:2])
    check_output_size(checks, tf.constant(1, tf.int64), size[0], size[1], scale,
                      max_output_pixels)
    _check_plausible(checks, size, length, is_png)
    image_bytes = after_checks(checks, image_bytes)
    # INTEGER_ACCURATE is the IDCT Pillow uses: the pixels are those the CLI upscales.
    image = tf.cond(is_png, lambda: tf.io.decode_png(image_bytes, channels=3),
                    lambda: tf.io.decode_jpeg(image_bytes, channels=3,
                                              dct_method="INTEGER_ACCURATE"))
    image = tf.ensure_shape(image, [None, None, 3])
    return _upright(image, _exif_orientation(image_bytes, length, is_png))


def _check_plausible(checks, size, length, is_png):
    """Checks that the header's size (int64 height, width) fits in `length` bytes of a complete
    PNG or JPEG (`image_io.MAX_PIXELS_PER_BYTE`)."""
    limit = tf.where(is_png, tf.constant(MAX_PIXELS_PER_BYTE["PNG"], tf.float64),
                     tf.constant(MAX_PIXELS_PER_BYTE["JPEG"], tf.float64))
    count = tf.cast(size[0], tf.float64) * tf.cast(size[1], tf.float64)
    add_check(checks, "check_pixels_per_byte",
              lambda: count <= limit * tf.cast(length, tf.float64),
              lambda: tf.strings.join([
                  tf.strings.format("image_bytes claims {}x{} pixels in {} bytes, more than a "
                                    "complete ", (size[1], size[0], length)),
                  tf.where(is_png, "PNG", "JPEG"),
                  tf.strings.format(" holds ({} pixels a byte): the file is truncated or its "
                                    "header altered", [tf.cast(limit, tf.int64)])]))


def _read(data, length, position, count):
    """`count` bytes of the string scalar `data` (of `length` bytes) from `position`, as int64;
    zeros past its end."""
    position = tf.clip_by_value(tf.cast(position, tf.int64), 0, length)
    chunk = tf.strings.join([tf.strings.substr(data, position, tf.constant(count, tf.int64)),
                             "\0" * count])
    values = tf.io.decode_raw(tf.strings.substr(chunk, 0, count), tf.uint8)
    return tf.cast(tf.reshape(values, [count]), tf.int64)


def _read_text(data, length, position, count):
    """The `count` bytes of `data` from `position` as a string (shorter past its end)."""
    position = tf.clip_by_value(tf.cast(position, tf.int64), 0, length)
    return tf.strings.substr(data, position, tf.cast(count, tf.int64))


def _number(values, little_endian=False):
    """The unsigned integer whose bytes are the last axis of `values` (int64)."""
    count = values.shape[-1]
    weights = tf.constant([256 ** (count - 1 - index) for index in range(count)], tf.int64)
    big = tf.reduce_sum(values * weights, axis=-1)
    little = tf.reduce_sum(values * weights[::-1], axis=-1)
    return tf.where(little_endian, little, big)


def _exif_orientation(data, length, is_png):
    """The EXIF orientation (1 to 8; 1 when there is none) of a PNG or JPEG, where Pillow finds
    it: a JPEG's first APP1 "Exif" segment, a PNG's eXIf chunk (before IDAT, where the PNG
    specification puts it)."""

    def step(index, position, tiff, done):
        head = _read(data, length, position, 4)
        # A PNG chunk: length (4 bytes, big-endian), type (4), data, CRC (4).
        kind = _read_text(data, length, position + 4, 4)
        png_found = tf.equal(kind, "eXIf")
        png_done = png_found | tf.equal(kind, "IDAT") | tf.equal(kind, "IEND")
        png_next = position + 12 + _number(head)
        # A JPEG segment: 0xFF, marker, length (2 bytes, big-endian, counting itself), data;
        # 0xFF bytes may pad before a marker. The scan (SOS, 0xDA) ends the metadata.
        marker = head[1]
        jpeg_found = ((head[0] == 0xFF) & (marker == 0xE1)
                      & tf.equal(_read_text(data, length, position + 4, 6), "Exif\0\0"))
        jpeg_done = jpeg_found | (head[0] != 0xFF) | (marker == 0xDA) | (marker == 0xD9)
        jpeg_next = tf.where(marker == 0xFF, position + 1, position + 2 + _number(head[2:]))
        found = tf.where(is_png, png_found, jpeg_found)
        offset = tf.where(is_png, tf.constant(8, tf.int64), 10)  # to the TIFF header
        tiff = tf.where(found, position + offset, tiff)
        done = tf.where(is_png, png_done, jpeg_done) | (position + 4 > length)
        return index + 1, tf.where(is_png, png_next, jpeg_next), tiff, done

    start = tf.where(is_png, tf.constant(len(_PNG_SIGNATURE), tf.int64), 2)
    _, _, tiff, _ = tf.while_loop(
        lambda index, position, tiff, done: (index < _MAX_METADATA_SEGMENTS) & ~done, step,
        [tf.constant(0), start, tf.constant(-1, tf.int64), tf.constant(False)])
    return tf.where(tiff >= 0, _tiff_orientation(data, length, tf.maximum(tiff, 0)), 1)


def _tiff_orientation(data, length, start):
    """The orientation tag of the first IFD of the TIFF structure (EXIF) at `start`, or 1."""
    header = _read(data, length, start, 8)
    little = (header[0] == 0x49) & (header[1] == 0x49)  # "II"; "MM" is big-endian
    big = (header[0] == 0x4D) & (header[1] == 0x4D)
    directory = start + _number(header[4:], little)
    count = _number(_read(data, length, directory, 2), little)
    entries = _read_text(data, length, directory + 2, count * 12)
    whole = tf.strings.length(entries) // 12 * 12
    table = tf.reshape(tf.cast(tf.io.decode_raw(tf.strings.substr(entries, 0, whole), tf.uint8),
                               tf.int64), [-1, 12])
    # An entry: tag (2 bytes), type (2), count (4), value (4; a SHORT in its first 2).
    tags, types = _number(table[:, 0:2], little), _number(table[:, 2:4], little)
    values = tf.where(types == 4, _number(table[:, 8:12], little),
                      _number(table[:, 8:10], little))
    first = tf.concat([tf.boolean_mask(values, tf.equal(tags, _EXIF_ORIENTATION_TAG)),
                       tf.constant([1], tf.int64)], 0)[0]
    return tf.where(little | big, first, 1)


def _upright(image, orientation):
    """H×W×C `image` turned as Pillow's ImageOps.exif_transpose turns it for `orientation`."""
    branches = [
        lambda: image,                                                 # 1: upright
        lambda: tf.reverse(image, [1]),                                # 2: mirrored
        lambda: tf.reverse(image, [0, 1]),                             # 3: upside down
        lambda: tf.reverse(image, [0]),                                # 4: flipped
        lambda: tf.transpose(image, [1, 0, 2]),                        # 5: transposed
        lambda: tf.transpose(tf.reverse(image, [0]), [1, 0, 2]),       # 6: turned clockwise
        lambda: tf.transpose(tf.reverse(image, [0, 1]), [1, 0, 2]),    # 7: transversed
        lambda: tf.reverse(tf.transpose(image, [1, 0, 2]), [0]),       # 8: turned anticlockwise
    ]
    index = tf.where((orientation >= 1) & (orientation <= 8), orientation - 1, 0)
    return tf.switch_case(tf.cast(index, tf.int32), branches)
