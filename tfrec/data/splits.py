"""Train / valid / test splits of the interactions.

| split            | rule |
|------------------|------|
| `leave_last_out` | per user, sorted by (timestamp, item id): last = test, one before = valid, rest = train |
| `temporal`       | global cutoffs at the timestamp quantiles given by `fractions` (ties stay together) |
| `random`         | seeded random assignment in `fractions` (as in the TFRS tutorials) |
| `cold_items`     | a seeded `cold_fraction` of the items appears in no training interaction; their interactions go half (by item) to valid, half to test; all others train |

`window_split` is the split of a refresh: training before a time, each
user's last training behaviour for validation, the window after it for test.

Example:

>>> from tfrec.data import synthetic
>>> ds = synthetic.generate(users=5, items=20, per_user=4)
>>> sp = split_interactions(ds, "leave_last_out")
>>> len(sp.valid), len(sp.test)
(5, 5)
"""

import dataclasses
from typing import Optional

import numpy as np
import pandas as pd

from tfrec.data import schema

SPLITS = ("leave_last_out", "temporal", "random", "cold_items")
SPLIT_NAMES = ("train", "valid", "test")


@dataclasses.dataclass
class Split:
    """Interactions divided for training and evaluation.

    Attributes:
        name: the split method.
        train, valid, test: DataFrames of interactions (rows of `ds.interactions`,
            same order).
        cold_items: item ids kept out of training (`cold_items` split only).
    """

    name: str
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    cold_items: frozenset = frozenset()

    def sizes(self):
        """{"train": n, "valid": n, "test": n}."""
        return {name: len(getattr(self, name)) for name in SPLIT_NAMES}


def split_interactions(ds, method="leave_last_out", fractions=(0.8, 0.1, 0.1), seed=0, cold_fraction=0.1,
                       targets: Optional[np.ndarray] = None):
    """Splits `ds.interactions`.

    With `targets`, `leave_last_out` holds out each user's last two *target*
    behaviours (test, then valid): what precedes the first of them trains, the
    context behaviours after it go with the test (histories, never targets).
    A user without a target trains only.

    Args:
        ds: `InteractionData` (interactions sorted by user, timestamp, item).
        method: one of `SPLITS`.
        fractions: (train, valid, test) shares for `temporal` and `random`.
        seed: seed for `random` and `cold_items`.
        cold_fraction: share of the items with interactions held out by `cold_items`.
        targets: optional bool per interaction, the target behaviours
            (`tfrec.data.targets.TargetRule.mask`); None: every behaviour.

    Returns:
        `Split`.
    """
    logs = ds.interactions
    if method not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {method!r}")
    fractions = np.asarray(fractions, dtype=np.float64)
    if len(fractions) != 3 or (fractions < 0).any() or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(f"split fractions must be 3 non-negative numbers summing to 1, got {fractions.tolist()}")
    if not 0 < cold_fraction < 1:
        raise ValueError(f"cold_fraction must be in (0, 1), got {cold_fraction}")
    cold = frozenset()
    if method == "leave_last_out":
        part = _leave_last_out(logs[schema.USER_ID].to_numpy(), targets)
    elif method == "temporal":
        times = np.sort(logs[schema.TIMESTAMP].to_numpy())
        bounds = np.cumsum(fractions[:2]) * len(times)
        cutoffs = times[np.minimum(bounds.astype(np.int64), len(times) - 1)]
        part = np.searchsorted(cutoffs, logs[schema.TIMESTAMP].to_numpy(), side="right")
    elif method == "random":
        draw = np.random.default_rng(seed).random(len(logs))
        part = np.searchsorted(np.cumsum(fractions[:2]), draw, side="right")
    else:
        items = np.array(sorted(set(logs[schema.ITEM_ID])), dtype=object)
        rng = np.random.default_rng(seed)
        chosen = rng.permutation(items)[: max(1, int(round(cold_fraction * len(items))))]
        cold = frozenset(chosen)
        valid_items = set(chosen[: len(chosen) // 2])
        item_column = logs[schema.ITEM_ID]
        part = np.where(item_column.isin(cold), np.where(item_column.isin(valid_items), 1, 2), 0)
    frames = [logs[part == code].reset_index(drop=True) for code in range(3)]
    return Split(method, *frames, cold_items=cold)


def _leave_last_out(users, targets=None):
    """Part codes (0 train, 1 valid, 2 test) of leave-last-out on the target behaviours."""
    if targets is None:
        from_end = pd.Series(users).groupby(users, sort=False).cumcount(ascending=False).to_numpy()
        return np.select([from_end == 0, from_end == 1], [2, 1], 0)
    targets = np.asarray(targets, bool)
    # Targets at or after each behaviour of its user (itself included), and each user's number of targets.
    at_or_after = pd.Series(targets[::-1].astype(np.int64)).groupby(users[::-1], sort=False).cumsum().to_numpy()[::-1]
    per_user = pd.Series(targets.astype(np.int64)).groupby(users, sort=False).transform("sum").to_numpy()
    held_out_target = np.select([at_or_after == 1, at_or_after == 2], [2, 1], 0)
    after_valid = (at_or_after == 0) | ((at_or_after == 1) & (per_user >= 2))
    return np.where(targets, held_out_target, np.where(after_valid & (per_user > 0), 2, 0))


def window_split(interactions: pd.DataFrame, test_start: int, test_end: Optional[int] = None,
                 targets: Optional[np.ndarray] = None) -> Split:
    """Train before `test_start` (less each user's last behaviour there: valid), test in [test_start, test_end).

    The split of a refresh (`tfrec.refresh`) and of `scripts/bench_refresh.py`: a model trained
    on everything before a time is tested on the behaviours of the window after it.

    Args:
        interactions: `InteractionData.interactions` (sorted by user, timestamp, item).
        test_start: first timestamp of the test window.
        test_end: end of the test window (exclusive); None: every later behaviour.
        targets: optional bool per interaction, the target behaviours: valid
            is then each user's last target before `test_start`, and the
            behaviours after it before `test_start` join the test window's
            part as context.

    Returns:
        `Split` named "window"; behaviours at or after `test_end` are in no part.

    Example:

    >>> logs = pd.DataFrame({"user_id": ["a", "a", "a", "b"], "item_id": ["1", "2", "3", "1"],
    ...                      "timestamp": [1, 2, 5, 3]})
    >>> window_split(logs, 4).sizes()
    {'train': 1, 'valid': 2, 'test': 1}
    """
    times = interactions[schema.TIMESTAMP].to_numpy()
    before = times < test_start
    targets = np.ones(len(interactions), bool) if targets is None else np.asarray(targets, bool)
    last = np.zeros(len(interactions), bool)
    last[interactions[before & targets].groupby(schema.USER_ID, sort=False).tail(1).index] = True
    # Behaviours before `test_start` that follow their user's valid target are context of the test.
    after_last = pd.Series(last[::-1].astype(np.int64)).groupby(
        interactions[schema.USER_ID].to_numpy()[::-1], sort=False).cumsum().to_numpy()[::-1] == 0
    context_of_test = before & after_last & ~last & pd.Series(last).groupby(
        interactions[schema.USER_ID].to_numpy(), sort=False).transform("any").to_numpy()
    in_test = (~before if test_end is None else ~before & (times < test_end)) | context_of_test
    part = np.where(before & ~context_of_test, np.where(last, 1, 0), np.where(in_test, 2, 3))
    return Split("window", *(interactions[part == code].reset_index(drop=True) for code in range(3)))
