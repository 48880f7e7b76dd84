"""The embedded TF Serving-compatible server: gRPC, and TF Serving's REST API.

Implements, on the gRPC port, `tensorflow.serving.PredictionService`
(`Predict`, `GetModelMetadata`; `Classify`, `Regress` and `MultiInference`
answer UNIMPLEMENTED), `tensorflow.serving.ModelService` (`GetModelStatus`,
`HandleReloadConfigRequest`) and the standard `grpc.health.v1.Health` service
(each model name is SERVING once a version of it is loaded; the overall
service "" is SERVING once every configured model is). With `rest_api_port`,
a second port serves TF Serving's REST API (`tfrec.server.rest`: model
status, metadata, `:predict`, through the same Predict code) and, when the
monitoring config enables them, the Prometheus metrics of
`tfrec.server.metrics`. Clients written for `tensorflow_model_server` work
unchanged against it.

The gRPC port is a `grpc.aio` server on its own event-loop thread: a call
waiting for its request message holds no thread, only one of the
`max_concurrent_rpcs` slots, and ends with DEADLINE_EXCEEDED after
`grpc_read_timeout_seconds`; model work (every servicer method but the health
check) runs on a pool of `max_workers` threads. So slow or stalled clients
neither block other Predicts nor the health check.

Example:

>>> options = ServerOptions(model_config=config.single_model_config("tiny", "/tmp/tiny"), port=8500,  # doctest: +SKIP
...                         rest_api_port=8501)
>>> server = Server(options); server.start()                                                          # doctest: +SKIP
>>> server.stop()                                                                                    # doctest: +SKIP
"""

import asyncio
import contextlib
import dataclasses
import hmac
import os
import threading
from concurrent import futures
from typing import Callable, Optional

import grpc
from absl import logging
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    model_service_pb2_grpc,
)

from tfrec.client.errors import ServingError
from tfrec.server import config as config_lib
from tfrec.server.batching import BatchScheduler
from tfrec.server.metrics import DEFAULT_PATH, ServingMetrics
from tfrec.server.model_manager import ModelManager
from tfrec.server.rest import RestApiServer
from tfrec.server.servable import DEFAULT_SIGNATURE

# Requests up to this multiple of --max_message_bytes are received so the error can name
# the oversized input; larger ones are refused by the gRPC transport itself.
_TRANSPORT_LIMIT_FACTOR = 2


@dataclasses.dataclass
class ServerOptions:
    """Configuration of the embedded server (the `tfrec.serve` flags).

    Attributes:
        model_config: checked `ModelServerConfig`.
        host: interface to bind ("127.0.0.1" keeps it on loopback).
        port: gRPC port (0 picks a free one; `Server.port` tells which).
        poll_wait_seconds: seconds between base-path scans (0: scan once).
        max_workers: gRPC model executions at once (threads running Predict,
            metadata, status and reload calls; more wait in a queue; the REST
            port has its own threads).
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
        rest_read_timeout_seconds: how long a REST connection may wait for the
            client's bytes before it is closed.
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
    monitoring_config: object = None

    @property
    def metrics_path(self) -> Optional[str]:
        """Path of the Prometheus scrape page, or None when the monitoring config does not enable it."""
        prometheus = self.monitoring_config.prometheus_config if self.monitoring_config is not None else None
        return (prometheus.path or DEFAULT_PATH) if prometheus is not None and prometheus.enable else None

    def __post_init__(self):
        for name in ("port", "rest_api_port"):
            port = getattr(self, name)
            if port is not None and not 0 <= port <= 65535:
                raise config_lib.ConfigError(f"{name}={port}: expected a TCP port in 0..65535 (0: a free one)")
        for name in ("max_workers", "max_concurrent_rpcs", "max_message_bytes"):
            if getattr(self, name) < 1:
                raise config_lib.ConfigError(f"{name}={getattr(self, name)}: expected at least 1")
        for name in ("grpc_read_timeout_seconds", "rest_read_timeout_seconds"):
            if not getattr(self, name) > 0:
                raise config_lib.ConfigError(f"{name}={getattr(self, name)}: expected a positive number of seconds")
        if bool(self.ssl_cert) != bool(self.ssl_key):
            raise config_lib.ConfigError(f"ssl_cert={self.ssl_cert!r} and ssl_key={self.ssl_key!r}: TLS needs both "
                                         "the certificate and its private key")
        if self.allow_config_reload and not self.model_root:
            raise config_lib.ConfigError("allow_config_reload needs model_root: the directory reloaded base "
                                         "paths must be inside")
        if self.metrics_path is not None and self.rest_api_port is None:
            raise config_lib.ConfigError("monitoring_config enables Prometheus metrics, which are served on the "
                                         "REST port: set rest_api_port")


def as_serving_error(error: Exception, what: str) -> ServingError:
    """`error` as the `ServingError` a client receives: itself, INVALID_ARGUMENT for a
    `ConfigError`, else INTERNAL naming `what` failed (with the traceback logged)."""
    if isinstance(error, ServingError):
        return error
    if isinstance(error, config_lib.ConfigError):
        return ServingError(grpc.StatusCode.INVALID_ARGUMENT, str(error))
    logging.error("%s failed", what, exc_info=error)
    return ServingError(grpc.StatusCode.INTERNAL, f"{what} failed: {type(error).__name__}: {error}")


def _rpc(method):
    """The gRPC method for `method(self, request)`: a coroutine running it on the event loop's
    executor (`Server`'s `max_workers` threads), aborting the call with the canonical code of any failure."""

    async def wrapper(self, request, context):
        try:
            return await asyncio.get_running_loop().run_in_executor(None, method, self, request)
        except Exception as e:  # noqa: BLE001 - every failure reaches the client with its canonical code
            error = as_serving_error(e, method.__name__)
        await context.abort(error.code, error.message)

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


def _check_size(message, what, fields, limit):
    size = message.ByteSize()
    if size <= limit:
        return
    parts = sorted(((m.ByteSize(), name) for name, m in fields.items()), reverse=True)
    detail = ", ".join(f"{name!r} {n} bytes" for n, name in parts[:3])
    raise ServingError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"{what} is {size} bytes, more than the server's max_message_bytes={limit}; largest tensors: {detail}",
    )


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """`tensorflow.serving.PredictionService` over a `ModelManager`; `predict` and `metadata`
    also answer the REST API, so both APIs share every check and the metrics.

    Args:
        manager: the `ModelManager`.
        max_message_bytes: largest request and response.
        metrics: `ServingMetrics` counting every call.
    """

    def __init__(self, manager: ModelManager, max_message_bytes: int, metrics: ServingMetrics):
        self._manager = manager
        self._max_bytes = max_message_bytes
        self._metrics = metrics

    @contextlib.contextmanager
    def _tracked(self, api, method, model_name, signature_name=""):
        with self._metrics.track(api, method, model_name, signature_name) as call:
            try:
                yield call
            except ServingError:
                raise
            except Exception as e:  # noqa: BLE001 - reported with its canonical code
                raise as_serving_error(e, method) from e

    def predict(self, request, api: str = "grpc", fill_inputs: Optional[Callable] = None):
        """Runs one Predict, counted in the metrics under `api`.

        Args:
            request: `PredictRequest`.
            api: "grpc" or "rest".
            fill_inputs: optional callable(signature, request) that fills
                `request.inputs` once the version is pinned, from its
                `servable.Signature` (REST converts JSON to the declared dtypes).

        Returns:
            The `PredictResponse`.

        Raises:
            ServingError: with the canonical code of any failure.
        """
        signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        with self._tracked(api, "predict", request.model_spec.name, signature_name) as call:
            with self._manager.acquire(request.model_spec) as servable:
                call.version = servable.version
                if fill_inputs is not None:
                    fill_inputs(servable.signature(signature_name), request)
                _check_size(request, "Predict request", request.inputs, self._max_bytes)
                outputs = servable.run(signature_name, request.inputs, request.output_filter)
            response = predict_pb2.PredictResponse()
            response.model_spec.name = request.model_spec.name
            response.model_spec.version.value = servable.version
            response.model_spec.signature_name = signature_name
            for name, proto in outputs.items():
                response.outputs[name].CopyFrom(proto)
            _check_size(response, "Predict response", response.outputs, self._max_bytes)
            return response

    def metadata(self, request, api: str = "grpc"):
        """Answers one GetModelMetadata (the SignatureDefMap), counted in the metrics under `api`.

        Raises:
            ServingError: INVALID_ARGUMENT for a metadata_field other than
                signature_def, NOT_FOUND/UNAVAILABLE from the model manager.
        """
        with self._tracked(api, "metadata", request.model_spec.name) as call:
            fields = list(request.metadata_field)
            if fields != ["signature_def"]:
                raise ServingError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"metadata_field {fields} is not supported; request ['signature_def']",
                )
            with self._manager.acquire(request.model_spec) as servable:
                call.version = servable.version
                response = get_model_metadata_pb2.GetModelMetadataResponse()
                response.model_spec.name = request.model_spec.name
                response.model_spec.version.value = servable.version
                signature_map = get_model_metadata_pb2.SignatureDefMap()
                for key, signature_def in servable.signature_defs.items():
                    signature_map.signature_def[key].CopyFrom(signature_def)
                response.metadata["signature_def"].Pack(signature_map)
            return response

    Predict = _rpc(predict)
    GetModelMetadata = _rpc(metadata)

    async def _unimplemented(self, request, context):
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "the embedded server implements Predict and GetModelMetadata; use tensorflow_model_server for "
            "Classify, Regress and MultiInference",
        )

    Classify = Regress = MultiInference = _unimplemented


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """`tensorflow.serving.ModelService` over a `ModelManager`."""

    def __init__(self, manager: ModelManager, allow_config_reload: bool = False, model_root: Optional[str] = None):
        self._manager = manager
        self._allow_config_reload = allow_config_reload
        self._model_root = os.path.realpath(model_root) if model_root else None

    def model_status(self, model_spec) -> get_model_status_pb2.GetModelStatusResponse:
        """Status of the versions `model_spec` names (all, one version, or the one a label points to).

        Raises:
            ServingError: NOT_FOUND for an unknown model or version, or a
                label whose version is not available.
        """
        choice = model_spec.WhichOneof("version_choice")
        version = model_spec.version.value if choice == "version" else None
        if choice == "version_label":
            with self._manager.acquire(model_spec) as servable:  # resolves the label
                version = servable.version
        response = get_model_status_pb2.GetModelStatusResponse()
        for state in self._manager.status(model_spec.name, version):
            status = response.model_version_status.add(version=state.version, state=state.state)
            status.status.SetInParent()  # error_code OK, as TF Serving reports it
            if state.error is not None:
                status.status.error_code = state.error.code.value[0]
                status.status.error_message = state.error.message
        return response

    @_rpc
    def GetModelStatus(self, request):
        return self.model_status(request.model_spec)

    @_rpc
    def HandleReloadConfigRequest(self, request):
        if not self._allow_config_reload:
            raise ServingError(grpc.StatusCode.PERMISSION_DENIED,
                               "config reload over RPC is off: the operator starts the server with "
                               "--allow_config_reload and --model_root to allow it")
        config_lib.check_model_server_config(request.config, source="ReloadConfigRequest")
        resolved = type(request.config)()
        resolved.CopyFrom(request.config)
        for index, model in enumerate(resolved.model_config_list.config):
            path = os.path.realpath(model.base_path)
            if os.path.commonpath([path, self._model_root]) != self._model_root:
                raise ServingError(grpc.StatusCode.PERMISSION_DENIED,
                                   f"config[{index}] (name {model.name!r}): base_path {model.base_path!r} is "
                                   f"outside the server's --model_root {self._model_root!r}")
            model.base_path = path  # the checked path, not a link that could be swapped afterwards
        self._manager.reload(resolved)
        return model_management_pb2.ReloadConfigResponse()


def _server_credentials(cert_path, key_path):
    """TLS credentials from PEM files; ConfigError naming a file that cannot be read or is not PEM."""
    contents = {}
    for what, path, marker in (("ssl_cert", cert_path, b"CERTIFICATE"), ("ssl_key", key_path, b"PRIVATE KEY")):
        try:
            with open(path, "rb") as f:
                contents[what] = f.read()
        except OSError as e:
            raise config_lib.ConfigError(f"{what}={path!r}: cannot read it ({e.strerror})") from None
        if b"-----BEGIN" not in contents[what] or marker not in contents[what]:
            raise config_lib.ConfigError(f"{what}={path!r}: expected a PEM file holding a {marker.decode()}")
    return grpc.ssl_server_credentials([(contents["ssl_key"], contents["ssl_cert"])])


class _BearerToken(grpc.aio.ServerInterceptor):
    """Refuses every RPC but the health check without `authorization: Bearer <token>`."""

    def __init__(self, token: str):
        self._expected = f"Bearer {token}".encode()

        async def deny(request, context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "missing or wrong bearer token (metadata 'authorization: Bearer <token>')")

        self._deny = grpc.unary_unary_rpc_method_handler(deny)

    async def intercept_service(self, continuation, handler_call_details):
        if handler_call_details.method.startswith("/grpc.health.v1.Health/"):
            return await continuation(handler_call_details)
        given = dict(handler_call_details.invocation_metadata).get("authorization", "")
        if hmac.compare_digest(given.encode() if isinstance(given, str) else given, self._expected):
            return await continuation(handler_call_details)
        return self._deny


class _ReadTimeout(grpc.aio.ServerInterceptor):
    """Bounds how long a unary-request call waits for its message.

    gRPC receives a unary request before the method runs, with no limit; this
    serves such a method as request-streaming instead, reads the one message
    itself, and ends the call with DEADLINE_EXCEEDED when it does not arrive
    within `seconds`.
    """

    def __init__(self, seconds: float):
        self._seconds = seconds
        self._wrapped = {}  # (method, handler) -> its request-streaming handler, built once

    async def _read(self, context, method):
        try:
            request = await asyncio.wait_for(context.read(), self._seconds)
        except asyncio.TimeoutError:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                                f"{method}: no request message within {self._seconds:g} s "
                                "(the server's grpc_read_timeout_seconds)")
        if request is grpc.aio.EOF:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{method}: the call ended without a request message")
        return request

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_streaming:
            return handler
        key = (handler_call_details.method, handler)
        if key not in self._wrapped:
            self._wrapped[key] = self._request_streaming(handler, handler_call_details.method)
        return self._wrapped[key]

    def _request_streaming(self, handler, method):
        """`handler` served as request-streaming, its one message read by `_read`."""
        if handler.response_streaming:
            async def stream(requests, context):
                await handler.unary_stream(await self._read(context, method), context)

            return grpc.stream_stream_rpc_method_handler(stream, handler.request_deserializer,
                                                         handler.response_serializer)

        async def unary(requests, context):
            return await handler.unary_unary(await self._read(context, method), context)

        return grpc.stream_unary_rpc_method_handler(unary, handler.request_deserializer, handler.response_serializer)


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
        self.metrics = ServingMetrics()
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
                    read_timeout_seconds=options.rest_read_timeout_seconds, auth_token=options.auth_token,
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
        interceptors = [_ReadTimeout(options.grpc_read_timeout_seconds)]
        if options.auth_token:
            interceptors.append(_BearerToken(options.auth_token))
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
            self._rest.start()
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
            self._rest.stop()
        self._in_loop(self._grpc.stop(self.options.grace_seconds))
        self.manager.stop()
        if self.scheduler is not None:
            self.scheduler.stop()
        self._close_loop()
        logging.info("Server stopped")
