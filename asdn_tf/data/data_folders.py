"""Image folders the repository cannot ship, and the one line a command stops with when one is
missing: which folder to fill and where its images come from (data/README.md lays out data/).

Example:
    >>> missing_message("data/Set5")
    'data/Set5 is missing: put the Set5 images there (data/README.md says where to get them)'
"""

import glob
import os
import pathlib

# The prefix of a tensorflow-datasets source (asdn_tf.data reads them).
TFDS_PREFIX = "tfds:"


def missing_message(folder):
    """The line that names a missing folder, what goes in it and where to read about it."""
    folder = pathlib.Path(folder)
    return (f"{folder} is missing: put the {folder.name} images there "
            "(data/README.md says where to get them)")


def require_folder(folder):
    """Raises FileNotFoundError(`missing_message`) unless `folder` is a folder."""
    if not pathlib.Path(folder).is_dir():
        raise FileNotFoundError(missing_message(folder))


def require_sources(sources):
    """Raises FileNotFoundError for the first source (folder, file, glob or tfds: name) that
    names nothing on disk. Globs and tensorflow-datasets names are read later, as they are."""
    for source in sources:
        text = os.fspath(source)
        if text.startswith(TFDS_PREFIX) or glob.has_magic(text) or os.path.exists(text):
            continue
        raise FileNotFoundError(missing_message(text))
