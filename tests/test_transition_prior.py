"""The transition-count prior reproduces the transitions baseline's evidence, sparsely."""

import numpy as np
import pytest
import tensorflow as tf

from tfrec.baselines.transitions import Transitions
from tfrec.data.sequences import transition_counts
from tfrec.models.transition_prior import FORMS, TransitionPrior, neighbours_for, top_neighbours

NUM_ITEMS = 50


def _train(seed=0, rows=2000):
    rng = np.random.default_rng(seed)
    return {"user_index": rng.integers(1, 30, rows), "target_timestamp": rng.integers(0, 10**6, rows),
            "target_item_id": rng.integers(1, NUM_ITEMS + 1, rows)}


def _prior(train, neighbours, weight=1.0):
    prior = TransitionPrior(NUM_ITEMS + 1, neighbours)
    prior.update_counts(*top_neighbours(*transition_counts(train, NUM_ITEMS), NUM_ITEMS + 1, neighbours))
    prior.weight.assign(weight)
    return prior


def test_every_neighbour_kept_gives_the_baselines_scores():
    train = _train()
    histories = np.random.default_rng(1).integers(0, NUM_ITEMS + 1, (7, 9))
    expected = Transitions(NUM_ITEMS).fit(train).score({"history_item_ids": histories})
    prior = _prior(train, NUM_ITEMS, weight=0.5)
    np.testing.assert_allclose(prior.evidence(tf.constant(histories)).numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(prior.catalogue_scores(tf.constant(histories)).numpy(), 0.5 * np.log1p(expected),
                               rtol=1e-5)


def test_the_shares_form_votes_with_each_successors_share_of_its_source():
    prior = TransitionPrior(num_rows=4, neighbours=2, last_n=1)
    prior.update_counts(*top_neighbours(np.array([1, 1]), np.array([2, 3]), np.array([3.0, 1.0]), 4, 2))
    prior.set_form("shares")
    assert prior.form == "shares"
    np.testing.assert_allclose(prior.evidence(tf.constant([[1]])).numpy(), [[0.0, 0.0, 7.5, 2.5]])
    prior.set_form("counts")
    np.testing.assert_allclose(prior.evidence(tf.constant([[1]])).numpy(), [[0.0, 0.0, 3.0, 1.0]])


@pytest.mark.parametrize("form", FORMS)
def test_candidate_scores_equal_the_catalogue_scores_at_the_candidates(form):
    rng = np.random.default_rng(2)
    histories, candidates = rng.integers(0, NUM_ITEMS + 1, (6, 8)), rng.integers(1, NUM_ITEMS + 1, (6, 5))
    for neighbours in (3, NUM_ITEMS):
        prior = _prior(_train(), neighbours)
        prior.set_form(form)
        dense = prior.catalogue_scores(tf.constant(histories)).numpy()
        np.testing.assert_allclose(prior.candidate_scores(tf.constant(histories), tf.constant(candidates)).numpy(),
                                   np.take_along_axis(dense, candidates, axis=1), rtol=1e-5, atol=1e-6)


def test_top_neighbours_keeps_the_most_frequent_successors_sorted_by_id():
    ids, counts = top_neighbours(np.array([1, 1, 1, 2]), np.array([3, 2, 4, 1]), np.array([1.0, 5.0, 2.0, 7.0]),
                                 num_rows=5, neighbours=2)
    assert ids[1].tolist() == [2, 4] and counts[1].tolist() == [5.0, 2.0]
    assert ids[2].tolist() == [0, 1] and counts[2].tolist() == [0.0, 7.0]
    assert not counts[0].any() and not counts[3].any()


def test_a_zero_weight_leaves_the_scores_alone_and_the_table_stays_bounded():
    prior = _prior(_train(), 4, weight=0.0)
    assert not prior.catalogue_scores(tf.constant([[1, 2, 3]])).numpy().any()
    assert neighbours_for(1683) == 256 and neighbours_for(10) == 9
    assert neighbours_for(2_000_000) * 2_000_000 <= 1 << 23
    config = prior.get_config()
    assert TransitionPrior.from_config(config).get_config() == config
