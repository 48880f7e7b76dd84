"""Command-line flags generated from config dataclasses, for the entry modules.

Each field of a `tfrec.config.Config` dataclass becomes a flag of the same
name: its type follows the field's annotation (bool, int, float, str, a tuple
as a comma-separated list, `Optional` of these), a field in the class'
`CHOICES` becomes an enum, and its help text is the field's entry in the
class docstring's "Attributes:" section. Nothing here runs at import: only
the entry modules (`tfrec.train`, `tfrec.evaluate`, `tfrec.data_tool`, ...)
call `define_flags`, on the `FlagValues` they parse, and `run`, which
answers `--help` with the command's flags grouped by the config class they
set (`config_groups`) after the command's own (`help_text`), exit status 0,
refuses stray arguments, and shows a config error with the flag it names.

Example:

>>> from absl import flags
>>> from tfrec.training import TrainConfig
>>> values = flags.FlagValues()
>>> define_flags(TrainConfig, values)
>>> _ = values(["prog", "--epochs=3", "--eval_ks=5,20"])
>>> from_flags(TrainConfig, values).eval_ks
(5, 20)
"""

import contextlib
import dataclasses
import os
import re
import sys
import textwrap
import types
import typing
from typing import Callable, Iterator, Optional, Sequence

from absl import app, flags

from tfrec.config import ConfigError

_DEFINE = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, float: flags.DEFINE_float, str: flags.DEFINE_string}
_ATTRIBUTE = re.compile(r"^ {8}(\w+): (.*)$")
_CONTINUATION = re.compile(r"^ {12}(\S.*)$")
_FIELD_NAME = re.compile(r"\b[A-Z]\w*(?:Config|Options)\.(\w+)=")
_FIELD_PREFIX = re.compile(r"\b[A-Z]\w*(?:Config|Options)\.\w+: ")
_PYTHON_EXAMPLE = re.compile(r"\n\s*Examples?:\s*\n\s*>>>")
HELP = ("--help", "-help", "-h", "-?", "--helpshort", "-helpshort")
HELPFULL = ("--helpfull", "-helpfull")
COMMON_FLAGS = ("Every command also reads --flagfile=FILE (flags from FILE, one a line), -v/--verbosity=N (0: "
                "tfrec's INFO logs, 1: TensorFlow's too, -1: warnings only) and --helpfull (every flag, absl's and "
                "TensorFlow's too).")

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
    with named_as_flags():
        return cls(**values).validate()


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
    """The message of a config error with `ClassConfig.field=` (or `ClassOptions.field=`) shown as `--field=`."""
    return _FIELD_NAME.sub(r"--\1=", str(error))


@contextlib.contextmanager
def named_as_flags(*also: type) -> Iterator[None]:
    """Re-raises a `ConfigError` (or one of the types `also`) escaping the block as a `ConfigError`
    naming flags (`flag_message`): for the functions of an entry module that read its flags.

    >>> with named_as_flags():
    ...     raise ConfigError("TrainConfig.epochs=0: expected a value >= 1")
    Traceback (most recent call last):
    tfrec.config.ConfigError: --epochs=0: expected a value >= 1
    """
    try:
        yield
    except (ConfigError, *also) as error:
        raise ConfigError(flag_message(error)) from error


def defined(define: Callable, flag_values: flags.FlagValues = flags.FLAGS) -> list:
    """Runs `define(flag_values)`; returns the names of the flags it defined, in order.

    >>> values = flags.FlagValues()
    >>> defined(lambda v: flags.DEFINE_string("run_dir", None, "Run directory.", flag_values=v), values)
    ['run_dir']
    """
    before = set(flag_values)
    define(flag_values)
    return [name for name in flag_values if name not in before and flag_values[name].name == name]


def config_groups(classes: Sequence[type], flag_values: flags.FlagValues = flags.FLAGS) -> list:
    """One `(title, flag names)` help group per config class, fields in their order ("data flags (DataConfig)").

    A field two classes share (one flag sets both) is listed under the first.
    """
    groups, listed = [], set()
    for cls in classes:
        names = [f.name for f in dataclasses.fields(cls) if f.name in flag_values and f.name not in listed]
        listed.update(names)
        groups.append((f"{cls.__name__.removesuffix('Config').lower()} flags ({cls.__name__})", names))
    return groups


def help_groups(title: str, names: Sequence[str], classes: Sequence[type] = (),
                flag_values: flags.FlagValues = flags.FLAGS) -> list:
    """The help groups of a command: `names` (those not fields of `classes`) under `title`, then `config_groups`."""
    fields = {f.name for cls in classes for f in dataclasses.fields(cls)}
    return [(title, [name for name in names if name not in fields]), *config_groups(classes, flag_values)]


def _flag_help(flag):
    """`--name: help (default: value)`, wrapped; the `ClassConfig.field: ` prefix is the group's title."""
    name = f"--[no]{flag.name}" if flag.boolean else f"--{flag.name}"
    default = f" (default: {flag.default_as_str})" if flag.default_as_str else ""
    return textwrap.fill(f"{name}: {_FIELD_PREFIX.sub('', flag.help, count=1)}{default}", width=100,
                         initial_indent="  ", subsequent_indent="      ", break_long_words=False,
                         break_on_hyphens=False)


def help_text(doc: str, groups: Sequence[tuple], flag_values: flags.FlagValues = flags.FLAGS) -> str:
    """A command's `--help`: `doc` (but a Python example), the help of each `(title, flag names)` group, `COMMON_FLAGS`."""
    parts = [_PYTHON_EXAMPLE.split(doc, maxsplit=1)[0].strip()]
    parts += [f"{title}:\n" + "\n".join(_flag_help(flag_values[name]) for name in names)
              for title, names in groups if names]
    parts.append(textwrap.fill(COMMON_FLAGS, width=100))
    return "\n\n".join(parts) + "\n"


def run(main: Callable, groups: Sequence[tuple], doc: Optional[str] = None, errors: tuple = (),
        arguments: bool = False) -> None:
    """`absl.app.run(main)`, with `--help` printing `help_text(doc, groups)` and exit status 0, and a
    `UsageError` or one of `errors` raised by `main` printed as one line `COMMAND: error: MESSAGE`
    (exit status 1), a config field in MESSAGE named as its flag (`flag_message`).

    `--help` (`-h`, `-?`, `--helpshort`) and `--helpfull` (absl's list of
    every flag) are answered before the flags are parsed, with exit status 0
    (absl's own exit 1). `doc` defaults to the `__main__` module's docstring.
    Arguments other than flags are refused ("unexpected arguments") unless
    `arguments`: `main(argv)` then reads them from `argv[1:]`.

    Example, the last lines of an entry module:

        if __name__ == "__main__":
            names = config_flags.defined(define_flags)
            config_flags.run(main, config_flags.help_groups("export flags", names), errors=(ConfigError,))
    """
    def parse(argv):
        options = argv[1:argv.index("--")] if "--" in argv else argv[1:]
        if any(option in HELP for option in options):
            print(help_text(doc if doc is not None else sys.modules["__main__"].__doc__ or "", groups), end="")
            sys.exit(0)
        if any(option in HELPFULL for option in options):
            app.usage(writeto_stdout=True)
            sys.exit(0)
        return app.parse_flags_with_usage(argv)

    def guarded(argv):
        # absl answers a UsageError with the whole flag list: one line naming the problem is clearer.
        try:
            if len(argv) > 1 and not arguments:
                raise app.UsageError(f"unexpected arguments: {argv[1:]}")
            return main(argv)
        except (app.UsageError, *errors) as error:
            command = getattr(sys.modules["__main__"].__spec__, "name", None) or os.path.basename(argv[0])
            sys.exit(f"{command}: error: {flag_message(error)}")

    app.run(guarded, flags_parser=parse)
