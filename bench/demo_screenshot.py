"""Makes docs/images/demo.png: the demo page (python -m asdn_tf.demo) showing a result.

    python -m bench.demo_screenshot [--output=docs/images/demo.png]

Starts the page's server on a free port, opens it in headless Chromium (Debian's `chromium`,
driven by Playwright), upscales a 96×80 crop of the quick start's photograph by 3 with the
photo model, zooms the before/after view 2× with the split in the middle, and saves the page.
"""

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile

from absl import app, flags
from PIL import Image

from asdn_tf.export import verification
from asdn_tf.io import fileio

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
_OUTPUT = flags.DEFINE_string("output", str(ROOT / "docs" / "images" / "demo.png"),
                              "The PNG to write.")


def start_server():
    """The demo server as a child process, and the page's address."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen([sys.executable, "-m", "asdn_tf.demo", "--port=0"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env=environment, cwd=ROOT)
    line = process.stdout.readline()
    if not line.startswith("demo: serving "):
        process.kill()
        raise RuntimeError(f"the demo did not start: {line!r}")
    return process, line.split()[2]


def screenshot(address, image, output):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"),
                                             args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(address)
        page.set_input_files("#file", str(image))
        page.fill("#scale-number", "3")
        page.select_option("#model", "photo")
        page.click("#go")
        page.wait_for_selector("#results:not([hidden])", timeout=600_000)
        page.select_option("#zoom", "2")
        with fileio.atomic_path(output) as temporary:
            page.screenshot(path=str(temporary), full_page=True)
        browser.close()


def main(argv):
    del argv
    output = pathlib.Path(_OUTPUT.value)
    output.parent.mkdir(parents=True, exist_ok=True)
    process, address = start_server()
    try:
        with tempfile.TemporaryDirectory() as folder:
            image = pathlib.Path(folder) / "grace_hopper_crop.png"
            Image.open(verification.quick_start_image()).convert("RGB").crop(
                (180, 150, 276, 230)).save(image)
            screenshot(address, image, output)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
    print(f"wrote {output}")


if __name__ == "__main__":
    app.run(main)
