"""Users' behaviour sequences and the item-to-item transitions in them, counted sparsely.

The counting evidence both the transitions baseline (`tfrec.baselines.Transitions`)
and the model's transition prior (`tfrec.models.TransitionPrior`) read.

Example:

>>> train = {"user_index": np.array([1, 1, 1]), "target_timestamp": np.array([1, 2, 3]),
...          "target_item_id": np.array([1, 2, 1])}
>>> [items.tolist() for items in user_sequences(train, "example")]
[[1, 2, 1]]
"""

import numpy as np

from tfrec.data import schema


def check_item_indices(items, num_items, where):
    """Returns `items`; ValueError naming `where`, the row and the index unless all are in 0..num_items."""
    bad = np.flatnonzero((items < 0) | (items > num_items))
    if bad.size:
        raise ValueError(f"{where}: row {bad[0]} has item index {items.reshape(-1)[bad[0]]}; expected 0..{num_items}")
    return items


def user_sequences(train_examples, where):
    """Each user's train items in time order, rebuilt from the train examples.

    Examples are ordered by (user, timestamp) with a stable sort, so items
    sharing a timestamp keep the order the data layer gave them.

    Returns:
      list of int64 arrays, one per user present.
    """
    names = [schema.USER_INDEX, schema.TARGET_TIMESTAMP, schema.TARGET_ITEM_ID]
    missing = [name for name in names if name not in train_examples]
    if missing:
        raise KeyError(f"{where}: examples lack feature(s) {missing}; have {sorted(train_examples)}")
    users, times, items = (np.asarray(train_examples[name]) for name in names)
    order = np.lexsort((times, users))
    users, items = users[order], items[order].astype(np.int64)
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    return np.split(items, starts[1:])


def transition_counts(train_examples, num_items, window=3, where="transition_counts"):
    """How often item j came within `window` steps after item i in the users' train sequences, sparsely.

    Args:
      train_examples: dict of schema feature arrays (user, target time and item of every train interaction).
      num_items: catalogue size (item indices 1..num_items).
      window: how many following steps count as a transition.
      where: who asks, for error messages.

    Returns:
      (sources int64 [P], targets int64 [P], counts float32 [P]): the distinct
      pairs i -> j (padding never) sorted by source, then target.

    Example:

    >>> train = {"user_index": np.array([1, 1, 1]), "target_timestamp": np.array([1, 2, 3]),
    ...          "target_item_id": np.array([1, 2, 1])}
    >>> [a.tolist() for a in transition_counts(train, num_items=2, window=2)]
    [[1, 1, 2], [1, 2, 1], [1.0, 1.0, 1.0]]
    """
    codes = []
    for items in user_sequences(train_examples, where):
        check_item_indices(items, num_items, f"{where} target_item_id")
        for step in range(1, window + 1):
            codes.append(items[:-step] * (num_items + 1) + items[step:])
    codes = np.concatenate(codes) if codes else np.zeros(0, np.int64)
    pairs, counts = np.unique(codes, return_counts=True)
    sources, targets = np.divmod(pairs, num_items + 1)
    real = (sources > 0) & (targets > 0)
    return sources[real], targets[real], counts[real].astype(np.float32)
