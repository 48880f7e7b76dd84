"""The embedded server over a real localhost socket: answers, errors, hot reload, reload config."""

import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import (
    classification_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

import serving_fixtures as sf
from tfrec.client import RecommenderClient, ServingError
from tfrec.server.grpc_status import MAX_MESSAGE_BYTES, bounded
from tfrec.server.servable import broadcast_scalars

MAX_MESSAGE_BYTES = 64 * 1024

CONFIG = """
model_config_list {
  config {
    name: "tiny" base_path: "%(base)s/tiny" model_platform: "tensorflow"
    model_version_policy { specific { versions: 1 versions: 2 } }
    version_labels { key: "stable" value: 1 }
    version_labels { key: "canary" value: 2 }
  }
  config { name: "reloadable" base_path: "%(base)s/reloadable" model_platform: "tensorflow" }
}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    models = {
        1: sf.save_version(str(base / "tiny"), 1, seed=0),
        2: sf.save_version(str(base / "tiny"), 2, seed=1, warmup=False),
    }
    sf.save_version(str(base / "reloadable"), 1, seed=2, model_name="reloadable")
    config_path = base / "models.config"
    config_path.write_text(CONFIG % {"base": base})
    port = sf.free_port()
    proc = sf.ServerProcess(
        [
            f"--model_config_file={config_path}",
            "--file_system_poll_wait_seconds=0.2",
            f"--max_message_bytes={MAX_MESSAGE_BYTES}",
            "--allow_config_reload",
            f"--model_root={base}",
        ],
        port,
        str(base / "server.log"),
    )
    try:
        proc.wait_serving()
        proc.base, proc.models, proc.config_text = base, models, CONFIG % {"base": base}
        yield proc
    finally:
        code = proc.stop()
    assert code == 0, proc.log()[-2000:]
    assert "Server stopped" in proc.log()


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.target) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def test_answers_equal_in_process_savedmodel(server):
    histories = [["item3", "item7", "item9"], ["item1"], []]
    padded = [["item3", "item7", "item9"], ["", "", "item1"], ["", "", ""]]
    with RecommenderClient(server.target, "tiny") as client:
        recs = client.recommend(histories, k=5)
        text_recs = client.recommend_from_text(["space opera", "a love story"], k=4)
        embeddings = client.embed_items(["space opera"])
        scores = client.score([["item1", "item2"]], [["item5", "item6", "item7"]])
    expected = server.models[2].signatures["serving_default"](history=tf.constant(padded), k=tf.constant([5] * 3))
    assert recs.version == 2 and recs.item_ids.shape == (3, 5)
    assert recs.item_ids.tolist() == [[b.decode() for b in row] for row in expected["item_ids"].numpy()]
    np.testing.assert_allclose(recs.scores, expected["scores"].numpy(), rtol=1e-6)
    assert not set(recs.item_ids[0]) & {"item3", "item7", "item9"}  # history excluded
    assert recs.to_lists()[1][0] == (recs.item_ids[1][0], pytest.approx(float(recs.scores[1][0])))
    signatures = server.models[2].signatures
    expected_text = signatures["recommend_from_text"](
        text=tf.constant(["space opera", "a love story"]), k=tf.constant([4, 4])
    )
    np.testing.assert_allclose(text_recs.scores, expected_text["scores"].numpy(), rtol=1e-6)
    expected_emb = signatures["embed_items"](text=tf.constant(["space opera"]))["embeddings"].numpy()
    np.testing.assert_allclose(embeddings.embeddings, expected_emb, rtol=1e-6)
    expected_scores = signatures["score"](
        history=tf.constant([["item1", "item2"]]), candidates=tf.constant([["item5", "item6", "item7"]])
    )["scores"].numpy()
    np.testing.assert_allclose(scores.scores, expected_scores, rtol=1e-6)


def test_versions_and_labels_route_to_the_right_model(server):
    history = [["item4", "item5"]]
    expected = server.models[1].signatures["serving_default"](history=tf.constant(history), k=tf.constant([3]))
    for kwargs in ({"version": 1}, {"version_label": "stable"}):
        with RecommenderClient(server.target, "tiny", **kwargs) as client:
            recs = client.recommend(history, k=3)
        assert recs.version == 1
        np.testing.assert_allclose(recs.scores, expected["scores"].numpy(), rtol=1e-6)
    with RecommenderClient(server.target, "tiny", version_label="canary") as client:
        assert client.recommend(history, k=3).version == 2


def test_metadata_status_and_health(server):
    with RecommenderClient(server.target, "tiny", version=1) as client:
        meta = client.metadata()
        assert [s.version for s in client.status()] == [1]
    with RecommenderClient(server.target, "tiny") as client:
        status = client.status()
    assert meta.version == 1
    recommend = meta.signatures["serving_default"]
    assert recommend["inputs"]["history"].dtype == "string" and recommend["inputs"]["history"].shape == (None, None)
    assert recommend["inputs"]["k"].shape == (None,)
    assert set(recommend["outputs"]) == {"item_ids", "scores"}
    assert {"recommend_from_text", "embed_items", "score"} <= set(meta.signatures)
    assert [(s.version, s.state, s.error_code) for s in status] == [(2, "AVAILABLE", 0), (1, "AVAILABLE", 0)]
    with grpc.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "tiny", "reloadable"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=name))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert "Successfully loaded model 'tiny' version 2" in server.log()
    assert "Running gRPC ModelServer at 127.0.0.1:%d" % server.port in server.log()


def _request(model="tiny", signature="", history=(("item1", "item2"),), k=3, output_filter=(), **spec):
    request = predict_pb2.PredictRequest(output_filter=list(output_filter))
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    if history is not None:
        request.inputs["history"].CopyFrom(tf.make_tensor_proto(history, dtype=tf.string))
    if k is not None:
        request.inputs["k"].CopyFrom(tf.make_tensor_proto(k, dtype=tf.int32))
    return request


def _with_input(name, value, dtype, **kwargs):
    request = _request(**kwargs)
    request.inputs[name].CopyFrom(tf.make_tensor_proto(value, dtype=dtype))
    return request


def _crafted(name, dims, **values):
    """A request whose input `name` is a hand-made TensorProto: declared `dims`, then `values` fields."""
    request = _request()
    proto = request.inputs[name]
    proto.Clear()
    proto.dtype = (tf.int32 if name == "k" else tf.string).as_datatype_enum
    for size in dims:
        proto.tensor_shape.dim.add(size=size)
    for field, content in values.items():
        getattr(proto, field).extend(content)
    return request


SIGNATURE = "of signature 'serving_default'"
# case -> (request, expected code, text the message must contain)
BAD_REQUESTS = {
    "wrong dtype": (
        _with_input("history", [[1, 2]], tf.int32),
        "INVALID_ARGUMENT",
        f"input 'history' {SIGNATURE} has dtype int32; expected string",
    ),
    "wrong rank": (
        _with_input("history", ["item1", "item2"], tf.string),
        "INVALID_ARGUMENT",
        f"input 'history' {SIGNATURE} has shape [2] (rank 1); expected rank 2 [?, ?]",
    ),
    "k a matrix": (
        _with_input("k", [[3]], tf.int32),
        "INVALID_ARGUMENT",
        f"input 'k' {SIGNATURE} has shape [1, 1] (rank 2); expected rank 1 [?]",
    ),
    "unknown model": (_request(model="nope"), "NOT_FOUND", "model 'nope' is not served"),
    "unknown version": (
        _request(version=7),
        "NOT_FOUND",
        "model 'tiny' version 7 is not available; available versions are [1, 2]",
    ),
    "unknown version label": (_request(version_label="gold"), "NOT_FOUND", "no version label 'gold'"),
    "unknown signature": (_request(signature="classify_all"), "NOT_FOUND", "no signature 'classify_all'"),
    "missing input": (_request(k=None), "INVALID_ARGUMENT", "needs input 'k'"),
    "unknown input": (_with_input("user", ["u1"], tf.string), "INVALID_ARGUMENT", "has no input 'user'"),
    "empty batch": (
        _request(history=np.zeros((0, 2), dtype=object)),
        "INVALID_ARGUMENT",
        f"input 'history' {SIGNATURE} has an empty batch",
    ),
    "k larger than catalogue": (_request(k=500), "INVALID_ARGUMENT", "k is larger than the catalogue"),
    "unknown item ids": (
        _request(history=[["item1", "no-such-item"]]),
        "INVALID_ARGUMENT",
        "unknown item ids:] [no-such-item]",
    ),
    "oversized message": (
        _request(history=[["item1"] * 10000]),
        "RESOURCE_EXHAUSTED",
        "more than the server's max_message_bytes=65536; largest tensors: 'history'",
    ),
    "message over the transport limit": (
        _request(history=[["item1"] * 40000]),
        "RESOURCE_EXHAUSTED",
        "Received message larger than max",
    ),
    "unknown output filter": (_request(output_filter=["logits"]), "INVALID_ARGUMENT", "has no output 'logits'"),
    # Declared shapes are checked before TensorFlow fills them from a single value.
    "80-byte k declaring [20000, 20000]": (_crafted("k", [20000, 20000], int_val=[3]), "INVALID_ARGUMENT",
                                           "expected rank 1"),
    "history declaring a million behaviours": (_crafted("history", [1, 1000000], string_val=[b"item1"]),
                                               "INVALID_ARGUMENT", "declares shape [1, 1000000] (1000000 elements) "
                                               "but carries 1 values"),
    "history declaring 20M elements": (_crafted("history", [20000, 1000], string_val=[b"item1"]),
                                       "INVALID_ARGUMENT", "at most 4194304 are accepted"),
    "negative dimension": (_crafted("history", [1, -2], string_val=[b"item1"]), "INVALID_ARGUMENT",
                           "dimensions must not be negative"),
    "string tensor carrying int_val": (_crafted("history", [1, 1], string_val=[b"item1"], int_val=[7]),
                                       "INVALID_ARGUMENT", "has dtype string but carries int_val"),
    "non-UTF-8 item id": (_crafted("history", [1, 1], string_val=[b"\xff\xfeitem"]), "INVALID_ARGUMENT",
                          "which is not UTF-8 text"),
    "history of width 0": (_crafted("history", [1, 0]), "INVALID_ARGUMENT", "only the batch dimension may be empty"),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_malformed_request_gets_status_code_and_clear_message(stub, case):
    request, code, message = BAD_REQUESTS[case]
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(request, timeout=10)
    assert info.value.code().name == code, info.value.details()
    assert message in info.value.details()
    assert stub.Predict(_request(), timeout=10).outputs["item_ids"].tensor_shape.dim[1].size == 3  # still serving


def test_other_rpcs_errors(server, stub):
    with pytest.raises(grpc.RpcError) as info:
        stub.Classify(classification_pb2.ClassificationRequest(), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with RecommenderClient(server.target, "tiny", version=9) as client:
        with pytest.raises(ServingError) as err:
            client.status()
    assert err.value.code == grpc.StatusCode.NOT_FOUND and "no version 9" in err.value.message


@pytest.mark.parametrize("method", ["/tensorflow.serving.PredictionService/GetModelMetadata",
                                    "/tensorflow.serving.PredictionService/Predict",
                                    "/tensorflow.serving.ModelService/GetModelStatus"])
def test_a_request_that_does_not_parse_is_invalid_argument(server, method):
    with grpc.insecure_channel(server.target) as channel:
        call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as info:
            call(b"\xff\xff\xff\xff not a protobuf", timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value
    assert "are not a valid request message" in info.value.details()


def test_hot_reload_without_failed_requests(server):
    results, failures, stop = [], [], threading.Event()

    def loop():
        with RecommenderClient(server.target, "reloadable", retries=0) as client:
            while not stop.is_set() and len(results) < 20000:
                try:
                    results.append(client.recommend([["item1", "item2"]], k=3).version)
                except ServingError as e:
                    failures.append(e)

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        time.sleep(0.3)
        sf.save_version(str(server.base / "reloadable"), 2, seed=3, model_name="reloadable")
        deadline = time.monotonic() + 30
        while (not results or results[-1] != 2) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join()
    assert failures == []
    assert results[0] == 1 and results[-1] == 2
    first_new = results.index(2)
    assert set(results[first_new:]) == {2}
    with RecommenderClient(server.target, "reloadable") as client:
        assert [(s.version, s.state) for s in client.status()] == [(2, "AVAILABLE"), (1, "END")]
    log = server.log()
    loaded_new = log.index("Successfully loaded model 'reloadable' version 2")
    assert loaded_new < log.index("Unloading model 'reloadable' version 1")
    assert ".tmp-" not in log  # the temp directory was never taken for a version


def test_a_version_failing_warm_up_is_not_served_and_the_old_one_stays(server):
    sf.save_version(str(server.base / "reloadable"), 3, seed=4, model_name="reloadable", warmup_history=["ghost-id"])
    with RecommenderClient(server.target, "reloadable") as client:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = {s.version: s for s in client.status()}
            if 3 in status and status[3].error_code:
                break
            time.sleep(0.1)
        assert status[3].state == "END" and status[3].error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert "warm-up record 1 failed" in status[3].error_message and "ghost-id" in status[3].error_message
        assert status[2].state == "AVAILABLE"
        assert client.recommend([["item1"]], k=2).version == 2
    assert "Successfully loaded model 'tiny' version 1 (2 warm-up requests replayed" in server.log()


def test_reload_config_request(server):
    config = text_format.Parse(server.config_text, model_server_config_pb2.ModelServerConfig())
    config.model_config_list.config[0].version_labels["blue"] = 1
    del config.model_config_list.config[1]
    with grpc.insecure_channel(server.target) as channel:
        models = model_service_pb2_grpc.ModelServiceStub(channel)
        models.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(config=config), timeout=30)
        with RecommenderClient(server.target, "tiny", version_label="blue") as client:
            assert client.recommend([["item1"]], k=2).version == 1
        with RecommenderClient(server.target, "reloadable") as client:
            with pytest.raises(ServingError) as err:
                client.recommend([["item1"]], k=2)
        assert err.value.code == grpc.StatusCode.NOT_FOUND
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(service="")).status == health_pb2.HealthCheckResponse.SERVING
        bad = model_server_config_pb2.ModelServerConfig()
        bad.model_config_list.config.add(name="x")
        with pytest.raises(grpc.RpcError) as info:
            models.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(config=bad), timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "config[0] (name 'x'): missing base_path" in info.value.details()


def test_only_a_well_formed_numeric_scalar_is_repeated_to_the_batch():
    # a 4 KB request declaring 4M rows: a string `k` is not copied to every row (it cost gigabytes)
    specs = {"history": tf.TensorSpec([None, None], tf.string), "k": tf.TensorSpec([None], tf.int32)}
    history = tf.make_tensor_proto(np.array([[b""]], object))
    history.tensor_shape.dim[0].size = 4_194_304
    hostile = {"history": history, "k": tf.make_tensor_proto(b"x" * 4096)}
    assert broadcast_scalars(specs, hostile)["k"] is hostile["k"]  # left for its dtype check to refuse
    empty_k = tf.make_tensor_proto(np.array(0, np.int32))
    empty_k.ClearField("int_val")  # declares one value, carries none
    assert broadcast_scalars(specs, {"history": history, "k": empty_k})["k"] is empty_k
    good = broadcast_scalars(specs, {"history": tf.make_tensor_proto([["a"], ["b"]]), "k": tf.make_tensor_proto(3)})
    assert tf.make_ndarray(good["k"]).tolist() == [3, 3]


def test_error_messages_fit_the_grpc_trailer():
    message = bounded("unknown item ids in history: ['" + "\N{MUSICAL SYMBOL HALF NOTE}" * 200_000 + "']")
    assert len(message.encode()) <= MAX_MESSAGE_BYTES and message.endswith("more characters cut)")
    assert bounded("short") == "short"
