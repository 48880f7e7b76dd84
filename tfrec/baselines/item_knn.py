"""Item-kNN baseline: cosine similarity of items' user co-occurrence."""

import numpy as np

from tfrec.baselines.base import Baseline, require_features
from tfrec.data import schema


def multi_hot(rows, num_items):
    """[n, num_items + 1] float32 indicator of the items in each row (0 = padding dropped)."""
    hot = np.zeros((len(rows), num_items + 1), dtype=np.float32)
    hot[np.arange(len(rows))[:, None], rows] = 1.0
    hot[:, 0] = 0.0
    return hot


class ItemKNN(Baseline):
    """Scores item j by the summed cosine similarity to the user's history items.

    Similarity of items i and j is `c_ij / sqrt(c_ii * c_jj)` where `c_ij` is
    the number of users whose train interactions hold both (order ignored,
    every interaction counted once per user). Self-similarity is zero.

    Args:
      num_items: catalogue size (without padding).

    Example:

    >>> import numpy as np
    >>> train = {"user_index": np.array([1, 1, 2]), "target_item_id": np.array([1, 2, 3])}
    >>> model = ItemKNN(num_items=3).fit(train)
    >>> model.score({"history_item_ids": np.array([[0, 1]])}).tolist()
    [[0.0, 0.0, 1.0, 0.0]]
    """

    def fit(self, train_examples):
        users, items = require_features(train_examples, [schema.USER_INDEX, schema.TARGET_ITEM_ID], "ItemKNN.fit")
        items = self._check_items(items, "ItemKNN.fit target_item_id")
        _, user_rows = np.unique(users, return_inverse=True)
        interactions = np.zeros((user_rows.max() + 1, self.num_items + 1), dtype=np.float32)
        interactions[user_rows, items] = 1.0
        interactions[:, 0] = 0.0
        co_occurrence = interactions.T @ interactions
        norms = np.sqrt(np.diag(co_occurrence))
        with np.errstate(divide="ignore", invalid="ignore"):
            similarity = co_occurrence / np.outer(norms, norms)
        similarity[~np.isfinite(similarity)] = 0.0
        np.fill_diagonal(similarity, 0.0)
        self.similarity = similarity.astype(np.float32)
        return self

    def score(self, examples):
        (history,) = require_features(examples, [schema.HISTORY_ITEM_IDS], "ItemKNN.score")
        history = self._check_items(history, "ItemKNN.score history_item_ids")
        return multi_hot(history, self.num_items) @ self.similarity
