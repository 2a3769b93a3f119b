"""`python -m asdn_tf.model`: the model-size command under its documented name; the command
is asdn_tf.cli.model."""

import runpy

if __name__ == "__main__":
    runpy.run_module("asdn_tf.cli.model", run_name="__main__", alter_sys=True)
