"""Reads and checks TF Serving's configuration files.

The embedded server reads the same files as `tensorflow_model_server`:
`--model_config_file` (text-format `ModelServerConfig`),
`--batching_parameters_file` (text-format `BatchingParameters`) and
`--monitoring_config_file` (text-format `MonitoringConfig`). Each reader parses
the file with the protobuf message and checks the values the model server
would reject, raising `tfrec.config.ConfigError` naming the file, line or field.
`bearer_token_problem` checks the server's bearer token.

Example:

>>> from tfrec.server import config
>>> cfg = config.single_model_config("retrieval", "/models/retrieval")
>>> cfg.model_config_list.config[0].name
'retrieval'
"""

from typing import Optional

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from tfrec.config import ConfigError
from tfrec.server import protos


def _read_text_proto(path, message, what):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read {what} file {path}: {e.strerror}") from e
    try:
        return text_format.Parse(text, message)
    except text_format.ParseError as e:
        raise ConfigError(
            f"{path}:{e}: not a valid text-format {message.DESCRIPTOR.full_name} ({what})"
        ) from e


def read_model_server_config(path: str) -> model_server_config_pb2.ModelServerConfig:
    """Reads a `--model_config_file`.

    Args:
        path: text-format `tensorflow.serving.ModelServerConfig` file.

    Returns:
        The checked `ModelServerConfig`.

    Raises:
        ConfigError: unreadable file, syntax error (with line:column), or a
            value TF Serving rejects (see `check_model_server_config`).
    """
    cfg = _read_text_proto(path, model_server_config_pb2.ModelServerConfig(), "model config")
    check_model_server_config(cfg, source=path)
    return cfg


def single_model_config(name: str, base_path: str) -> model_server_config_pb2.ModelServerConfig:
    """The config `--model_name=NAME --model_base_path=PATH` stands for (latest version)."""
    cfg = model_server_config_pb2.ModelServerConfig()
    model = cfg.model_config_list.config.add(name=name, base_path=base_path)
    model.model_platform = "tensorflow"
    check_model_server_config(cfg, source="--model_name/--model_base_path")
    return cfg


def check_model_server_config(cfg, source: str = "ModelServerConfig") -> None:
    """Checks a `ModelServerConfig` the way the model server does on load.

    Args:
        cfg: `tensorflow.serving.ModelServerConfig`.
        source: where it came from (a path, a flag, a request), used in messages.

    Raises:
        ConfigError: no model list, a model without name or base_path, a
            duplicated name, a platform other than tensorflow, `latest` with a
            negative num_versions, `specific` without versions, or a version
            label without a positive version.
    """
    if cfg.WhichOneof("config") != "model_config_list":
        raise ConfigError(f"{source}: expected a model_config_list (custom_model_config is not supported)")
    seen = set()
    for i, model in enumerate(cfg.model_config_list.config):
        where = f"{source}: model_config_list.config[{i}]"
        if not model.name:
            raise ConfigError(f"{where}: missing name")
        where = f"{where} (name {model.name!r})"
        if model.name in seen:
            raise ConfigError(f"{where}: duplicated model name")
        seen.add(model.name)
        if not model.base_path:
            raise ConfigError(f"{where}: missing base_path")
        if model.model_platform not in ("", "tensorflow"):
            raise ConfigError(f"{where}: model_platform {model.model_platform!r}; expected 'tensorflow'")
        policy = model.model_version_policy
        choice = policy.WhichOneof("policy_choice")
        if choice == "latest" and policy.latest.num_versions < 0:
            raise ConfigError(f"{where}: latest.num_versions {policy.latest.num_versions}; expected >= 1")
        if choice == "specific" and not policy.specific.versions:
            raise ConfigError(f"{where}: specific policy lists no versions")
        for label, version in model.version_labels.items():
            if version <= 0:
                raise ConfigError(f"{where}: version label {label!r} -> {version}; expected a positive version")
    if not seen:
        raise ConfigError(f"{source}: model_config_list has no model")


def read_batching_parameters(path: str):
    """Reads a `--batching_parameters_file`.

    Args:
        path: text-format `tensorflow.serving.BatchingParameters` file.

    Returns:
        The checked `protos.BatchingParameters`.

    Raises:
        ConfigError: syntax error, a non-positive size/timeout/thread count, or
            allowed_batch_sizes not increasing or not ending at max_batch_size.
    """
    params = _read_text_proto(path, protos.BatchingParameters(), "batching parameters")
    for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
        if params.HasField(name) and getattr(params, name).value <= 0:
            raise ConfigError(f"{path}: {name} is {getattr(params, name).value}; expected > 0")
    if params.HasField("batch_timeout_micros") and params.batch_timeout_micros.value < 0:
        raise ConfigError(f"{path}: batch_timeout_micros is {params.batch_timeout_micros.value}; expected >= 0")
    sizes = list(params.allowed_batch_sizes)
    if sizes:
        if any(b <= a for a, b in zip(sizes, sizes[1:])) or sizes[0] <= 0:
            raise ConfigError(f"{path}: allowed_batch_sizes {sizes} must be positive and increasing")
        if params.HasField("max_batch_size") and sizes[-1] != params.max_batch_size.value:
            raise ConfigError(
                f"{path}: last allowed_batch_sizes entry {sizes[-1]} must equal max_batch_size "
                f"{params.max_batch_size.value}"
            )
    return params


def read_monitoring_config(path: str):
    """Reads a `--monitoring_config_file`.

    Args:
        path: text-format `tensorflow.serving.MonitoringConfig` file.

    Returns:
        The checked `protos.MonitoringConfig`.

    Raises:
        ConfigError: syntax error, or a Prometheus path not starting with "/".
    """
    cfg = _read_text_proto(path, protos.MonitoringConfig(), "monitoring config")
    path_value = cfg.prometheus_config.path
    if path_value and not path_value.startswith("/"):
        raise ConfigError(f"{path}: prometheus_config.path {path_value!r} must start with '/'")
    return cfg


def bearer_token_problem(token: str) -> Optional[str]:
    """Why `token` cannot be a bearer token, or None: it travels in an HTTP header and gRPC metadata, so it
    must be non-empty printable ASCII without spaces (only the offending character is named, never the token).

    Example:

    >>> bearer_token_problem("s3cret"), bearer_token_problem("two words")
    (None, "expected printable ASCII without spaces; character 4 is ' '")
    """
    if not token:
        return "expected a token, got nothing"
    for index, char in enumerate(token, start=1):
        if not 33 <= ord(char) <= 126:
            return f"expected printable ASCII without spaces; character {index} is {ascii(char)}"
    return None
