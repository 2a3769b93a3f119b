"""`python -m asdn_tf.demo`: the local web page."""

from asdn_tf.demo.server import run

run()
