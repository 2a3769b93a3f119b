"""A local web page to upscale an image and compare it with bicubic.

    python -m asdn_tf.demo [--port=8000] [--host=127.0.0.1] [--max_pixels=N]

Open the address it prints; Ctrl+C stops it. asdn_tf/demo/server.py serves the page.
"""

from absl import app, flags

from asdn_tf.demo import server
from asdn_tf.inference.request import DEFAULT_MAX_PIXELS
from asdn_tf.io import errors, logs

_HOST = flags.DEFINE_string("host", "127.0.0.1",
                            "Address to listen on; the page answers requests addressed to it "
                            "(and to localhost).")
_PORT = flags.DEFINE_integer("port", 8000, "Port to listen on (0: any free port).")
_MAX_PIXELS = flags.DEFINE_integer("max_pixels", DEFAULT_MAX_PIXELS,
                                   "Refuse outputs of more pixels than this, as "
                                   "asdn-upscale --max_pixels.")


def main(argv):
    del argv
    logs.quiet_tensorflow()
    return server.serve(_HOST.value, _PORT.value, _MAX_PIXELS.value)


if __name__ == "__main__":
    app.run(main, flags_parser=errors.one_line_flags_parser("demo"))
