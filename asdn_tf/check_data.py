"""`python -m asdn_tf.check_data`: the data-folder check under its documented name; the
command is asdn_tf.cli.check_data."""

import runpy

if __name__ == "__main__":
    runpy.run_module("asdn_tf.cli.check_data", run_name="__main__", alter_sys=True)
