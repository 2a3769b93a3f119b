"""One absl flag per field of a config dataclass, typed by its annotation and helped by its
class docstring's Args; `python -m asdn_tf.train` defines its flags here.

Example:
    >>> define_config_flags(TrainConfig, flag_values)
    >>> config_from_flags(TrainConfig, flag_values)     # once the flags are parsed
"""

import dataclasses
import inspect
import re
import typing

from absl import flags

_FLAG_DEFINERS = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, float: flags.DEFINE_float,
                  str: flags.DEFINE_string}
# How the error for a bad item of a list flag names what the flag takes.
_ITEM_WORDS = {int: "integers", float: "numbers", str: "strings"}


def define_config_flags(cls, flag_values=flags.FLAGS):
    """Defines one flag per field of the config dataclass `cls`, named after it, with its
    default, typed by its annotation (`int`, `float`, `bool`, `str`; `tuple[T, ...]` is a
    comma-separated list of T) and helped by its entry in the docstring's Args."""
    helps = _docstring_args(cls.__doc__)
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name not in helps:
            raise TypeError(f"{cls.__name__}.{field.name} has no entry in the docstring's Args")
        kind = hints[field.name]
        if _item_type(kind) in _ITEM_WORDS:
            flags.DEFINE_list(field.name, [str(value) for value in field.default],
                              helps[field.name], flag_values=flag_values)
        elif kind in _FLAG_DEFINERS:
            _FLAG_DEFINERS[kind](field.name, field.default, helps[field.name],
                                 flag_values=flag_values)
        else:
            raise TypeError(f"{cls.__name__}.{field.name}: no flag type for {kind}")


def config_from_flags(cls, flag_values, base=None):
    """The `cls` the parsed flags of `define_config_flags` describe; with `base`, an instance of
    `cls`, the flags given on the command line (or in a flagfile) override its fields.

    Raises:
        ValueError: an item of a list flag is not of its type (naming the flag), or the
            config refuses a value.
    """
    hints = typing.get_type_hints(cls)
    values = {} if base is None else {f.name: getattr(base, f.name)
                                      for f in dataclasses.fields(cls)}
    for field in dataclasses.fields(cls):
        flag = flag_values[field.name]
        if base is None or flag.present:
            item_type = _item_type(hints[field.name])
            values[field.name] = (_list_value(field.name, item_type, flag.value) if item_type
                                  else flag.value)
    return cls(**values)


def _item_type(annotation):
    """T for `tuple[T, ...]`, else None."""
    arguments = typing.get_args(annotation)
    if typing.get_origin(annotation) is tuple and len(arguments) == 2 and arguments[1] is ...:
        return arguments[0]
    return None


def _list_value(name, item_type, items):
    values = []
    for item in items:
        try:
            values.append(item_type(item))
        except ValueError:
            raise ValueError(f"--{name} takes {_ITEM_WORDS[item_type]}, got {item!r}") from None
    return tuple(values)


def _docstring_args(docstring):
    """{name: description} of the Args section of a Google-style docstring, whatever its
    indentation: an entry is `name: text` at the section's first indentation, continued by
    the more indented lines below it; the section ends at a line indented no deeper than
    `Args:`. Descriptions are one line, their whitespace runs made single spaces."""
    lines = inspect.cleandoc(docstring or "").splitlines()
    starts = [index for index, line in enumerate(lines) if line.strip() == "Args:"]
    if not starts:
        return {}
    section_depth = _depth(lines[starts[0]])
    entries, entry_depth = {}, None
    for line in lines[starts[0] + 1:]:
        if not line.strip():
            continue
        if _depth(line) <= section_depth:
            break
        entry_depth = entry_depth or _depth(line)
        entry = re.fullmatch(r"(\w+):\s*(.*)", line.strip())
        if _depth(line) == entry_depth and entry:
            name = entry[1]
            entries[name] = [entry[2]]
        elif _depth(line) > entry_depth and entries:
            entries[name].append(line)
    return {name: " ".join(" ".join(parts).split()) for name, parts in entries.items()}


def _depth(line):
    return len(line) - len(line.lstrip())
