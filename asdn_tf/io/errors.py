"""What the command lines share: an error a user can cause is reported in one line."""

import sys

from absl import flags


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
    """The first non-blank line of an error's message (TF errors carry the op and a stack below
    it), or the error's type when the message is empty."""
    text = str(getattr(error, "message", None) or error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
