"""Item-to-item transition ("Markov") baseline over the recent history."""

import numpy as np

from tfrec.baselines.base import Baseline, require_features
from tfrec.data import schema
from tfrec.data.sequences import transition_counts


class Transitions(Baseline):
    """Scores the items that followed the user's last items in training sequences.

    `T[i, j]` counts how often item j came within `window` steps after item i
    in the users' train sequences. The score of item j is
    `sum_a decay**a * T[h_a, j]` over the last `last_n` history items `h_a`,
    age `a = 0` being the most recent. The count matrix is dense,
    (num_items + 1)^2 float32: meant for catalogues up to a few 10k items.

    Args:
      num_items: catalogue size (without padding).
      window: how many following steps count as a transition.
      last_n: how many of the most recent history items vote.
      decay: weight factor per step of age.

    Example:

    >>> import numpy as np
    >>> train = {"user_index": np.array([1, 1, 1]), "target_timestamp": np.array([1, 2, 3]),
    ...          "target_item_id": np.array([1, 2, 3])}
    >>> model = Transitions(num_items=3, window=1).fit(train)
    >>> model.score({"history_item_ids": np.array([[0, 1]])}).tolist()
    [[0.0, 0.0, 1.0, 0.0]]
    """

    def __init__(self, num_items, window=3, last_n=5, decay=0.8):
        super().__init__(num_items)
        if window < 1 or last_n < 1 or not 0 < decay <= 1:
            raise ValueError(
                f"Transitions: expected window >= 1, last_n >= 1, 0 < decay <= 1; got {window}, {last_n}, {decay}"
            )
        self.window, self.last_n, self.decay = int(window), int(last_n), float(decay)

    def fit(self, train_examples):
        sources, targets, counts = transition_counts(train_examples, self.num_items, self.window, "Transitions.fit")
        self.counts = np.zeros((self.num_items + 1, self.num_items + 1), dtype=np.float32)
        self.counts[sources, targets] = counts
        return self

    def score(self, examples):
        (history,) = require_features(examples, [schema.HISTORY_ITEM_IDS], "Transitions.score")
        history = self._check_items(history, "Transitions.score history_item_ids")
        recent = history[:, -self.last_n :]
        scores = np.zeros((len(history), self.num_items + 1), dtype=np.float32)
        for age in range(recent.shape[1]):
            scores += self.decay**age * self.counts[recent[:, -1 - age]]
        return scores
