"""RecommenderClient and BatchingClient against the embedded server on a localhost socket.

This module's server batches on the server side (--enable_batching with serving/batching.config).
"""

import threading

import grpc
import numpy as np
import pytest
import tensorflow as tf

import serving_fixtures as sf
from tfrec.client import RecommenderClient, ServingError
from tfrec.client.requests import context_inputs, pad_histories


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Starts a status() call first, then the server: the call must get through by retrying."""
    base = tmp_path_factory.mktemp("models")
    model = sf.save_version(str(base / "tiny"), 1, seed=4)
    port = sf.free_port()
    early = {}

    def call_before_server_starts():
        client = RecommenderClient(
            f"127.0.0.1:{port}", "tiny", retries=80, backoff_seconds=0.25, max_backoff_seconds=1.0, timeout=5
        )
        try:
            early["recs"] = client.recommend([["item1"]], k=2)
        except ServingError as e:
            early["error"] = e
        early["retries"] = client.retries_made
        client.close()

    caller = threading.Thread(target=call_before_server_starts)
    caller.start()
    proc = sf.ServerProcess(
        [
            "--model_name=tiny",
            f"--model_base_path={base / 'tiny'}",
            "--file_system_poll_wait_seconds=0",
            "--enable_batching",
            f"--batching_parameters_file={sf.REPO_ROOT}/serving/batching.config",
        ],
        port,
        str(base / "server.log"),
    )
    try:
        proc.wait_serving()
        caller.join(90)
        proc.early, proc.model = early, model
        yield proc
    finally:
        proc.stop()


def test_client_retries_until_a_late_server_answers(server):
    assert "error" not in server.early, server.early.get("error")
    assert server.early["recs"].item_ids.shape == (1, 2)
    assert server.early["retries"] >= 1


def test_retries_exhausted_raise_unavailable():
    with RecommenderClient(f"127.0.0.1:{sf.free_port()}", "tiny", retries=2, backoff_seconds=0.01) as client:
        with pytest.raises(ServingError) as err:
            client.status()
        assert err.value.code == grpc.StatusCode.UNAVAILABLE
        assert client.retries_made == 2


def test_wait_until_available_returns_the_served_version(server):
    with RecommenderClient(server.target, "tiny") as client:
        assert client.wait_until_available(timeout=30) == 1


def test_wait_until_available_times_out_on_a_silent_port():
    with RecommenderClient(f"127.0.0.1:{sf.free_port()}", "tiny", retries=0, timeout=0.2) as client:
        with pytest.raises(TimeoutError, match="not AVAILABLE"):
            client.wait_until_available(timeout=0.5, poll_seconds=0.1)


def test_errors_carry_code_and_message(server):
    with RecommenderClient(server.target, "nope") as client:
        with pytest.raises(ServingError) as err:
            client.recommend([["item1"]])
    assert err.value.code == grpc.StatusCode.NOT_FOUND and "model 'nope' is not served" in err.value.message
    with RecommenderClient(server.target, "tiny") as client:
        with pytest.raises(ServingError) as err:
            client.recommend([["item1", "ghost"]])
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT and "ghost" in err.value.message
        assert client.retries_made == 0  # INVALID_ARGUMENT is not retried


def test_client_side_input_checks():
    assert pad_histories([["a", "b"], ["c"], []]) == [["a", "b"], ["", "c"], ["", ""]]
    with pytest.raises(TypeError, match=r"histories\[0\] is the str 'abc'"):
        pad_histories(["abc"])
    with pytest.raises(TypeError, match=r"histories\[1\]\[0\] is int 3"):
        pad_histories([["a"], [3]])
    with pytest.raises(ValueError, match="histories is"):
        pad_histories([])
    with pytest.raises(ValueError, match="version or version_label"):
        RecommenderClient("127.0.0.1:1", "tiny", version=1, version_label="stable")


def test_context_inputs_are_padded_like_histories_and_checked():
    inputs = context_inputs([["a", "b"], ["c"]], ratings=[[5, 3.5], [4]], timestamps=[[10, 20], [30]], now=[25, 40])
    assert tf.make_ndarray(inputs["history_ratings"]).tolist() == [[5.0, 3.5], [0.0, 4.0]]
    assert tf.make_ndarray(inputs["history_timestamps"]).tolist() == [[10, 20], [0, 30]]
    assert tf.make_ndarray(inputs["timestamp"]).tolist() == [25, 40]
    defaults = context_inputs([["a", "b"], []], timestamps=[[10, 20], []])
    assert tf.make_ndarray(defaults["timestamp"]).tolist() == [20, 0]  # latest timestamp, 0 without any
    assert tf.make_ndarray(defaults["history_ratings"]).tolist() == [[0.0, 0.0], [0.0, 0.0]]
    assert tf.make_ndarray(defaults["history_events"]).tolist() == [[b"", b""], [b"", b""]]
    assert tf.make_ndarray(defaults["user_id"]).tolist() == [b"", b""]  # new users
    given = context_inputs([["a", "b"], ["c"]], events=[["view", "buy"], ["buy"]], user_ids=["u7", "u8"])
    assert tf.make_ndarray(given["history_events"]).tolist() == [[b"view", b"buy"], [b"", b"buy"]]
    assert tf.make_ndarray(given["user_id"]).tolist() == [b"u7", b"u8"]
    with pytest.raises(TypeError, match=r"events\[1\]\[0\] is int 3; expected a str"):
        context_inputs([["a"], ["b"]], events=[["view"], [3]])
    with pytest.raises(ValueError, match="user_ids is 'u1'; expected one value per history"):
        context_inputs([["a"]], user_ids="u1")
    with pytest.raises(TypeError, match=r"user_ids\[0\] is int 7; expected a str"):
        context_inputs([["a"]], user_ids=[7])
    with pytest.raises(ValueError, match=r"ratings\[1\] has 2 values for 1 history items"):
        context_inputs([["a"], ["b"]], ratings=[[1], [2, 3]])
    with pytest.raises(ValueError, match="timestamps has 1 rows for 2 histories"):
        context_inputs([["a"], ["b"]], timestamps=[[1]])
    with pytest.raises(TypeError, match=r"timestamps\[0\]\[0\] is float 1.5; expected an int"):
        context_inputs([["a"]], timestamps=[[1.5]])
    with pytest.raises(TypeError, match=r"ratings\[0\]\[0\] is str '5'; expected a number"):
        context_inputs([["a"]], ratings=[["5"]])
    with pytest.raises(ValueError, match="now is 7; expected one value per history"):
        context_inputs([["a"]], now=7)
    with RecommenderClient("127.0.0.1:1", "tiny") as client:  # fails before any call
        with pytest.raises(TypeError, match=r"unknown context arguments \['rating'\]"):
            client.recommend([["a"]], k=1, rating=[[5]])


def test_score_rejects_ragged_candidates(server):
    with RecommenderClient(server.target, "tiny") as client:
        with pytest.raises(ValueError, match=r"candidates\[1\] has 1 ids; expected 2"):
            client.score([["item1"], ["item2"]], [["item3", "item4"], ["item5"]])


def test_batching_client_returns_the_same_as_unbatched(server):
    rng = np.random.default_rng(0)
    histories = [
        [f"item{i}" for i in rng.choice(np.arange(1, 41), size=rng.integers(0, 6), replace=False)] for _ in range(64)
    ]
    with RecommenderClient(server.target, "tiny") as client:
        expected = [client.recommend([h], k=5) for h in histories]
        results = [None] * len(histories)
        with client.batching(max_batch_size=16, max_delay_ms=20) as batched:

            def worker(indices):
                for i in indices:
                    results[i] = batched.recommend([histories[i]], k=5)

            threads = [threading.Thread(target=worker, args=(range(t, 64, 16),)) for t in range(16)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert batched.batches_sent < len(histories)  # requests were merged
    for got, want in zip(results, expected):
        assert got.item_ids.tolist() == want.item_ids.tolist()
        np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5, atol=1e-6)
        assert got.version == 1


def test_concurrent_plain_clients_batched_by_the_server_match_in_process(server):
    histories = [[f"item{i + 1}", f"item{(3 * i) % 40 + 1}"] for i in range(32)]
    results = [None] * len(histories)

    def worker(indices):
        with RecommenderClient(server.target, "tiny") as client:
            for i in indices:
                results[i] = client.recommend([histories[i]], k=4)

    threads = [threading.Thread(target=worker, args=(range(t, 32, 16),)) for t in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    recommend = server.model.signatures["serving_default"]
    for history, got in zip(histories, results):
        want = recommend(history=tf.constant([history]), k=tf.constant([4]))
        assert got.item_ids.tolist() == [[b.decode() for b in want["item_ids"].numpy()[0]]]
        np.testing.assert_allclose(got.scores, want["scores"].numpy(), rtol=1e-5, atol=1e-6)


def test_batching_client_isolates_a_bad_request(server):
    outcomes = {}
    with RecommenderClient(server.target, "tiny") as client, client.batching(max_delay_ms=50) as batched:

        def call(name, history):
            try:
                outcomes[name] = batched.recommend([history], k=3)
            except ServingError as e:
                outcomes[name] = e

        threads = [
            threading.Thread(target=call, args=(name, history))
            for name, history in (("good1", ["item1"]), ("bad", ["missing-id"]), ("good2", ["item2", "item3"]))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert outcomes["bad"].code == grpc.StatusCode.INVALID_ARGUMENT and "missing-id" in outcomes["bad"].message
    assert outcomes["good1"].item_ids.shape == (1, 3) and outcomes["good2"].item_ids.shape == (1, 3)
