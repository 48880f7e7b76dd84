"""One request path: the in-process API and the exported signatures encode requests with the same
`RequestEncoder`, and a model's config holds no catalogue (assets carry it)."""

import json
import os
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrec import data
from tfrec.client.requests import string_tensor
from tfrec.exporting import catalogue as catalogue_lib
from tfrec.exporting import exporter
from tfrec.exporting.serving_module import RecommenderServing
from tfrec.models import ModelConfig, Recommender, build_model
from tfrec.models.inference import request_inputs
from tfrec.models.request_encoder import RequestEncoder
from tfrec.request_format import pad
from tfrec.server.servable import Signature

NUM_ITEMS = 30
HISTORIES = [["m3", "m5"], ["m7", "m8", "m9", "m1"]]
RATINGS = [[5.0, 1.0], [4.0, 4.0, 2.0, 3.0]]
TIMESTAMPS = [[1000, 90000], [10, 20, 3000, 500000]]
EVENTS = [["view", "buy"], ["view", "view", "buy", "view"]]
NOW = [100000, 2000000]
USERS = ["u1", "a new user"]


def _catalogue(num_items, text_words=12):
    vocab = data.Vocabulary([f"m{i}" for i in range(1, num_items + 1)], ["u1", "u2"], ["buy", "view"])
    rng = np.random.default_rng(1)
    words = "alien space crime comedy love paris war drama robot story".split()
    texts = [""] + [" ".join(rng.choice(words, text_words)) for _ in range(num_items)]
    return SimpleNamespace(vocab=vocab, item_texts=texts, item_titles=[t[:20] for t in texts], rating_mean=3.0)


def _model(num_items=NUM_ITEMS, **overrides):
    config = ModelConfig(**dict(dict(task="multitask", encoder="tiny", sequence_length=16, embedding_dim=16,
                                     history_layers=1, use_ratings=True, use_time_gaps=True, use_user_ids=True),
                                **overrides))
    return build_model(config, _catalogue(num_items))


@pytest.fixture(scope="module")
def model():
    return _model()


def test_the_model_and_its_export_encode_requests_with_one_layer_and_answer_alike(model, tmp_path):
    vocab = model.vocab
    served_catalogue = catalogue_lib.Catalogue(vocab.item_ids, model.item_texts, model.item_titles)
    files = {name: os.path.join(tmp_path, name) for name in ("ids", "titles", "users", "events")}
    served_catalogue.write_ids(files["ids"])
    served_catalogue.write_titles(files["titles"])
    catalogue_lib.write_lines(files["users"], vocab.user_ids[1:])
    catalogue_lib.write_lines(files["events"], vocab.events[1:])
    model.refresh_catalogue()
    module = RecommenderServing(model, served_catalogue, files["ids"], NUM_ITEMS, max_k=NUM_ITEMS, users_file=files["users"],
                                events_file=files["events"], titles_file=files["titles"],
                                catalogue_embeddings=exporter.catalogue_embeddings(model, NUM_ITEMS))
    assert type(module.request_encoder) is type(model.request_encoder) is RequestEncoder

    history = tf.constant(pad(HISTORIES))
    context = [tf.constant(pad(RATINGS, 0.0), tf.float32), tf.constant(pad(TIMESTAMPS, 0), tf.int64),
               tf.constant(pad(EVENTS)), tf.constant(NOW, tf.int64), tf.constant(USERS)]
    for answer, (ids, scores) in (
            (module.recommend(history, tf.constant([5] * 2)), model.recommend(HISTORIES, k=5)),
            (module.recommend_in_context(history, *context, tf.constant([5] * 2)),
             model.recommend(HISTORIES, k=5, ratings=RATINGS, timestamps=TIMESTAMPS, events=EVENTS, now=NOW,
                             user_ids=USERS))):
        assert answer["item_ids"].numpy().astype(str).tolist() == ids.tolist()
        np.testing.assert_allclose(answer["scores"].numpy(), scores, atol=1e-5)
    candidates = [["m2", "m4"], ["m6", "m10"]]
    explained = module.explain_in_context(history, *context, tf.constant(candidates))
    influence, scores = model.explain(HISTORIES, candidates, ratings=RATINGS, timestamps=TIMESTAMPS, events=EVENTS,
                                      now=NOW, user_ids=USERS)
    np.testing.assert_allclose(explained["scores"].numpy(), scores, atol=1e-5)
    np.testing.assert_allclose(explained["influence"].numpy()[1], influence[1], atol=1e-5)
    # An unknown history item is skipped alike on both paths, and reported.
    answer = model.recommend([["m1", "nope", "m2"], ["m4"]], k=[3, 1])
    served = module.recommend(tf.constant([["m1", "nope", "m2"], ["", "", "m4"]]), tf.constant([3, 1]))
    assert answer.skipped_items == [["nope"], []]
    assert served["skipped_items"].numpy().tolist() == [[b"nope"], [b""]]
    assert served["item_ids"].numpy().astype(str).tolist() == answer[0].tolist()
    assert answer[0][1].tolist()[1:] == ["", ""] and np.isneginf(answer[1][1, 1:]).all()  # row 1: k=1
    np.testing.assert_allclose(answer[1], model.recommend([["m1", "m2"], ["m4"]], k=[3, 1])[1], atol=1e-6)
    # Strict mode: the same checks, named per path (ValueError in process, InvalidArgumentError in the graph).
    with pytest.raises(ValueError, match=r"unknown item ids in history: \['nope'\]"):
        model.recommend([["m1", "nope"]], k=3, unknown_items="error")
    strict = RecommenderServing(model, served_catalogue, files["ids"], NUM_ITEMS, max_k=NUM_ITEMS,
                                users_file=files["users"], events_file=files["events"], titles_file=files["titles"],
                                catalogue_embeddings=exporter.catalogue_embeddings(model, NUM_ITEMS),
                                unknown_items="error")
    with pytest.raises(tf.errors.InvalidArgumentError, match="unknown item ids in history.*nope"):
        strict.recommend(tf.constant([["m1", "nope"]]), tf.constant([3]))


def test_request_encoder_builds_the_features_and_round_trips_its_config():
    encoder = RequestEncoder(["i1", "i2", "i3"], ["u1"], ["view"], default_event=1, max_k=2)
    encoded = encoder({"history": tf.constant([["", "i3", "i1"]]), "user_id": tf.constant(["u1"]),
                       "k": tf.constant(2)})
    assert encoded["history"].numpy().tolist() == [[3, 1]]  # the known items, padding trimmed
    assert encoded["features"]["history_item_ids"].numpy().tolist() == [[3, 1]]
    assert encoded["features"]["history_events"].numpy().tolist() == [[1, 1]]
    assert encoded["features"]["user_index"].numpy().tolist() == [1]
    with pytest.raises(ValueError, match=r"k=\[3\]: expected 1 <= k <= 2"):
        encoder({"history": tf.constant([["i1"]]), "k": tf.constant(3)})
    with pytest.raises(ValueError, match=r"k holds 1 values for 2 rows"):
        encoder({"history": tf.constant([["i1"], ["i2"]]), "k": tf.constant([1])})
    restored = RequestEncoder.from_config(encoder.get_config())
    assert restored.get_config() == encoder.get_config()


def test_request_encoder_skips_unknown_items_with_their_context_and_cuts_to_the_window():
    encoder = RequestEncoder(["i1", "i2", "i3", "i4"], ["u1"], ["view", "buy"], max_history_length=2)
    encoded = encoder({"history": tf.constant([["i4", "new", "i3", "i1"], ["", "i2", "x", "y"]]),
                       "history_ratings": tf.constant([[1, 2, 3, 4], [0, 5, 6, 7]], tf.float32),
                       "history_events": tf.constant([["buy", "view", "buy", "view"], ["", "buy", "view", "buy"]]),
                       "k": tf.constant(1)})
    assert encoded["skipped_items"].numpy().tolist() == [[b"", b"new"], [b"x", b"y"]]
    assert encoded["history"].numpy().tolist() == [[4, 3, 1], [0, 0, 2]]  # every known item: for exclusion
    assert encoded["model_history"].numpy().tolist() == [[3, 1], [0, 2]]  # the newest two known ones
    assert encoded["context"]["ratings"].numpy().tolist() == [[3, 4], [0, 5]]  # skipped with their items
    assert encoded["context"]["events"].numpy().tolist() == [[2, 1], [0, 2]]
    assert encoded["positions"].numpy().tolist() == [[-1, -1, 0, 1], [-1, 1, -1, -1]]
    assert encoded["k"].numpy().tolist() == [1, 1]  # a scalar k is broadcast to the rows
    with pytest.raises(ValueError, match=r"unknown item ids in history: \['new'\]"):
        encoder({"history": tf.constant([["i1", "new"]])}, unknown_items="error")
    with pytest.raises(ValueError, match="unknown_items='drop'"):
        RequestEncoder(["i1"], ["u1"], ["view"], unknown_items="drop")


def test_request_ids_reach_the_model_in_unicode_nfc_as_the_data_stores_them():
    # "café" typed with a combining accent (NFD) becomes the catalogue's composed "café" (NFC) on every path
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    # the embedded server (gRPC and REST), over what a loaded SavedModel signature declares
    loaded_signature = SimpleNamespace(structured_outputs={}, structured_input_signature=(
        (), {"history": tf.TensorSpec([None, None], tf.string)}))
    tensors = Signature("recommend", loaded_signature).to_tensors(
        {"history": tf.make_tensor_proto([[decomposed, "m5"]])})
    assert tensors["history"].numpy().tolist() == [[composed.encode(), b"m5"]]
    # the in-process API, and the client (also for the TF Serving binary)
    inputs = request_inputs([[decomposed]], events=[["vue " + decomposed]], user_ids=[decomposed])
    assert inputs["history"].numpy().tolist() == [[composed.encode()]]
    assert inputs["history_events"].numpy().tolist() == [[("vue " + composed).encode()]]
    assert inputs["user_id"].numpy().tolist() == [composed.encode()]
    assert tf.make_ndarray(string_tensor([[decomposed]])).tolist() == [[composed.encode()]]


def test_the_config_holds_no_catalogue():
    small = len(json.dumps(_model(100, use_text=False).get_config()))
    large = len(json.dumps(_model(1000, use_text=False).get_config()))
    assert large <= 1.5 * small, (small, large)


def test_a_saved_model_loads_back_with_its_catalogue_and_answers_alike(model, tmp_path):
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, Recommender) and loaded.vocab == model.vocab
    assert loaded.item_texts == model.item_texts and loaded.item_titles == model.item_titles
    for context in ({}, {"ratings": RATINGS, "timestamps": TIMESTAMPS, "events": EVENTS, "now": NOW,
                         "user_ids": USERS}):
        ids, scores = loaded.recommend(HISTORIES, k=5, **context)
        want_ids, want_scores = model.recommend(HISTORIES, k=5, **context)
        assert ids.tolist() == want_ids.tolist()
        np.testing.assert_allclose(scores, want_scores, atol=1e-5)
    loaded.refresh_catalogue()  # from the loaded weights and text vectors: the same item vectors
    np.testing.assert_allclose(loaded.catalogue.candidate_embeddings.numpy(),
                               model.catalogue.candidate_embeddings.numpy(), atol=1e-5)
