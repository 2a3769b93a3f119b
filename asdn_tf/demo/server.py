"""A local web page to upscale an image and compare it with bicubic (`python -m asdn_tf.demo`).

The server is the standard library's `http.server` and one static page (page.html):

    GET  /                                      the page
    POST /upscale?scale=S|width=W&model=M&name=N   the file as the body: the result as a PNG
    POST /bicubic?scale=S|width=W&name=N           the same file: MATLAB bicubic at that size

An upload goes through `asdn_tf.upscale_file`, so the limits and the checks are the command's:
the scale or width, the output's pixel limit (--max_pixels), an image whose header claims more
pixels than that refused before it is decoded, and a file that is not an image. Each refusal is
one line of JSON ({"error": ...}), shown on the page. The images travel as PNG bytes, the
upload goes to a temporary file as it arrives, and one image is worked on at a time: a request
that comes while another is at work is answered 503 at once.

The page answers only requests addressed to it (Host: the address it listens on, or
localhost) and refuses POSTs from other origins, so other websites cannot drive it, even
through DNS rebinding. A client that sends nothing for `READ_TIMEOUT_S` seconds, or takes
longer than `UPLOAD_DEADLINE_S` for its upload, is disconnected.
"""

import base64
import contextlib
import hashlib
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.parse
from http import server

from asdn_tf.inference import weights_io
from asdn_tf.inference.files import upscale_file
from asdn_tf.inference.request import DEFAULT_MAX_PIXELS, target_size
from asdn_tf.io import errors
from asdn_tf.io import image_io, pixels

PAGE = pathlib.Path(__file__).with_name("page.html")
# An upload larger than this is refused unread (the command reads files of any size).
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
# A connection that sends nothing for this long is closed (a read or a write); an upload must
# arrive whole within UPLOAD_DEADLINE_S, however it trickles.
READ_TIMEOUT_S = 20
UPLOAD_DEADLINE_S = 120
BUSY = "the page is busy with another image; try again when it is done"
_CHUNK = 1 << 20
_WIDTH = re.compile(r"\s*\d+\s*", re.ASCII)
_SAFE_NAME = re.compile(r"[^\w.-]", re.ASCII)
_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)
# Every answer: no sniffing, no referrer, never inside another site's frame.
_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
            "Cross-Origin-Resource-Policy": "same-origin"}
_NOTHING = "default-src 'none'; frame-ancestors 'none'"


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
        image_io.write_image(destination, _bicubic(image, scale, size), "png")
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


def page_policy(page):
    """The page's Content-Security-Policy: its own inline script and style (by hash), images
    from blob: URLs (the results), requests to itself only."""
    found = {"script": [], "style": []}
    for tag, text in _INLINE.findall(page):
        digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        found[tag].append(f"'sha256-{digest}'")
    return (f"default-src 'none'; script-src {' '.join(found['script'])}; "
            f"style-src {' '.join(found['style'])}; img-src blob:; connect-src 'self'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class _Gone(Exception):
    """The client stopped sending (timed out, closed or reset): nobody to answer."""


class Handler(server.BaseHTTPRequestHandler):
    """The page's requests (the module's docstring lists them)."""

    max_pixels = DEFAULT_MAX_PIXELS
    timeout = READ_TIMEOUT_S  # StreamRequestHandler sets it on the socket: reads and writes
    upload_deadline = UPLOAD_DEADLINE_S

    def do_GET(self):
        if not self._addressed_here(post=False):
            return
        if urllib.parse.urlsplit(self.path).path != "/":
            self._error(404, "not found")
            return
        page = PAGE.read_text(encoding="utf-8")
        self._send(200, page.encode(), "text/html; charset=utf-8", page_policy(page))

    def do_POST(self):
        self.close_connection = True  # one upload a connection
        if not self._addressed_here(post=True):
            return
        url = urllib.parse.urlsplit(self.path)
        work = {"/upscale": upscale_upload, "/bicubic": bicubic_upload}.get(url.path)
        fields = {key: values[-1] for key, values in urllib.parse.parse_qs(url.query).items()}
        try:
            length = _length(self.headers.get("Content-Length"))
        except ValueError as error:  # refused unread
            self._error(400, errors.first_line(error))
            return
        try:
            if work is None:
                self._discard(length)
                self._error(404, "not found")
            else:
                self._work(work, length, fields)
        except _Gone:
            pass

    def _work(self, work, length, fields):
        """Saves the upload, runs `work` on it and sends the PNG, holding the server's one
        slot until the image is made; answers 503 at once when another request holds it."""
        if not self.server.slot.acquire(blocking=False):
            self._discard(length)
            self._error(503, BUSY)
            return
        with tempfile.TemporaryDirectory(prefix="asdn-demo-") as folder:
            try:
                try:
                    source = upload_path(folder, fields)
                    self._receive(length, source)
                    if self.server.closing.is_set():
                        raise _Gone
                    result, info = work(source, fields, self.max_pixels)
                finally:
                    self.server.slot.release()
            except (ValueError, OSError) as error:  # what a user can cause: one line
                self._error(400, errors.first_line(error))
                return
            self._send_file(result, info)

    def _addressed_here(self, post):
        """False, with the refusal sent, for a request addressed to another host (DNS
        rebinding) or a POST from another origin's page."""
        host = (self.headers.get("Host") or "").strip().lower()
        if host not in self.server.hosts:
            self._error(403, f"this page answers only requests to "
                             f"{' or '.join(sorted(self.server.hosts))}")
            return False
        origin = self.headers.get("Origin")
        if post and origin is not None and origin.strip().lower() != f"http://{host}":
            self._error(403, f"requests from {origin} are refused: use the page itself")
            return False
        return True

    def _receive(self, length, path):
        """Writes the `length` bytes of the body to `path` as they arrive; _Gone if the client
        stops, closes or takes longer than the upload deadline."""
        deadline = time.monotonic() + self.upload_deadline
        with open(path, "wb") as file:
            self._each_chunk(length, deadline, file.write)

    def _discard(self, length):
        """Reads the body and drops it: a reply before the body is read can be lost to the
        connection's reset."""
        self._each_chunk(length, time.monotonic() + self.upload_deadline, lambda chunk: None)

    def _each_chunk(self, length, deadline, use):
        while length > 0:
            if time.monotonic() > deadline:
                raise _Gone
            try:
                chunk = self.rfile.read1(min(length, _CHUNK))
            except OSError as error:  # TimeoutError, ConnectionResetError
                raise _Gone from error
            if not chunk:
                raise _Gone
            use(chunk)
            length -= len(chunk)

    def _send_file(self, path, info):
        headers = {f"X-Image-{key.title()}": str(value) for key, value in info.items()}
        self._start(200, "image/png", path.stat().st_size, _NOTHING, headers)
        with open(path, "rb") as file:
            shutil.copyfileobj(file, self.wfile, _CHUNK)

    def _error(self, status, message):
        self.close_connection = True
        self._send(status, json.dumps({"error": message}).encode(), "application/json")

    def _send(self, status, body, kind, policy=_NOTHING):
        self._start(status, kind, len(body), policy)
        self.wfile.write(body)

    def _start(self, status, kind, length, policy, headers=None):
        self.send_response(status)
        for key, value in {"Content-Type": kind, "Content-Length": str(length),
                           "Content-Security-Policy": policy, **_HEADERS,
                           **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        del format, args  # a local page: no access log on the terminal


def _length(text):
    """The body's declared length; ValueError (one line) unless 1 to MAX_UPLOAD_BYTES."""
    try:
        length = int(text or "0")
    except ValueError:
        raise ValueError(f"Content-Length is not a number: {text!r}") from None
    if length <= 0:
        raise ValueError("no image was sent")
    if length > MAX_UPLOAD_BYTES:
        raise ValueError(f"the file is {length / 1e6:.1f} MB, over the page's limit of "
                         f"{MAX_UPLOAD_BYTES / 1e6:.0f} MB")
    return length


class PageServer(server.ThreadingHTTPServer):
    """`ThreadingHTTPServer` whose `server_close` disconnects the clients and waits for every
    request's thread: no TensorFlow work is left running when the interpreter shuts down."""

    daemon_threads = False
    block_on_close = True

    def __init__(self, address, handler):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)
        self.slot = threading.Semaphore(1)  # one image at a time: the memory of one upscale
        self.closing = threading.Event()
        self.hosts = _hosts(address[0], self.server_address[1])
        self._connections = set()
        self._guard = threading.Lock()

    def process_request(self, request, client_address):
        with self._guard:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self._guard:
            self._connections.discard(request)
        super().shutdown_request(request)

    def server_close(self):
        self.closing.set()
        with self._guard:
            for connection in self._connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        super().server_close()

    def handle_error(self, request, client_address):
        """A client that went away (a broken pipe, a reset, a timeout) is not an error."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def _hosts(host, port):
    """The Host headers the page answers: its address, localhost and the loopback addresses,
    with the port (and without it on port 80)."""
    names = {"127.0.0.1", "localhost", "[::1]", f"[{host}]" if ":" in host else host}
    hosts = {f"{name}:{port}" for name in names} | (names if port == 80 else set())
    return {name.lower() for name in hosts}


def make_server(host="127.0.0.1", port=8000, max_pixels=DEFAULT_MAX_PIXELS,
                timeout=READ_TIMEOUT_S, upload_deadline=UPLOAD_DEADLINE_S):
    """The page's HTTP server (not yet serving); port 0 picks a free port."""
    handler = type("DemoHandler", (Handler,), {"max_pixels": max_pixels, "timeout": timeout,
                                               "upload_deadline": upload_deadline})
    return PageServer((host, port), handler)


def serve(host="127.0.0.1", port=8000, max_pixels=DEFAULT_MAX_PIXELS):
    """Serves the page until Ctrl+C or SIGTERM; the exit status."""
    try:
        httpd = make_server(host, port, max_pixels)
    except OSError as error:
        print(f"demo: cannot listen on {host}:{port}: {error.strerror or error}",
              file=sys.stderr)
        return 1
    _stop_on_signals()
    shown = f"[{host}]" if ":" in host else host
    print(f"demo: serving http://{shown}:{httpd.server_address[1]}/ (Ctrl+C stops it)",
          flush=True)
    with httpd:  # server_close on the way out
        try:
            httpd.serve_forever()
        except KeyboardInterrupt:
            pass
    return 0


def _stop_on_signals():
    """Ctrl+C (SIGINT) and SIGTERM stop the page, even when the process that started it left
    either ignored or blocked (both are inherited)."""
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
