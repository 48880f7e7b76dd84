"""The embedded TF Serving-compatible gRPC server.

Implements `tensorflow.serving.PredictionService` (`Predict`,
`GetModelMetadata`; `Classify`, `Regress` and `MultiInference` answer
UNIMPLEMENTED), `tensorflow.serving.ModelService` (`GetModelStatus`,
`HandleReloadConfigRequest`) and the standard `grpc.health.v1.Health` service
(each model name is SERVING once a version of it is loaded; the overall
service "" is SERVING once every configured model is). Clients written for
`tensorflow_model_server` work unchanged against it.

Example:

>>> options = ServerOptions(model_config=config.single_model_config("tiny", "/tmp/tiny"), port=8500)  # doctest: +SKIP
>>> server = Server(options); server.start()                                                          # doctest: +SKIP
>>> server.stop()                                                                                    # doctest: +SKIP
"""

import dataclasses
import threading
from concurrent import futures

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
from tfrec.server.model_manager import ModelManager
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
        max_workers: threads serving RPCs.
        max_concurrent_rpcs: RPCs admitted at once (running + queued); more get
            RESOURCE_EXHAUSTED.
        max_message_bytes: largest request and response, in bytes.
        grace_seconds: how long shutdown waits for running RPCs.
        batching_parameters: `BatchingParameters` to batch requests on the
            server side (TF Serving's --enable_batching), or None.
    """

    model_config: object
    host: str = "127.0.0.1"
    port: int = 8500
    poll_wait_seconds: float = 1.0
    max_workers: int = 16
    max_concurrent_rpcs: int = 256
    max_message_bytes: int = 4 << 20
    grace_seconds: float = 5.0
    batching_parameters: object = None


def _abort_on_error(method):
    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except ServingError as e:
            context.abort(e.code, e.message)
        except config_lib.ConfigError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except Exception as e:  # noqa: BLE001 - any other failure is INTERNAL, with the traceback logged
            logging.exception("%s failed", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"{method.__name__} failed: {type(e).__name__}: {e}")

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
    """`tensorflow.serving.PredictionService` over a `ModelManager`."""

    def __init__(self, manager: ModelManager, max_message_bytes: int):
        self._manager = manager
        self._max_bytes = max_message_bytes

    @_abort_on_error
    def Predict(self, request, context):
        _check_size(request, "Predict request", request.inputs, self._max_bytes)
        signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        with self._manager.acquire(request.model_spec) as servable:
            outputs = servable.run(signature_name, request.inputs, request.output_filter)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = signature_name
        for name, proto in outputs.items():
            response.outputs[name].CopyFrom(proto)
        _check_size(response, "Predict response", response.outputs, self._max_bytes)
        return response

    @_abort_on_error
    def GetModelMetadata(self, request, context):
        fields = list(request.metadata_field)
        if fields != ["signature_def"]:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"metadata_field {fields} is not supported; request ['signature_def']",
            )
        with self._manager.acquire(request.model_spec) as servable:
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = request.model_spec.name
            response.model_spec.version.value = servable.version
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            for key, signature_def in servable.signature_defs.items():
                signature_map.signature_def[key].CopyFrom(signature_def)
            response.metadata["signature_def"].Pack(signature_map)
        return response

    def _unimplemented(self, request, context):
        context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "the embedded server implements Predict and GetModelMetadata; use tensorflow_model_server for "
            "Classify, Regress and MultiInference",
        )

    Classify = Regress = MultiInference = _unimplemented


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """`tensorflow.serving.ModelService` over a `ModelManager`."""

    def __init__(self, manager: ModelManager):
        self._manager = manager

    @_abort_on_error
    def GetModelStatus(self, request, context):
        spec = request.model_spec
        version = spec.version.value if spec.HasField("version") else None
        response = get_model_status_pb2.GetModelStatusResponse()
        for state in self._manager.status(spec.name, version):
            status = response.model_version_status.add(version=state.version, state=state.state)
            if state.error is not None:
                status.status.error_code = state.error.code.value[0]
                status.status.error_message = state.error.message
        return response

    @_abort_on_error
    def HandleReloadConfigRequest(self, request, context):
        self._manager.reload(request.config)
        return model_management_pb2.ReloadConfigResponse()


class Server:
    """The embedded model server: gRPC services + model manager + health.

    Args:
        options: `ServerOptions`.
    """

    def __init__(self, options: ServerOptions):
        self.options = options
        self._health = health.HealthServicer()
        self._health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        self._serving = {}
        self._overall = False
        self._health_lock = threading.Lock()
        self.scheduler = None
        if options.batching_parameters is not None:
            self.scheduler = BatchScheduler.from_parameters(options.batching_parameters)
        self.manager = ModelManager(options.model_config, on_change=self._set_health, scheduler=self.scheduler)
        limit = options.max_message_bytes
        self._grpc = grpc.server(
            futures.ThreadPoolExecutor(max_workers=options.max_workers, thread_name_prefix="rpc"),
            maximum_concurrent_rpcs=options.max_concurrent_rpcs,
            options=[
                ("grpc.max_receive_message_length", limit * _TRANSPORT_LIMIT_FACTOR),
                ("grpc.max_send_message_length", limit),
            ],
        )
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionService(self.manager, limit), self._grpc
        )
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(self.manager), self._grpc)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._grpc)
        address = f"{options.host}:{options.port}"
        try:
            self.port = self._grpc.add_insecure_port(address)
        except RuntimeError as e:
            raise OSError(f"cannot listen on {address}: {e}") from e
        self._stopped = False

    def _set_health(self, name, serving):
        status = health_pb2.HealthCheckResponse
        with self._health_lock:
            if self._serving.get(name) != serving:
                self._health.set(name, status.SERVING if serving else status.NOT_SERVING)
            self._serving[name] = serving
            names = self.manager.model_names
            overall = bool(names) and all(self._serving.get(n) for n in names)
            if overall != self._overall:
                self._health.set("", status.SERVING if overall else status.NOT_SERVING)
            self._overall = overall

    def start(self) -> None:
        """Starts listening, then loads the models in the background (health turns SERVING)."""
        self._grpc.start()
        logging.info(
            "Running gRPC ModelServer at %s:%d (models: %s)",
            self.options.host, self.port, ", ".join(self.manager.model_names),
        )
        self.manager.start(self.options.poll_wait_seconds)

    def stop(self) -> None:
        """Graceful shutdown: health NOT_SERVING, finish running RPCs, unload models."""
        if self._stopped:
            return
        self._stopped = True
        logging.info("Shutting down: finishing running requests (up to %.1f s)", self.options.grace_seconds)
        self._health.enter_graceful_shutdown()
        self._grpc.stop(self.options.grace_seconds).wait()
        self.manager.stop()
        if self.scheduler is not None:
            self.scheduler.stop()
        logging.info("Server stopped")
