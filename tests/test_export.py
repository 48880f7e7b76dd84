"""SavedModel export: layout, signatures, errors, catalogue update, checks, reload.

Tiny random BERT models (`encoder="tiny"`) on a small synthetic catalogue; each
model is exported once per module and shared by the tests.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

from tfrec import data, disk_space, version_files
from tfrec.data import errors, schema
from tfrec.exporting import catalogue as catalogue_lib
from tfrec.exporting import checks, exporter, layout, warmup
from tfrec.models import ModelConfig, build_model

NUM_ITEMS = 40
WORDS = "alien space heat crime comedy love paris war drama story film robot".split()


def _vocab_and_texts(events=("rated",)):
    vocab = data.Vocabulary([f"m{i}" for i in range(1, NUM_ITEMS + 1)], ["u1", "u2"], list(events))
    rng = np.random.default_rng(0)
    texts = [""] + [" ".join(rng.choice(WORDS, 5)) for _ in range(NUM_ITEMS)]
    return vocab, texts


def _build(task, events=("rated",), **config_fields):
    vocab, texts = _vocab_and_texts(events)
    config = ModelConfig(task=task, encoder="tiny", sequence_length=16, embedding_dim=32,
                         history_layers=1, dropout=0.0, **config_fields)
    catalogue = SimpleNamespace(vocab=vocab, item_texts=texts, item_titles=texts, rating_mean=3.0)
    return build_model(config, catalogue), vocab, texts


def _features(history):
    """Schema features for `model` methods: left-padded int history, each item with event 1 (the
    only event type of `_vocab_and_texts`), everything else absent."""
    history = np.asarray(history, np.int32)
    batch, length = history.shape
    return {
        schema.USER_INDEX: np.zeros([batch], np.int32),
        schema.HISTORY_ITEM_IDS: history,
        schema.HISTORY_LENGTH: (history > 0).sum(axis=1).astype(np.int32),
        schema.HISTORY_RATINGS: np.zeros([batch, length], np.float32),
        schema.HISTORY_EVENTS: (history > 0).astype(np.int32),
        schema.HISTORY_TIMESTAMPS: np.zeros([batch, length], np.int64),
        schema.TARGET_ITEM_ID: np.zeros([batch], np.int32),
        schema.TARGET_RATING: np.zeros([batch], np.float32),
        schema.TARGET_EVENT: np.zeros([batch], np.int32),
        schema.TARGET_TIMESTAMP: np.zeros([batch], np.int64),
        schema.LABEL: np.zeros([batch], np.float32),
    }


# Left-padded index histories and the same histories as the client sends them
# (row 0 padded on the right, row 1 with padding in the middle).
HISTORY_INDICES = [[0, 0, 3, 5], [0, 7, 8, 9]]
HISTORY_IDS = [["m3", "m5", "", ""], ["m7", "", "m8", "m9"]]
# Their ratings, times and events in the client's layout, the request times,
# the users (the second one new), and the features the model should see
# (left-padded like HISTORY_INDICES).
CONTEXT = {
    "history_ratings": tf.constant([[4, 2, 0, 0], [5, 0, 3, 1]], tf.float32),
    "history_timestamps": tf.constant([[100, 200, 0, 0], [10, 0, 20, 30000]], tf.int64),
    "history_events": tf.constant([["rated", "", "", ""], ["", "", "rated", "rated"]]),
    "timestamp": tf.constant([300000, 40000], tf.int64),
    "user_id": tf.constant(["u2", "somebody new"]),
}


def _context_features(history_indices):
    features = _features(history_indices)
    features[schema.HISTORY_RATINGS] = np.array([[0, 0, 4, 2], [0, 5, 3, 1]], np.float32)
    features[schema.HISTORY_TIMESTAMPS] = np.array([[0, 0, 100, 200], [0, 10, 20, 30000]], np.int64)
    features[schema.TARGET_TIMESTAMP] = np.array([300000, 40000], np.int64)
    features[schema.USER_INDEX] = np.array([2, 0], np.int32)
    return features


# The same histories and context as `Recommender.recommend` takes them (lists; "" = padding).
HISTORY_LISTS = [list(row) for row in HISTORY_IDS]
CONTEXT_LISTS = {
    "ratings": [[4, 2, 0, 0], [5, 0, 3, 1]],
    "timestamps": [[100, 200, 0, 0], [10, 0, 20, 30000]],
    "events": [["rated", "", "", ""], ["", "", "rated", "rated"]],
    "now": [300000, 40000],
    "user_ids": ["u2", "somebody new"],
}


def _model_top_k(model, features, k):
    """(item ids, scores) of the `k` best items for schema `features`, straight from the model's
    query tower and stored catalogue, history excluded."""
    features = {name: tf.convert_to_tensor(value) for name, value in features.items()}
    scores, indices = model.catalogue.top_k(model.query_embeddings(features), k,
                                            exclude=features[schema.HISTORY_ITEM_IDS])
    return np.asarray(model.item_ids, dtype=object)[indices.numpy()], scores.numpy()


def _exported(task, base, name, **config_fields):
    """(model, catalogue, ExportResult, loaded SavedModel) of a fresh tiny `task` model.

    The model is compiled and its optimizer built first, as after training, so
    that the export can be checked for optimizer state.
    """
    model, vocab, texts = _build(task, **config_fields)
    model.compile(optimizer="adam")
    model.optimizer.build(model.trainable_variables)
    result = exporter.export_model(model, str(base), name)
    return model, catalogue_lib.Catalogue(vocab.item_ids, texts), result, exporter.load(result.path)


@pytest.fixture(scope="module")
def retrieval(tmp_path_factory):
    return _exported("retrieval", tmp_path_factory.mktemp("exports"), "movies", use_ratings=True,
                     use_time_gaps=True, use_user_ids=True)


@pytest.fixture(scope="module")
def ranking(tmp_path_factory):
    return _exported("ranking", tmp_path_factory.mktemp("exports"), "ratings", use_user_ids=True)


# ----- layout -----


def test_versions_are_written_under_a_temporary_name_then_renamed(tmp_path):
    assert layout.next_version(tmp_path / "m") == 1
    with layout.staged_version(str(tmp_path), "m") as stage:
        assert os.path.basename(stage.path).startswith(".tmp-1-")
        assert not os.path.basename(stage.path).isdigit()
        assert not os.path.exists(stage.final_path)
        (tmp_path / "m" / os.path.basename(stage.path) / "saved_model.pb").write_text("x")
    assert os.listdir(tmp_path / "m") == ["1"]
    (tmp_path / "m" / "7").mkdir()
    assert layout.next_version(str(tmp_path / "m")) == 8
    with pytest.raises(FileExistsError, match="7 already exists"):
        with layout.staged_version(str(tmp_path), "m", version=7):
            pass


@pytest.mark.parametrize("umask, mode", [(0o022, 0o755), (0o027, 0o750)])
def test_staged_versions_and_run_files_get_the_umasks_modes_not_private_ones(tmp_path, umask, mode):
    from tfrec.training import atomic_files

    previous = os.umask(umask)
    try:
        with layout.staged_version(str(tmp_path), "m") as stage:
            pass
        atomic_files.write_json_atomic(str(tmp_path / "run" / "metrics.json"), {"HR@10": 0.1})
    finally:
        os.umask(previous)
    assert oct(os.stat(stage.final_path).st_mode & 0o777) == oct(mode)
    assert oct(os.stat(tmp_path / "run" / "metrics.json").st_mode & 0o777) == oct(mode & 0o666)


def test_a_failed_export_leaves_no_version_behind(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with layout.staged_version(str(tmp_path), "m") as stage:
            (tmp_path / "m" / os.path.basename(stage.path) / "partial").write_text("x")
            raise RuntimeError("boom")
    assert os.listdir(tmp_path / "m") == []


def test_an_export_without_room_is_refused_before_writing(retrieval, tmp_path, monkeypatch):
    model = retrieval[0]
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=1000))  # 1 kB left
    with pytest.raises(disk_space.StorageError, match=r"^export of model 'movies': 0 MB free in .*; it needs about"):
        exporter.export_model(model, str(tmp_path), "movies")
    assert not os.path.exists(tmp_path / "movies") or os.listdir(tmp_path / "movies") == []


# ----- signatures -----


def test_export_directory_holds_model_assets_and_warmup(retrieval):
    _, catalogue, result, _ = retrieval
    files = set(os.listdir(result.path))
    assert {"saved_model.pb", "variables", "assets", "assets.extra", "manifest.json"} <= files
    version_files.check_version(result.path)
    with open(os.path.join(result.path, "manifest.json")) as f:
        listed = json.load(f)["files"]
    assert {"saved_model.pb", "assets/item_ids.txt", "assets.extra/tf_serving_warmup_requests"} <= set(listed)
    assets = os.listdir(os.path.join(result.path, "assets"))
    assert {"item_ids.txt", "item_titles.txt", "user_ids.txt", "events.txt", "items.jsonl", "vocabulary.json",
            "export_info.json", "model_card.json", "model_card.md"} <= set(assets)
    with open(os.path.join(result.path, "assets", "item_ids.txt")) as f:
        assert f.read().split("\n")[:-1] == catalogue.item_ids[1:]
    with open(os.path.join(result.path, "assets", "items.jsonl")) as f:
        first = json.loads(f.readline())
    assert first == {"item_id": "m1", "text": catalogue.item_texts[1], "title": catalogue.item_titles[1]}
    with open(os.path.join(result.path, "assets", "export_info.json")) as f:
        info = json.load(f)
    assert info["num_items"] == NUM_ITEMS and info["max_k"] == NUM_ITEMS
    assert info["embedding_dim"] == 32
    assert info["context_features"] == [schema.HISTORY_RATINGS, schema.HISTORY_TIMESTAMPS, schema.TARGET_TIMESTAMP,
                                        schema.USER_INDEX]
    assert result.signatures == ["embed_items", "explain", "explain_in_context", "recommend", "recommend_from_text",
                                 "recommend_in_context", "serving_default"]


def test_recommend_matches_the_model_and_excludes_history(retrieval):
    model, _, _, loaded = retrieval
    expected_ids, expected_scores = _model_top_k(model, _features(HISTORY_INDICES), 5)
    out = loaded.signatures["serving_default"](history=tf.constant(HISTORY_IDS), k=tf.constant([5] * 2))
    assert out["item_ids"].numpy().astype(str).tolist() == expected_ids.tolist()
    np.testing.assert_allclose(out["scores"].numpy(), expected_scores, atol=1e-5)
    for row, history in zip(out["item_ids"].numpy().astype(str), HISTORY_IDS):
        assert not set(row) & set(history)


def test_recommend_in_context_gives_the_model_the_ratings_times_and_user(retrieval):
    model, _, _, loaded = retrieval
    expected_ids, expected_scores = _model_top_k(model, _context_features(HISTORY_INDICES), 5)
    history = tf.constant(HISTORY_IDS)
    out = loaded.signatures["recommend_in_context"](history=history, k=tf.constant([5] * 2), **CONTEXT)
    assert out["item_ids"].numpy().astype(str).tolist() == expected_ids.tolist()
    np.testing.assert_allclose(out["scores"].numpy(), expected_scores, atol=1e-5)
    plain = loaded.signatures["recommend"](history=history, k=tf.constant([5] * 2))
    assert np.abs(plain["scores"].numpy() - out["scores"].numpy()).max() > 1e-3  # the context counts


def _padded_right(rows, fill):
    width = max(len(row) for row in rows)
    return [list(row) + [fill] * (width - len(row)) for row in rows]


@pytest.mark.parametrize("histories, context", [
    (HISTORY_LISTS, None),
    ([["m3", "m5"], ["m7", "m8", "m9"], ["m40"]], None),  # ragged, as the model takes them
    (HISTORY_LISTS, CONTEXT_LISTS),
    (HISTORY_LISTS, {"ratings": CONTEXT_LISTS["ratings"]}),  # what is not given is 0 / "" for the export
    (HISTORY_LISTS, {"timestamps": CONTEXT_LISTS["timestamps"], "now": CONTEXT_LISTS["now"],
                     "user_ids": CONTEXT_LISTS["user_ids"]}),
], ids=["plain", "ragged", "context", "ratings-only", "times-and-users"])
@pytest.mark.parametrize("k", [5, NUM_ITEMS - 3])
def test_model_recommend_equals_the_exported_signatures(retrieval, histories, context, k):
    model, _, _, loaded = retrieval
    ids, scores = model.recommend(histories, k=k, **(context or {}))
    assert ids.shape == (len(histories), k) and scores.dtype == np.float32
    history = tf.constant(_padded_right(histories, ""))
    if context is None:
        outputs = [loaded.signatures[name](history=history, k=tf.constant([k] * len(histories)))
                   for name in ("recommend", "serving_default")]
    else:
        width = history.shape[1]
        ratings = context.get("ratings", [[0] * width] * len(histories))
        timestamps = context.get("timestamps", [[0] * width] * len(histories))
        events = context.get("events", [[""] * width] * len(histories))
        outputs = [loaded.signatures["recommend_in_context"](
            history=history, k=tf.constant([k] * len(histories)),
            history_ratings=tf.constant(_padded_right(ratings, 0), tf.float32),
            history_timestamps=tf.constant(_padded_right(timestamps, 0), tf.int64),
            history_events=tf.constant(_padded_right(events, "")),
            timestamp=tf.constant(context.get("now", [0] * len(histories)), tf.int64),
            user_id=tf.constant(context.get("user_ids", [""] * len(histories))))]
    titles = dict(zip(model.item_ids, model.item_titles))
    for out in outputs:
        np.testing.assert_array_equal(out["item_ids"].numpy().astype(str), ids.astype(str))
        np.testing.assert_allclose(out["scores"].numpy(), scores, atol=1e-5)
        assert out["item_titles"].numpy().astype(str).tolist() == [[titles[i] for i in row] for row in ids]
    if context is not None:  # the context reached both
        _, plain_scores = model.recommend(histories, k=k)
        assert np.abs(plain_scores - scores).max() > 1e-4


def test_model_recommend_with_context_equals_the_context_features(retrieval):
    model, _, _, _ = retrieval
    ids, scores = model.recommend(HISTORY_LISTS, k=5, **CONTEXT_LISTS)
    expected_ids, expected_scores = _model_top_k(model, _context_features(HISTORY_INDICES), 5)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-6)


@pytest.mark.parametrize("name, value, message", [
    ("history_ratings", tf.zeros([2, 3]), "history_ratings must have the shape of history"),
    ("history_timestamps", tf.zeros([1, 4], tf.int64), "history_timestamps must have the shape of history"),
    ("timestamp", tf.zeros([3], tf.int64), "timestamp must hold one value per history row"),
    ("history_events", tf.constant([["rated"] * 4]), "history_events must have the shape of history"),
    ("user_id", tf.constant(["u1"]), "user_id must hold one value per history row"),
    ("history_events", tf.constant([["rated", "bought", "", ""], [""] * 4]), r"unknown events in history_events.*bought"),
])
def test_bad_context_is_an_invalid_argument(retrieval, name, value, message):
    _, _, _, loaded = retrieval
    inputs = dict(CONTEXT, **{name: value})
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        loaded.signatures["recommend_in_context"](history=tf.constant(HISTORY_IDS), k=tf.constant([5] * 2), **inputs)


def test_every_item_can_be_recommended_once_k_is_the_remaining_count(retrieval):
    _, _, _, loaded = retrieval
    out = loaded.signatures["recommend"](history=tf.constant([["m1", "m2"]]), k=tf.constant([NUM_ITEMS - 2]))
    assert sorted(out["item_ids"].numpy()[0].astype(str)) == sorted(f"m{i}" for i in range(3, NUM_ITEMS + 1))


def test_unknown_history_items_are_skipped_and_reported(retrieval):
    _, _, _, loaded = retrieval
    out = loaded.signatures["recommend"](history=tf.constant([["m1", "nope"]]), k=tf.constant([3]))
    want = loaded.signatures["recommend"](history=tf.constant([["m1"]]), k=tf.constant([3]))
    assert out["skipped_items"].numpy().tolist() == [[b"nope"]]
    np.testing.assert_array_equal(out["item_ids"].numpy(), want["item_ids"].numpy())


@pytest.mark.parametrize(
    "k, message",
    [(0, r"k must be in \[1, 40\].*got k =\] \[0\]"),
     (41, r"k must be in \[1, 40\].*got k =\] \[41\]"),
     (39, r"\[k =\] \[39\] \[exceeds the number of catalogue items left after excluding the history")],
)
def test_bad_k_is_an_invalid_argument_saying_why(retrieval, k, message):
    _, _, _, loaded = retrieval
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        loaded.signatures["recommend"](history=tf.constant([["m1", "m2"]]), k=tf.constant([k]))


def test_embed_items_and_recommend_from_text_use_the_item_text_tower(retrieval):
    model, catalogue, _, loaded = retrieval
    texts = catalogue.item_texts[1:4]
    out = loaded.signatures["embed_items"](text=tf.constant(texts))["embeddings"].numpy()
    np.testing.assert_allclose(out, model.text_item_embeddings(tf.constant(texts)).numpy(), atol=1e-5)
    top = loaded.signatures["recommend_from_text"](text=tf.constant(texts), k=tf.constant([3] * 3))
    catalogue_matrix = model.item_embeddings(np.arange(1, NUM_ITEMS + 1)).numpy()
    expected = np.argsort(-(out @ catalogue_matrix.T), axis=1)[:, :3] + 1
    assert top["item_ids"].numpy().astype(str).tolist() == [[f"m{i}" for i in row] for row in expected]


def test_behaviour_text_models_recommend_from_text_with_their_query_encoder(tmp_path):
    model, vocab, texts = _build("retrieval", behaviour_text=True, behaviour_text_length=32)
    loaded = exporter.load(exporter.export_model(model, str(tmp_path), "m").path)
    text = ["alien space. love paris"]
    out = loaded.signatures["recommend_from_text"](text=tf.constant(text), k=tf.constant([3]))
    queries = model.text_query_embeddings(tf.constant(text)).numpy()
    scores = queries @ model.item_embeddings(np.arange(1, NUM_ITEMS + 1)).numpy().T
    np.testing.assert_allclose(out["scores"].numpy(), -np.sort(-scores, axis=1)[:, :3], atol=1e-5)
    ids, scores = model.recommend(HISTORY_LISTS, k=3)
    out = loaded.signatures["recommend"](history=tf.constant(HISTORY_IDS), k=tf.constant([3] * 2))
    assert out["item_ids"].numpy().astype(str).tolist() == ids.tolist()
    np.testing.assert_allclose(out["scores"].numpy(), scores, atol=1e-5)


def test_ranking_score_matches_the_model(ranking):
    model, _, result, loaded = ranking
    assert result.signatures == ["explain", "explain_in_context", "score", "score_in_context", "serving_default"]
    with open(os.path.join(result.path, "assets", "export_info.json")) as f:
        info = json.load(f)
    assert info["context_features"] == [schema.HISTORY_RATINGS, schema.USER_INDEX]
    candidates = [["m10", "m11", "m12"], ["m1", "m2", "m3"]]
    out = loaded.signatures["score"](history=tf.constant(HISTORY_IDS), candidates=tf.constant(candidates))
    expected = []
    for history, row in zip(HISTORY_INDICES, candidates):
        features = _features([history] * len(row))
        features[schema.TARGET_ITEM_ID] = np.array([int(c[1:]) for c in row], np.int32)
        expected.append(model.score(features).numpy())
    np.testing.assert_allclose(out["scores"].numpy(), np.array(expected), atol=1e-5)
    with pytest.raises(tf.errors.InvalidArgumentError, match="unknown item ids in candidates.*zz9"):
        loaded.signatures["score"](history=tf.constant(HISTORY_IDS), candidates=tf.constant([["m1"], ["zz9"]]))


def test_score_in_context_gives_the_model_the_history_ratings_and_user(ranking):
    model, _, _, loaded = ranking
    candidates = [["m10", "m11", "m12"], ["m1", "m2", "m3"]]
    out = loaded.signatures["score_in_context"](history=tf.constant(HISTORY_IDS), candidates=tf.constant(candidates),
                                                **CONTEXT)
    context = _context_features(HISTORY_INDICES)
    expected = []
    for row, candidate_row in enumerate(candidates):
        features = {name: np.repeat(value[row:row + 1], len(candidate_row), axis=0) for name, value in context.items()}
        features[schema.TARGET_ITEM_ID] = np.array([int(c[1:]) for c in candidate_row], np.int32)
        expected.append(model.score(features).numpy())
    np.testing.assert_allclose(out["scores"].numpy(), np.array(expected), atol=1e-5)
    plain = loaded.signatures["score"](history=tf.constant(HISTORY_IDS), candidates=tf.constant(candidates))
    assert np.abs(plain["scores"].numpy() - out["scores"].numpy()).max() > 1e-4


def test_history_events_reach_a_model_trained_on_several_event_types(tmp_path):
    model, vocab, texts = _build("retrieval", events=("view", "buy"))
    loaded = exporter.load(exporter.export_model(model, str(tmp_path), "m").path)
    events = tf.constant([["buy", "view", "", ""], ["view", "", "buy", "buy"]])
    out = loaded.signatures["recommend_in_context"](
        history=tf.constant(HISTORY_IDS), k=tf.constant([5] * 2), **dict(CONTEXT, history_events=events))
    features = _context_features(HISTORY_INDICES)
    features[schema.HISTORY_EVENTS] = np.array([[0, 0, 2, 1], [0, 1, 2, 2]], np.int32)
    _, scores = _model_top_k(model, features, 5)
    np.testing.assert_allclose(out["scores"].numpy(), scores, atol=1e-5)
    named = dict(CONTEXT_LISTS, events=events.numpy().astype(str).tolist())
    np.testing.assert_allclose(model.recommend(HISTORY_LISTS, k=5, **named)[1], scores, atol=1e-5)
    # With several event types, "" stands for none of them (index 0).
    features[schema.HISTORY_EVENTS] = np.zeros_like(features[schema.HISTORY_EVENTS])
    out = loaded.signatures["recommend_in_context"](
        history=tf.constant(HISTORY_IDS), k=tf.constant([5] * 2), **dict(CONTEXT, history_events=tf.fill([2, 4], "")))
    np.testing.assert_allclose(out["scores"].numpy(), _model_top_k(model, features, 5)[1], atol=1e-5)
    no_events = dict(CONTEXT_LISTS, events=[[""] * 4] * 2)
    np.testing.assert_allclose(model.recommend(HISTORY_LISTS, k=5, **no_events)[1], out["scores"].numpy(),
                               atol=1e-5)


def test_warmup_file_holds_one_replayable_request_per_signature(retrieval, ranking):
    for _, _, result, loaded in (retrieval, ranking):
        logs = warmup.read(result.path)
        names = [log.predict_log.request.model_spec.signature_name for log in logs]
        assert names == result.signatures
        for log in logs:
            request = log.predict_log.request
            inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
            outputs = loaded.signatures[request.model_spec.signature_name](**inputs)
            assert all(value.shape[0] == 1 for value in outputs.values())


# ----- catalogue update -----


def test_update_catalog_adds_new_items_embedded_from_text(retrieval, tmp_path):
    model, catalogue, first, _ = retrieval
    update = tmp_path / "new.csv"
    update.write_text('item_id,text\nnew1,"robot robot space alien"\nnew2,love paris comedy\n')
    new_items = catalogue_lib.read_update(str(update), catalogue)
    base = os.path.dirname(os.path.dirname(first.path))
    result = exporter.export_model(model, base, "movies", new_items=new_items)
    assert result.version == first.version + 1 and result.num_items == NUM_ITEMS + 2
    loaded = exporter.load(result.path)
    top = loaded.signatures["recommend_from_text"](text=tf.constant(["robot robot space alien"]), k=tf.constant([1]))
    assert top["item_ids"].numpy()[0, 0] == b"new1"
    out = loaded.signatures["recommend"](history=tf.constant([["new2", "m1"]]), k=tf.constant([NUM_ITEMS]))
    returned = set(out["item_ids"].numpy()[0].astype(str))
    assert "new1" in returned and not {"new2", "m1"} & returned
    with open(os.path.join(result.path, "assets", "item_ids.txt")) as f:
        assert f.read().split("\n")[-3:-1] == ["new1", "new2"]


@pytest.mark.parametrize(
    "name, content, error, message",
    [
        ("a.csv", "item_id,name\nx,y\n", errors.MissingColumnError, r"a.csv: the item catalogue needs a 'title'"),
        ("a.csv", "item_id,text\nx,\n", errors.EmptyTextError, r"row 2, field 'text'"),
        ("a.csv", "item_id,title\nx,  \n", errors.EmptyTextError, r"row 2, field 'title'"),
        ("a.csv", "item_id,text\nm3,remake\n", errors.DuplicateIdError, r"'m3' is already in the catalogue"),
        ("a.csv", "item_id,text\nx,a\nx,b\n", errors.DuplicateIdError, r"row 3, field 'item_id'.*on row 2"),
        ("a.csv", "item_id,text\nx,a,b\n", errors.MalformedRowError, r"row 2: got 'x,a,b', expected 2 fields"),
        ("a.jsonl", '{"item_id": "x", "text": "a"}\n{"item_id": ["x"], "text": "b"}\n', errors.FieldTypeError,
         r"row 2, field 'item_id'"),
        ("a.jsonl", '{"item_id": "x"\n', errors.MalformedRowError, r"row 1: .*expected one JSON object per line"),
        ("a.csv", "item_id,title\n", errors.EmptyDataError, "holds no items"),
        ("a.txt", "x", errors.SourceError, r"unknown table format '.txt'"),
        ("missing.csv", None, errors.SourceError, "catalogue update file not found"),
    ],
)
def test_bad_catalogue_updates_name_file_row_and_field(tmp_path, name, content, error, message):
    _, texts = _vocab_and_texts()
    catalogue = catalogue_lib.Catalogue(["", "m3"], texts[:2])
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(error, match=message):
        catalogue_lib.read_update(str(path), catalogue)


def test_catalogue_updates_read_the_table_sources_item_columns(tmp_path):
    _, texts = _vocab_and_texts()
    catalogue = catalogue_lib.Catalogue(["", "m3"], texts[:2])
    path = tmp_path / "items.tsv"
    path.write_text("sku\tname\tbrand\nx1\tStapler\tAcme\nx2\tPens\t\n")
    config = data.DataConfig(item_col="sku", text_cols=("name", "brand"))
    assert catalogue_lib.read_update(str(path), catalogue, config) == (["x1", "x2"], ["Stapler. Acme", "Pens"],
                                                                       ["Stapler", "Pens"])


def test_ranking_models_refuse_a_catalogue_update(ranking, tmp_path):
    model, catalogue, _, _ = ranking
    with pytest.raises(ValueError, match="new items need a retrieval model, got task .ranking."):
        exporter.export_model(model, str(tmp_path), "r", new_items=(["n"], ["text"]))
    assert not os.path.exists(tmp_path / "r")


# ----- checks -----


def test_op_list_is_core_tensorflow_plus_tf_text(retrieval, ranking, tmp_path):
    ops = retrieval[2].ops
    assert {"FastWordpieceTokenizeWithOffsets", "TopKV2", "LookupTableFindV2"} <= set(ops.text_ops + ops.core_ops)
    assert "FastWordpieceTokenizeWithOffsets" in ops.text_ops and not ops.other_ops
    assert not ranking[2].ops.text_ops  # the ranking head reads stored item vectors, no BERT
    # The same export with one op renamed to an op nobody registers must fail.
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(retrieval[2].path, "saved_model.pb"), "rb") as f:
        saved.ParseFromString(f.read())
    next(n for n in saved.meta_graphs[0].graph_def.library.function[0].node_def).op = "ScannSearch"
    (tmp_path / "saved_model.pb").write_bytes(saved.SerializeToString())
    with pytest.raises(checks.ExportCheckError, match=r"outside core TensorFlow.*'ScannSearch'"):
        checks.check_ops(str(tmp_path))


def test_export_saves_each_weight_once_and_no_optimizer_state(retrieval):
    model, _, result, _ = retrieval
    assert len(model.optimizer.variables) > len(model.trainable_variables)
    assert result.size.state_ratio <= 1.2
    saved = [name for name, _ in tf.train.list_variables(os.path.join(result.path, "variables", "variables"))]
    assert not [name for name in saved if "optimizer" in name.lower() or "adam" in name.lower()]


def test_size_check_catches_state_saved_twice(tmp_path):
    weights = tf.Variable(np.ones([256, 64], np.float32))
    module = tf.Module()
    module.weights = weights
    module.copy = tf.Variable(weights.numpy())
    module.serve = tf.function(lambda x: x @ module.weights + x @ module.copy,
                               input_signature=[tf.TensorSpec([None, 256])])
    tf.saved_model.save(module, str(tmp_path))
    report = checks.size_report(str(tmp_path), checks.weights_bytes([weights]))
    assert report.state_ratio > 1.9
    with pytest.raises(checks.ExportCheckError, match="saved twice"):
        checks.check_size(report, max_ratio=1.2, max_graph_bytes=10e6)
    assert checks.check_size(checks.size_report(str(tmp_path), 2 * weights.numpy().nbytes), 1.2, 10e6) == []


# ----- reload in a fresh process -----

_RELOAD = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow_text  # registers the TF Text ops the graph uses
    import tensorflow as tf
    loaded = tf.saved_model.load(sys.argv[1])
    history = tf.constant({history})
    rec = loaded.signatures["serving_default"](history=history, k=tf.constant([5] * len({history})))
    text = loaded.signatures["recommend_from_text"](text=tf.constant({texts}), k=tf.constant([5] * len({texts})))
    emb = loaded.signatures["embed_items"](text=tf.constant({texts}))
    np.savez(sys.argv[2], ids=rec["item_ids"].numpy().astype(str), scores=rec["scores"].numpy(),
             text_ids=text["item_ids"].numpy().astype(str), text_scores=text["scores"].numpy(),
             embeddings=emb["embeddings"].numpy())
""")


def test_a_fresh_process_reloads_the_export_with_identical_outputs(retrieval, tmp_path):
    model, catalogue, result, _ = retrieval
    texts = ["space robot", catalogue.item_texts[5]]
    script = _RELOAD.format(history=HISTORY_IDS, texts=texts)
    out_file = str(tmp_path / "out.npz")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.run([sys.executable, "-c", script, result.path, out_file],
                             capture_output=True, text=True, env=env, timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    out = np.load(out_file)
    ids, scores = model.recommend(HISTORY_LISTS, k=5)
    assert out["ids"].tolist() == ids.tolist()
    assert np.abs(out["scores"] - scores).max() < 1e-5
    embeddings = model.text_item_embeddings(tf.constant(texts)).numpy()
    assert np.abs(out["embeddings"] - embeddings).max() < 1e-5
    text_queries = model.item_tower.text_item_embeddings(tf.constant(texts)).numpy()  # the text alone
    text_scores = text_queries @ model.item_embeddings(np.arange(1, NUM_ITEMS + 1)).numpy().T
    assert np.abs(out["text_scores"] - np.sort(text_scores, axis=1)[:, ::-1][:, :5]).max() < 1e-5
