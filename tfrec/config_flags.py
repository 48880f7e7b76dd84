"""Command-line flags generated from config dataclasses, for the entry modules.

Each field of a `tfrec.config.Config` dataclass becomes a flag of the same
name: its type follows the field's annotation (bool, int, float, str, a tuple
as a comma-separated list, `Optional` of these), a field in the class'
`CHOICES` becomes an enum, and its help text is the field's entry in the
class docstring's "Attributes:" section. Nothing here runs at import: only
the entry modules (`tfrec.train`, `tfrec.evaluate`, `tfrec.data.cli`, ...)
call `define_flags`, on the `FlagValues` they parse.

Example:

>>> from absl import flags
>>> from tfrec.training import TrainConfig
>>> values = flags.FlagValues()
>>> define_flags(TrainConfig, values)
>>> values(["prog", "--epochs=3", "--eval_ks=5,20"])
>>> from_flags(TrainConfig, values).eval_ks
(5, 20)
"""

import dataclasses
import re
import types
import typing

from absl import flags

from tfrec.config import ConfigError

_DEFINE = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, float: flags.DEFINE_float, str: flags.DEFINE_string}
_ATTRIBUTE = re.compile(r"^ {8}(\w+): (.*)$")
_CONTINUATION = re.compile(r"^ {12}(\S.*)$")
_FIELD_NAME = re.compile(r"\b[A-Z]\w*Config\.(\w+)=")

# Flags defined here belong to the entry module that asked for them, so its
# `--help` lists them.
flags.disclaim_key_flags()


def field_help(cls) -> dict:
    """Maps each field to its description in the "Attributes:" docstring section."""
    helps, current = {}, None
    for line in (cls.__doc__ or "").split("Attributes:", 1)[-1].splitlines():
        attribute, continuation = _ATTRIBUTE.match(line), _CONTINUATION.match(line)
        if attribute:
            current = attribute.group(1)
            helps[current] = attribute.group(2)
        elif continuation and current:
            helps[current] += " " + continuation.group(1)
        else:
            current = None
    return helps


def _kind(annotation):
    """(base type, is a tuple) of a field annotation, `Optional` unwrapped."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(arg for arg in typing.get_args(annotation) if arg is not type(None))
    if typing.get_origin(annotation) is tuple:
        return typing.get_args(annotation)[0], True
    return annotation, False


def define_flags(cls, flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines one flag per field of the dataclass `cls` in `flag_values`.

    A name already defined there (a field two configs share, such as `seed`)
    is kept: the one flag then sets the field of every config that has it.
    """
    helps = field_help(cls)
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in flag_values:
            continue
        help_text = f"{cls.__name__}.{field.name}: {helps.get(field.name, f'see {cls.__module__}.{cls.__name__}')}"
        base, is_tuple = _kind(hints[field.name])
        default = field.default
        if is_tuple:
            flags.DEFINE_list(field.name, None if default is None else [str(v) for v in default], help_text,
                              flag_values=flag_values)
        elif field.name in cls.CHOICES:
            flags.DEFINE_enum(field.name, default, list(cls.CHOICES[field.name]), help_text, flag_values=flag_values)
        else:
            _DEFINE[base](field.name, default, help_text, flag_values=flag_values)


def from_flags(cls, flag_values: flags.FlagValues = flags.FLAGS):
    """The validated `cls` built from the parsed flags.

    Raises:
        ConfigError: naming the flag and value (`--field=value: ...`).
    """
    values = {field.name: _field_value(cls, field.name, flag_values) for field in dataclasses.fields(cls)}
    try:
        return cls(**values).validate()
    except ConfigError as error:
        raise ConfigError(flag_message(error)) from error


def given_values(cls, flag_values: flags.FlagValues) -> dict:
    """The values, typed as the fields, of the flags of `cls` given on the command line."""
    return {field.name: _field_value(cls, field.name, flag_values) for field in dataclasses.fields(cls)
            if flag_values[field.name].present}


def _field_value(cls, name, flag_values):
    """The parsed value of flag `name` as field `name` of `cls` holds it (lists become typed tuples)."""
    value = flag_values[name].value
    base, is_tuple = _kind(typing.get_type_hints(cls)[name])
    if not is_tuple or value is None:
        return value
    try:
        return tuple(base(item) for item in value)
    except ValueError as error:
        raise ConfigError(f"--{name}={','.join(value)}: expected {base.__name__} values ({error})") from error


def flag_message(error: Exception) -> str:
    """The message of a config error with `ClassConfig.field=` shown as the flag `--field=`."""
    return _FIELD_NAME.sub(r"--\1=", str(error))
