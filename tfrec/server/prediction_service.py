"""`tensorflow.serving.PredictionService` (`prediction_service_impl` in TF Serving): Predict and model metadata.

`PredictionService.predict` and `.metadata` answer both the gRPC methods
and the REST API (`tfrec.server.rest`), so both share every check (the
`max_message_bytes` limit on request and response) and the metrics.
`Classify`, `Regress` and `MultiInference` answer UNIMPLEMENTED.

Example:

>>> service = PredictionService(manager, max_message_bytes=4 << 20, metrics=ServingMetrics())  # doctest: +SKIP
>>> service.predict(request).outputs["scores"]                                                 # doctest: +SKIP
"""

import contextlib
from typing import Callable, Optional

import grpc
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

from tfrec.server.grpc_status import as_serving_error, rpc
from tfrec.server.metrics import ServingMetrics
from tfrec.server.model_manager import ModelManager
from tfrec.server.servable import DEFAULT_SIGNATURE
from tfrec.serving_errors import ServingError


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
    def _tracked(self, api, method, model_name, signature_name=None):
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
                signature = servable.signature(signature_name)  # NOT_FOUND for a name the version lacks
                call.signature_name = signature_name
                if fill_inputs is not None:
                    fill_inputs(signature, request)
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

    Predict = rpc(predict)
    GetModelMetadata = rpc(metadata)

    async def _unimplemented(self, request, context):
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "the embedded server implements Predict and GetModelMetadata; use tensorflow_model_server for "
            "Classify, Regress and MultiInference",
        )

    Classify = Regress = MultiInference = _unimplemented
