"""The commands, one thin module each. Importing this package (every command does, first)
quiets TensorFlow's logs for the command: the library itself sets no global state."""

from asdn_tf.io.logs import quiet_tensorflow

quiet_tensorflow()
