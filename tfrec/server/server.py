"""The embedded TF Serving-compatible server: gRPC, and TF Serving's REST API.

Serves, on the gRPC port, `tensorflow.serving.PredictionService`
(`prediction_service`: `Predict`, `GetModelMetadata`; `Classify`, `Regress`
and `MultiInference` answer UNIMPLEMENTED), `tensorflow.serving.ModelService`
(`model_service`: `GetModelStatus`, `HandleReloadConfigRequest`) and the
standard `grpc.health.v1.Health` service (each model name is SERVING once a
version of it is loaded; the overall service "" is SERVING once every
configured model is). With `rest_api_port`, a second port serves TF
Serving's REST API (`tfrec.server.rest`: model status, metadata, `:predict`,
through the same Predict code; aiohttp on the same event loop as gRPC) and, when the monitoring config enables them,
the Prometheus metrics of `tfrec.server.metrics`. Clients written for
`tensorflow_model_server` work unchanged against it.

The gRPC port is a `grpc.aio` server on its own event-loop thread: a call
waiting for its request message holds no thread, only one of the
`max_concurrent_rpcs` slots, and ends with DEADLINE_EXCEEDED after
`grpc_read_timeout_seconds`; model work (every servicer method but the health
check) runs on a pool of `max_workers` threads (`grpc_interceptors`,
`grpc_status`). So slow or stalled clients neither block other Predicts nor
the health check.

Example:

>>> options = ServerOptions(model_config=config.single_model_config("tiny", "/tmp/tiny"), port=8500,  # doctest: +SKIP
...                         rest_api_port=8501)
>>> server = Server(options); server.start()                                                          # doctest: +SKIP
>>> server.stop()                                                                                    # doctest: +SKIP
"""

import asyncio
import dataclasses
import threading
from concurrent import futures
from typing import Optional

import grpc
from absl import logging
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from tfrec.config import Config, ConfigError, require
from tfrec.server.batching import BatchScheduler
from tfrec.server.config import bearer_token_problem
from tfrec.server.grpc_interceptors import BearerToken, ReadTimeout
from tfrec.server.metrics import DEFAULT_PATH, ServingMetrics
from tfrec.server.model_manager import ModelManager
from tfrec.server.model_service import ModelService
from tfrec.server.prediction_service import PredictionService
from tfrec.server.rest import RestApiServer

# Requests up to this multiple of --max_message_bytes are received so the error can name
# the oversized input; larger ones are refused by the gRPC transport itself.
_TRANSPORT_LIMIT_FACTOR = 2


@dataclasses.dataclass
class ServerOptions(Config):
    """Configuration of the embedded server (the `tfrec.serve` flags), checked on construction.

    Attributes:
        model_config: checked `ModelServerConfig`.
        host: interface to bind ("127.0.0.1" keeps it on loopback).
        port: gRPC port (0 picks a free one; `Server.port` tells which).
        poll_wait_seconds: seconds between base-path scans (0: scan once).
        max_workers: gRPC model executions at once (threads running Predict,
            metadata, status and reload calls; more wait in a queue; the REST
            port has its own pool of as many threads).
        max_concurrent_rpcs: RPCs admitted at once (running, queued, or still
            receiving their request); more get RESOURCE_EXHAUSTED.
        grpc_read_timeout_seconds: how long a gRPC call may wait for its
            request message before it ends with DEADLINE_EXCEEDED.
        max_message_bytes: largest request and response, in bytes.
        grace_seconds: how long shutdown waits for running RPCs.
        batching_parameters: `BatchingParameters` to batch requests on the
            server side (TF Serving's --enable_batching), or None.
        allow_config_reload: accept `HandleReloadConfigRequest`. Off by
            default: a reload names the directories the server loads
            SavedModels from, and a SavedModel is code.
        model_root: with `allow_config_reload`, the directory every reloaded
            base path must be inside (required then).
        auth_token: when set, every RPC but the health check must carry the
            metadata `authorization: Bearer <auth_token>`.
        ssl_cert, ssl_key: PEM files of the server's certificate (chain) and
            private key: the ports then speak TLS only. Both or neither.
        rest_api_port: port of TF Serving's REST API on `host` (0 picks a free
            one; `Server.rest_port` tells which), or None for no REST API. It
            shares `auth_token` (not needed for model status), the TLS files,
            `max_message_bytes` and `max_concurrent_rpcs`.
        rest_read_timeout_seconds: how long a REST request may take to arrive
            (request line, headers and body together, not per read): 408 and
            the connection closes after it; an idle keep-alive connection
            closes after twice it.
        rest_max_connections: open REST connections; one beyond gets 503.
        rest_listen_backlog: REST connections waiting to be accepted.
        monitoring_config: checked `protos.MonitoringConfig`, or None; when its
            `prometheus_config` is enabled, the REST port serves the metrics at
            its path (default "/monitoring/prometheus/metrics").
    """

    model_config: object
    host: str = "127.0.0.1"
    port: int = 8500
    poll_wait_seconds: float = 1.0
    max_workers: int = 16
    max_concurrent_rpcs: int = 256
    grpc_read_timeout_seconds: float = 30.0
    max_message_bytes: int = 4 << 20
    grace_seconds: float = 5.0
    batching_parameters: object = None
    allow_config_reload: bool = False
    model_root: Optional[str] = None
    auth_token: Optional[str] = None
    ssl_cert: Optional[str] = None
    ssl_key: Optional[str] = None
    rest_api_port: Optional[int] = None
    rest_read_timeout_seconds: float = 30.0
    rest_max_connections: int = 1024
    rest_listen_backlog: int = 1024
    monitoring_config: object = None

    @property
    def metrics_path(self) -> Optional[str]:
        """Path of the Prometheus scrape page, or None when the monitoring config does not enable it."""
        prometheus = self.monitoring_config.prometheus_config if self.monitoring_config is not None else None
        return (prometheus.path or DEFAULT_PATH) if prometheus is not None and prometheus.enable else None

    def __post_init__(self):
        self.validate()  # options that cannot work never reach a server

    def validate(self) -> "ServerOptions":
        """Raises `ConfigError` naming the first field that cannot work (`ServerOptions.port=-1: ...`); returns self."""
        for name in ("port", "rest_api_port"):
            port = getattr(self, name)
            require(port is None or 0 <= port <= 65535,
                    f"{self.name(name)}: expected a TCP port in 0..65535 (0: a free one)")
        for name in ("max_workers", "max_concurrent_rpcs", "max_message_bytes", "rest_max_connections",
                     "rest_listen_backlog"):
            require(getattr(self, name) >= 1, f"{self.name(name)}: expected at least 1")
        for name in ("grpc_read_timeout_seconds", "rest_read_timeout_seconds"):
            require(getattr(self, name) > 0, f"{self.name(name)}: expected a positive number of seconds")
        problem = bearer_token_problem(self.auth_token) if self.auth_token is not None else None
        require(problem is None, f"ServerOptions.auth_token: {problem}")
        require(bool(self.ssl_cert) == bool(self.ssl_key),
                f"{self.name('ssl_cert')} and ssl_key={self.ssl_key!r}: TLS needs both the certificate and its "
                "private key")
        require(not self.allow_config_reload or self.model_root,
                f"{self.name('allow_config_reload')} needs model_root: the directory reloaded base paths must be "
                "inside")
        require(self.metrics_path is None or self.rest_api_port is not None,
                f"{self.name('rest_api_port')}: monitoring_config enables Prometheus metrics, which are served on "
                "the REST port: set rest_api_port")
        return self


def _server_credentials(cert_path, key_path):
    """TLS credentials from PEM files; ConfigError naming a file that cannot be read or is not PEM."""
    contents = {}
    for what, path, marker in (("ssl_cert", cert_path, b"CERTIFICATE"), ("ssl_key", key_path, b"PRIVATE KEY")):
        try:
            with open(path, "rb") as f:
                contents[what] = f.read()
        except OSError as e:
            raise ConfigError(f"{what}={path!r}: cannot read it ({e.strerror})") from None
        if b"-----BEGIN" not in contents[what] or marker not in contents[what]:
            raise ConfigError(f"{what}={path!r}: expected a PEM file holding a {marker.decode()}")
    return grpc.ssl_server_credentials([(contents["ssl_key"], contents["ssl_cert"])])


class Server:
    """The embedded model server: gRPC services + model manager + health.

    Args:
        options: `ServerOptions`.
    """

    def __init__(self, options: ServerOptions):
        self.options = options
        self._health = health.aio.HealthServicer()
        self._serving = {}
        self._overall = False
        self._health_lock = threading.Lock()
        self.scheduler = None
        if options.batching_parameters is not None:
            self.scheduler = BatchScheduler.from_parameters(options.batching_parameters)
        self.metrics = ServingMetrics(model_names=lambda: self.manager.model_names)
        self.manager = ModelManager(options.model_config, on_change=self._set_health, scheduler=self.scheduler,
                                    on_event=self.metrics.model_event)
        self._executor = futures.ThreadPoolExecutor(max_workers=options.max_workers, thread_name_prefix="rpc")
        prediction = PredictionService(self.manager, options.max_message_bytes, self.metrics)
        models = ModelService(self.manager, options.allow_config_reload, options.model_root)
        self._loop = asyncio.new_event_loop()
        self._loop.set_default_executor(self._executor)  # where the gRPC methods run the model work
        self._loop_thread = threading.Thread(target=self._loop.run_forever, name="grpc-loop", daemon=True)
        self._loop_thread.start()
        try:
            self._grpc, self.port = self._in_loop(self._create_grpc(prediction, models))
            self._in_loop(self._health.set("", health_pb2.HealthCheckResponse.NOT_SERVING))
            self._rest = None
            if options.rest_api_port is not None:
                self._rest = RestApiServer(
                    prediction, models, self.metrics, host=options.host, port=options.rest_api_port,
                    max_message_bytes=options.max_message_bytes, max_concurrent_requests=options.max_concurrent_rpcs,
                    max_workers=options.max_workers, request_deadline_seconds=options.rest_read_timeout_seconds,
                    max_connections=options.rest_max_connections, backlog=options.rest_listen_backlog,
                    auth_token=options.auth_token,
                    ssl_cert=options.ssl_cert, ssl_key=options.ssl_key, metrics_path=options.metrics_path)
        except BaseException:
            self._close_loop()
            raise
        self._stopped = False

    def _in_loop(self, coroutine):
        """Runs `coroutine` on the gRPC event loop and returns its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _close_loop(self):
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._loop_thread.join()
        self._loop.close()
        self._executor.shutdown(cancel_futures=True)

    async def _create_grpc(self, prediction, models):
        options = self.options
        interceptors = [ReadTimeout(options.grpc_read_timeout_seconds)]
        if options.auth_token:
            interceptors.append(BearerToken(options.auth_token))
        server = grpc.aio.server(
            interceptors=interceptors,
            maximum_concurrent_rpcs=options.max_concurrent_rpcs,
            options=[
                ("grpc.max_receive_message_length", options.max_message_bytes * _TRANSPORT_LIMIT_FACTOR),
                ("grpc.max_send_message_length", options.max_message_bytes),
            ],
        )
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(prediction, server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(models, server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        address = f"{options.host}:{options.port}"
        try:
            if options.ssl_cert:
                port = server.add_secure_port(address, _server_credentials(options.ssl_cert, options.ssl_key))
            else:
                port = server.add_insecure_port(address)
        except RuntimeError as e:
            raise OSError(f"cannot listen on {address}: {e}") from e
        return server, port

    @property
    def rest_port(self) -> Optional[int]:
        """The REST API's bound port, or None without one."""
        return self._rest.port if self._rest is not None else None

    def _set_health(self, name, serving):
        status = health_pb2.HealthCheckResponse
        with self._health_lock:
            if self._serving.get(name) != serving:
                self._in_loop(self._health.set(name, status.SERVING if serving else status.NOT_SERVING))
            self._serving[name] = serving
            names = self.manager.model_names
            overall = bool(names) and all(self._serving.get(n) for n in names)
            if overall != self._overall:
                self._in_loop(self._health.set("", status.SERVING if overall else status.NOT_SERVING))
            self._overall = overall

    def start(self) -> None:
        """Starts listening, then loads the models in the background (health turns SERVING)."""
        self._in_loop(self._grpc.start())
        logging.info(
            "Running gRPC ModelServer at %s:%d (models: %s)",
            self.options.host, self.port, ", ".join(self.manager.model_names),
        )
        if self._rest is not None:
            self._in_loop(self._rest.start())
            metrics = self.options.metrics_path
            logging.info("Running REST API at %s://%s:%d%s", self._rest.scheme, self.options.host, self._rest.port,
                         f" (Prometheus metrics at {metrics})" if metrics else "")
        self.manager.start(self.options.poll_wait_seconds)

    def stop(self) -> None:
        """Graceful shutdown: health NOT_SERVING, close the REST port, finish running RPCs, unload models."""
        if self._stopped:
            return
        self._stopped = True
        logging.info("Shutting down: finishing running requests (up to %.1f s)", self.options.grace_seconds)
        self._in_loop(self._health.enter_graceful_shutdown())
        if self._rest is not None:
            self._in_loop(self._rest.stop(self.options.grace_seconds))
        self._in_loop(self._grpc.stop(self.options.grace_seconds))
        self.manager.stop()
        if self.scheduler is not None:
            self.scheduler.stop()
        self._close_loop()
        logging.info("Server stopped")
