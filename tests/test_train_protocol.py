"""The held-out protocol around the metrics: complete prior items, click negatives."""

import numpy as np
import pytest

from tfrec import data
from tfrec.data import schema
from tfrec.evaluation import protocol


@pytest.fixture(scope="module")
def held_out():
    dataset = data.load("synthetic:users=20,items=60,per_user=15,seed=3")
    split = data.split_interactions(dataset, "leave_last_out")
    vocab = data.Vocabulary.from_data(dataset)
    examples = data.build_examples(dataset, split, vocab, history_length=3)  # truncated histories
    return dataset, split, vocab, examples


@pytest.mark.parametrize("name, earlier", [("valid", ("train",)), ("test", ("train", "valid"))])
def test_prior_items_are_every_earlier_item_of_the_user(held_out, name, earlier):
    dataset, split, vocab, examples = held_out
    test = protocol.HeldOut.from_split(split, vocab, name, examples)
    frames = [getattr(split, part) for part in earlier]
    for user, target, prior in zip(test.examples[schema.USER_INDEX], test.examples[schema.TARGET_ITEM_ID], test.prior):
        seen = set()
        for frame in frames:
            rows = frame[vocab.user_index(frame[schema.USER_ID].to_numpy()) == user]
            seen |= set(vocab.item_index(rows[schema.ITEM_ID].to_numpy()).tolist())
        assert set(prior.tolist()) == seen
    # The history rows hold only the last 3 behaviours: the prior items are more.
    histories = test.examples[schema.HISTORY_ITEM_IDS]
    assert all(len(prior) > np.count_nonzero(row) for prior, row in zip(test.prior, histories))


def test_click_negatives_are_unseen_items(held_out):
    _, split, vocab, examples = held_out
    test = protocol.HeldOut.from_split(split, vocab, "test", examples)
    negatives = protocol.click_negatives(test.examples, test.prior, vocab.num_items, seed=0)
    targets = test.examples[schema.TARGET_ITEM_ID]
    picked = negatives[schema.TARGET_ITEM_ID]
    assert np.all((picked >= 1) & (picked <= vocab.num_items)) and np.all(picked != targets)
    assert not any(item in set(prior.tolist()) for item, prior in zip(picked, test.prior))
    np.testing.assert_array_equal(negatives[schema.HISTORY_ITEM_IDS], test.examples[schema.HISTORY_ITEM_IDS])
    again = protocol.click_negatives(test.examples, test.prior, vocab.num_items, seed=0)
    np.testing.assert_array_equal(again[schema.TARGET_ITEM_ID], picked)


def test_prior_items_refuse_an_unknown_split(held_out):
    _, split, vocab, examples = held_out
    with pytest.raises(ValueError, match="split name must be one of"):
        protocol.prior_items(split, vocab, "train", examples["train"])
