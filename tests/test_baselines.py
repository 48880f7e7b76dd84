"""Baselines on hand-computed synthetic cases, the TFRS runner subprocess, and the reference figures of docs/evaluation.md."""

import os
import subprocess
import sys

import numpy as np
import pytest

from tfrec import baselines, data
from tfrec.baselines import tfrs_runner
from tfrec.data import schema
from tfrec.evaluation import full_history_examples, metrics


def _train(users, items, times=None, ratings=None):
    users = np.asarray(users)
    return {
        schema.USER_INDEX: users,
        schema.TARGET_ITEM_ID: np.asarray(items),
        schema.TARGET_TIMESTAMP: np.asarray(times if times is not None else np.arange(len(users))),
        schema.TARGET_RATING: np.asarray(ratings if ratings is not None else np.ones(len(users)), dtype=np.float32),
    }


def test_popularity_counts_train_targets():
    model = baselines.Popularity(num_items=4).fit(_train([1, 1, 2, 3], [2, 4, 2, 2]))
    scores = model.score({schema.HISTORY_ITEM_IDS: np.zeros((2, 3), np.int32)})
    assert scores.shape == (2, 5)
    assert scores[0].tolist() == [0.0, 0.0, 3.0, 0.0, 1.0]


def test_transitions_hand_computed():
    # One user's sequence 1, 2, 3, 4 given out of order: it is sorted by time.
    train = _train([1, 1, 1, 1], [3, 1, 4, 2], times=[30, 10, 40, 20])
    model = baselines.Transitions(num_items=5, window=3, last_n=5, decay=0.8).fit(train)
    assert model.counts[1, [2, 3, 4]].tolist() == [1.0, 1.0, 1.0]
    assert model.counts[3, 4] == 1.0 and model.counts[4].sum() == 0.0
    # History ... 2, 3 (most recent last): 3 -> {4: 1}; 2 -> 0.8 * {3: 1, 4: 1}.
    scores = model.score({schema.HISTORY_ITEM_IDS: np.array([[0, 0, 2, 3]])})
    assert scores[0].tolist() == pytest.approx([0.0, 0.0, 0.0, 0.8, 1.8, 0.0])


def test_transitions_keep_example_order_within_a_timestamp():
    # Items 5 then 1 share a timestamp: the example order (the data layer's) decides.
    model = baselines.Transitions(num_items=5, window=1).fit(_train([1, 1], [5, 1], times=[7, 7]))
    assert model.counts[5, 1] == 1.0 and model.counts[1, 5] == 0.0


def test_transitions_only_count_the_window_and_last_n():
    model = baselines.Transitions(num_items=6, window=1, last_n=1).fit(_train([1] * 6, [1, 2, 3, 4, 5, 6]))
    assert model.counts[1, 3] == 0.0
    scores = model.score({schema.HISTORY_ITEM_IDS: np.array([[1, 5]])})
    assert np.flatnonzero(scores[0]).tolist() == [6]


def test_item_knn_cosine_co_occurrence():
    # Users: {1, 2}, {1, 2, 3}, {3}. c11 = c22 = c33 = 2, c12 = 2, c13 = c23 = 1.
    model = baselines.ItemKNN(num_items=3).fit(_train([1, 1, 2, 2, 2, 3], [1, 2, 1, 2, 3, 3]))
    assert model.similarity[1, 2] == pytest.approx(1.0)
    assert model.similarity[1, 3] == pytest.approx(0.5)
    assert model.similarity[1, 1] == 0.0
    scores = model.score({schema.HISTORY_ITEM_IDS: np.array([[0, 1], [1, 2]])})
    assert scores[0].tolist() == pytest.approx([0.0, 0.0, 1.0, 0.5])
    assert scores[1].tolist() == pytest.approx([0.0, 1.0, 1.0, 1.0])


def test_biases_satisfy_the_regularised_normal_equations():
    rng = np.random.default_rng(0)
    users, items = rng.integers(1, 9, size=200), rng.integers(1, 13, size=200)
    ratings = rng.integers(1, 6, size=200).astype(np.float32)
    model = baselines.Biases(num_items=12, num_users=8, reg=5.0, iterations=300).fit(
        _train(users, items, ratings=ratings)
    )
    residual = ratings - model.mean - model.user_bias[users] - model.item_bias[items]
    item_gradient = np.bincount(items, weights=residual, minlength=13) - 5.0 * model.item_bias
    user_gradient = np.bincount(users, weights=residual, minlength=9) - 5.0 * model.user_bias
    assert np.abs(item_gradient).max() < 1e-6 and np.abs(user_gradient).max() < 1e-6
    examples = {schema.USER_INDEX: users[:5], schema.TARGET_ITEM_ID: items[:5]}
    assert np.allclose(model.predict(examples), model.score(examples)[np.arange(5), items[:5]], atol=1e-5)


def test_biases_unseen_user_gets_mean_plus_item_bias():
    model = baselines.Biases(num_items=3, num_users=4).fit(_train([1, 2], [1, 1], ratings=[5.0, 5.0]))
    prediction = model.predict({schema.USER_INDEX: np.array([4]), schema.TARGET_ITEM_ID: np.array([3])})
    assert prediction.tolist() == [5.0]


def test_global_mean():
    model = baselines.GlobalMean(num_items=3).fit(_train([1, 2], [1, 2], ratings=[2.0, 5.0]))
    assert model.predict({schema.TARGET_ITEM_ID: np.array([1, 3])}).tolist() == [3.5, 3.5]


def test_text_profile_scores_by_cosine_with_the_mean_of_recent_items():
    vectors = np.array([[0, 0], [2, 0], [0, 3], [1, 1], [1, -1]], np.float32)
    history = np.array([[0, 1, 2], [0, 0, 2]])
    scores = baselines.TextProfile(vectors).fit({}).score({schema.HISTORY_ITEM_IDS: history})
    np.testing.assert_allclose(scores[0] / scores[0, 3], [0, 1 / np.sqrt(2), 1 / np.sqrt(2), 1, 0], atol=1e-6)
    assert scores[1].argmax() == 2
    latest = baselines.TextProfile(vectors, recent=1).score({schema.HISTORY_ITEM_IDS: history})
    assert latest[0].argmax() == 2  # only item 2, the latest, forms the profile
    with pytest.raises(ValueError, match="recent=0"):
        baselines.TextProfile(vectors, recent=0)
    with pytest.raises(ValueError, match="history_item_ids"):
        baselines.TextProfile(vectors).score({schema.HISTORY_ITEM_IDS: np.array([[7]])})


def test_bad_input_is_named():
    with pytest.raises(KeyError, match="Transitions.fit: examples lack feature"):
        baselines.Transitions(num_items=3).fit({schema.TARGET_ITEM_ID: np.array([1])})
    with pytest.raises(ValueError, match="row 1 has item index 9; expected 0..3"):
        baselines.Popularity(num_items=3).fit({schema.TARGET_ITEM_ID: np.array([1, 9])})
    with pytest.raises(ValueError, match="user index 7"):
        baselines.Biases(num_items=3, num_users=2).fit(_train([1, 7], [1, 2]))
    with pytest.raises(ValueError, match="num_items"):
        baselines.Popularity(num_items=0)


def _synthetic_split(num_users=20, num_items=30, per_user=12, seed=0):
    rng = np.random.default_rng(seed)
    parts = {"train": [], "valid": [], "test": []}
    for user in range(1, num_users + 1):
        items = rng.choice(np.arange(1, num_items + 1), size=per_user, replace=False)
        for position, item in enumerate(items):
            part = "train" if position < per_user - 2 else ("valid" if position == per_user - 2 else "test")
            history = np.zeros(per_user, np.int32)
            history[per_user - position :] = items[:position]
            parts[part].append((user, item, rng.integers(1, 6), history))
    return {
        part: {
            schema.USER_INDEX: np.array([row[0] for row in rows], np.int32),
            schema.TARGET_ITEM_ID: np.array([row[1] for row in rows], np.int32),
            schema.TARGET_RATING: np.array([row[2] for row in rows], np.float32),
            schema.HISTORY_ITEM_IDS: np.stack([row[3] for row in rows]),
        }
        for part, rows in parts.items()
    }


def test_tfrs_runner_in_a_subprocess(tmp_path):
    examples = _synthetic_split()
    retrieval = tfrs_runner.run_tfrs("retrieval", 2, examples, 20, 30, tmp_path, seed=1, select_epoch=True)
    assert retrieval["test_scores"].shape == (20, 31) and retrieval["valid_scores"].shape == (20, 31)
    assert retrieval["valid_curve"].shape == (2,) and retrieval["best_epoch"] in (1, 2)
    ranking = tfrs_runner.run_tfrs("ranking", 1, examples, 20, 30, tmp_path, seed=1)
    assert ranking["test_pred"].shape == (20,) and np.all(np.isfinite(ranking["test_pred"]))
    assert ranking["valid_curve"].shape == (1,) and ranking["train_seconds"] > 0
    assert "tf_keras" not in sys.modules


def test_tfrs_runner_refuses_keras_3(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "TF_USE_LEGACY_KERAS"}
    command = [sys.executable, "-m", "tfrec.baselines.tfrs_runner", "--input=x.npz", "--output=y.npz"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode != 0 and "TF_USE_LEGACY_KERAS=1" in result.stderr


@pytest.mark.integration
def test_guide_reference_figures_on_ml100k(ml100k_dir):
    ds = data.load(f"movielens:{ml100k_dir}")
    vocab = data.Vocabulary.from_data(ds)
    examples = full_history_examples(ds, data.split_interactions(ds, "leave_last_out"), vocab)
    train, test = examples["train"], examples["test"]
    targets_only = [name for name, values in train.items() if values.ndim == 1]
    train_valid = {name: np.concatenate([train[name], examples["valid"][name]]) for name in targets_only}
    num_items, num_users = vocab.num_items, vocab.num_users
    assert (num_items, num_users, len(test[schema.TARGET_ITEM_ID])) == (1682, 943, 943)

    def figures(model, fitted_on, ties):
        scores = model.fit(fitted_on).score(test)
        result = metrics.ranking_metrics(scores, test[schema.TARGET_ITEM_ID], test[schema.HISTORY_ITEM_IDS], ties=ties)
        return [round(result[key], 4) for key in ("HR@10", "NDCG@10", "Recall@100")]

    # docs/evaluation.md reference convention: ties after the target; transitions and item-kNN counted
    # over every interaction before the test targets (train + valid).
    assert figures(baselines.Popularity(num_items), train, "optimistic") == [0.0498, 0.0255, 0.2354]
    assert figures(baselines.Transitions(num_items), train_valid, "optimistic") == [0.1516, 0.0785, 0.5376]
    assert figures(baselines.ItemKNN(num_items), train_valid, "optimistic") == [0.0594, 0.0281, 0.3022]
    # tfrec's convention: ties before the target, baselines fitted on train only.
    assert figures(baselines.Popularity(num_items), train, "pessimistic") == [0.0498, 0.0249, 0.2312]
    assert figures(baselines.Transitions(num_items), train, "pessimistic") == [0.1485, 0.0769, 0.5228]
    for model, expected in ((baselines.Biases(num_items, num_users), 1.050), (baselines.GlobalMean(num_items), 1.230)):
        predictions = model.fit(train).predict(test)
        assert round(metrics.rating_metrics(predictions, test[schema.TARGET_RATING])["RMSE"], 3) == expected
