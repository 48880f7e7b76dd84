"""The interface every non-neural baseline follows, and shared input checks."""

import numpy as np

from tfrec.data import schema
from tfrec.data.sequences import check_item_indices


def require_features(examples, names, where):
    """Returns the requested feature arrays, raising KeyError naming what is missing.

    Args:
      examples: dict of schema feature arrays (as from `tfrec.data.build_examples`).
      names: feature names needed.
      where: who asks, for the error message (e.g. "Popularity.fit").
    """
    missing = [name for name in names if name not in examples]
    if missing:
        raise KeyError(f"{where}: examples lack feature(s) {missing}; have {sorted(examples)}")
    return [np.asarray(examples[name]) for name in names]


def num_examples(examples, where):
    """Number of examples in a feature dict (all features must agree)."""
    lengths = {name: len(values) for name, values in examples.items()}
    if not lengths:
        raise ValueError(f"{where}: examples is empty (no features)")
    if len(set(lengths.values())) != 1:
        raise ValueError(f"{where}: features have different lengths {lengths}")
    return next(iter(lengths.values()))


class Baseline:
    """A recommender that scores every catalogue item for every example.

    Subclasses implement `fit(train_examples)` and `score(examples)`; item
    indices follow `tfrec.data.Vocabulary` (0 = padding, items 1..num_items).

    Args:
      num_items: catalogue size (without the padding index).
    """

    def __init__(self, num_items):
        if num_items < 1:
            raise ValueError(f"num_items: expected a positive catalogue size, got {num_items}")
        self.num_items = int(num_items)

    def fit(self, train_examples):
        """Learns from the train examples (every train interaction is a target). Returns self."""
        raise NotImplementedError

    def score(self, examples):
        """Returns float32 scores [n, num_items + 1] (column 0 = padding)."""
        raise NotImplementedError

    def predict(self, examples):
        """Returns the score of each example's target item, float32 [n]."""
        (targets,) = require_features(examples, [schema.TARGET_ITEM_ID], f"{type(self).__name__}.predict")
        return self.score(examples)[np.arange(len(targets)), targets]

    def _check_items(self, items, where):
        return check_item_indices(items, self.num_items, where)
