"""`python -m asdn_tf.evaluate`: the evaluation command under its documented name; the command
is asdn_tf.cli.evaluate."""

import runpy

if __name__ == "__main__":
    runpy.run_module("asdn_tf.cli.evaluate", run_name="__main__", alter_sys=True)
