"""The demo page driven in headless Chromium (Debian's `chromium`, through Playwright): the test
starts `python -m asdn_tf.demo` on a free port and stops it. Without Chromium or Playwright it
is skipped, except under CI=true, where it fails."""

import os
import pathlib
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from asdn_tf.export import verification
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


# Records the page's Content-Security-Policy violations (an init script runs before the page's).
RECORD_VIOLATIONS = """
window.violations = [];
document.addEventListener("securitypolicyviolation",
                          (e) => window.violations.push(`${e.violatedDirective} ${e.blockedURI}`));
"""


def _open(browser, server, **options):
    """A fresh page of the demo that keeps its answers (`page.answers`: path -> response)."""
    page = browser.new_page(**options)
    page.add_init_script(RECORD_VIOLATIONS)
    page.answers = {}
    page.on("response", lambda response: page.answers.update(
        {response.url.split("?")[0].rsplit("/", 1)[-1]: response}))
    page.goto(server)
    return page


@pytest.fixture
def page(server, browser):
    """A fresh page; the browser closes before the server stops (fixtures end in reverse)."""
    page = _open(browser, server)
    yield page
    assert page.evaluate("window.violations") == []  # the page works under its own policy
    page.close()


@pytest.fixture(scope="module")
def crop(tmp_path_factory):
    """A 48×40 crop of the quick start's photograph as a PNG file."""
    image = Image.open(verification.quick_start_image()).convert("RGB")
    path = tmp_path_factory.mktemp("demo") / "hopper.png"
    image.crop((220, 120, 268, 160)).save(path)
    return path


# The pixels an <img> shows, through a canvas: [height, width, RGBA values].
READ_PIXELS = """async (image) => {
  await image.decode();
  const canvas = document.createElement("canvas");
  canvas.width = image.naturalWidth;
  canvas.height = image.naturalHeight;
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
  return [canvas.height, canvas.width, Array.from(pixels)];
}"""


def _shown(page, selector):
    """The image the page shows in `selector` (the PNG the server answered, as a blob: URL),
    as an RGB array."""
    assert page.get_attribute(selector, "src").startswith("blob:")
    answer = page.answers["bicubic" if "bicubic" in selector else "upscale"]
    assert answer.headers["content-type"] == "image/png"
    height, width, values = page.eval_on_selector(selector, READ_PIXELS)
    return np.array(values, np.uint8).reshape(height, width, 4)[..., :3]


def _upscale(page, timeout=RESULT_TIMEOUT_MS):
    """Clicks Upscale and waits for the status line or an error. (Playwright's
    wait_for_function evaluates strings, which the page's policy forbids: locators do not.)"""
    page.click("#go")
    page.locator("#status", has_text="×").or_(page.locator("#error:not(:empty)")).wait_for(
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


def _scroll(page, selector):
    """(scrollLeft, its largest value) of the element `selector`."""
    return page.eval_on_selector(selector, "e => [e.scrollLeft, e.scrollWidth - e.clientWidth]")


def _line_in_view(page, split):
    """The divider lies at `split` of the before/after box's visible width."""
    box = page.eval_on_selector("#compare", "e => [e.getBoundingClientRect().left + "
                                "e.clientLeft, e.clientWidth]")
    line = page.eval_on_selector("#divider", "e => e.getBoundingClientRect().left")
    assert line == pytest.approx(box[0] + split * box[1], abs=2)


def test_the_first_view_shows_both_sides_at_the_subject(server, browser, crop):
    """An image wider than its boxes: the panes and the before/after view open at its centre,
    and the line stays in view when zooming, scrolling and splitting."""
    page = _open(browser, server, viewport={"width": 300, "height": 800})
    try:
        page.set_input_files("#file", str(crop))
        page.fill("#scale-number", "6")  # 288×240: wider than any box at 300 pixels
        page.select_option("#model", "default")
        _upscale(page)
        assert page.inner_text("#error") == ""
        for pane in range(2):
            left, most = _scroll(page, f".pane >> nth={pane}")
            assert most > 0 and left == pytest.approx(most / 2, abs=1)
        left, most = _scroll(page, "#compare")
        assert most > 0 and left == pytest.approx(most / 2, abs=1)
        _line_in_view(page, 0.5)
        page.select_option("#zoom", "8")
        left, most = _scroll(page, "#compare")
        assert left == pytest.approx(most / 2, abs=5)  # still the centre (±1 pixel at 2×)
        _line_in_view(page, 0.5)
        page.eval_on_selector("#compare", "e => e.scrollTo(0, 0)")
        page.wait_for_timeout(200)  # the scroll event
        _line_in_view(page, 0.5)
        page.eval_on_selector("#split", "e => { e.value = 25; "
                                        "e.dispatchEvent(new Event('input')); }")
        _line_in_view(page, 0.25)
        assert page.evaluate("window.violations") == []
    finally:
        page.close()
