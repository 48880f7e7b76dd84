"""Influence of past behaviours: occlusion equals brute-force re-scoring, integrated gradients add
up, the exported `explain` signature equals `model.explain`, bad requests are named."""

from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

from tfrec import data
from tfrec.exporting import exporter
from tfrec.models import ModelConfig, build_model
from tfrec.models.features import history_features

NUM_ITEMS = 25
HISTORIES = [["m3", "m5", "m9"], ["m7", "m8", "m2", "m1", "m4"]]
CANDIDATES = [["m10", "m11"], ["m12", "m3"]]


def _model(task, **fields):
    vocab = data.Vocabulary([f"m{i}" for i in range(1, NUM_ITEMS + 1)], ["u1"], ["rated"])
    rng = np.random.default_rng(2)
    words = "alien space crime comedy love paris war drama robot story".split()
    texts = [""] + [" ".join(rng.choice(words, 4)) for _ in range(NUM_ITEMS)]
    config = ModelConfig(task=task, encoder="tiny", sequence_length=16, embedding_dim=16, history_layers=1,
                         dropout=0.0, **fields)
    return build_model(config, SimpleNamespace(vocab=vocab, item_texts=texts, item_titles=texts, rating_mean=3.0))


@pytest.fixture(scope="module")
def retrieval():
    return _model("retrieval")


@pytest.fixture(scope="module")
def ranking():
    return _model("ranking", use_ratings=True)


def _brute_force_score(model, history, candidate):
    """The model's score of one candidate after one history, computed on its own."""
    indices = tf.constant([model.vocab.item_index(np.array(history or [""], object))], tf.int32)
    target = tf.constant(model.vocab.item_index(np.array([candidate], object)), tf.int32)
    features = history_features(indices, targets=target, default_event=model.default_event)
    if model.has_retrieval:
        query = model.query_embeddings(features)
        return float(tf.reduce_sum(query * model.item_embeddings(target)))
    return float(model.score(features)[0])


@pytest.mark.parametrize("model_name", ["retrieval", "ranking"])
def test_occlusion_equals_rescoring_each_history_without_each_behaviour(model_name, request):
    model = request.getfixturevalue(model_name)
    influence, scores = model.explain(HISTORIES, CANDIDATES)
    assert influence.shape == (2, 2, 5) and scores.shape == (2, 2)
    for b, history in enumerate(HISTORIES):
        for k, candidate in enumerate(CANDIDATES[b]):
            base = _brute_force_score(model, history, candidate)
            assert scores[b, k] == pytest.approx(base, abs=1e-5)
            for j in range(len(history)):
                without = _brute_force_score(model, history[:j] + history[j + 1:], candidate)
                assert influence[b, k, j] == pytest.approx(base - without, abs=1e-5)
            assert not influence[b, k, len(history):].any()  # past the history's end
    assert np.abs(influence).max() > 1e-4  # behaviours do move the scores


def test_integrated_gradients_add_up_to_the_score_minus_the_zero_embedding_score(retrieval):
    influence, scores = retrieval.explain(HISTORIES, CANDIDATES, method="integrated_gradients", steps=64)
    for b, history in enumerate(HISTORIES):
        indices = tf.constant([retrieval.vocab.item_index(np.array(history, object))], tf.int32)
        features = history_features(indices, default_event=retrieval.default_event)
        zeros = tf.zeros([1, len(history), retrieval.cfg.embedding_dim])
        query = retrieval.query_embeddings(features, history_vectors=zeros)
        items = retrieval.item_embeddings(retrieval.vocab.item_index(np.array(CANDIDATES[b], object)))
        baseline = tf.linalg.matvec(items, query[0]).numpy()
        np.testing.assert_allclose(influence[b].sum(axis=1), scores[b] - baseline, atol=2e-3)
        assert not influence[b, :, len(history):].any()


def test_the_exported_explain_signature_equals_model_explain(retrieval, ranking, tmp_path):
    for model in (retrieval, ranking):
        loaded = exporter.load(exporter.export_model(model, str(tmp_path), model.cfg.task).path)
        width = max(map(len, HISTORIES))
        padded = tf.constant([[""] * (width - len(h)) + h for h in HISTORIES])
        served = loaded.signatures["explain"](history=padded, candidates=tf.constant(CANDIDATES))
        influence, scores = model.explain(HISTORIES, CANDIDATES)
        np.testing.assert_allclose(served["scores"].numpy(), scores, atol=1e-5)
        for b, history in enumerate(HISTORIES):
            np.testing.assert_allclose(served["influence"].numpy()[b, :, width - len(history):],
                                       influence[b, :, :len(history)], atol=1e-5)
        with pytest.raises(tf.errors.InvalidArgumentError, match="unknown item ids.*nosuch"):
            loaded.signatures["explain"](history=padded, candidates=tf.constant([["nosuch", "m1"], ["m2", "m3"]]))
        with pytest.raises(tf.errors.InvalidArgumentError, match="at least one known behaviour"):
            loaded.signatures["explain"](history=tf.constant([["", ""]]), candidates=tf.constant([["m1"]]))
        with pytest.raises(tf.errors.InvalidArgumentError, match="items the model was trained on"):
            loaded.signatures["explain"](history=tf.constant([["m1"]]), candidates=tf.constant([[""]]))
        # Cut to the model's window of 512 behaviours, occlusion still reads 512 x 512^2 attention pairs.
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"at most 16777216 per request.*got\] \[134217728\]"):
            loaded.signatures["explain"](history=tf.constant([["m1"] * 600]), candidates=tf.constant([["m2"]]))
        # An unknown behaviour is skipped: no influence, the others' as without it.
        skipped = loaded.signatures["explain"](history=tf.constant([["m1", "new sku", "m4"]]),
                                               candidates=tf.constant([["m2"]]))
        without = model.explain([["m1", "m4"]], [["m2"]])[0]
        assert skipped["skipped_items"].numpy().tolist() == [[b"new sku"]]
        np.testing.assert_allclose(skipped["influence"].numpy()[0, :, [0, 2]].T, without[0], atol=1e-5)
        assert skipped["influence"].numpy()[0, 0, 1] == 0


@pytest.mark.parametrize("histories, candidates, method, message", [
    ([[]], [["m1"]], "occlusion", r"histories\[0\] is empty"),
    ([["m1"]], [["nosuch"]], "occlusion", r"unknown candidate item ids: \['nosuch'\]"),
    ([["m1"], ["m2"]], [["m3"]], "occlusion", "one non-empty list of candidate item ids per history"),
    ([["m1"], ["m2"]], [["m3"], ["m4", "m5"]], "occlusion", "all of the same length"),
    ([["m1"]], [["m3"]], "shapley", r"method='shapley': expected one of"),
    ([[""]], [["m3"]], "occlusion", r"histories\[0\] is empty"),
    ([["m1"]], [[""]], "occlusion", "a candidate is the padding id"),
    ([["nosuch"]], [["m3"]], "occlusion", r"histories\[0\] holds no item of the catalogue"),
    ([["m1"] * 600], [["m3"]], "occlusion", r"at most 16777216 per request.*got 134217728"),
])
def test_bad_explain_requests_are_named(retrieval, histories, candidates, method, message):
    with pytest.raises(ValueError, match=message):
        retrieval.explain(histories, candidates, method=method)
