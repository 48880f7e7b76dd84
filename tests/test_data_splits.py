"""Splits, vocabulary, item texts and examples: sizes, rules and the absence of leakage."""

import json

import numpy as np
import pandas as pd
import pytest

from tfrec import data
from tfrec.data import schema, synthetic


@pytest.fixture(scope="module")
def ds():
    return synthetic.generate(users=60, items=120, per_user=15, seed=1)


def keys(frame):
    return set(map(tuple, frame[[schema.USER_ID, schema.ITEM_ID, schema.TIMESTAMP]].values.tolist()))


@pytest.mark.parametrize("method", data.SPLITS)
def test_split_partitions_the_interactions(ds, method):
    sp = data.split_interactions(ds, method, seed=5)
    parts = [keys(sp.train), keys(sp.valid), keys(sp.test)]
    assert sum(map(len, parts)) == len(ds.interactions) == len(set().union(*parts))
    assert all(len(p) for p in parts)


def test_leave_last_out_takes_each_users_last_two(ds):
    sp = data.split_interactions(ds, "leave_last_out")
    users = ds.interactions[schema.USER_ID].nunique()
    assert len(sp.valid) == len(sp.test) == users
    for user, logs in ds.interactions.groupby(schema.USER_ID):
        assert sp.test[sp.test.user_id == user].item_id.tolist() == logs.item_id.tolist()[-1:]
        assert sp.valid[sp.valid.user_id == user].item_id.tolist() == logs.item_id.tolist()[-2:-1]


def test_leave_last_out_breaks_time_ties_by_item_id():
    logs = pd.DataFrame({"user_id": ["u"] * 4, "item_id": ["10", "9", "2", "1"], "timestamp": [5, 5, 5, 1]})
    items = pd.DataFrame({"item_id": ["1", "2", "9", "10"], "title": list("abcd")})
    ds = data.assemble("t", data.RawTable(logs, "l"), data.RawTable(items, "i"))
    sp = data.split_interactions(ds, "leave_last_out")
    assert (sp.train.item_id.tolist(), sp.valid.item_id.tolist(), sp.test.item_id.tolist()) == (
        ["1", "2"],
        ["9"],
        ["10"],
    )


def test_temporal_split_uses_global_cutoffs(ds):
    sp = data.split_interactions(ds, "temporal", fractions=(0.7, 0.1, 0.2))
    assert sp.train.timestamp.max() < sp.valid.timestamp.min()
    assert sp.valid.timestamp.max() < sp.test.timestamp.min()
    assert abs(len(sp.train) / len(ds.interactions) - 0.7) < 0.01


def test_random_split_is_seeded(ds):
    a = data.split_interactions(ds, "random", seed=2)
    b = data.split_interactions(ds, "random", seed=2)
    c = data.split_interactions(ds, "random", seed=3)
    assert keys(a.test) == keys(b.test) != keys(c.test)
    assert abs(len(a.train) / len(ds.interactions) - 0.8) < 0.05


def test_cold_items_never_in_training(ds):
    sp = data.split_interactions(ds, "cold_items", cold_fraction=0.2, seed=4)
    assert len(sp.cold_items) == round(0.2 * ds.interactions.item_id.nunique())
    assert not set(sp.train.item_id) & sp.cold_items
    assert set(sp.valid.item_id) | set(sp.test.item_id) == set(sp.cold_items)
    assert not set(sp.valid.item_id) & set(sp.test.item_id)
    vocab = data.Vocabulary.from_data(ds)
    train = data.build_examples(ds, sp, vocab, history_length=8)["train"]
    cold = set(vocab.item_index(sorted(sp.cold_items)).tolist())
    assert not cold & set(train[schema.HISTORY_ITEM_IDS].ravel().tolist())


def test_bad_split_arguments(ds):
    with pytest.raises(ValueError, match="split must be one of"):
        data.split_interactions(ds, "by_magic")
    with pytest.raises(ValueError, match="summing to 1"):
        data.split_interactions(ds, "random", fractions=(0.5, 0.1, 0.1))


def test_vocabulary_round_trip_and_padding(ds):
    vocab = data.Vocabulary.from_data(ds)
    assert vocab.item_ids[0] == vocab.user_ids[0] == vocab.events[0] == ""
    assert vocab.num_items == len(ds.items) and vocab.num_users == 60
    assert vocab.events == ["", "click", "purchase", "view"]
    index = vocab.item_index(ds.items.item_id)
    assert index.dtype == np.int32 and index.tolist() == list(range(1, vocab.num_items + 1))
    assert vocab.item_index(["nope", ""]).tolist() == [0, 0]
    assert data.Vocabulary.from_json(vocab.to_json()) == vocab
    json.loads(vocab.to_json())


def test_item_texts_follow_the_contract(ds):
    vocab = data.Vocabulary.from_data(ds)
    texts = data.item_texts(ds.items, vocab)
    assert len(texts) == vocab.num_items + 1 and texts[0] == ""
    first = ds.items.iloc[0]
    assert texts[1] == f"{first.title}. {first.genres}. {first.description}"
    assert data.item_text("Heat", "Action|Crime", "") == "Heat. Action, Crime"


def event_order_key(timestamps, items):
    return timestamps.astype(np.int64) * 1_000_000 + items


@pytest.mark.parametrize("method", data.SPLITS)
def test_examples_have_no_leakage(ds, method):
    sp = data.split_interactions(ds, method, seed=7)
    vocab = data.Vocabulary.from_data(ds)
    examples = data.build_examples(ds, sp, vocab, history_length=6)
    frames = {"train": sp.train, "valid": sp.valid, "test": sp.test}
    later = {"train": ("valid", "test"), "valid": ("test",), "test": ()}
    for name, ex in examples.items():
        assert len(ex[schema.LABEL]) == len(frames[name])
        history, length = ex[schema.HISTORY_ITEM_IDS], ex[schema.HISTORY_LENGTH]
        real = np.arange(6)[None, :] >= 6 - length[:, None]
        assert ((history != 0) == real).all()  # left-padded, most recent last
        # Every history event precedes its target in (timestamp, item) order, so no
        # history holds its own target.
        history_key = event_order_key(ex[schema.HISTORY_TIMESTAMPS], history)
        target_key = event_order_key(ex[schema.TARGET_TIMESTAMP], ex[schema.TARGET_ITEM_ID])[:, None]
        assert (history_key[real] < np.broadcast_to(target_key, history.shape)[real]).all()
        assert (np.diff(np.where(real, history_key, 0), axis=1)[real[:, 1:] & real[:, :-1]] > 0).all()
        # No history holds a target of its own or of a later split.
        forbidden = set()
        for other in later[name]:
            o = examples[other]
            forbidden |= set(zip(o[schema.USER_INDEX], o[schema.TARGET_ITEM_ID], o[schema.TARGET_TIMESTAMP]))
        users = np.broadcast_to(ex[schema.USER_INDEX][:, None], history.shape)
        used = set(zip(users[real], history[real], ex[schema.HISTORY_TIMESTAMPS][real]))
        assert not used & forbidden


def test_examples_match_a_direct_computation(ds):
    """Histories equal the last N earlier behaviours, computed naively per user."""
    sp = data.split_interactions(ds, "leave_last_out")
    vocab = data.Vocabulary.from_data(ds)
    examples = data.build_examples(ds, sp, vocab, history_length=4)
    test = examples["test"]
    for row in range(0, 60, 7):
        user = vocab.user_ids[test[schema.USER_INDEX][row]]
        logs = ds.interactions[ds.interactions.user_id == user]
        expected = vocab.item_index(logs.item_id.tolist()[-5:-1])
        assert test[schema.HISTORY_ITEM_IDS][row].tolist() == expected.tolist()
        assert test[schema.TARGET_ITEM_ID][row] == vocab.item_index([logs.item_id.iloc[-1]])[0]
        assert test[schema.LABEL][row] == logs.rating.iloc[-1] == test[schema.TARGET_RATING][row]
        assert test[schema.TARGET_EVENT][row] == vocab.event_index([logs.event.iloc[-1]])[0]
        assert test[schema.HISTORY_RATINGS][row].tolist() == logs.rating.tolist()[-5:-1]
    train = examples["train"]
    assert train[schema.HISTORY_LENGTH][0] == 0 and (train[schema.HISTORY_ITEM_IDS][0] == 0).all()
    assert {k: (v.dtype, v.ndim) for k, v in train.items()} == {
        k: (np.dtype(dtype), 2 if seq else 1) for k, (dtype, seq) in data.FEATURES.items()
    }


def test_implicit_data_gets_label_one_and_one_event():
    logs = pd.DataFrame({"user_id": ["u"] * 3, "item_id": ["a", "b", "c"], "timestamp": [1, 2, 3]})
    items = pd.DataFrame({"item_id": ["a", "b", "c"], "title": ["A", "B", "C"]})
    ds = data.assemble("t", data.RawTable(logs, "l"), data.RawTable(items, "i"))
    vocab = data.Vocabulary.from_data(ds)
    assert vocab.events == ["", schema.IMPLICIT_EVENT]
    ex = data.build_examples(ds, data.split_interactions(ds), vocab, history_length=3)["test"]
    assert ex[schema.LABEL].tolist() == [1.0] and ex[schema.TARGET_RATING].tolist() == [0.0]
    assert ex[schema.HISTORY_EVENTS].tolist() == [[0, 1, 1]]
