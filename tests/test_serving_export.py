"""tfrec's own exports served over a real localhost socket: client answers equal the in-process SavedModel."""

import http.client
import json
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

import grpc
import serving_fixtures as sf
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tfrec import data
from tfrec.client import RecommenderClient
from tfrec.exporting import exporter, warmup
from tfrec.models import ModelConfig, build_model

NUM_ITEMS = 30
HISTORIES = [["m3", "m5"], ["m7", "m8", "m9", "m1"]]
TEXTS = ["space robot war", "love story in paris"]
RATINGS = [[5, 1], [4, 4, 2, 3]]
TIMESTAMPS = [[1000, 90000], [10, 20, 3000, 500000]]
NOW = [100000, 2000000]
EVENTS = [["view", "buy"], ["view", "view", "buy", "view"]]
USERS = ["u1", "a new user"]


def _export(task, base):
    vocab = data.Vocabulary([f"m{i}" for i in range(1, NUM_ITEMS + 1)], ["u1"], ["buy", "view"])
    rng = np.random.default_rng(1)
    words = "alien space crime comedy love paris war drama robot story".split()
    texts = [""] + [" ".join(rng.choice(words, 4)) for _ in range(NUM_ITEMS)]
    config = ModelConfig(task=task, encoder="tiny", sequence_length=16, embedding_dim=16, history_layers=1,
                         use_ratings=True, use_time_gaps=True, use_user_ids=True)
    model = build_model(config, SimpleNamespace(vocab=vocab, item_texts=texts, item_titles=texts, rating_mean=3.0))
    return exporter.export_model(model, str(base), task)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("exports")
    results = {task: _export(task, base) for task in ("retrieval", "ranking")}
    config = base / "models.config"
    config.write_text(
        "model_config_list {\n"
        + "".join(f'  config {{ name: "{t}" base_path: "{base / t}" model_platform: "tensorflow" }}\n' for t in results)
        + "}\n"
    )
    port, rest_port = sf.free_port(), sf.free_port()
    server = sf.ServerProcess([f"--model_config_file={config}", f"--rest_api_port={rest_port}"], port,
                              str(base / "server.log"))
    server.rest_port = rest_port
    try:
        server.wait_serving()
        server.export_paths = {task: result.path for task, result in results.items()}
        yield server, {task: exporter.load(result.path) for task, result in results.items()}
    finally:
        server.stop()


def _padded(histories):
    width = max(len(h) for h in histories)
    return tf.constant([[""] * (width - len(h)) + h for h in histories])


@pytest.mark.parametrize("task", ["retrieval", "ranking"])
def test_explain_over_grpc_equals_in_process(served, task):
    server, loaded = served
    candidates = [["m10", "m11", "m3"], ["m12", "m2", "m1"]]
    with RecommenderClient(f"localhost:{server.port}", task) as client:
        explanation = client.explain(HISTORIES, candidates)
        in_context = client.explain(HISTORIES, candidates, ratings=RATINGS, timestamps=TIMESTAMPS, now=NOW,
                                    events=EVENTS, user_ids=USERS)
    expected = loaded[task].signatures["explain"](history=_padded(HISTORIES), candidates=tf.constant(candidates))
    np.testing.assert_allclose(explanation.scores, expected["scores"].numpy(), atol=1e-5)
    for row, history in enumerate(HISTORIES):
        served_row = expected["influence"].numpy()[row, :, -len(history):]
        np.testing.assert_allclose(explanation.influence[row, :, :len(history)], served_row, atol=1e-5)
        assert not explanation.influence[row, :, len(history):].any()
    context = loaded[task].signatures["explain_in_context"](
        history=_padded(HISTORIES), candidates=tf.constant(candidates),
        history_ratings=tf.constant([[0, 0] + RATINGS[0], RATINGS[1]], tf.float32),
        history_timestamps=tf.constant([[0, 0] + TIMESTAMPS[0], TIMESTAMPS[1]], tf.int64),
        history_events=tf.constant([["", ""] + EVENTS[0], EVENTS[1]]), timestamp=tf.constant(NOW, tf.int64),
        user_id=tf.constant(USERS))
    np.testing.assert_allclose(in_context.scores, context["scores"].numpy(), atol=1e-5)
    assert not np.allclose(in_context.scores, explanation.scores)  # the context reached the model
    top = explanation.strongest(1, 0, count=2)
    assert all(value > 0 for _, value in top) and len(top) <= 2
    with pytest.raises(ValueError, match=r"histories\[1\] is empty"):
        client.explain([["m1"], []], [["m2"], ["m3"]])


def test_recommend_over_grpc_equals_in_process(served):
    server, loaded = served
    expected = loaded["retrieval"].signatures["serving_default"](history=_padded(HISTORIES), k=tf.constant([5] * 2))
    with RecommenderClient(server.target, "retrieval") as client:
        got = client.recommend(HISTORIES, k=5)
    np.testing.assert_array_equal(got.item_ids, expected["item_ids"].numpy().astype(str))
    np.testing.assert_allclose(got.scores, expected["scores"].numpy(), rtol=1e-5, atol=1e-6)
    assert got.version == 1
    for history, row in zip(HISTORIES, got.item_ids):
        assert not set(history) & set(row)
    # Each answer carries the titles of the export's catalogue: no second lookup.
    np.testing.assert_array_equal(got.item_titles, expected["item_titles"].numpy().astype(str))
    assert got.item_titles.shape == got.item_ids.shape and all(t for t in got.item_titles.ravel())


def test_text_signatures_over_grpc_equal_in_process(served):
    server, loaded = served
    signatures = loaded["retrieval"].signatures
    with RecommenderClient(server.target, "retrieval") as client:
        embeddings = client.embed_items(TEXTS)
        from_text = client.recommend_from_text(TEXTS, k=3)
    np.testing.assert_allclose(
        embeddings.embeddings, signatures["embed_items"](text=tf.constant(TEXTS))["embeddings"].numpy(), atol=1e-5
    )
    expected = signatures["recommend_from_text"](text=tf.constant(TEXTS), k=tf.constant([3] * 2))
    np.testing.assert_array_equal(from_text.item_ids, expected["item_ids"].numpy().astype(str))


def test_score_over_grpc_equals_in_process(served):
    server, loaded = served
    candidates = [["m2", "m4", "m6"], ["m10", "m11", "m12"]]
    with RecommenderClient(server.target, "ranking") as client:
        got = client.score(HISTORIES, candidates)
    expected = loaded["ranking"].signatures["score"](history=_padded(HISTORIES), candidates=tf.constant(candidates))
    np.testing.assert_allclose(got.scores, expected["scores"].numpy(), rtol=1e-5, atol=1e-5)


def _padded_numbers(rows, dtype):
    width = max(len(row) for row in rows)
    return tf.constant([[0] * (width - len(row)) + row for row in rows], dtype)


def _context():
    """The in-process `*_in_context` inputs of RATINGS, TIMESTAMPS, EVENTS, NOW and USERS."""
    return {
        "history_ratings": _padded_numbers(RATINGS, tf.float32),
        "history_timestamps": _padded_numbers(TIMESTAMPS, tf.int64),
        "history_events": _padded(EVENTS),
        "timestamp": tf.constant(NOW, tf.int64),
        "user_id": tf.constant(USERS),
    }


CLIENT_CONTEXT = {"ratings": RATINGS, "timestamps": TIMESTAMPS, "events": EVENTS, "now": NOW, "user_ids": USERS}


def test_recommend_with_context_over_grpc_equals_in_process(served):
    server, loaded = served
    expected = loaded["retrieval"].signatures["recommend_in_context"](
        history=_padded(HISTORIES), k=tf.constant([5] * 2), **_context())
    with RecommenderClient(server.target, "retrieval") as client:
        got = client.recommend(HISTORIES, k=5, **CLIENT_CONTEXT)
        plain = client.recommend(HISTORIES, k=5)
    np.testing.assert_array_equal(got.item_ids, expected["item_ids"].numpy().astype(str))
    np.testing.assert_allclose(got.scores, expected["scores"].numpy(), rtol=1e-5, atol=1e-6)
    assert np.abs(got.scores - plain.scores).max() > 1e-4  # the context reached the model


def test_score_with_context_over_grpc_equals_in_process(served):
    server, loaded = served
    candidates = [["m2", "m4"], ["m10", "m11"]]
    expected = loaded["ranking"].signatures["score_in_context"](
        history=_padded(HISTORIES), candidates=tf.constant(candidates), **_context())
    with RecommenderClient(server.target, "ranking") as client:
        got = client.score(HISTORIES, candidates, **CLIENT_CONTEXT)
    np.testing.assert_allclose(got.scores, expected["scores"].numpy(), rtol=1e-5, atol=1e-5)


def _post_predict(port, model, body):
    """POST /v1/models/MODEL:predict with the JSON `body`; (HTTP status, decoded JSON answer)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", f"/v1/models/{model}:predict", json.dumps(body),
                           {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def _rest_predict(port, model, signature, inputs):
    """POST /v1/models/MODEL:predict in the columnar format; the decoded JSON answer."""
    body = {"signature_name": signature,
            "inputs": {name: np.char.decode(v.astype(bytes)).tolist() if v.dtype == object else v.tolist()
                       for name, v in inputs.items()}}
    status, answer = _post_predict(port, model, body)
    assert status == 200, answer
    return answer["outputs"]


def test_unknown_history_items_are_skipped_and_reported_over_rest_and_grpc(served):
    server, loaded = served
    # A history of one unseen SKU: answered from nothing (a new user), the SKU reported.
    status, answer = _post_predict(server.rest_port, "retrieval", {"inputs": {"history": [["999999"]], "k": 3}})
    assert status == 200, answer
    assert answer["outputs"]["skipped_items"] == [["999999"]] and len(answer["outputs"]["item_ids"][0]) == 3
    histories = [["m3", "new-1", "m5"], ["m7", "m8", "m9", "m1"]]
    with RecommenderClient(server.target, "retrieval") as client:
        got = client.recommend(histories, k=4)
        want = client.recommend(HISTORIES, k=4)
        in_context = client.recommend(histories, k=4, ratings=[[5, 2, 1], RATINGS[1]])
        explained = client.explain(histories, [["m10"], ["m11"]])
    assert got.skipped_items == in_context.skipped_items == explained.skipped_items == [["new-1"], []]
    np.testing.assert_array_equal(got.item_ids, want.item_ids)
    np.testing.assert_allclose(got.scores, want.scores, atol=1e-6)
    assert explained.influence[0, 0, 1] == 0 and explained.influence[0, 0, [0, 2]].all()
    with RecommenderClient(server.target, "ranking") as client:
        scores = client.score(histories, [["m2"], ["m4"]])
        plain = client.score(HISTORIES, [["m2"], ["m4"]])
    assert scores.skipped_items == [["new-1"], []]
    np.testing.assert_allclose(scores.scores, plain.scores, atol=1e-5)


def test_k_per_row_in_the_rest_row_format_and_over_grpc(served):
    server, _ = served
    rows = [{"history": ["", "", "m3", "m5"], "k": 2}, {"history": ["m7", "m8", "m9", "m1"], "k": 4}]
    status, answer = _post_predict(server.rest_port, "retrieval", {"instances": rows})
    assert status == 200, answer
    first, second = answer["predictions"]
    assert len(first["item_ids"]) == len(second["item_ids"]) == 4  # max(k) columns
    assert first["item_ids"][2:] == ["", ""] and all(second["item_ids"]) and all(first["item_ids"][:2])
    with RecommenderClient(server.target, "retrieval") as client:
        got = client.recommend(HISTORIES, k=[2, 4])
        with client.batching(max_batch_size=8, max_delay_ms=50) as batched:
            alone = batched.recommend([HISTORIES[0]], k=2)
    assert got.item_ids[0].tolist() == first["item_ids"] and got.item_ids[1].tolist() == second["item_ids"]
    assert alone.item_ids.tolist() == [first["item_ids"][:2]]
    context = dict(history_ratings=[0, 0, 5, 1], history_timestamps=[0, 0, 1000, 90000],
                   history_events=["", "", "view", "buy"], timestamp=100000, user_id="u1")
    for body, model in (({"signature_name": "recommend_in_context", "instances": [dict(rows[0], **context)]},
                         "retrieval"),
                        ({"signature_name": "score", "instances": [{"history": ["m3", "m5"], "candidates": ["m2"]}]},
                         "ranking"),
                        ({"signature_name": "explain", "instances": [{"history": ["m3", "m5"], "candidates": ["m2"]}]},
                         "ranking")):
        status, answer = _post_predict(server.rest_port, model, body)
        assert status == 200, (body, answer)
        assert len(answer["predictions"]) == 1 and answer["predictions"][0]["skipped_items"] == [""]


@pytest.mark.parametrize("task", ["retrieval", "ranking"])
def test_rest_answers_equal_grpc_for_every_signature_of_an_export(served, task):
    """Each signature's warm-up request of a real tfrec export, over REST and over gRPC."""
    server, _ = served
    logs = warmup.read(str(server.export_paths[task]))  # one request per signature of the export
    assert {log.predict_log.request.model_spec.signature_name for log in logs} >= {"explain", "serving_default"}
    with grpc.insecure_channel(server.target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for log in logs:
            request = log.predict_log.request
            inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
            want = {name: tf.make_ndarray(proto) for name, proto in stub.Predict(request, timeout=60).outputs.items()}
            got = _rest_predict(server.rest_port, task, request.model_spec.signature_name, inputs)
            if not isinstance(got, dict):  # TF Serving's columnar answer of a one-output signature: the value
                (only,) = want
                got = {only: got}
            assert set(got) == set(want), request.model_spec.signature_name
            for name, value in want.items():
                if value.dtype == object:
                    assert np.char.decode(value.astype(bytes)).tolist() == got[name]
                else:
                    np.testing.assert_allclose(np.asarray(got[name], np.float64), value, rtol=1e-5, atol=1e-6)
