"""`python -m asdn_tf.batch`: upscaling a collection of images with Apache Beam, under its
documented name; the command is asdn_tf.cli.batch (docs/batch.md)."""

import runpy

if __name__ == "__main__":
    runpy.run_module("asdn_tf.cli.batch", run_name="__main__", alter_sys=True)
