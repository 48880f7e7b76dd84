"""TF Serving's REST API and the Prometheus metrics of the embedded server, over real sockets."""

import base64
import http.client
import json
import socket
import ssl
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format, text_format
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

import serving_fixtures as sf
from test_serving_access import _certificate
from tfrec.client import RecommenderClient
from tfrec.server import config, protos
from tfrec.server.metrics import LOAD_ATTEMPT_COUNT, REQUEST_COUNT, REQUEST_LATENCY
from tfrec.server.server import Server, ServerOptions
from tfrec.serving_errors import ServingError

MAX_MESSAGE_BYTES = 64 * 1024
TOKEN = "s3cret-token"
METRICS_PATH = "/metrics/tfrec"
CONFIG = """
model_config_list {
  config { name: "tiny" base_path: "%s" model_platform: "tensorflow" version_labels { key: "stable" value: 1 } }
}
"""


def _start(base, **options):
    config = text_format.Parse(CONFIG % (base / "tiny"), model_server_config_pb2.ModelServerConfig())
    server = Server(ServerOptions(config, port=0, poll_wait_seconds=0, max_message_bytes=MAX_MESSAGE_BYTES,
                                  rest_api_port=0, **options))
    server.start()
    return server


def _wait_available(server, credentials=None, timeout=90.0):
    target = f"127.0.0.1:{server.port}"
    channel = grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)
    deadline = time.monotonic() + timeout
    with channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        while time.monotonic() < deadline:
            reply = stub.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "tiny"}),
                                        timeout=5, metadata=[("authorization", f"Bearer {TOKEN}")])
            if [s.state for s in reply.model_version_status] == [get_model_status_pb2.ModelVersionStatus.AVAILABLE]:
                return
            time.sleep(0.1)
    raise TimeoutError("model 'tiny' not AVAILABLE")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    return base, sf.save_version(str(base / "tiny"), 1, seed=0)


@pytest.fixture(scope="module")
def server(models):
    """Plain HTTP, no token, Prometheus metrics at METRICS_PATH."""
    monitoring = text_format.Parse(f'prometheus_config {{ enable: true path: "{METRICS_PATH}" }}',
                                   protos.MonitoringConfig())
    server = _start(models[0], monitoring_config=monitoring)
    try:
        _wait_available(server)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def secure(models, tmp_path_factory):
    """HTTPS with a bearer token, no metrics, a 1 s read timeout; yields (server, TLS client context)."""
    cert, key = _certificate(tmp_path_factory.mktemp("tls"))
    server = _start(models[0], auth_token=TOKEN, ssl_cert=str(cert), ssl_key=str(key), rest_read_timeout_seconds=1.0)
    try:
        _wait_available(server, grpc.ssl_channel_credentials(cert.read_bytes()))
        yield server, ssl.create_default_context(cadata=cert.read_text())
    finally:
        server.stop()


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def _http(port, method, path, body=None, headers=None, context=None):
    """(status, headers, parsed JSON or text) of one request on a fresh connection."""
    if context is None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    else:
        connection = http.client.HTTPSConnection("localhost", port, timeout=30, context=context)
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read().decode()
        parsed = json.loads(data) if response.getheader("Content-Type") == "application/json" else data
        return response.status, dict(response.getheaders()), parsed
    finally:
        connection.close()


def _predict(port, body, model="tiny", **kwargs):
    return _http(port, "POST", f"/v1/models/{model}:predict", body, **kwargs)


# signature -> (the gRPC inputs, the same request in the columnar format, the row-format forms of it).
# A scalar input (k) cannot be given per instance: those signatures' row forms must be refused.
HISTORY = [["item3", "item7", "item9"], ["", "item1", "item2"]]
CANDIDATES = [["item5", "item6"], ["item8", "item1"]]
TEXTS = ["space opera", "a love story"]
SIGNATURES = {
    "serving_default": ({"history": (HISTORY, tf.string), "k": (4, tf.int32)}, {"history": HISTORY, "k": 4},
                        [[{"history": h, "k": 4} for h in HISTORY]]),
    "recommend_from_text": ({"text": (TEXTS, tf.string), "k": (3, tf.int32)}, {"text": TEXTS, "k": 3},
                            [[{"text": t, "k": 3} for t in TEXTS]]),
    "embed_items": ({"text": (TEXTS, tf.string)}, TEXTS, [[{"text": t} for t in TEXTS], TEXTS]),
    "score": ({"history": (HISTORY, tf.string), "candidates": (CANDIDATES, tf.string)},
              {"history": HISTORY, "candidates": CANDIDATES},
              [[{"history": h, "candidates": c} for h, c in zip(HISTORY, CANDIDATES)]]),
}
PREDICT = {"inputs": SIGNATURES["serving_default"][1]}


def _grpc_outputs(stub, signature, inputs):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "tiny"
    request.model_spec.signature_name = signature
    for name, (value, dtype) in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value, dtype=dtype))
    return {name: tf.make_ndarray(proto) for name, proto in stub.Predict(request, timeout=30).outputs.items()}


def _assert_same(rest, expected):
    """REST JSON values equal gRPC arrays: strings exactly, float32 values to the bit."""
    assert set(rest) == set(expected)
    for name, array in expected.items():
        if array.dtype == object:
            assert np.array(rest[name]).tolist() == [[v.decode() for v in row] for row in array.tolist()]
        else:
            np.testing.assert_array_equal(np.asarray(rest[name], dtype=array.dtype), array)


def test_every_signature_is_covered(server):
    status, _, metadata = _http(server.rest_port, "GET", "/v1/models/tiny/metadata")
    signatures = metadata["metadata"]["signature_def"]["signature_def"]
    assert status == 200 and set(signatures) - {"__saved_model_init_op"} == set(SIGNATURES)


@pytest.mark.parametrize("signature", sorted(SIGNATURES))
def test_rest_answers_equal_grpc_answers(server, stub, signature):
    inputs, columnar, row_forms = SIGNATURES[signature]
    expected = _grpc_outputs(stub, signature, inputs)
    only = next(iter(expected)) if len(expected) == 1 else None
    status, _, answer = _predict(server.rest_port, {"signature_name": signature, "inputs": columnar})
    assert status == 200, answer
    _assert_same({only: answer["outputs"]} if only else answer["outputs"], expected)
    for instances in row_forms:
        # k is one per row ([B]), so the row format carries it in each instance.
        status, _, answer = _predict(server.rest_port, {"signature_name": signature, "instances": instances})
        assert status == 200, answer
        predictions = [{only: p} for p in answer["predictions"]] if only else answer["predictions"]
        _assert_same({name: [p[name] for p in predictions] for name in expected}, expected)


def test_default_signature_version_and_label_routes(server, stub):
    expected = _grpc_outputs(stub, "serving_default", SIGNATURES["serving_default"][0])
    for path in ("/v1/models/tiny:predict", "/v1/models/tiny/versions/1:predict",
                 "/v1/models/tiny/labels/stable:predict",
                 "/v1/models/ti%6Ey/LABELS/stable:PREDICT"):  # percent-decoded, case-insensitive as in TF Serving
        status, _, answer = _http(server.rest_port, "POST", path, PREDICT)
        assert status == 200, (path, answer)
        _assert_same(answer["outputs"], expected)


def test_binary_strings_as_b64(server, stub):
    expected = _grpc_outputs(stub, "embed_items", SIGNATURES["embed_items"][0])
    encoded = [{"b64": base64.b64encode(t.encode()).decode()} for t in TEXTS]
    status, _, answer = _predict(server.rest_port, {"signature_name": "embed_items", "inputs": {"text": encoded}})
    assert status == 200, answer
    np.testing.assert_array_equal(np.asarray(answer["outputs"], np.float32), expected["embeddings"])


def test_status_routes_equal_grpc_get_model_status(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        reply = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
            get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "tiny"}), timeout=10)
    expected = {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                          "status": {"error_code": "OK", "error_message": ""}}]}
    assert json_format.MessageToDict(reply, always_print_fields_with_no_presence=True) == expected
    for path in ("/v1/models/tiny", "/v1/models/tiny/versions/1", "/v1/models/tiny/labels/stable"):
        status, headers, answer = _http(server.rest_port, "GET", path)
        assert (status, headers["Content-Type"], answer) == (200, "application/json", expected), path


def test_metadata_routes_equal_grpc_get_model_metadata(server, stub):
    request = get_model_metadata_pb2.GetModelMetadataRequest(model_spec={"name": "tiny"},
                                                             metadata_field=["signature_def"])
    reply = stub.GetModelMetadata(request, timeout=10)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    reply.metadata["signature_def"].Unpack(signatures)
    options = {"always_print_fields_with_no_presence": True, "preserving_proto_field_name": True}
    expected = {"model_spec": {"name": "tiny", "version": "1", "signature_name": ""},
                "metadata": {"signature_def": json_format.MessageToDict(signatures, **options)}}
    for path in ("/v1/models/tiny/metadata", "/v1/models/tiny/versions/1/metadata",
                 "/v1/models/tiny/labels/stable/metadata"):
        status, _, answer = _http(server.rest_port, "GET", path)
        assert (status, answer) == (200, expected), path
    history = expected["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]["history"]
    assert history["dtype"] == "DT_STRING" and [d["size"] for d in history["tensor_shape"]["dim"]] == ["-1", "-1"]


# case -> (method, path, body, expected HTTP status, text the error must contain)
BAD_REQUESTS = {
    "unknown model": ("POST", "/v1/models/nope:predict", PREDICT, 404, "model 'nope' is not served"),
    "unknown model status": ("GET", "/v1/models/nope", None, 404, "model 'nope' is not served"),
    "unknown version": ("GET", "/v1/models/tiny/versions/7", None, 404, "model 'tiny' has no version 7"),
    "unknown label": ("POST", "/v1/models/tiny/labels/gold:predict", PREDICT, 404, "no version label 'gold'"),
    "unknown signature": ("POST", "/v1/models/tiny:predict", {**PREDICT, "signature_name": "nope"}, 404,
                          "no signature 'nope'"),
    "bad JSON": ("POST", "/v1/models/tiny:predict", b'{"inputs": [1, 2', 400, "JSON parse error: Expecting"),
    "empty body": ("POST", "/v1/models/tiny:predict", b"", 400, "the request body is empty"),
    "not an object": ("POST", "/v1/models/tiny:predict", [1, 2], 400, "expected a JSON object"),
    "neither format": ("POST", "/v1/models/tiny:predict", {"signature_name": "score"}, 400, "it has neither"),
    "both formats": ("POST", "/v1/models/tiny:predict", {"inputs": [1], "instances": [1]}, 400, "it has both"),
    "unknown key": ("POST", "/v1/models/tiny:predict", {**PREDICT, "model": "x"}, 400, "unknown key 'model'"),
    "unknown input name": ("POST", "/v1/models/tiny:predict", {"inputs": {**PREDICT["inputs"], "user": ["u1"]}},
                           400, "signature 'serving_default' has no input 'user'"),
    "missing input": ("POST", "/v1/models/tiny:predict", {"inputs": {"history": HISTORY}}, 400, "needs input 'k'"),
    "wrong dtype": ("POST", "/v1/models/tiny:predict", {"inputs": {"history": HISTORY, "k": "four"}}, 400,
                    "'inputs' input 'k': JSON value \"four\" is not an integer; expected int32"),
    "out of range": ("POST", "/v1/models/tiny:predict", {"inputs": {"history": HISTORY, "k": 1 << 40}}, 400,
                     "is out of the range of int32"),
    "ragged lists": ("POST", "/v1/models/tiny:predict", {"inputs": {"history": [["item1"], ["item1", "item2"]],
                                                                    "k": 2}}, 400, "does not fit shape [2, 1]"),
    "instances of different shapes": ("POST", "/v1/models/tiny:predict", {"signature_name": "score", "instances": [
        {"history": ["item1"], "candidates": ["item2"]}, {"history": ["item1", "item3"], "candidates": ["item2"]}]},
        400, "'instances'[1] input 'history' has shape [2]; 'instances'[0] has [1]"),
    "unnamed values for two inputs": ("POST", "/v1/models/tiny:predict", {"signature_name": "score",
                                                                         "instances": ["item1"]}, 400,
                                      "takes 2 inputs ['candidates', 'history']: name them"),
    "bad base64": ("POST", "/v1/models/tiny:predict", {"signature_name": "embed_items",
                                                       "inputs": [{"b64": "not base64!"}]}, 400, "is not valid base64"),
    "unknown item ids": ("POST", "/v1/models/tiny:predict", {"inputs": {"history": [["item1", "no-such-item"]],
                                                                        "k": 2}}, 400, "unknown item ids"),
    "k larger than the catalogue": ("POST", "/v1/models/tiny:predict", {"inputs": {"history": HISTORY, "k": 500}},
                                    400, "k is larger than the catalogue"),
    "oversized body": ("POST", "/v1/models/tiny:predict", {"inputs": {"history": [["item1"] * 20000], "k": 2}}, 413,
                       f"more than the server's max_message_bytes={MAX_MESSAGE_BYTES}"),
    "classify": ("POST", "/v1/models/tiny:classify", PREDICT, 501, "implements :predict"),
    "root": ("GET", "/", None, 404, "no route '/'"),
    "a file": ("GET", "/etc/passwd", None, 404, "no route '/etc/passwd'"),
    "a sub-path": ("GET", "/v1/models/tiny/versions/1/files", None, 404, "no route"),
    "predict by GET": ("GET", "/v1/models/tiny:predict", None, 405, "this route takes POST"),
    "status by POST": ("POST", "/v1/models/tiny", PREDICT, 405, "this route takes GET"),
    "status by DELETE": ("DELETE", "/v1/models/tiny", None, 405, "this route takes GET"),
    "no model name": ("GET", "/v1/models", None, 400, "Missing model name in request."),
    "version beyond int64": ("GET", "/v1/models/tiny/versions/99999999999999999999", None, 400, "is not an int64"),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_requests_get_tf_serving_json_errors(server, case):
    method, path, body, expected_status, message = BAD_REQUESTS[case]
    status, headers, answer = _http(server.rest_port, method, path, body)
    assert status == expected_status, answer
    assert headers["Content-Type"] == "application/json" and set(answer) == {"error"}
    assert message in answer["error"], answer["error"]
    if expected_status == 405:
        assert headers["Allow"] == ("POST" if path.endswith(":predict") else "GET")


def test_keep_alive_connection_serves_several_requests(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
    try:
        for body in (PREDICT, {"inputs": {"k": 1}}, PREDICT):  # an error answer keeps the connection usable
            connection.request("POST", "/v1/models/tiny:predict", body=json.dumps(body))
            response = connection.getresponse()
            response.read()
            assert response.status in (200, 400) and not response.will_close
    finally:
        connection.close()


def test_a_stalled_client_does_not_block_others(server):
    with socket.create_connection(("127.0.0.1", server.rest_port)) as stalled:
        stalled.sendall(b"POST /v1/models/tiny:predict HTTP/1.1\r\nContent-Length: 1000\r\n\r\n{")
        start = time.monotonic()
        status, _, _ = _predict(server.rest_port, PREDICT)
        assert status == 200 and time.monotonic() - start < 10


def _families(text):
    return {family.name: family for family in text_string_to_metric_families(text)}


def _request_counts(port):
    """(api, method, signature, status, version) -> count of the request counter, for model 'tiny'."""
    status, headers, page = _http(port, "GET", METRICS_PATH)
    assert status == 200 and headers["Content-Type"].startswith("text/plain"), page
    family = _families(page)["tfrec_request_count"]
    return {(s.labels["api"], s.labels["method"], s.labels["signature_name"], s.labels["status"], s.labels["version"]):
            s.value for s in family.samples if s.name.endswith("_total") and s.labels["model_name"] == "tiny"}


def test_metrics_count_the_requests_sent(server, stub):
    before = _request_counts(server.rest_port)
    sent = {
        ("rest", "predict", "score", "OK", "1"): 3,
        ("rest", "predict", "serving_default", "INVALID_ARGUMENT", "1"): 2,
        ("rest", "predict", "unknown", "NOT_FOUND", "unknown"): 1,  # version 9 does not exist
        ("rest", "metadata", "", "OK", "1"): 1,
        ("grpc", "predict", "embed_items", "OK", "1"): 2,
        ("grpc", "metadata", "", "OK", "1"): 1,
    }
    score = {"signature_name": "score", "inputs": SIGNATURES["score"][1]}
    for _ in range(3):
        assert _predict(server.rest_port, score)[0] == 200
    for k in (0, 500):
        assert _predict(server.rest_port, {"inputs": {"history": HISTORY, "k": k}})[0] == 400
    assert _http(server.rest_port, "POST", "/v1/models/tiny/versions/9:predict", PREDICT)[0] == 404
    assert _http(server.rest_port, "GET", "/v1/models/tiny/metadata")[0] == 200
    for _ in range(2):
        _grpc_outputs(stub, "embed_items", SIGNATURES["embed_items"][0])
    stub.GetModelMetadata(get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec={"name": "tiny"}, metadata_field=["signature_def"]), timeout=10)
    assert _predict(server.rest_port, b"not json")[0] == 400  # refused before naming a signature: not counted
    after = _request_counts(server.rest_port)
    keys = set(after) | set(sent)
    assert {key: after.get(key, 0) - before.get(key, 0) for key in keys} == {key: sent.get(key, 0) for key in keys}
    page = _http(server.rest_port, "GET", METRICS_PATH)[2]
    tf_serving = {s.labels["status"]: s.value for s in _families(page)[REQUEST_COUNT].samples
                  if s.labels["model_name"] == "tiny"}  # Predict only, as TF Serving counts
    assert tf_serving["OK"] >= 5 and tf_serving["INVALID_ARGUMENT"] >= 2 and tf_serving["NOT_FOUND"] >= 1
    latency = {(s.labels["API"], s.labels["entrypoint"]): s.value for s in _families(page)[REQUEST_LATENCY].samples
               if s.name.endswith("_count") and s.labels["model_name"] == "tiny"}
    assert latency[("Predict", "REST")] >= 3 and latency[("GetModelMetadata", "GRPC")] >= 1
    assert [(s.labels, s.value) for s in _families(page)[LOAD_ATTEMPT_COUNT].samples] == [
        ({"model_path": "tiny/1", "status": "success"}, 1.0)]
    events = _families(page)["tfrec_model_event_count"]
    assert [(s.labels, s.value) for s in events.samples if s.name.endswith("_total")] == [
        ({"model_name": "tiny", "version": "1", "event": "load", "outcome": "success"}, 1.0)]


def test_https_and_bearer_token(secure, stub):
    server, context = secure
    port, auth = server.rest_port, {"Authorization": f"Bearer {TOKEN}"}
    expected = _grpc_outputs(stub, "serving_default", SIGNATURES["serving_default"][0])  # same export, same answer
    status, _, answer = _predict(port, PREDICT, headers=auth, context=context)
    assert status == 200, answer
    _assert_same(answer["outputs"], expected)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        for method, path, body in (("POST", "/v1/models/tiny:predict", PREDICT), ("GET", "/v1/models/tiny/metadata",
                                                                                  None)):
            status, response_headers, answer = _http(port, method, path, body, headers, context)
            assert status == 401 and "bearer token" in answer["error"], answer
            assert response_headers["WWW-Authenticate"] == "Bearer"
    status, _, answer = _http(port, "GET", "/v1/models/tiny", context=context)  # status needs no token
    assert status == 200 and answer["model_version_status"][0]["state"] == "AVAILABLE"
    assert _http(port, "GET", METRICS_PATH, headers=auth, context=context)[0] == 404  # metrics off
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):  # plaintext on the HTTPS port
        _http(port, "GET", "/v1/models/tiny")


def test_status_without_the_token_shows_states_not_load_errors(tmp_path):
    base = tmp_path / "tiny"
    sf.save_version(str(base), 1, seed=0, warmup=False)
    (base / "2").mkdir()
    (base / "2" / "saved_model.pb").write_bytes(b"not a SavedModel")
    server = _start(tmp_path, auth_token=TOKEN)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:  # until version 1 serves and version 2 has failed
            answers = {auth: _http(server.rest_port, "GET", "/v1/models/tiny", headers=headers)[2]
                       for auth, headers in ((False, {}), (True, {"Authorization": f"Bearer {TOKEN}"}))}
            if [v["state"] for v in answers[True].get("model_version_status", [])] == ["END", "AVAILABLE"]:
                break
            time.sleep(0.2)
        target = f"127.0.0.1:{server.port}"
        with RecommenderClient(target, "tiny", auth_token=TOKEN) as client, \
                RecommenderClient(target, "tiny", version=2, auth_token=TOKEN) as broken:
            grpc_status = client.status()
            with pytest.raises(ServingError) as failed:  # version 2 is not served: an error message, no path
                broken.recommend([["item1"]])
    finally:
        server.stop()
    assert grpc_status[0].version == 2 and "cannot load .../tiny/2" in grpc_status[0].error_message
    assert str(tmp_path) not in grpc_status[0].error_message and str(tmp_path) not in failed.value.message
    anonymous, operator = (answers[auth]["model_version_status"] for auth in (False, True))
    assert [(v["version"], v["state"]) for v in anonymous] == [("2", "END"), ("1", "AVAILABLE")]
    assert anonymous[0]["status"] == {"error_code": operator[0]["status"]["error_code"], "error_message": ""}
    message = operator[0]["status"]["error_message"]
    assert "cannot load .../tiny/2" in message and str(tmp_path) not in message, message


def test_a_slow_body_times_out_without_holding_the_server(secure):
    server, context = secure
    with socket.create_connection(("localhost", server.rest_port)) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(f"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                        "Content-Length: 100\r\n\r\n{".encode())
            tls.settimeout(20)
            start, answer = time.monotonic(), b""
            while b"}" not in answer:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive within 1 s" in answer
    assert time.monotonic() - start < 10


def test_metrics_need_the_rest_port(models):
    monitoring = text_format.Parse("prometheus_config { enable: true }", protos.MonitoringConfig())
    with pytest.raises(config.ConfigError, match="served on the REST port: set rest_api_port"):
        ServerOptions(text_format.Parse(CONFIG % models[0], model_server_config_pb2.ModelServerConfig()),
                      monitoring_config=monitoring)


def test_the_command_line_serves_rest_and_metrics(models, tmp_path):
    port, rest_port = sf.free_port(), sf.free_port()
    process = sf.ServerProcess([f"--model_name=tiny", f"--model_base_path={models[0] / 'tiny'}",
                                f"--rest_api_port={rest_port}", "--monitoring_config_file=serving/monitoring.config"],
                               port, str(tmp_path / "server.log"))
    try:
        process.wait_serving()
        status, _, answer = _predict(rest_port, PREDICT)
        assert status == 200 and len(answer["outputs"]["item_ids"]) == len(HISTORY), answer
        status, _, page = _http(rest_port, "GET", "/monitoring/prometheus/metrics")
        assert status == 200 and 'signature_name="serving_default"' in page
        assert f"Running REST API at http://127.0.0.1:{rest_port} (Prometheus metrics at /monitoring/" \
               in process.log()
    finally:
        assert process.stop() == 0, process.log()[-2000:]


def test_the_command_line_refuses_metrics_without_a_rest_port(models):
    result = subprocess.run([sys.executable, "-m", "tfrec.serve", "--server=embedded", "--model_name=tiny",
                             f"--model_base_path={models[0] / 'tiny'}",
                             "--monitoring_config_file=serving/monitoring.config"],
                            cwd=sf.REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "which are served on the REST port: give --rest_api_port" in result.stderr
