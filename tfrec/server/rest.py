"""TF Serving's REST API on the embedded server (`--rest_api_port`).

The routes `tensorflow_model_server` serves on its REST port, with the same
JSON (see TF Serving's "RESTful API" documentation):

* `GET /v1/models/NAME[/versions/N | /labels/L]`: model status, the JSON of
  `GetModelStatusResponse` (`{"model_version_status": [{"version": "3",
  "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}`).
* `GET /v1/models/NAME[/versions/N | /labels/L]/metadata`:
  `{"model_spec": {...}, "metadata": {"signature_def": <SignatureDefMap JSON>}}`.
* `POST /v1/models/NAME[/versions/N | /labels/L]:predict`: the row format
  `{"signature_name": S, "instances": [...]}` answered `{"predictions": [...]}`,
  or the columnar format `{"inputs": {...}}` (or one unnamed input) answered
  `{"outputs": ...}`. JSON values become tensors of the signature's declared
  dtypes; binary strings may be sent as `{"b64": "..."}`, and string outputs
  whose name ends in `_bytes` (or that are not UTF-8) come back so. The
  request then takes the gRPC Predict path, with the same checks.
* `GET <path>` of the monitoring config's `prometheus_config`, when enabled:
  the Prometheus scrape page (`tfrec.server.metrics`).

Errors are TF Serving's `{"error": "message"}` with its HTTP status for each
canonical code (INVALID_ARGUMENT 400, UNAUTHENTICATED 401, NOT_FOUND 404,
RESOURCE_EXHAUSTED 429, INTERNAL 500, UNIMPLEMENTED 501, UNAVAILABLE 503...);
a body over `max_message_bytes` gets 413, an unknown route 404, a wrong
method 405, a request not in within the deadline 408, a connection beyond
`max_connections` 503 (see `tfrec.server.http_server` for every limit).
With a bearer token, every route but model status (left open for health
checkers, as the gRPC health service is) needs the header
`Authorization: Bearer <token>`; without it, model status shows the
versions' states and error codes, not the error texts (whose absolute
paths `ModelService` cuts to their last two components). With a
certificate the port speaks HTTPS only. Connections live on the server's
event loop (a stalled client holds no thread) and requests run on a thread
pool. Nothing else is served: no files, no directory listings.

The routes and their handlers are here; `tfrec.server.http_server` is the
transport (connections, bodies, TLS, the HTTP status of each error) and
`tfrec.server.json_tensor` the JSON codec.

Example:

    curl -d '{"instances": [{"history": ["item1", "item2"], "candidates": ["item5"]}], "signature_name": "score"}' \\
        http://127.0.0.1:8501/v1/models/tiny:predict
"""

import hmac
import re
import threading
import urllib.parse
from concurrent import futures
from typing import Optional

import grpc
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, model_pb2, predict_pb2

from tfrec.server.http_server import JSON, HttpError, HttpServer, bound_socket, ssl_context
from tfrec.server.json_tensor import json_inputs, outputs_json, parse_predict_body
from tfrec.serving_errors import ServingError

MAX_VERSION = (1 << 63) - 1

_VERSION = r"(?:/versions/(?P<version>[0-9]+)|/labels/(?P<label>[^/:]+))?"
_PREDICT_ROUTE = re.compile(r"/v1/models/(?P<name>[^/:]+)" + _VERSION + r":(?P<method>predict|classify|regress)",
                            re.IGNORECASE)
_MODEL_ROUTE = re.compile(r"/v1/models(?:/(?P<name>[^/:]+))?" + _VERSION + r"(?P<metadata>/metadata)?", re.IGNORECASE)


class RestApiServer:
    """TF Serving's REST API over the services of a `Server` (see the module docstring).

    Args:
        prediction: `prediction_service.PredictionService` (`predict`, `metadata`).
        models: `model_service.ModelService` (`model_status`).
        metrics: `metrics.ServingMetrics`.
        host: interface to bind; port: TCP port (0 picks a free one).
        max_message_bytes: largest request body (413 above it).
        max_concurrent_requests: requests admitted at once (429 above it).
        max_workers: threads decoding and running the admitted requests.
        request_deadline_seconds: how long a request may take to arrive
            (request line, headers and body together; 408 after it); an idle
            keep-alive connection closes after twice it.
        max_connections: open connections; a connection beyond gets 503.
        backlog: the listen backlog (connections not accepted yet).
        auth_token: bearer token every route but model status needs, or None.
        ssl_cert, ssl_key: PEM files: the port speaks HTTPS only. Both or neither.
        metrics_path: path of the Prometheus scrape page, or None for none.

    Attributes:
        port: the bound port.

    Example:

    >>> rest = RestApiServer(prediction, models, metrics, host="127.0.0.1", port=8501)  # doctest: +SKIP
    >>> asyncio.run_coroutine_threadsafe(rest.start(), loop).result()                    # doctest: +SKIP
    """

    def __init__(self, prediction, models, metrics, *, host: str, port: int, max_message_bytes: int = 4 << 20,
                 max_concurrent_requests: int = 256, max_workers: int = 16, request_deadline_seconds: float = 30.0,
                 max_connections: int = 1024, backlog: int = 1024, auth_token: Optional[str] = None,
                 ssl_cert: Optional[str] = None, ssl_key: Optional[str] = None, metrics_path: Optional[str] = None):
        self._prediction, self._models, self._metrics = prediction, models, metrics
        self.max_message_bytes = max_message_bytes
        self.metrics_path = metrics_path
        self.scheme = "https" if ssl_cert else "http"
        self._slots = threading.BoundedSemaphore(max_concurrent_requests)
        self._max_concurrent = max_concurrent_requests
        self._expected = f"Bearer {auth_token}".encode() if auth_token else None
        context = ssl_context(ssl_cert, ssl_key) if ssl_cert else None
        sock = bound_socket(host, port)
        self.port = sock.getsockname()[1]
        self._executor = futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rest")
        self._http = HttpServer(self, sock, context, self._executor, request_deadline_seconds=request_deadline_seconds,
                                max_connections=max_connections, backlog=backlog)

    async def start(self) -> None:
        """Starts answering on the running event loop."""
        await self._http.start()

    async def stop(self, grace_seconds: float = 5.0) -> None:
        """Closes the port, then the connections once their running requests finish (up to `grace_seconds`)."""
        await self._http.stop(grace_seconds)
        self._executor.shutdown(wait=False, cancel_futures=True)

    def route(self, path: str):
        """(method, needs token, handler, match) of `path`; a 404 `HttpError` for any other path."""
        if self.metrics_path is not None and path == self.metrics_path:
            return "GET", True, self._scrape, None
        match = _PREDICT_ROUTE.fullmatch(path)
        if match:
            return "POST", True, self._predict, match
        match = _MODEL_ROUTE.fullmatch(path)
        if match:
            return ("GET", True, self._metadata, match) if match["metadata"] else ("GET", False, self._status, match)
        raise HttpError(404, f"no route {path!r}: this server answers GET /v1/models/NAME[/versions/N|/labels/L]"
                              "[/metadata] and POST /v1/models/NAME[/versions/N|/labels/L]:predict")

    def _authenticated(self, authorization: str) -> bool:
        """Whether `authorization` is 'Bearer <token>' (False when the server has no token)."""
        given = authorization.encode("utf-8", "surrogateescape")
        return self._expected is not None and hmac.compare_digest(given, self._expected)

    def check_token(self, authorization: str) -> None:
        """UNAUTHENTICATED unless `authorization` is 'Bearer <token>' (when the server has a token)."""
        if self._expected is not None and not self._authenticated(authorization):
            raise ServingError(grpc.StatusCode.UNAUTHENTICATED,
                               "missing or wrong bearer token (header 'Authorization: Bearer <token>')")

    def call(self, handler, match, body: bytes, headers):
        """Runs `handler` within the concurrency limit; returns (HTTP status, payload, content type)."""
        if not self._slots.acquire(blocking=False):
            raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"more than max_concurrent_rpcs={self._max_concurrent} REST requests at once")
        try:
            return handler(match, body, headers)
        finally:
            self._slots.release()

    def _scrape(self, match, body, headers):
        page, content_type = self._metrics.exposition(headers.get("Accept", ""))
        return 200, page, content_type

    def _status(self, match, body, headers):
        """Model status, open to health checkers: without the token (when the server has one) the versions'
        states and error codes only; the error texts otherwise (their paths shortened by `ModelService`)."""
        response = self._models.model_status(_model_spec(match))
        if self._expected is not None and not self._authenticated(headers.get("Authorization", "")):
            for version in response.model_version_status:
                version.status.error_message = ""
        return 200, json_format.MessageToDict(response, always_print_fields_with_no_presence=True), JSON

    def _metadata(self, match, body, headers):
        request = get_model_metadata_pb2.GetModelMetadataRequest(model_spec=_model_spec(match),
                                                                 metadata_field=["signature_def"])
        response = self._prediction.metadata(request, api="rest")
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        options = {"always_print_fields_with_no_presence": True, "preserving_proto_field_name": True}
        return 200, {"model_spec": json_format.MessageToDict(response.model_spec, **options),
                     "metadata": {"signature_def": json_format.MessageToDict(signatures, **options)}}, JSON

    def _predict(self, match, body, headers):
        if match["method"].lower() != "predict":
            raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                               f"the embedded server's REST API implements :predict; use tensorflow_model_server "
                               f"for :{match['method'].lower()}")
        signature_name, row, data = parse_predict_body(body)
        request = predict_pb2.PredictRequest(model_spec=_model_spec(match))
        request.model_spec.signature_name = signature_name

        def fill_inputs(signature, request):
            for name, proto in json_inputs(signature, row, data).items():
                request.inputs[name].CopyFrom(proto)

        response = self._prediction.predict(request, api="rest", fill_inputs=fill_inputs)
        return 200, outputs_json(response.outputs, row), JSON


def _model_spec(match) -> model_pb2.ModelSpec:
    """The ModelSpec a route names (percent-decoded name and label, checked version)."""
    if not match["name"]:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Missing model name in request.")
    spec = model_pb2.ModelSpec(name=urllib.parse.unquote(match["name"]))
    if match["version"]:
        version = int(match["version"])
        if version > MAX_VERSION:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"version {match['version']} is not an int64")
        spec.version.value = version
    elif match["label"]:
        spec.version_label = urllib.parse.unquote(match["label"])
    return spec
