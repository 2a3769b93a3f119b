"""What the command lines share: an error a user can cause is reported in one line."""

import re
import sys

from absl import flags

# What TensorFlow wraps an op's error in ("{{function_node __wrapped__SaveV2_...}} ... [Op:SaveV2]"):
# the op's name, no part of what went wrong.
_OP_TEXT = re.compile(r"\{\{[^{}]*\}\}\s*|\s*\[Op:[^\]]*\]")


def one_line_flags_parser(program):
    """An `app.run(flags_parser=...)` that reports a bad flag as one line, "program: error",
    where absl prints two."""

    def parse(argv):
        try:
            return flags.FLAGS(argv)
        except flags.Error as error:
            sys.exit(f"{program}: {error}")

    return parse


def first_line(error):
    """The first non-blank line of an error's message, without TensorFlow's op text (TF errors
    carry the op around it and a stack below it), or the error's type when the message is
    empty."""
    text = _OP_TEXT.sub("", str(getattr(error, "message", None) or error))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
