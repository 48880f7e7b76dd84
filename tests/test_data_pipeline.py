"""tf.data pipelines and the sharded TFRecord round trip."""

import numpy as np
import pytest
import tensorflow as tf

from tfrec import data
from tfrec.data import schema, synthetic, tfrecord

HISTORY = 5


@pytest.fixture(scope="module")
def built():
    ds = synthetic.generate(users=40, items=80, per_user=10, seed=2)
    sp = data.split_interactions(ds, "leave_last_out")
    vocab = data.Vocabulary.from_data(ds)
    return ds, sp, vocab, data.build_examples(ds, sp, vocab, history_length=HISTORY)


def epoch(dataset):
    batches = list(dataset.as_numpy_iterator())
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def test_to_tf_dataset_batches_with_schema_dtypes(built):
    train = built[3]["train"]
    dataset = data.to_tf_dataset(train, batch_size=32, shuffle=False)
    spec = dataset.element_spec
    assert spec[schema.HISTORY_ITEM_IDS].shape.as_list() == [None, HISTORY]
    assert spec[schema.HISTORY_ITEM_IDS].dtype == tf.int32 and spec[schema.HISTORY_LENGTH].dtype == tf.int32
    assert not any(s.dtype == tf.bool for s in spec.values())
    whole = epoch(dataset)
    for name, values in train.items():
        np.testing.assert_array_equal(whole[name], values)


def test_shuffle_is_seeded_and_reshuffles_each_epoch(built):
    train = built[3]["train"]
    first = data.to_tf_dataset(train, batch_size=64, seed=3)
    again = data.to_tf_dataset(train, batch_size=64, seed=3)
    order = epoch(first)[schema.TARGET_TIMESTAMP]
    assert order.tolist() == epoch(again)[schema.TARGET_TIMESTAMP].tolist()
    assert order.tolist() != train[schema.TARGET_TIMESTAMP].tolist()
    assert sorted(order.tolist()) == sorted(train[schema.TARGET_TIMESTAMP].tolist())
    assert epoch(first)[schema.TARGET_TIMESTAMP].tolist() != order.tolist()


@pytest.mark.parametrize("num_shards", [1, 3])
def test_tfrecord_round_trip_is_exact(built, tmp_path, num_shards):
    ds, sp, vocab, examples = built
    chunks = {name: data.iter_examples(ds, sp, vocab, HISTORY, name, chunk_size=50) for name in examples}
    out = tmp_path / "records"
    metadata = tfrecord.write_tfrecords(
        chunks, sp.sizes(), out, num_shards, HISTORY, vocab=vocab, item_texts=data.item_texts(ds.items, vocab)
    )
    assert metadata["splits"]["train"]["examples"] == len(sp.train)
    assert len(list(out.glob("train-*.tfrecord"))) == num_shards
    assert data.Vocabulary.from_json((out / tfrecord.VOCABULARY_FILE).read_text()) == vocab
    assert len((out / tfrecord.ITEMS_FILE).read_text().splitlines()) == vocab.num_items
    for name, expected in examples.items():
        got = epoch(tfrecord.read_tfrecords(out, name).batch(1000))
        assert set(got) == set(expected)
        for feature, values in expected.items():
            assert got[feature].dtype == values.dtype, feature
            np.testing.assert_array_equal(got[feature], values, err_msg=feature)
    # The records feed the same pipeline as in-memory examples.
    batch = next(iter(data.to_tf_dataset(tfrecord.read_tfrecords(out, "train"), batch_size=8, seed=0)))
    assert batch[schema.HISTORY_ITEM_IDS].shape.as_list() == [8, HISTORY]


def test_tfrecord_output_is_replaced_atomically_and_failures_leave_nothing(built, tmp_path):
    ds, sp, vocab, _ = built
    out = tmp_path / "records"
    chunks = {"test": data.iter_examples(ds, sp, vocab, HISTORY, "test")}
    tfrecord.write_tfrecords(chunks, {"test": len(sp.test)}, out, 2, HISTORY)
    with pytest.raises(data.DataError, match="expected 999 test examples, got 40"):
        chunks = {"test": data.iter_examples(ds, sp, vocab, HISTORY, "test")}
        tfrecord.write_tfrecords(chunks, {"test": 999}, out, 2, HISTORY, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["records"]  # old output intact, no temp left
    assert len(epoch(tfrecord.read_tfrecords(out, "test").batch(100))[schema.LABEL]) == 40
    with pytest.raises(data.SourceError, match="no metadata.json"):
        tfrecord.read_tfrecords(tmp_path, "test")
