"""Serves exported SavedModels over TF Serving's gRPC API (and its REST API with `--rest_api_port`).

Two back ends, one set of flags:

* `--server=embedded`: the in-process Python server of `tfrec.server`
  (PredictionService Predict/GetModelMetadata, ModelService, gRPC health;
  with `--rest_api_port`, TF Serving's REST API: model status, metadata and
  `:predict`, plus the Prometheus metrics a `--monitoring_config_file`
  enables).
* `--server=tfserving`: execs `tensorflow_model_server` with the same model
  configuration, poll interval, port and batching/monitoring files.
* `--server=auto` (default): `tensorflow_model_server` when it is on PATH
  and the flags allow it (it binds every interface and accepts config reloads
  from any client, so it runs only with an explicit `--host=0.0.0.0` and none
  of the embedded server's access options), otherwise the embedded server.

The embedded server binds loopback unless `--host` says otherwise, refuses
`HandleReloadConfigRequest` unless `--allow_config_reload` (and then only for
base paths inside `--model_root`), checks a bearer token with
`--auth_token_file`, and speaks TLS with `--ssl_cert` and `--ssl_key`; the
REST port, on the same `--host`, shares the token (model status excepted, for
health checkers) and the TLS files. A SavedModel is code: serve only exports
from a trusted place.

Examples:

    python -m tfrec.serve --model_name=retrieval --model_base_path=exports/retrieval --port=8500
    python -m tfrec.serve --model_name=retrieval --model_base_path=exports/retrieval --rest_api_port=8501 \
        --monitoring_config_file=serving/monitoring.config
    python -m tfrec.serve --model_config_file=serving/models.config --file_system_poll_wait_seconds=5
"""

import os
import shutil
import signal
import sys
import threading

from absl import app, flags, logging

from tfrec import config_flags
from tfrec.config import ConfigError
from tfrec.server import config as config_lib
from tfrec.server import protos

FLAGS = flags.FLAGS
LOOPBACK = "127.0.0.1"
ANY_INTERFACE = ("0.0.0.0", "::", "[::]")


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the flags of `python -m tfrec.serve` in `flag_values`."""
    flags.DEFINE_enum(
        "server", "auto", ["auto", "embedded", "tfserving"],
        "auto: tensorflow_model_server if on PATH, else the embedded server; embedded: the tfrec.server "
        "Python server; tfserving: exec tensorflow_model_server with the same configuration.", flag_values=flag_values)
    flags.DEFINE_string("tensorflow_model_server", "tensorflow_model_server", "TF Serving binary name or path.", flag_values=flag_values)
    flags.DEFINE_string(
        "host", LOOPBACK,
        "Interface the embedded server binds. tensorflow_model_server always binds every interface and accepts "
        "config reloads from any client: it runs only with an explicit --host=0.0.0.0.", flag_values=flag_values)
    flags.DEFINE_bool(
        "allow_config_reload", False,
        "Embedded server: accept ModelService.HandleReloadConfigRequest, for base paths inside --model_root only "
        "(a SavedModel is code: serve only directories you trust).", flag_values=flag_values)
    flags.DEFINE_string("model_root", None, "With --allow_config_reload: the directory reloaded base paths must be "
                        "inside.", flag_values=flag_values)
    flags.DEFINE_string("auth_token_file", None, "Embedded server: file holding a bearer token every RPC but the "
                        "health check must carry (metadata 'authorization: Bearer <token>'; on the REST port, the "
                        "header 'Authorization: Bearer <token>' on every route but model status).",
                        flag_values=flag_values)
    flags.DEFINE_string("ssl_cert", None, "Embedded server: PEM certificate (chain); with --ssl_key the ports speak "
                        "TLS only (the REST port HTTPS).", flag_values=flag_values)
    flags.DEFINE_string("ssl_key", None, "Embedded server: PEM private key of --ssl_cert.", flag_values=flag_values)
    flags.DEFINE_integer("port", 8500, "gRPC port (0: a free port, logged).", lower_bound=0, upper_bound=65535,
                         flag_values=flag_values)
    flags.DEFINE_string("model_config_file", None, "Text-format tensorflow.serving.ModelServerConfig file.", flag_values=flag_values)
    flags.DEFINE_string("model_name", None, "Name of the single model to serve (with --model_base_path).", flag_values=flag_values)
    flags.DEFINE_string("model_base_path", None, "Directory holding the model's numbered version directories.", flag_values=flag_values)
    flags.DEFINE_float(
        "file_system_poll_wait_seconds", 1.0,
        "Seconds between scans of the base paths for new versions; 0 scans once at start.", lower_bound=0, flag_values=flag_values)
    flags.DEFINE_integer("max_workers", 16, "Embedded server: model executions at once (threads running Predict, "
                         "metadata, status and reload calls; more wait).", lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer(
        "max_concurrent_rpcs", 256, "Embedded server: RPCs admitted at once, including calls still receiving their "
        "request; more get RESOURCE_EXHAUSTED.", lower_bound=1, flag_values=flag_values)
    flags.DEFINE_float(
        "grpc_read_timeout_seconds", 30.0, "Embedded server: how long a gRPC call may wait for its request message "
        "before it ends with DEADLINE_EXCEEDED.", lower_bound=0.001, flag_values=flag_values)
    flags.DEFINE_integer(
        "max_message_bytes", 4 << 20,
        "Embedded server: largest request/response in bytes; larger ones get RESOURCE_EXHAUSTED (requests up to twice "
        "this are still read so the error can name the largest inputs).",
        lower_bound=1024, flag_values=flag_values)
    flags.DEFINE_float("grace_seconds", 5.0, "Embedded server: how long shutdown waits for running RPCs.", lower_bound=0, flag_values=flag_values)
    flags.DEFINE_bool(
        "enable_batching", False,
        "Batch concurrent requests on the server side (parameters from --batching_parameters_file, else TF "
        "Serving's defaults).", flag_values=flag_values)
    flags.DEFINE_string("batching_parameters_file", None, "Text-format tensorflow.serving.BatchingParameters file.", flag_values=flag_values)
    flags.DEFINE_string(
        "monitoring_config_file", None,
        "Text-format tensorflow.serving.MonitoringConfig file; with prometheus_config { enable: true } the REST port "
        "serves Prometheus metrics at its path (default /monitoring/prometheus/metrics), so it needs --rest_api_port.",
        flag_values=flag_values)
    flags.DEFINE_float(
        "rest_read_timeout_seconds", 30.0, "Embedded server: how long a REST request may take to arrive (request "
        "line, headers and body together): 408 after it.", lower_bound=0.001, flag_values=flag_values)
    flags.DEFINE_integer("rest_max_connections", 1024, "Embedded server: open REST connections; one beyond gets 503.",
                         lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("rest_listen_backlog", 1024, "Embedded server: REST connections waiting to be accepted.",
                         lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer(
        "rest_api_port", 0,
        "Port of TF Serving's HTTP/REST API (model status, metadata, :predict; also the Prometheus metrics), on "
        "--host for the embedded server; 0 = off (TF Serving's documentation uses 8501).", lower_bound=0,
        upper_bound=65535, flag_values=flag_values)


def _model_config(values):
    if values.model_config_file:
        if values.model_name or values.model_base_path:
            raise app.UsageError("give --model_config_file or --model_name/--model_base_path, not both")
        return config_lib.read_model_server_config(values.model_config_file)
    if not (values.model_name and values.model_base_path):
        raise app.UsageError("give --model_config_file, or both --model_name and --model_base_path")
    return config_lib.single_model_config(values.model_name, os.path.abspath(values.model_base_path))


def _auth_token(path):
    """The token in `path` (surrounding whitespace dropped); UsageError naming the file if it is unreadable,
    empty, or not one printable-ASCII token."""
    try:
        with open(path, "rb") as f:
            token = f.read().strip().decode("latin-1")  # one character per byte, so a bad byte is named
    except OSError as e:
        raise app.UsageError(f"--auth_token_file={path}: cannot read it ({e.strerror})") from None
    problem = config_lib.bearer_token_problem(token)
    if problem is not None:
        raise app.UsageError(f"--auth_token_file={path}: {problem}")
    return token


def _tfserving_refusal(values):
    """Why the real binary cannot serve as the flags ask (it binds every interface, and has none of the
    embedded server's access controls), or None."""
    if values.host not in ANY_INTERFACE:
        return (f"--host={values.host}: tensorflow_model_server binds every interface and accepts config reloads "
                "from any client; run it so only with --host=0.0.0.0 (behind your own network policy)")
    for name in ("allow_config_reload", "model_root", "auth_token_file", "ssl_cert", "ssl_key"):
        if values[name].value:
            return f"--{name} is an option of the embedded server; tensorflow_model_server has no equivalent"
    return None


def tfserving_argv(binary: str, values: flags.FlagValues) -> list:
    """The `tensorflow_model_server` command line equivalent to the parsed `values`."""
    argv = [binary, f"--port={values.port}"]
    if values.model_config_file:
        argv.append(f"--model_config_file={os.path.abspath(values.model_config_file)}")
    else:
        argv += [f"--model_name={values.model_name}", f"--model_base_path={os.path.abspath(values.model_base_path)}"]
    poll = values.file_system_poll_wait_seconds
    argv.append(f"--file_system_poll_wait_seconds={max(1, round(poll)) if poll > 0 else 0}")
    if values.enable_batching:
        argv.append("--enable_batching=true")
    if values.batching_parameters_file:
        argv.append(f"--batching_parameters_file={os.path.abspath(values.batching_parameters_file)}")
    if values.monitoring_config_file:
        argv.append(f"--monitoring_config_file={os.path.abspath(values.monitoring_config_file)}")
    if values.rest_api_port:
        argv.append(f"--rest_api_port={values.rest_api_port}")
    return argv


def _serve_embedded(values, model_config, batching_parameters, monitoring_config):
    from tfrec.server.server import Server, ServerOptions  # imports TensorFlow

    if values.enable_batching and batching_parameters is None:
        batching_parameters = protos.BatchingParameters()  # TF Serving's defaults
    elif not values.enable_batching and batching_parameters is not None:
        logging.warning("--batching_parameters_file is ignored without --enable_batching (as in TF Serving)")
    if values.allow_config_reload and not (values.model_root and os.path.isdir(values.model_root)):
        raise app.UsageError(f"--allow_config_reload needs --model_root, an existing directory (got "
                             f"{values.model_root!r}): reloaded base paths must be inside it")
    server = Server(
        ServerOptions(
            model_config=model_config,
            host=values.host,
            port=values.port,
            poll_wait_seconds=values.file_system_poll_wait_seconds,
            max_workers=values.max_workers,
            max_concurrent_rpcs=values.max_concurrent_rpcs,
            grpc_read_timeout_seconds=values.grpc_read_timeout_seconds,
            max_message_bytes=values.max_message_bytes,
            grace_seconds=values.grace_seconds,
            batching_parameters=batching_parameters,
            allow_config_reload=values.allow_config_reload,
            model_root=values.model_root,
            auth_token=_auth_token(values.auth_token_file) if values.auth_token_file else None,
            ssl_cert=values.ssl_cert,
            ssl_key=values.ssl_key,
            rest_api_port=values.rest_api_port or None,
            rest_read_timeout_seconds=values.rest_read_timeout_seconds,
            rest_max_connections=values.rest_max_connections,
            rest_listen_backlog=values.rest_listen_backlog,
            monitoring_config=monitoring_config,
        )
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    server.start()
    while not stop.wait(1.0):
        pass
    server.stop()


def serve(values: flags.FlagValues) -> None:
    """Serves as the parsed `values` say (execs `tensorflow_model_server`, or runs the embedded server)."""
    try:
        model_config = _model_config(values)
        batching_parameters = monitoring_config = None
        if values.batching_parameters_file:
            batching_parameters = config_lib.read_batching_parameters(values.batching_parameters_file)
        if values.monitoring_config_file:
            monitoring_config = config_lib.read_monitoring_config(values.monitoring_config_file)
    except ConfigError as e:
        logging.error("%s", e)
        sys.exit(f"Invalid serving configuration: {e}")
    if monitoring_config is not None and monitoring_config.prometheus_config.enable and not values.rest_api_port:
        raise app.UsageError(f"--monitoring_config_file={values.monitoring_config_file} enables Prometheus metrics, "
                             "which are served on the REST port: give --rest_api_port too")
    binary = shutil.which(values.tensorflow_model_server)
    if values.server == "tfserving" and binary is None:
        sys.exit(f"--server=tfserving: {values.tensorflow_model_server} is not on PATH")
    refusal = _tfserving_refusal(values)
    if values.server == "tfserving" and refusal:
        sys.exit(f"--server=tfserving: {refusal} (or use --server=embedded)")
    if values.server == "tfserving" or (values.server == "auto" and binary is not None and not refusal):
        argv = tfserving_argv(binary, values)
        logging.info("Starting TF Serving: %s", " ".join(argv))
        os.execv(binary, argv)
    if values.server == "auto" and binary is not None:
        logging.warning("%s is on PATH, but %s: serving with the embedded server", binary, refusal)
    try:
        _serve_embedded(values, model_config, batching_parameters, monitoring_config)
    except ConfigError as e:
        sys.exit(f"Invalid serving configuration: {config_flags.flag_message(e)}")


def main(argv):
    serve(FLAGS)


if __name__ == "__main__":
    from tfrec import quiet

    quiet.configure(__name__)  # before TensorFlow is imported
    config_flags.run(main, config_flags.help_groups("serving flags", config_flags.defined(define_flags)))
