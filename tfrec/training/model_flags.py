"""Command-line flags for every `ModelConfig` field, under the field's name.

The flag type follows the field's default (string, integer, float, bool) and
its help text comes from the field's entry in the `ModelConfig` docstring.

Example:

>>> from absl import flags
>>> FLAGS = flags.FLAGS
>>> FLAGS(["prog", "--task=ranking", "--embedding_dim=32"])
>>> model_config(FLAGS).embedding_dim
32
"""

import dataclasses
import re

from absl import flags

from tfrec.models import ModelConfig
from tfrec.training.checks import ConfigError

_DEFINE = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, float: flags.DEFINE_float, str: flags.DEFINE_string}
_ATTRIBUTE = re.compile(r"^ {8}(\w+): (.*)$")
_CONTINUATION = re.compile(r"^ {12}(\S.*)$")


def field_help(cls):
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


def define_model_flags(flag_values=flags.FLAGS):
    """Defines one flag per `ModelConfig` field (skipping names already defined)."""
    helps = field_help(ModelConfig)
    for field in dataclasses.fields(ModelConfig):
        if field.name in flag_values:
            continue
        default = field.default
        help_text = f"ModelConfig.{field.name}: {helps.get(field.name, 'see tfrec.models.ModelConfig')}"
        _DEFINE[type(default)](field.name, default, help_text, flag_values=flag_values)


def model_config(flag_values=flags.FLAGS):
    """The validated `ModelConfig` built from the flags.

    Raises:
        ConfigError: naming the invalid field and value.
    """
    values = {field.name: flag_values[field.name].value for field in dataclasses.fields(ModelConfig)}
    try:
        return ModelConfig(**values).validate()
    except ValueError as error:
        raise ConfigError(f"model flags: {error}") from error


define_model_flags()
