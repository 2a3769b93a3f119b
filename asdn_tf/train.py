"""`python -m asdn_tf.train`: the training command under its documented name; the command
is asdn_tf.cli.train."""

import runpy

if __name__ == "__main__":
    runpy.run_module("asdn_tf.cli.train", run_name="__main__", alter_sys=True)
