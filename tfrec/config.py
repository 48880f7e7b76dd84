"""The base of tfrec's config dataclasses, and the error their checks raise.

`DataConfig`, `ModelConfig` and `TrainConfig` (and the export and server
options, `tfrec.exporting.ExportOptions` and `tfrec.server.server.ServerOptions`)
are plain dataclasses deriving from `Config`: a dict round trip (`to_dict` /
`from_dict`, what run directories store), `replace`, and `validate()`, whose
`ConfigError` names the field as `ClassName.field=value`. `ConfigError` is
the one error of every invalid option or configuration file. The command
lines define one flag per field under the field's name (`tfrec.config_flags`)
and show the same message with `--field=value`. A field removed with its
feature is listed in `REMOVED`: a saved config holding it loads when its value
is what the code now always does, and is refused otherwise.

Example:

>>> @dataclasses.dataclass
... class Sizes(Config):
...     batch_size: int = 32
...     def validate(self):
...         self.check_range("batch_size", minimum=1)
...         return self
>>> Sizes(batch_size=0).validate()
Traceback (most recent call last):
tfrec.config.ConfigError: Sizes.batch_size=0: expected a value >= 1
"""

import dataclasses
from typing import Any, ClassVar


class ConfigError(ValueError):
    """A config value, or its combination with the data, cannot work."""


def require(condition: bool, message: str) -> None:
    """Raises `ConfigError(message)` unless `condition`."""
    if not condition:
        raise ConfigError(message)


class Config:
    """Mixin of the config dataclasses.

    `CHOICES` maps a field to its allowed values (checked by `check_choices`,
    and offered as an enum by the command lines).
    """

    CHOICES: ClassVar[dict] = {}
    REMOVED: ClassVar[dict] = {}
    """Fields of earlier versions, removed with their feature: {field: (the values a saved config may hold, i.e.
    what the code now always does, or None for any value; the feature, as the error names it)}."""

    def name(self, field: str) -> str:
        """`ClassName.field=value`, as errors show it."""
        return f"{type(self).__name__}.{field}={getattr(self, field)!r}"

    def check_choices(self) -> None:
        """Raises `ConfigError` for the first field outside its `CHOICES`."""
        for field, allowed in self.CHOICES.items():
            require(getattr(self, field) in allowed, f"{self.name(field)}: expected one of {list(allowed)}")

    def check_range(self, field: str, minimum=None, below=None, above=None) -> None:
        """Raises `ConfigError` unless `minimum <= value`, `value < below` and `value > above`."""
        value = getattr(self, field)
        if minimum is not None:
            require(value >= minimum, f"{self.name(field)}: expected a value >= {minimum}")
        if above is not None:
            require(value > above, f"{self.name(field)}: expected a value > {above}")
        if below is not None:
            require(value < below, f"{self.name(field)}: expected a value < {below}")

    def validate(self):
        """Raises `ConfigError` naming the first invalid field; returns self."""
        self.check_choices()
        return self

    def to_dict(self) -> dict:
        """A JSON-serialisable dict of all fields (tuples become lists)."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items()}

    @classmethod
    def without_removed(cls, values: dict[str, Any]) -> dict[str, Any]:
        """`values` (a saved config) without its `REMOVED` fields.

        Raises:
            ConfigError: naming the first removed field whose value needs the removed feature.
        """
        for field, (allowed, feature) in cls.REMOVED.items():
            value = values.get(field)
            require(field not in values or allowed is None or value in allowed,
                    f"{cls.__name__}.{field}={value!r} in a saved config: {feature} was removed from tfrec, "
                    "so a run trained with it can be neither loaded nor resumed: retrain it")
        return {key: value for key, value in values.items() if key not in cls.REMOVED}

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        """Builds a config from a dict; unknown keys raise `ConfigError` naming them, and so do removed
        fields whose value needs their feature (`without_removed`; other removed fields are dropped)."""
        values = cls.without_removed(values)
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        require(not unknown, f"{cls.__name__}: unknown fields {unknown}; known fields are {sorted(known)}")
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in values.items()})

    def replace(self, **changes):
        """A copy with `changes` applied (`dataclasses.replace`)."""
        return dataclasses.replace(self, **changes)
