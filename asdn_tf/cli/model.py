"""A preset's size: python -m asdn_tf.model --preset=paper --summary"""

from absl import app, flags

from asdn_tf.nn import config as config_lib
from asdn_tf.nn.model import build_model, flops_per_pixel


def main(argv):
    del argv
    try:
        model_config = config_lib.preset(flags.FLAGS.preset)
    except ValueError as error:
        raise app.UsageError(str(error))
    model = build_model(model_config)
    if flags.FLAGS.summary:
        model.summary()
    print(f"preset {flags.FLAGS.preset}: {model.count_params():,} parameters, "
          f"{flops_per_pixel(model_config) / 1e6:.2f} MFLOP per output pixel")


if __name__ == "__main__":
    # Flags are defined here, not at import, so importing the library defines none.
    flags.DEFINE_string("preset", "default", f"One of {sorted(config_lib.PRESETS)}.")
    flags.DEFINE_bool("summary", False, "Print the Keras layer summary too.")
    app.run(main)
