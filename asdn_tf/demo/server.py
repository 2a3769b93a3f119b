"""A local web page to upscale an image and compare it with bicubic.

    python -m asdn_tf.demo [--port=8000] [--host=127.0.0.1]

Open the address it prints. Drop or choose an image, pick a scale (1.1 to 8) or a target
width and a bundled model (photo or default); the page shows the result beside MATLAB bicubic
at the same size, with a before/after slider and a zoom, and offers the result as a PNG.

The server is the standard library's `http.server` and one static page (page.html). An
upload goes through `asdn_tf.upscale_file`, so the limits and the checks are the
command's: the scale or width, the output's pixel limit (--max_pixels), an image whose header
claims more pixels than that refused before it is decoded, and a file that is not an image.
Each refusal is one line, shown on the page.
"""

import base64
import io
import json
import os
import pathlib
import re
import signal
import sys
import tempfile
import threading
import urllib.parse
from http import server

from absl import app, flags

from asdn_tf.inference import weights_io
from asdn_tf.inference.files import upscale_file
from asdn_tf.inference.request import DEFAULT_MAX_PIXELS, target_size
from asdn_tf.io import errors as cli
from asdn_tf.io import image_io, pixels

PAGE = pathlib.Path(__file__).with_name("page.html")
# An upload larger than this is refused unread (the command reads files of any size).
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
_WIDTH = re.compile(r"\s*\d+\s*", re.ASCII)
_SAFE_NAME = re.compile(r"[^\w.-]", re.ASCII)


def upscale_upload(data, fields, max_pixels=DEFAULT_MAX_PIXELS):
    """Upscales the image file `data` (bytes) as the page's `fields` ask.

    Args:
        data: the uploaded file.
        fields: {"scale": text} or {"width": text}, and "model" (one of weights_io.BUNDLED).
        max_pixels: the command's limit on the output's pixels.

    Returns:
        dict: "sr" and "bicubic" (PNG bytes), "width", "height", "scale", "model".

    Raises:
        ValueError, OSError: one line naming what is wrong (a bad scale, width, model or image).
    """
    name = fields.get("model") or weights_io.UPSCALE_MODEL
    if name not in weights_io.BUNDLED:
        raise ValueError(f"unknown model {name!r}; the bundled models are "
                         f"{', '.join(weights_io.BUNDLED)}")
    request = _request(fields)
    # The upload's file name (the page sends it) names the image in error messages.
    with tempfile.TemporaryDirectory(prefix="asdn-demo-") as folder:
        try:
            return _upscale_in(pathlib.Path(folder), data, fields, request, name, max_pixels)
        except (ValueError, OSError) as error:
            # The message names the file as the user does, not by its temporary folder.
            raise type(error)(cli.first_line(error).replace(folder + os.sep, "")) from None


def _upscale_in(folder, data, fields, request, name, max_pixels):
    """`upscale_upload` with the upload saved in `folder` under its own (safe) name."""
    upload = _SAFE_NAME.sub("_", pathlib.Path(fields.get("name") or "upload").name)[-100:]
    source = folder / (upload.lstrip(".") or "upload")
    destination = folder / ".result.png"  # hidden: never the upload's name (no dot)
    source.write_bytes(data)
    # The command's checks that need no decoding (and no model) first: the header's size
    # against the request and the pixel limit.
    header = image_io.read_header(source)
    target_size((header.height, header.width), max_pixels=max_pixels, **request)
    with _LOCK:
        if _CLOSING.is_set():
            raise OSError("the page is shutting down")
        model = weights_io.shared_pretrained(name=name)
        upscale_file(source, destination, model=model, max_pixels=max_pixels, **request)
    image = image_io.read_image(source)
    scale, size = target_size(image.shape[:2], **request)
    return {"sr": destination.read_bytes(), "bicubic": _png(_bicubic(image, scale, size)),
            "width": size[1], "height": size[0], "scale": scale, "model": name}


# One upscale at a time: a second request waits rather than doubling the memory.
_LOCK = threading.Lock()
# Set when the server stops: no upscale starts after it, and the one running is waited for, so
# that no TensorFlow work is in flight while the interpreter shuts down.
_CLOSING = threading.Event()


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
    return pixels.from_float(resized.reshape(*size, *image.shape[2:]), image.dtype)


def _png(array):
    from PIL import Image

    stream = io.BytesIO()
    Image.fromarray(array).save(stream, format="PNG")
    return stream.getvalue()


class Handler(server.BaseHTTPRequestHandler):
    """GET / is the page; POST /upscale?scale=S|width=W&model=M with the file as the body
    answers JSON: the two images as data URLs, or {"error": one line} with status 400."""

    max_pixels = DEFAULT_MAX_PIXELS

    def do_GET(self):
        if urllib.parse.urlsplit(self.path).path != "/":
            self._send(404, b"not found", "text/plain")
            return
        self._send(200, PAGE.read_bytes(), "text/html; charset=utf-8")

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/upscale":
            self._send(404, b"not found", "text/plain")
            return
        fields = {key: values[-1] for key, values in urllib.parse.parse_qs(url.query).items()}
        try:
            length = int(self.headers.get("Content-Length", "0"))
            if length <= 0:
                raise ValueError("no image was sent")
            if length > MAX_UPLOAD_BYTES:
                raise ValueError(f"the file is {length / 1e6:.1f} MB, over the page's limit of "
                                 f"{MAX_UPLOAD_BYTES / 1e6:.0f} MB")
            result = upscale_upload(self.rfile.read(length), fields, self.max_pixels)
        except (ValueError, OSError) as error:  # what a user can cause: one line
            self.close_connection = True
            self._json(400, {"error": cli.first_line(error)})
            return
        for key in ("sr", "bicubic"):
            result[key] = "data:image/png;base64," + base64.b64encode(result[key]).decode()
        self._json(200, result)

    def _json(self, status, content):
        self._send(status, json.dumps(content).encode(), "application/json")

    def _send(self, status, body, kind):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        del format, args  # a local page: no access log on the terminal


def make_server(host="127.0.0.1", port=8000, max_pixels=DEFAULT_MAX_PIXELS):
    """The page's HTTP server (not yet serving); port 0 picks a free port."""
    handler = type("DemoHandler", (Handler,), {"max_pixels": max_pixels})
    return server.ThreadingHTTPServer((host, port), handler)


_HOST = _PORT = _MAX_PIXELS = None


def main(argv):
    del argv
    try:
        httpd = make_server(_HOST.value, _PORT.value, _MAX_PIXELS.value)
    except OSError as error:
        print(f"demo: cannot listen on {_HOST.value}:{_PORT.value}: "
              f"{error.strerror or error}", file=sys.stderr)
        return 1
    host, port = httpd.server_address[:2]
    _stop_on_signals()
    print(f"demo: serving http://{host}:{port}/ (Ctrl+C stops it)", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        _CLOSING.set()
        httpd.server_close()
        with _LOCK:
            pass
    # Nothing is left to clean up. The interpreter's own teardown (TensorFlow's included), with
    # a browser's idle connections still held by handler threads, once kept the process alive
    # for minutes after Ctrl+C in a loaded test run; the page stops here instead.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _stop_on_signals():
    """Ctrl+C (SIGINT) and SIGTERM stop the page, even when the process that started it left
    either ignored or blocked (both are inherited)."""
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


def run():
    """`python -m asdn_tf.demo`: flags are defined here, not at import."""
    global _HOST, _PORT, _MAX_PIXELS
    _HOST = flags.DEFINE_string("host", "127.0.0.1", "Address to listen on.")
    _PORT = flags.DEFINE_integer("port", 8000, "Port to listen on (0: any free port).")
    _MAX_PIXELS = flags.DEFINE_integer("max_pixels", DEFAULT_MAX_PIXELS,
                                       "Refuse outputs of more pixels than this, as "
                                       "asdn-upscale --max_pixels.")
    app.run(main, flags_parser=cli.one_line_flags_parser("demo"))
