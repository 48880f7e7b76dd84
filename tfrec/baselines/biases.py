"""Rating baselines: the global mean, and user + item biases."""

import numpy as np

from tfrec.baselines.base import Baseline, num_examples, require_features
from tfrec.data import schema


def _safe_divide(sums, denominators):
    """sums / denominators, 0 where the denominator is 0 (unseen user or item, no regularisation)."""
    return np.divide(sums, denominators, out=np.zeros_like(sums), where=denominators > 0)


class GlobalMean(Baseline):
    """Predicts the mean train rating for every user and item.

    Example:

    >>> import numpy as np
    >>> model = GlobalMean(num_items=2).fit({"target_rating": np.array([3.0, 5.0])})
    >>> model.predict({"target_item_id": np.array([1])}).tolist()
    [4.0]
    """

    def fit(self, train_examples):
        (ratings,) = require_features(train_examples, [schema.TARGET_RATING], "GlobalMean.fit")
        if ratings.size == 0:
            raise ValueError("GlobalMean.fit: no train ratings")
        self.mean = float(np.mean(ratings))
        return self

    def score(self, examples):
        n = num_examples(examples, "GlobalMean.score")
        return np.full((n, self.num_items + 1), self.mean, dtype=np.float32)

    def predict(self, examples):
        return np.full(num_examples(examples, "GlobalMean.predict"), self.mean, dtype=np.float32)


class Biases(Baseline):
    """Predicts `mean + b_user + b_item`, biases shrunk towards 0 by `reg`.

    The biases minimise `sum (r - mean - b_u - b_i)^2 + reg * (sum b_u^2 + sum b_i^2)`,
    solved by alternating exact updates `b_i = sum_u (r - mean - b_u) / (reg + n_i)`
    and `b_u = sum_i (r - mean - b_i) / (reg + n_u)`. Users or items unseen in
    training get a zero bias.

    Args:
      num_items: catalogue size (without padding).
      num_users: number of users (without padding; user indices 1..num_users).
      reg: regularisation strength (lambda).
      iterations: alternating passes.

    Example:

    >>> import numpy as np
    >>> train = {"user_index": np.array([1, 1, 2]), "target_item_id": np.array([1, 2, 1]),
    ...          "target_rating": np.array([5.0, 3.0, 4.0])}
    >>> model = Biases(num_items=2, num_users=2, reg=0.0).fit(train)
    >>> round(float(model.predict({"user_index": np.array([2]), "target_item_id": np.array([1])})[0]), 2)
    4.0
    """

    def __init__(self, num_items, num_users, reg=5.0, iterations=20):
        super().__init__(num_items)
        if num_users < 1 or reg < 0 or iterations < 1:
            raise ValueError(
                f"Biases: expected num_users >= 1, reg >= 0, iterations >= 1; got {num_users}, {reg}, {iterations}"
            )
        self.num_users, self.reg, self.iterations = int(num_users), float(reg), int(iterations)

    def _users(self, users, where):
        bad = np.flatnonzero((users < 0) | (users > self.num_users))
        if bad.size:
            raise ValueError(f"{where}: row {bad[0]} has user index {users[bad[0]]}; expected 0..{self.num_users}")
        return users

    def fit(self, train_examples):
        users, items, ratings = require_features(
            train_examples, [schema.USER_INDEX, schema.TARGET_ITEM_ID, schema.TARGET_RATING], "Biases.fit"
        )
        users = self._users(users, "Biases.fit user_index")
        items = self._check_items(items, "Biases.fit target_item_id")
        if ratings.size == 0:
            raise ValueError("Biases.fit: no train ratings")
        self.mean = float(np.mean(ratings))
        item_denominator = self.reg + np.bincount(items, minlength=self.num_items + 1)
        user_denominator = self.reg + np.bincount(users, minlength=self.num_users + 1)
        self.user_bias = np.zeros(self.num_users + 1)
        self.item_bias = np.zeros(self.num_items + 1)
        residual = ratings - self.mean
        for _ in range(self.iterations):
            item_sums = np.bincount(items, weights=residual - self.user_bias[users], minlength=self.num_items + 1)
            self.item_bias = _safe_divide(item_sums, item_denominator)
            user_sums = np.bincount(users, weights=residual - self.item_bias[items], minlength=self.num_users + 1)
            self.user_bias = _safe_divide(user_sums, user_denominator)
        return self

    def score(self, examples):
        (users,) = require_features(examples, [schema.USER_INDEX], "Biases.score")
        users = self._users(users, "Biases.score user_index")
        scores = self.mean + self.user_bias[users][:, None] + self.item_bias[None, :]
        scores[:, 0] = 0.0
        return scores.astype(np.float32)

    def predict(self, examples):
        users, items = require_features(examples, [schema.USER_INDEX, schema.TARGET_ITEM_ID], "Biases.predict")
        users = self._users(users, "Biases.predict user_index")
        items = self._check_items(items, "Biases.predict target_item_id")
        return (self.mean + self.user_bias[users] + self.item_bias[items]).astype(np.float32)
