"""The local web page: `python -m asdn_tf.demo` (server.py serves page.html)."""
