"""The one progress bar the commands draw (`asdn-upscale`, `evaluate`, `train`).

Example:
    >>> draw = bar("Set5")          # None when stderr is not a terminal
    >>> draw and draw(3, 8, "bird.png")
"""

import shutil
import sys


def bar(label="", stream=None, width=24, log=False):
    """A callback(done, total, text="") that draws `label ████···· 3/8 text` over one line of
    `stream` (stderr) on a terminal.

    Elsewhere (a file, a pipe) there is no bar: None, so logs stay clean; or with `log`, each
    call writes the same text as a line of its own, for progress a log is read for while it runs
    (training's).
    """
    stream = stream or sys.stderr
    terminal = stream.isatty()
    if not (terminal or log):
        return None
    prefix = f"{label} " if label else ""

    def draw(done, total, text=""):
        filled = width * done // total
        line = f"{prefix}{'█' * filled}{'·' * (width - filled)} {done}/{total} {text}"
        if terminal:
            # A line wider than the terminal wraps, and "\r" then redraws only its last part.
            stream.write(f"\r{line[:shutil.get_terminal_size().columns - 1]}\033[K")
        else:
            stream.write(line + "\n")
        stream.flush()

    return draw


def clear(stream=None):
    """Clears the line a bar was drawn on (nothing when the stream is not a terminal)."""
    stream = stream or sys.stderr
    if stream.isatty():
        stream.write("\r\033[K")
        stream.flush()
