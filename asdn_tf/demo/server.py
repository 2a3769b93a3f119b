"""A local web page to upscale an image and compare it with bicubic (`python -m asdn_tf.demo`).

The server is the standard library's `http.server` and one static page (page.html):

    GET  /                                      the page
    POST /upscale?scale=S|width=W&model=M&name=N   the file as the body: the result as a PNG
    POST /bicubic?scale=S|width=W&name=N           the same file: MATLAB bicubic at that size

An upload goes through `asdn_tf.upscale_file` (asdn_tf/demo/uploads.py), so the limits and the
checks are the command's. Each refusal is one line of JSON ({"error": ...}), shown on the page.
The images travel as PNG bytes, the upload goes to a temporary file as it arrives, and one image
is worked on at a time: a request that comes while another is at work is answered 503 at once.

The page answers only requests addressed to it (Host: the address it listens on, or
localhost) and refuses POSTs from other origins, so other websites cannot drive it, even
through DNS rebinding. A client that sends nothing for `READ_TIMEOUT_S` seconds, or takes
longer than `UPLOAD_DEADLINE_S` for its upload, is disconnected.
"""

import base64
import hashlib
import json
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

from asdn_tf.demo import uploads
from asdn_tf.inference.request import DEFAULT_MAX_PIXELS
from asdn_tf.io import errors

PAGE = pathlib.Path(__file__).with_name("page.html")
# An upload larger than this is refused unread (the command reads files of any size).
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
# A connection that sends nothing for this long is closed (a read or a write); an upload must
# arrive whole within UPLOAD_DEADLINE_S, however it trickles.
READ_TIMEOUT_S = 20
UPLOAD_DEADLINE_S = 120
BUSY = "the page is busy with another image; try again when it is done"
_CHUNK = 1 << 20
_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)
# Every answer: no sniffing, no referrer, never inside another site's frame.
_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
            "Cross-Origin-Resource-Policy": "same-origin"}
_NOTHING = "default-src 'none'; frame-ancestors 'none'"


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
        work = {"/upscale": uploads.upscale_upload,
                "/bicubic": uploads.bicubic_upload}.get(url.path)
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
                    source = uploads.upload_path(folder, fields)
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
