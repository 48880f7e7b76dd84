"""Popularity baseline: every user gets the items most often seen in training."""

import numpy as np

from tfrec.baselines.base import Baseline, num_examples, require_features
from tfrec.data import schema


class Popularity(Baseline):
    """Scores item j by its number of train interactions.

    Args:
      num_items: catalogue size (without padding).

    Example:

    >>> import numpy as np
    >>> model = Popularity(num_items=3).fit({"target_item_id": np.array([2, 2, 3])})
    >>> model.score({"target_item_id": np.array([1])}).tolist()
    [[0.0, 0.0, 2.0, 1.0]]
    """

    def fit(self, train_examples):
        (targets,) = require_features(train_examples, [schema.TARGET_ITEM_ID], "Popularity.fit")
        targets = self._check_items(targets, "Popularity.fit target_item_id")
        self.counts = np.bincount(targets, minlength=self.num_items + 1).astype(np.float32)
        self.counts[0] = 0.0
        return self

    def score(self, examples):
        n = num_examples(examples, "Popularity.score")
        return np.broadcast_to(self.counts, (n, self.num_items + 1)).copy()
