"""The page's server without a browser: what an upload may ask, refused in one line before any
model loads; who may ask (Host, Origin); stalled and vanished clients; one image at a time;
the answers as PNG bytes (tests/test_demo_browser.py drives the page itself)."""

import http.client
import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from asdn_tf.data.imresize import imresize
from asdn_tf.demo import server, uploads
from asdn_tf.inference import weights_io
from asdn_tf.io import pixels


def _png(height=12, width=16):
    stream = io.BytesIO()
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), np.uint8)
    Image.fromarray(image).save(stream, format="PNG")
    return stream.getvalue()


def _upload(tmp_path, data, name="upload.png"):
    path = uploads.upload_path(tmp_path, {"name": name})
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("fields, message", [
    ({"scale": "2", "model": "nope"}, "unknown model 'nope'"),
    ({"model": "default"}, "give a scale or a width"),
    ({"scale": "2", "width": "30", "model": "default"}, "give a scale or a width"),
    ({"width": "-3", "model": "default"}, "width must be a positive number of pixels"),
])
def test_a_bad_request_is_one_line(tmp_path, fields, message):
    with pytest.raises(ValueError, match=message) as raised:
        uploads.upscale_upload(_upload(tmp_path, _png()), fields)
    assert "\n" not in str(raised.value)


def test_an_output_over_the_limit_is_refused_from_the_header(tmp_path):
    for work in (uploads.upscale_upload, uploads.bicubic_upload):
        with pytest.raises(ValueError, match="pixels") as raised:
            work(_upload(tmp_path, _png()), {"scale": "8", "model": "default"}, max_pixels=1000)
        assert "\n" not in str(raised.value)


def test_a_file_that_is_no_image_names_the_upload(tmp_path):
    upload = _upload(tmp_path, b"\x89PNG\r\n\x1a\n" + b"junk" * 4, "photo.png")
    for work in (uploads.upscale_upload, uploads.bicubic_upload):
        with pytest.raises((ValueError, OSError), match="^cannot read image photo.png"):
            work(upload, {"scale": "2", "model": "default"})


def test_the_page_is_served_with_the_package():
    assert b"<html" in server.PAGE.read_bytes().lower()


def test_help_lists_the_flags():
    result = subprocess.run([sys.executable, "-m", "asdn_tf.demo", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.stderr == ""  # absl's --help exits 1, as every command's does
    for flag in ("--host", "--port", "--max_pixels"):
        assert flag in result.stdout


# ------------------------------------------------------------------- the server over HTTP
@pytest.fixture
def page():
    """A running page on a free port, with short timeouts; stopped (threads joined) after."""
    pages = []

    def start(**options):
        httpd = server.make_server("127.0.0.1", 0, **{"timeout": 0.5, **options})
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        pages.append((httpd, thread))
        return httpd.server_address[1]

    yield start
    for httpd, thread in pages:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _ask(port, method, path, body=None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request(method, path, body, headers or {})
    response = connection.getresponse()
    return response.status, dict(response.getheaders()), response.read()


def _error(body):
    message = json.loads(body)["error"]
    assert "\n" not in message
    return message


def test_requests_to_another_host_are_refused(page):
    port = page()
    for method, path, body in [("GET", "/", None), ("POST", "/upscale?scale=2", _png())]:
        # What DNS rebinding sends: the attacker's name, the page's address.
        status, _, answer = _ask(port, method, path, body, {"Host": "evil.example",
                                                           "Content-Type": "text/plain"})
        assert status == 403
        assert _error(answer).startswith("this page answers only requests to 127.0.0.1:")
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}"):
        assert _ask(port, "GET", "/", headers={"Host": host})[0] == 200
    assert _ask(port, "GET", "/", headers={"Host": "127.0.0.1"})[0] == 403  # another port


def test_posts_from_another_origin_are_refused(page):
    port = page()
    for origin in ("http://evil.example", "null", f"http://localhost:{port + 1}"):
        status, _, answer = _ask(port, "POST", "/upscale?scale=2&model=default", _png(),
                                 {"Origin": origin, "Content-Type": "text/plain"})
        assert status == 403
        assert _error(answer) == f"requests from {origin} are refused: use the page itself"
    # The page's own origin reaches the checks (here: a request naming no scale).
    status, _, answer = _ask(port, "POST", "/upscale?model=default", _png(),
                             {"Origin": f"http://127.0.0.1:{port}"})
    assert (status, _error(answer)) == (400, "give a scale or a width")


def test_the_page_sends_its_security_headers(page):
    status, headers, body = _ask(page(), "GET", "/")
    assert status == 200
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    policy = headers["Content-Security-Policy"]
    assert policy == server.page_policy(body.decode())
    assert "default-src 'none'" in policy and "unsafe" not in policy
    assert policy.count("'sha256-") == 2  # the page's one script and one style
    status, headers, _ = _ask(page(), "GET", "/nothing")
    assert status == 404 and headers["X-Content-Type-Options"] == "nosniff"


def _stall(port, sent):
    """A connection that sends `sent` and then nothing."""
    client = socket.create_connection(("127.0.0.1", port), timeout=30)
    client.sendall(sent)
    return client


def _closed_within(client, seconds):
    """Whether the server closed `client` within `seconds` (any answer is read and dropped)."""
    client.settimeout(seconds)
    began = time.monotonic()
    try:
        while client.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return time.monotonic() - began < seconds


@pytest.mark.parametrize("sent", [
    b"POST /upscale?scale=2 HTTP/1.1\r\nHost: 127.0.0.1",
    b"POST /upscale?scale=2 HTTP/1.1\r\nContent-Length: 5000\r\n\r\n" + b"\x89PNG" * 100,
], ids=["headers cut short", "body cut short"])
def test_a_stalled_client_is_disconnected(page, sent):
    port = page(timeout=0.5)
    request = sent.replace(b"HTTP/1.1\r\n", f"HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode(), 1)
    with _stall(port, request) as client:
        assert _closed_within(client, 10)


def test_a_trickling_upload_is_cut_at_its_deadline(page):
    port = page(timeout=5, upload_deadline=1)
    with _stall(port, f"POST /upscale?scale=2 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                      "Content-Length: 1000\r\n\r\n".encode()) as client:
        began = time.monotonic()
        try:
            for _ in range(40):  # a byte every 0.1 s: never idle for the 5 s timeout
                client.sendall(b"x")
                time.sleep(0.1)
        except OSError:
            pass  # the server closed it
        assert _closed_within(client, 10)
        assert time.monotonic() - began < 3.5


def test_a_busy_page_answers_503_at_once(page):
    port = page(timeout=5)
    holder = _stall(port, f"POST /bicubic?scale=2 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                          "Content-Length: 100000\r\n\r\n".encode() + _png()[:20])
    with holder:
        time.sleep(1)  # its upload has begun: it holds the one slot
        began = time.monotonic()
        status, _, answer = _ask(port, "POST", "/upscale?scale=2&model=default", _png())
        assert (status, _error(answer)) == (503, server.BUSY)
        assert time.monotonic() - began < 3
    # The holder gone, the slot is free again (once the server has seen it go).
    deadline = time.monotonic() + 10
    while (answer := _ask(port, "POST", "/bicubic?scale=2", _png()))[0] == 503:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert (answer[0], answer[1]["Content-Type"]) == (200, "image/png")


def test_a_client_that_goes_away_prints_nothing(page, capfd):
    port = page(timeout=5)
    for _ in range(3):
        client = _stall(port, f"POST /bicubic?scale=2 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                              "Content-Length: 100000\r\n\r\n".encode() + _png()[:20])
        time.sleep(0.3)
        # Closed with a reset (SO_LINGER 0), as a browser tab that goes away may.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
    time.sleep(1)
    status, _, _ = _ask(port, "GET", "/")
    assert status == 200
    assert capfd.readouterr().err == ""


@pytest.mark.slow
def test_the_answers_are_pngs(page, monkeypatch, tiny_model):
    monkeypatch.setattr(weights_io, "shared_pretrained", lambda name: tiny_model)
    port = page(timeout=30)
    upload = _png(12, 16)
    status, headers, body = _ask(port, "POST", "/upscale?scale=2.5&model=default&name=a.png",
                                 upload)
    assert (status, headers["Content-Type"]) == (200, "image/png")
    result = np.asarray(Image.open(io.BytesIO(body)))
    assert result.shape == (30, 40, 3)
    assert (headers["X-Image-Width"], headers["X-Image-Height"]) == ("40", "30")
    assert (float(headers["X-Image-Scale"]), headers["X-Image-Model"]) == (2.5, "default")
    status, headers, body = _ask(port, "POST", "/bicubic?scale=2.5&name=a.png", upload)
    assert (status, headers["Content-Type"]) == (200, "image/png")
    image = np.asarray(Image.open(io.BytesIO(upload)))
    expected = pixels.to_uint8(imresize(pixels.to_float(image), scale=2.5, size=(30, 40)))
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(body))), expected)


def test_ctrl_c_stops_the_page_with_a_client_connected():
    """http.server's own shutdown: the clients are disconnected, every request's thread ends
    and the process exits 0, without a word on stderr."""
    process = subprocess.Popen([sys.executable, "-m", "asdn_tf.demo", "--port=0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    try:
        line = process.stdout.readline()
        port = int(line.split()[2].rsplit(":", 1)[1].strip("/"))
        with _stall(port, f"POST /upscale?scale=2 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                          "Content-Length: 100000\r\n\r\n".encode() + _png()[:20]):
            time.sleep(0.5)
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=15) == 0  # the read timeout is 20 s: not waited for
        assert process.stderr.read() == ""
    finally:
        if process.poll() is None:
            process.kill()
