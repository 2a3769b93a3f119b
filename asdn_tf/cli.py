"""Helpers shared by the absl entry points (`python -m asdn_tf.evaluate`, `.check_data`)."""

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
