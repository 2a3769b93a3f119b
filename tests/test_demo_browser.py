"""The demo page driven in headless Chromium (Debian's `chromium`, through Playwright): the test
starts `python -m asdn_tf.demo` on a free port and stops it. Without Chromium or Playwright it
is skipped, except under CI=true, where it fails."""

import base64
import io
import os
import pathlib
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from asdn_tf.export import onnx as onnx_export
from asdn_tf.nn import lfr

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
# The first request loads a model and traces it: minutes on a busy 2-core machine.
RESULT_TIMEOUT_MS = 300_000

pytestmark = pytest.mark.slow


def _missing(what):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is missing (CI=true: the browser test must run)")
    pytest.skip(f"{what} is missing")


def chromium_path():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    return path or _missing("chromium (apt-get install -y chromium)")


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright (pip install playwright)")
    executable = chromium_path()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def server():
    """The page's address; the server runs as the user starts it, on a free port."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen([sys.executable, "-m", "asdn_tf.demo", "--port=0"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env=environment, cwd=ROOT)
    try:
        line = process.stdout.readline()
        assert line.startswith("demo: serving http://127.0.0.1:"), line
        yield line.split()[2]
    finally:
        process.send_signal(signal.SIGINT)
        try:
            assert process.wait(timeout=120) == 0
        finally:
            if process.poll() is None:
                process.kill()


@pytest.fixture
def page(server, browser):
    """A fresh page; the browser closes before the server stops (fixtures end in reverse)."""
    page = browser.new_page()
    page.goto(server)
    yield page
    page.close()


@pytest.fixture(scope="module")
def crop(tmp_path_factory):
    """A 48×40 crop of the quick start's photograph as a PNG file."""
    image = Image.open(onnx_export.quick_start_image()).convert("RGB")
    path = tmp_path_factory.mktemp("demo") / "hopper.png"
    image.crop((220, 120, 268, 160)).save(path)
    return path


def _shown(page, selector):
    """The image the page shows in `selector` (a PNG data URL), as an array."""
    url = page.get_attribute(selector, "src")
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def _upscale(page, timeout=RESULT_TIMEOUT_MS):
    page.click("#go")
    page.wait_for_function("document.querySelector('#status').textContent.includes('×')"
                           " || document.querySelector('#error').textContent !== ''",
                           timeout=timeout)


def test_page_upscales_by_a_scale_and_a_width(page, crop):
    page.set_input_files("#file", str(crop))
    page.fill("#scale-number", "2.5")
    page.select_option("#model", "default")
    _upscale(page)
    assert page.inner_text("#error") == ""
    sr, bicubic = _shown(page, "#result-sr"), _shown(page, "#result-bicubic")
    height, width = lfr.output_size(40, 48, 2.5)
    assert sr.shape == bicubic.shape == (height, width, 3)
    assert np.abs(sr.astype(int) - bicubic).mean() > 1.0  # the network's, not bicubic's
    assert page.is_visible("#compare-sr") and page.is_visible("#download")
    assert page.get_attribute("#download", "href") == page.get_attribute("#result-sr", "src")
    page.select_option("#zoom", "4")
    assert page.eval_on_selector("#compare-sr", "e => e.style.width") == f"{4 * width}px"
    page.fill("#width", "100")
    _upscale(page)
    assert _shown(page, "#result-sr").shape == (lfr.output_size(40, 48, 100 / 48)[0], 100, 3)


def test_page_shows_the_commands_errors(page, crop, tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 8)
    page.set_input_files("#file", str(corrupt))
    _upscale(page)
    assert page.inner_text("#error").startswith("cannot read image corrupt.png")
    assert page.is_hidden("#results")
    page.set_input_files("#file", str(crop))
    page.fill("#scale-number", "40")
    _upscale(page)
    assert page.inner_text("#error") == ("scale must be at most 32 (the configured maximum), "
                                         "got 40")
