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
method 405. With a bearer token, every route but model status (left open for
health checkers, as the gRPC health service is) needs the header
`Authorization: Bearer <token>`; with a certificate the port speaks HTTPS
only. Each connection has its own thread and socket timeout, so a stalled
client holds only its own connection. Nothing else is served: no files, no
directory listings.

Example:

    curl -d '{"instances": [{"history": ["item1", "item2"], "candidates": ["item5"]}], "signature_name": "score"}' \\
        http://127.0.0.1:8501/v1/models/tiny:predict
"""

import base64
import hmac
import http.server
import json
import re
import socket
import socketserver
import ssl
import threading
import time
import urllib.parse
from typing import Callable, Mapping, Optional, Tuple

import grpc
import numpy as np
import tensorflow as tf
from absl import logging
from google.protobuf import json_format
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, model_pb2, predict_pb2

from tfrec.client.errors import ServingError
from tfrec.server import config as config_lib

JSON = "application/json"
MAX_VERSION = (1 << 63) - 1
MAX_RANK = 254  # TensorFlow's TensorShape limit
# A refused body is read and dropped (so the client can read the answer) up to this multiple of the limit.
_DRAIN_LIMIT_FACTOR = 4

# TF Serving's HTTP status for each canonical code (model_servers/http_server.cc).
HTTP_STATUS = {
    grpc.StatusCode.OK: 200, grpc.StatusCode.CANCELLED: 499, grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.DEADLINE_EXCEEDED: 504, grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409, grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409, grpc.StatusCode.OUT_OF_RANGE: 400, grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500, grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}

_VERSION = r"(?:/versions/(?P<version>[0-9]+)|/labels/(?P<label>[^/:]+))?"
_PREDICT_ROUTE = re.compile(r"/v1/models/(?P<name>[^/:]+)" + _VERSION + r":(?P<method>predict|classify|regress)",
                            re.IGNORECASE)
_MODEL_ROUTE = re.compile(r"/v1/models(?:/(?P<name>[^/:]+))?" + _VERSION + r"(?P<metadata>/metadata)?", re.IGNORECASE)


def _invalid(message):
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def _json_text(value, limit=80):
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _converter(dtype: tf.DType, where: str) -> Callable:
    """The function turning one JSON leaf into a value of `dtype`, refusing (naming `where`) what does not fit."""
    if dtype == tf.string:
        def to_bytes(value):
            if isinstance(value, str):
                return value.encode("utf-8")
            if _is_b64(value):
                try:
                    return base64.b64decode(value["b64"], validate=True)
                except ValueError:
                    raise _invalid(f"{where}: {_json_text(value)} is not valid base64") from None
            raise _invalid(f"{where}: JSON value {_json_text(value)} is not a string; expected a string or "
                           '{"b64": "<base64>"}')
        return to_bytes
    if dtype == tf.bool:
        def to_bool(value):
            if not isinstance(value, bool):
                raise _invalid(f"{where}: JSON value {_json_text(value)} is not true or false; expected bool")
            return value
        return to_bool
    if dtype.is_integer:
        low, high = dtype.min, dtype.max

        def to_int(value):
            if isinstance(value, bool) or not isinstance(value, int):
                raise _invalid(f"{where}: JSON value {_json_text(value)} is not an integer; expected {dtype.name}")
            if not low <= value <= high:
                raise _invalid(f"{where}: {value} is out of the range of {dtype.name} [{low}, {high}]")
            return value
        return to_int
    if dtype in (tf.float16, tf.float32, tf.float64):
        info = np.finfo(dtype.as_numpy_dtype)
        exact = (1 << (info.nmant + 1)) - 1  # the largest integer the type holds exactly

        def to_float(value):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise _invalid(f"{where}: JSON value {_json_text(value)} is not a number; expected {dtype.name}")
            if (abs(value) > exact if isinstance(value, int)
                    else np.isfinite(value) and not info.min <= value <= info.max):
                raise _invalid(f"{where}: {value} cannot be a {dtype.name} without loss of precision")
            return value
        return to_float
    raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f"{where}: JSON values cannot be converted to {dtype.name}")


def _is_b64(value) -> bool:
    """A binary string: {"b64": "<base64>"}."""
    return isinstance(value, dict) and list(value) == ["b64"] and isinstance(value["b64"], str)


def _is_named(value) -> bool:
    """A JSON object naming inputs (a {"b64": ...} object is a value, not names)."""
    return isinstance(value, dict) and not _is_b64(value)


def _dense(value, convert, where):
    """(shape, flat values) of a JSON value, nested lists checked to be a dense tensor."""
    shape, probe = [], value
    while isinstance(probe, list):
        shape.append(len(probe))
        if len(shape) > MAX_RANK:
            raise _invalid(f"{where}: lists nested more than {MAX_RANK} deep")
        probe = probe[0] if probe else None
    flat = []

    def walk(item, level):
        if not isinstance(item, list):
            if level != len(shape):
                raise _invalid(f"{where}: value {_json_text(item)} at depth {level}, expected lists {len(shape)} "
                               f"deep (shape {shape} from the first elements)")
            flat.append(convert(item))
        elif level == len(shape) or len(item) != shape[level]:
            raise _invalid(f"{where}: a list of {len(item)} at depth {level} does not fit shape {shape} (taken "
                           "from the first elements; the lists must form a dense tensor)")
        else:
            for element in item:
                walk(element, level + 1)

    walk(value, 0)
    return shape, flat


def _tensor(dtype, shape, flat):
    array = np.asarray(flat, dtype=object if dtype == tf.string else dtype.as_numpy_dtype)
    return tf.make_tensor_proto(array.reshape(shape), dtype=dtype)


def _declared(signature, names):
    """(dtype of each of `names` the signature declares, empty TensorProtos for the others): the servable
    refuses undeclared names with the gRPC message."""
    return ({name: signature.inputs[name].dtype for name in names if name in signature.inputs},
            {name: tensor_pb2.TensorProto() for name in names if name not in signature.inputs})


def _unnamed_input(signature, where):
    if len(signature.inputs) != 1:
        raise _invalid(f"{where} holds unnamed values, but signature {signature.name!r} takes "
                       f"{len(signature.inputs)} inputs {sorted(signature.inputs)}: name them in an object")
    return next(iter(signature.inputs))


def _columnar_inputs(signature, data) -> dict:
    """TensorProtos of the columnar `inputs` value: an object of named inputs, or the only input's value."""
    if not _is_named(data):
        data = {_unnamed_input(signature, "'inputs'"): data}
    dtypes, inputs = _declared(signature, data)
    for name, dtype in dtypes.items():
        where = f"'inputs' input {name!r}"
        inputs[name] = _tensor(dtype, *_dense(data[name], _converter(dtype, where), where))
    return inputs


def _row_inputs(signature, instances) -> dict:
    """TensorProtos batching the row format's `instances`: each instance one row of every input."""
    if not isinstance(instances, list) or not instances:
        raise _invalid(f"'instances' is {_json_text(instances)}; expected a non-empty list of instances")
    named = _is_named(instances[0])
    names = sorted(instances[0]) if named else [_unnamed_input(signature, "'instances'")]
    dtypes, inputs = _declared(signature, names)
    shapes, values = {}, {name: [] for name in dtypes}
    for index, instance in enumerate(instances):
        if _is_named(instance) != named:
            raise _invalid(f"'instances'[{index}] is {'not ' if named else ''}an object of named inputs, unlike "
                           "'instances'[0]: give every instance in the same form")
        row = instance if named else {names[0]: instance}
        if sorted(row) != names:
            raise _invalid(f"'instances'[{index}] has inputs {sorted(row)}; 'instances'[0] has {names}")
        for name, dtype in dtypes.items():
            where = f"'instances'[{index}] input {name!r}"
            shape, flat = _dense(row[name], _converter(dtype, where), where)
            if shapes.setdefault(name, shape) != shape:
                raise _invalid(f"{where} has shape {shape}; 'instances'[0] has {shapes[name]} (every instance "
                               "must have the same shape)")
            values[name].extend(flat)
    for name, dtype in dtypes.items():
        inputs[name] = _tensor(dtype, [len(instances)] + shapes[name], values[name])
    return inputs


def parse_predict_body(body: bytes) -> Tuple[str, bool, object]:
    """Reads a `:predict` request body.

    Args:
        body: the raw request body (UTF-8 JSON object).

    Returns:
        (signature_name, row, data): `row` is True for the row format, and
        `data` is the `instances` list or the `inputs` value.

    Raises:
        ServingError: INVALID_ARGUMENT naming the problem (unparsable JSON,
            not an object, a non-string signature_name, both or neither of
            'instances' and 'inputs', an unknown key).

    Example:

    >>> parse_predict_body(b'{"signature_name": "embed_items", "inputs": ["a text"]}')
    ('embed_items', False, ['a text'])
    """
    if not body.strip():
        raise _invalid("JSON parse error: the request body is empty")
    try:
        request = json.loads(body)
    except json.JSONDecodeError as e:
        raise _invalid(f"JSON parse error: {e.msg} at offset {e.pos}") from None
    except UnicodeDecodeError:
        raise _invalid("the request body is not UTF-8 JSON") from None
    except RecursionError:
        raise _invalid("the request body's JSON is nested too deeply") from None
    if not isinstance(request, dict):
        raise _invalid(f"the request body is {_json_text(request)}; expected a JSON object "
                       '{"instances": [...]} or {"inputs": ...}')
    unknown = sorted(set(request) - {"signature_name", "instances", "inputs"})
    if unknown:
        raise _invalid(f"the request body has an unknown key {unknown[0]!r}; expected 'signature_name' and one of "
                       "'instances' (row format) or 'inputs' (columnar format)")
    signature_name = request.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise _invalid(f"'signature_name' is {_json_text(signature_name)}; expected a string")
    if ("instances" in request) == ("inputs" in request):
        raise _invalid("the request body needs exactly one of 'instances' (row format) or 'inputs' (columnar "
                       f"format); it has {'both' if 'inputs' in request else 'neither'}")
    row = "instances" in request
    return signature_name, row, request["instances" if row else "inputs"]


def json_inputs(signature, row: bool, data) -> dict:
    """The Predict inputs (name -> TensorProto) of a parsed body, in the signature's declared dtypes.

    Args:
        signature: the `servable.Signature` the request calls.
        row, data: as `parse_predict_body` returns them.

    Raises:
        ServingError: INVALID_ARGUMENT naming the input and element that is
            not a dense tensor of the declared dtype.
    """
    return _row_inputs(signature, data) if row else _columnar_inputs(signature, data)


def _json_values(name, proto):
    array = tf.make_ndarray(proto)
    if array.dtype == object:
        def text(value):
            if not name.endswith("_bytes"):
                try:
                    return value.decode("utf-8")
                except UnicodeDecodeError:
                    pass
            return {"b64": base64.b64encode(value).decode("ascii")}
        array = np.array([text(v) for v in array.ravel()], dtype=object).reshape(array.shape)
    elif array.dtype in (np.float16, np.float32):
        array = array.astype(str).astype(np.float64)  # the shortest decimal that reads back as the same value
    return array.tolist()


def outputs_json(outputs: Mapping[str, tensor_pb2.TensorProto], row: bool) -> dict:
    """The JSON answer of a Predict, in the request's format (TF Serving's shapes of it).

    Row format: `{"predictions": [one item per batch row]}`, each item the
    output's value, or an object of every output when there are several.
    Columnar: `{"outputs": value}` for one output, else `{"outputs": {name: value}}`.

    Raises:
        ServingError: INVALID_ARGUMENT when, in the row format, the outputs do
            not share a batch dimension.

    Example:

    >>> outputs_json({"scores": tf.make_tensor_proto([[0.5, 0.25]])}, row=True)
    {'predictions': [[0.5, 0.25]]}
    """
    values = {name: _json_values(name, proto) for name, proto in sorted(outputs.items())}
    if not row:
        return {"outputs": next(iter(values.values())) if len(values) == 1 else values}
    batch = {name: outputs[name].tensor_shape.dim[0].size if outputs[name].tensor_shape.dim else None
             for name in values}
    if None in batch.values() or len(set(batch.values())) != 1:
        raise _invalid(f"the outputs' batch sizes {batch} differ or are missing (None: a scalar), so they cannot be "
                       "given per instance; send the request in the columnar format ('inputs')")
    if len(values) == 1:
        return {"predictions": next(iter(values.values()))}
    return {"predictions": [{name: column[i] for name, column in values.items()}
                            for i in range(next(iter(batch.values())))]}


def ssl_context(cert_path: str, key_path: str) -> ssl.SSLContext:
    """A server-side TLS context from PEM files; ConfigError naming the pair that cannot be used."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert_path, key_path)
    except (OSError, ssl.SSLError) as e:
        raise config_lib.ConfigError(f"ssl_cert={cert_path!r}, ssl_key={key_path!r}: cannot load them for the "
                                     f"REST port ({e})") from None
    return context


class _HttpError(Exception):
    """An HTTP-level refusal (no canonical code stands for it)."""

    def __init__(self, status, message, headers=()):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, dict(headers)


class _Handler(http.server.BaseHTTPRequestHandler):
    """One connection: routes each request to the `RestApiServer` (`self.server.api`)."""

    protocol_version = "HTTP/1.1"
    _unread = 0  # request body bytes not read yet

    def version_string(self):
        return "tfrec-serving"

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        logging.debug("REST %s: " + format, self.address_string(), *args)

    def send_error(self, code, message=None, explain=None):
        """The stdlib's own refusals (malformed request line, header too long...), as JSON."""
        self._send(code, {"error": message or explain or self.responses.get(code, ("error",))[0]})

    def _handle(self):
        api = self.server.api
        path = self.path.split("?", 1)[0]
        try:
            self._unread = self._content_length()
            allowed, needs_token, handler, match = api.route(path)
            if self.command != allowed:
                raise _HttpError(405, f"{self.command} {path}: this route takes {allowed}", {"Allow": allowed})
            if needs_token:
                api.check_token(self.headers.get("Authorization", ""))
            body = self._read_body(api) if self.command == "POST" else b""
            status, payload, content_type = api.call(handler, match, body, self.headers)
            self._send(status, payload, content_type)
        except _HttpError as e:
            self._send(e.status, {"error": e.message}, headers=e.headers)
        except ServingError as e:
            headers = {"WWW-Authenticate": "Bearer"} if e.code == grpc.StatusCode.UNAUTHENTICATED else {}
            self._send(HTTP_STATUS.get(e.code, 500), {"error": e.message}, headers=headers)
        except Exception as e:  # noqa: BLE001 - any other failure is a 500, with the traceback logged
            logging.exception("REST %s %s failed", self.command, path)
            self._send(500, {"error": f"{self.command} {path} failed: {type(e).__name__}: {e}"})
        self._drain(api)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle

    def _content_length(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True  # the body's end is unknown
            raise _HttpError(411, "chunked request bodies are not accepted; send a Content-Length header")
        text = self.headers.get("Content-Length")
        if text is None:
            return 0
        if not (text.isascii() and text.isdigit()):
            self.close_connection = True
            raise _HttpError(400, f"Content-Length {text!r} is not a byte count")
        return int(text)

    def _read_body(self, api):
        length, limit = self._unread, api.max_message_bytes
        if "Content-Length" not in self.headers:
            raise _HttpError(411, f"{self.command} needs a Content-Length header")
        if length > limit:
            raise _HttpError(413, f"the request body is {length} bytes, more than the server's "
                                  f"max_message_bytes={limit}")
        chunks, deadline = [], time.monotonic() + api.read_timeout_seconds
        try:
            while self._unread:
                if time.monotonic() > deadline:
                    raise TimeoutError
                chunk = self.rfile.read1(min(self._unread, 1 << 16))
                if not chunk:
                    raise _HttpError(400, f"the request body ended after {length - self._unread} of its "
                                          f"{length} bytes")
                chunks.append(chunk)
                self._unread -= len(chunk)
        except TimeoutError:
            self.close_connection = True
            raise _HttpError(408, f"the request body did not arrive within {api.read_timeout_seconds:g} s") from None
        return b"".join(chunks)

    def _send(self, status, payload, content_type=JSON, headers=()):
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for key, value in dict(headers).items():
                self.send_header(key, value)
            if self._unread or self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            self.wfile.flush()
        except OSError as e:  # the client went away
            logging.debug("REST %s: cannot send the answer: %s", self.address_string(), e)
            self.close_connection = True

    def _drain(self, api):
        """Reads and drops an unread body (bounded), so a client still sending it can read the answer."""
        left = self._unread if self._unread <= _DRAIN_LIMIT_FACTOR * api.max_message_bytes else 0
        deadline = time.monotonic() + api.read_timeout_seconds
        try:
            while left > 0 and time.monotonic() < deadline:
                chunk = self.rfile.read1(min(left, 1 << 16))
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:
            pass
        self._unread = 0


class _HttpServer(http.server.ThreadingHTTPServer):
    """A (daemon) thread per connection, each with a socket timeout, TLS negotiated in that thread."""

    def __init__(self, address, family, api, context):
        self.address_family = family
        self.api, self._context = api, context
        super().__init__(address, _Handler)

    def server_bind(self):
        socketserver.TCPServer.server_bind(self)  # without HTTPServer's reverse DNS lookup of the host

    def finish_request(self, request, client_address):
        request.settimeout(self.api.read_timeout_seconds)
        if self._context is None:
            super().finish_request(request, client_address)
            return
        with self._context.wrap_socket(request, server_side=True) as tls:
            super().finish_request(tls, client_address)

    def handle_error(self, request, client_address):
        logging.debug("REST connection from %s failed", client_address, exc_info=True)


class RestApiServer:
    """TF Serving's REST API over the services of a `Server` (see the module docstring).

    Args:
        prediction: `server.PredictionService` (`predict`, `metadata`).
        models: `server.ModelService` (`model_status`).
        metrics: `metrics.ServingMetrics`.
        host: interface to bind; port: TCP port (0 picks a free one).
        max_message_bytes: largest request body (413 above it).
        max_concurrent_requests: requests processed at once (429 above it).
        read_timeout_seconds: how long a connection may wait for the client's
            bytes (request line, headers, body); an idle keep-alive connection
            closes after it.
        auth_token: bearer token every route but model status needs, or None.
        ssl_cert, ssl_key: PEM files: the port speaks HTTPS only. Both or neither.
        metrics_path: path of the Prometheus scrape page, or None for none.

    Attributes:
        port: the bound port.

    Example:

    >>> rest = RestApiServer(prediction, models, metrics, host="127.0.0.1", port=8501)  # doctest: +SKIP
    >>> rest.start(); rest.stop()                                                      # doctest: +SKIP
    """

    def __init__(self, prediction, models, metrics, *, host: str, port: int, max_message_bytes: int = 4 << 20,
                 max_concurrent_requests: int = 256, read_timeout_seconds: float = 30.0,
                 auth_token: Optional[str] = None, ssl_cert: Optional[str] = None, ssl_key: Optional[str] = None,
                 metrics_path: Optional[str] = None):
        self._prediction, self._models, self._metrics = prediction, models, metrics
        self.max_message_bytes = max_message_bytes
        self.read_timeout_seconds = read_timeout_seconds
        self.metrics_path = metrics_path
        self.scheme = "https" if ssl_cert else "http"
        self._slots = threading.BoundedSemaphore(max_concurrent_requests)
        self._max_concurrent = max_concurrent_requests
        self._expected = f"Bearer {auth_token}".encode() if auth_token else None
        context = ssl_context(ssl_cert, ssl_key) if ssl_cert else None
        bind_host = host.strip("[]")
        try:
            family = socket.getaddrinfo(bind_host, port, type=socket.SOCK_STREAM)[0][0]
            self._httpd = _HttpServer((bind_host, port), family, self, context)
        except OSError as e:
            raise OSError(f"cannot listen on {host}:{port} for the REST API: {e}") from e
        self.port = self._httpd.server_address[1]
        self._thread = None

    def start(self) -> None:
        """Starts answering in a daemon thread."""
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="rest-api", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops accepting connections and closes the port (requests running finish on their own threads)."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()

    def route(self, path: str):
        """(method, needs token, handler, match) of `path`; a 404 `_HttpError` for any other path."""
        if self.metrics_path is not None and path == self.metrics_path:
            return "GET", True, self._scrape, None
        match = _PREDICT_ROUTE.fullmatch(path)
        if match:
            return "POST", True, self._predict, match
        match = _MODEL_ROUTE.fullmatch(path)
        if match:
            return ("GET", True, self._metadata, match) if match["metadata"] else ("GET", False, self._status, match)
        raise _HttpError(404, f"no route {path!r}: this server answers GET /v1/models/NAME[/versions/N|/labels/L]"
                              "[/metadata] and POST /v1/models/NAME[/versions/N|/labels/L]:predict")

    def check_token(self, authorization: str) -> None:
        """UNAUTHENTICATED unless `authorization` is 'Bearer <token>' (when the server has a token)."""
        if self._expected is not None and not hmac.compare_digest(authorization.encode(), self._expected):
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
        response = self._models.model_status(_model_spec(match))
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
        raise _invalid("Missing model name in request.")
    spec = model_pb2.ModelSpec(name=urllib.parse.unquote(match["name"]))
    if match["version"]:
        version = int(match["version"])
        if version > MAX_VERSION:
            raise _invalid(f"version {match['version']} is not an int64")
        spec.version.value = version
    elif match["label"]:
        spec.version_label = urllib.parse.unquote(match["label"])
    return spec
