"""Full-catalogue ranking, rating and click metrics on hand-computed cases."""

import math

import numpy as np
import pytest

from tfrec.evaluation import metrics


def test_rank_ignores_padding_and_excludes_history():
    # Items 1..5; column 0 has the highest score but is padding.
    scores = np.array([[9.0, 0.9, 0.8, 0.7, 0.6, 0.5]])
    # Target item 4 (score 0.6): items 1, 2, 3 score higher; item 2 is in the history.
    ranks = metrics.target_ranks(scores, np.array([4]), np.array([[0, 0, 2]]))
    assert ranks.tolist() == [2]


def test_exclude_adds_items_beyond_the_truncated_history():
    scores = np.array([[0.0, 0.9, 0.8, 0.7, 0.6, 0.5]] * 3)
    targets = np.array([4, 4, 4])
    history = np.array([[0, 2], [0, 2], [0, 2]])
    as_lists = [np.array([1]), {1, 3}, []]
    indptr, indices = np.array([0, 1, 3, 3]), np.array([1, 1, 3])
    expected = [1, 0, 2]
    assert metrics.target_ranks(scores, targets, history, exclude=as_lists).tolist() == expected
    assert metrics.target_ranks(scores, targets, history, exclude=(indptr, indices)).tolist() == expected
    # Without a history, `exclude` alone decides.
    assert metrics.target_ranks(scores, targets, exclude=as_lists).tolist() == [2, 1, 3]


def test_target_stays_a_candidate_even_if_in_history():
    scores = np.array([[0.0, 0.9, 0.8, 0.7]])
    assert metrics.target_ranks(scores, np.array([2]), np.array([[2, 1]])).tolist() == [0]


def test_ties_rank_before_the_target_by_default():
    scores = np.array([[0.0, 0.5, 0.5, 0.5, 0.9, 0.1]])
    # Target 2: one item strictly greater (4), two tied (1, 3).
    assert metrics.target_ranks(scores, np.array([2])).tolist() == [3]
    assert metrics.target_ranks(scores, np.array([2]), ties="optimistic").tolist() == [1]
    # A constant scorer gets the worst rank, not a lucky one.
    constant = np.ones((1, 6))
    assert metrics.target_ranks(constant, np.array([3])).tolist() == [4]


def test_ranking_metrics_hand_computed():
    # Three examples over 4 items; ranks 0, 2 and 3.
    scores = np.array(
        [
            [0.0, 0.9, 0.1, 0.2, 0.3],  # target 1 -> rank 0
            [0.0, 0.9, 0.8, 0.7, 0.6],  # target 3 -> rank 2
            [0.0, 0.1, 0.2, 0.3, 0.4],  # target 1 -> rank 3
        ]
    )
    result = metrics.ranking_metrics(scores, np.array([1, 3, 1]), np.zeros((3, 1), np.int32), ks=(1, 3))
    assert result["HR@1"] == pytest.approx(1 / 3)
    assert result["HR@3"] == pytest.approx(2 / 3)
    assert result["Recall@3"] == result["HR@3"]
    assert result["NDCG@1"] == pytest.approx(1 / 3)
    assert result["NDCG@3"] == pytest.approx((1.0 + 1 / math.log2(4)) / 3)
    assert result["MRR"] == pytest.approx((1 + 1 / 3 + 1 / 4) / 3)


def test_default_keys_follow_the_contract():
    scores = np.random.default_rng(0).normal(size=(5, 200))
    result = metrics.ranking_metrics(scores, np.arange(1, 6))
    assert {"HR@10", "NDCG@10", "Recall@100", "MRR", "HR@100"} <= set(result)


def test_batches_do_not_change_the_result():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 5, size=(37, 30)).astype(np.float32)  # many ties
    targets = rng.integers(1, 30, size=37)
    history = rng.integers(0, 30, size=(37, 6))
    whole = metrics.target_ranks(scores, targets, history, batch_size=1000)
    assert np.array_equal(whole, metrics.target_ranks(scores, targets, history, batch_size=4))
    # Brute-force reference: count remaining candidates scored >= the target.
    for i in range(37):
        candidates = set(range(1, 30)) - set(history[i].tolist()) - {targets[i]}
        assert whole[i] == sum(scores[i, j] >= scores[i, targets[i]] for j in candidates)


def test_hit_rate_curve_matches_ranking_metrics():
    rng = np.random.default_rng(2)
    scores = rng.normal(size=(50, 120))
    targets = rng.integers(1, 120, size=50)
    history = rng.integers(0, 120, size=(50, 8))
    curve = metrics.hit_rate_curve(scores, targets, history, max_k=100)
    assert curve.shape == (100,)
    assert np.all(np.diff(curve) >= 0)
    result = metrics.ranking_metrics(scores, targets, history, ks=(1, 10, 100))
    assert curve[0] == pytest.approx(result["HR@1"])
    assert curve[9] == pytest.approx(result["HR@10"])
    assert curve[99] == pytest.approx(result["HR@100"])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"target_item_ids": np.array([0])}, "row 0 has target 0"),
        ({"target_item_ids": np.array([4])}, "row 0 has target 4"),
        ({"target_item_ids": np.array([1.0])}, "integer"),
        ({"target_item_ids": np.array([1, 2])}, "expected shape"),
        ({"history_item_ids": np.array([[7]])}, "row 0 column 0 has 7"),
        ({"exclude": [np.array([9])]}, "exclude: row 0 holds item 9"),
        ({"exclude": [[1], [2]]}, "expected 1 rows"),
        ({"ties": "random"}, "ties"),
    ],
)
def test_bad_ranking_input_is_named(kwargs, message):
    arguments = {"scores": np.array([[0.0, 0.1, 0.2, 0.3]]), "target_item_ids": np.array([1])}
    arguments.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=message):
        metrics.ranking_metrics(**arguments)


def test_non_finite_scores_are_rejected():
    scores = np.array([[0.0, 0.1, 0.2], [0.0, np.nan, 0.2]])
    with pytest.raises(ValueError, match="row 1 holds a non-finite value"):
        metrics.ranking_metrics(scores, np.array([1, 2]))


def test_rating_metrics_hand_computed():
    result = metrics.rating_metrics([3.0, 5.0, 2.0], [4.0, 5.0, 4.0])
    assert result["RMSE"] == pytest.approx(math.sqrt(5 / 3))
    assert result["MAE"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="pred has 2 values but true has 3"):
        metrics.rating_metrics([1.0, 2.0], [1.0, 2.0, 3.0])


def test_click_metrics_hand_computed():
    # Positives 0.8, 0.4; negatives 0.4, 0.1: pairs (0.8>0.4, 0.8>0.1, 0.4=0.4, 0.4>0.1) -> 3.5 / 4.
    prob = np.array([0.8, 0.4, 0.4, 0.1])
    label = np.array([1, 1, 0, 0])
    result = metrics.click_metrics(prob, label)
    assert result["AUC"] == pytest.approx(3.5 / 4)
    expected = -(math.log(0.8) + math.log(0.4) + math.log(0.6) + math.log(0.9)) / 4
    assert result["LogLoss"] == pytest.approx(expected)


def test_click_metrics_rejects_bad_labels_and_one_class():
    with pytest.raises(ValueError, match="label: index 1 is 2.0"):
        metrics.click_metrics([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="both classes"):
        metrics.click_metrics([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="prob: index 0 is 1.5"):
        metrics.click_metrics([1.5, 0.2], [1, 0])


def test_full_history_examples_hold_every_earlier_item():
    from tfrec import data
    from tfrec.data import schema, synthetic
    from tfrec.evaluation import full_history_examples

    ds = synthetic.generate(users=6, items=40, per_user=12, seed=3)
    vocab = data.Vocabulary.from_data(ds)
    split = data.split_interactions(ds, "leave_last_out")
    parts = full_history_examples(ds, split, vocab)
    per_user = ds.interactions.groupby(schema.USER_ID).size()
    test = parts["test"]
    assert test[schema.HISTORY_ITEM_IDS].shape[1] == per_user.max()
    assert parts["train"][schema.HISTORY_ITEM_IDS].shape[1] == 1
    # Each test target's history is every other interaction of the user (train + valid), in order.
    items_of = ds.interactions.groupby(schema.USER_ID)[schema.ITEM_ID].apply(list)
    rows = zip(test[schema.USER_INDEX], test[schema.HISTORY_ITEM_IDS], test[schema.TARGET_ITEM_ID])
    for user, history, target in rows:
        expected = vocab.item_index(items_of[vocab.user_ids[user]]).tolist()
        assert history[history > 0].tolist() + [target] == expected
