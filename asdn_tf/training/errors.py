"""The training's one error type."""


class TrainingError(Exception):
    """A failure a user can act on; `python -m asdn_tf.train` prints it as one line."""
