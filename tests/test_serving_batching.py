"""BatchScheduler: concurrent calls are merged, answers equal unbatched ones, bad rows are isolated."""

import threading

import numpy as np
import pytest
import tensorflow as tf

import serving_fixtures as sf
from tfrec.server import protos
from tfrec.server.batching import BatchScheduler, call_unbatched


@pytest.fixture(scope="module")
def model():
    return sf.TinyRecommender(sf.CATALOGUE, seed=5)


@pytest.fixture
def recommend(model):
    return model.recommend.get_concrete_function()


def _inputs(history, k=4):
    return {"history": tf.constant([history]), "k": tf.constant([k], tf.int32)}


def _run_concurrently(scheduler, function, inputs):
    results = [None] * len(inputs)

    def call(i):
        try:
            results[i] = scheduler.run(function, inputs[i])
        except tf.errors.OpError as e:
            results[i] = e

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_concurrent_calls_are_merged_and_equal_unbatched(recommend):
    inputs = [_inputs([f"item{i % 40 + 1}", f"item{(7 * i) % 40 + 1}"], k=4 if i % 4 else 6) for i in range(16)]
    scheduler = BatchScheduler(max_batch_size=8, batch_timeout_micros=200_000, num_batch_threads=1)
    try:
        results = _run_concurrently(scheduler, recommend, inputs)
    finally:
        scheduler.stop()
    assert scheduler.calls == 16 and scheduler.batches_run < 16
    for got, x in zip(results, inputs):
        # k is per row, so calls of any k merge; a row is as wide as its batch's largest k, padded past its own.
        want, k = call_unbatched(recommend, x), int(x["k"][0])
        assert got["item_ids"][:, :k].tolist() == want["item_ids"].tolist() and not got["item_ids"][:, k:].any()
        np.testing.assert_allclose(got["scores"][:, :k], want["scores"], rtol=1e-5, atol=1e-6)
    assert any(got["item_ids"].shape[1] == 6 for got, x in zip(results, inputs) if x["k"][0] == 4)


def test_a_bad_call_fails_alone(recommend):
    inputs = [_inputs(["item1", "item2"]), _inputs(["item3", "nonexistent"]), _inputs(["item4", "item5"])]
    scheduler = BatchScheduler(max_batch_size=8, batch_timeout_micros=200_000, num_batch_threads=1)
    try:
        results = _run_concurrently(scheduler, recommend, inputs)
    finally:
        scheduler.stop()
    assert isinstance(results[1], tf.errors.InvalidArgumentError) and "nonexistent" in results[1].message
    assert results[0]["item_ids"].shape == (1, 4) and results[2]["item_ids"].shape == (1, 4)


def test_from_parameters_uses_the_file_values_and_tf_serving_defaults():
    params = protos.BatchingParameters()
    params.max_batch_size.value = 16
    scheduler = BatchScheduler.from_parameters(params)
    try:
        assert scheduler.max_batch_size == 16 and scheduler.timeout == 0
        assert scheduler.max_queued_rows == 10 * 16
    finally:
        scheduler.stop()
