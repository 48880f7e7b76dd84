"""Large catalogues: chunked top-k with exclusions, reduced-precision catalogues and their exports, batched encoding.

Small random catalogues and a tiny model (`encoder="tiny"`); the speed and
the million-item figures live in `scripts/bench_scale.py`.
"""

import json
import os
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

import serving_fixtures as sf
from tfrec import data
from tfrec.client import RecommenderClient
from tfrec.exporting import exporter
from tfrec.models import ModelConfig, build_model
from tfrec.models.catalogue_retrieval import CatalogueRetrieval
from tfrec.text_encoder import TextEncoder

NUM_ITEMS = 300


def _masked_top_k(matrix, queries, k, exclude):
    """Reference: score every row, set padding and `exclude` to -inf in the [B, C] matrix, one top_k."""
    scores = queries @ matrix.T
    scores[:, 0] = -np.inf
    for row, banned in enumerate(exclude):
        scores[row, banned] = -np.inf
    top = tf.math.top_k(tf.constant(scores), k=k)
    return top.values.numpy(), top.indices.numpy()


@pytest.mark.parametrize("chunk_rows", [1000, 64, 7])
def test_chunked_top_k_equals_masking_the_whole_score_matrix(chunk_rows):
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((NUM_ITEMS + 1, 8)).astype(np.float32)
    matrix[0] = 0.0
    matrix[50:60] = matrix[40]  # ties: the lower index goes first, in both
    queries = rng.standard_normal((4, 8)).astype(np.float32)
    queries[3] = matrix[40]
    exclude = rng.integers(0, NUM_ITEMS + 1, (4, 12)).astype(np.int32)
    exclude[0, :6] = exclude[0, 0]  # repeated and padding (0) entries
    exclude[1, :3] = 0
    retrieval = CatalogueRetrieval(matrix, chunk_rows=chunk_rows)
    for k in (1, 10, 40):
        scores, indices = retrieval.top_k(tf.constant(queries), k, exclude=tf.constant(exclude))
        want_scores, want_indices = _masked_top_k(matrix, queries, k, exclude)
        np.testing.assert_array_equal(indices.numpy(), want_indices)
        np.testing.assert_allclose(scores.numpy(), want_scores, rtol=1e-6)
    traced = tf.function(lambda q, k: retrieval.top_k(q, k))
    np.testing.assert_array_equal(traced(tf.constant(queries), tf.constant(5))[1].numpy(),
                                  _masked_top_k(matrix, queries, 5, np.zeros((4, 1), np.int32))[1])


@pytest.mark.parametrize("dtype, tolerance", [("bfloat16", 8e-3), ("int8", 8e-3)])
def test_reduced_precision_catalogues_keep_the_vectors_and_most_answers(dtype, tolerance):
    rng = np.random.default_rng(1)
    matrix = rng.standard_normal((2000, 16)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    matrix[0] = 0.0
    retrieval = CatalogueRetrieval(matrix, catalogue_dtype=dtype, chunk_rows=512)
    assert retrieval.candidate_embeddings.dtype == dtype
    np.testing.assert_allclose(retrieval.gather(tf.range(2000)).numpy(), matrix, atol=tolerance)
    queries = rng.standard_normal((50, 16)).astype(np.float32)
    _, indices = retrieval.top_k(tf.constant(queries), 10)
    _, want = _masked_top_k(matrix, queries, 10, np.zeros((50, 1), np.int32))
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(indices.numpy(), want)])
    assert overlap >= 0.95
    assert 0 not in indices.numpy()
    config = retrieval.get_config()
    assert json.loads(json.dumps(config)) == config  # plain values only: it round-trips through JSON
    restored = CatalogueRetrieval.from_config(config)
    assert restored.get_config() == config and (restored.catalogue_dtype, restored.chunk_rows) == (dtype, 512)


def test_an_unknown_catalogue_dtype_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match=r"catalogue_dtype='float16': expected one of \('float32', 'bfloat16', 'int8'\)"):
        CatalogueRetrieval(np.zeros((3, 2), np.float32), catalogue_dtype="float16")


def _model():
    vocab = data.Vocabulary([f"m{i}" for i in range(1, NUM_ITEMS + 1)], ["u1"], ["view"])
    rng = np.random.default_rng(2)
    words = "alien space crime comedy love paris war drama robot story".split()
    texts = [""] + [" ".join(rng.choice(words, 4)) for _ in range(NUM_ITEMS)]
    config = ModelConfig(task="retrieval", encoder="tiny", sequence_length=16, embedding_dim=16, history_layers=1)
    return build_model(config, SimpleNamespace(vocab=vocab, item_texts=texts, item_titles=texts, rating_mean=0.0))


def test_an_int8_catalogue_export_serves_answers_close_to_float32(tmp_path):
    model = _model()
    result = exporter.export_model(model, str(tmp_path), "small", catalogue_dtype="int8")
    assert result.ops.other_ops == []  # plain TensorFlow ops: stock TF Serving runs it
    # One int8 per value and one float32 scale per row, padding row included (float32: 4 bytes per value).
    assert result.size.catalogue_matrix_bytes == (NUM_ITEMS + 1) * (16 + 4)
    with open(os.path.join(result.path, "assets", "export_info.json")) as f:
        assert json.load(f)["catalogue_dtype"] == "int8"
    rng = np.random.default_rng(3)
    histories = [[f"m{i}" for i in rng.integers(1, NUM_ITEMS + 1, 5)] for _ in range(20)]
    want_ids, want_scores = model.recommend(histories, k=10)  # the model's float32 catalogue
    server = sf.ServerProcess(["--model_name=small", f"--model_base_path={tmp_path / 'small'}"], sf.free_port(),
                              str(tmp_path / "server.log"))
    try:
        server.wait_serving()
        with RecommenderClient(server.target, "small") as client:
            got = client.recommend(histories, k=10)
    finally:
        server.stop()
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got.item_ids, want_ids)])
    assert overlap >= 0.9
    for history, row in zip(histories, got.item_ids):
        assert not set(history) & set(row)
    np.testing.assert_allclose(got.scores, want_scores, atol=0.05)


def test_encoding_sorted_by_length_gives_the_vectors_of_one_padded_batch():
    encoder = TextEncoder("tiny", sequence_length=16)
    texts = ["robot", "a long story of love and war in paris", "", "space crime comedy", "drama"] * 3
    expected = encoder(tf.constant(texts)).numpy()
    for sort in (True, False):
        np.testing.assert_allclose(encoder.encode_in_batches(texts, batch_size=4, sort_by_length=sort), expected,
                                   atol=1e-5)
