"""The one progress bar the commands draw (`asdn-upscale`, `evaluate`), on a terminal only.

Example:
    >>> draw = bar("Set5")          # None when stderr is not a terminal
    >>> draw and draw(3, 8, "bird.png")
"""

import sys


def bar(label="", stream=None, width=24):
    """A callback(done, total, text="") that draws `label ████···· 3/8 text` over one line of
    `stream` (stderr), or None when the stream is not a terminal (logs stay clean)."""
    stream = stream or sys.stderr
    if not stream.isatty():
        return None
    prefix = f"{label} " if label else ""

    def draw(done, total, text=""):
        filled = width * done // total
        stream.write(f"\r{prefix}{'█' * filled}{'·' * (width - filled)} {done}/{total} "
                     f"{text[:40]}\033[K")
        stream.flush()

    return draw


def clear(stream=None):
    """Clears the line a bar was drawn on (nothing when the stream is not a terminal)."""
    stream = stream or sys.stderr
    if stream.isatty():
        stream.write("\r\033[K")
        stream.flush()
