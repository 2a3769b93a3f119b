"""`python -m asdn_tf.export`: the export command under its documented name; the command is
asdn_tf.cli.export."""

import runpy

runpy.run_module("asdn_tf.cli.export", run_name="__main__", alter_sys=True)
