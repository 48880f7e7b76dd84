"""Training and evaluation examples: a target behaviour and the history before it.

For every target interaction the example holds the user's previous
`history_length` behaviours strictly before it in the sorted order (user,
timestamp, item id), most recent last, left-padded with 0. Which behaviours a
history may draw on depends on the target's split, so nothing leaks:

- train target: earlier train interactions;
- valid target: earlier train and valid interactions;
- test target: earlier train, valid and test interactions.

With a `TargetRule` (`tfrec.data.targets`) the held-out examples are those
of its target behaviours only; training keeps an example per behaviour (the
model weighs context targets by `ModelConfig.context_loss_weight`), and
`prior_items` lists the items the rule excludes.

Example:

>>> from tfrec.data import splits, synthetic, vocabulary
>>> ds = synthetic.generate(users=4, items=20, per_user=6)
>>> vocab = vocabulary.Vocabulary.from_data(ds)
>>> ex = build_examples(ds, splits.split_interactions(ds), vocab, history_length=3)
>>> ex["test"]["history_item_ids"].shape
(4, 3)
"""

import collections

import numpy as np
import pandas as pd

from tfrec.data import schema
from tfrec.data.splits import SPLIT_NAMES
from tfrec.data.targets import TargetRule

# Feature name -> (dtype, is a history sequence of length history_length).
FEATURES = {
    schema.USER_INDEX: (np.int32, False),
    schema.HISTORY_ITEM_IDS: (np.int32, True),
    schema.HISTORY_RATINGS: (np.float32, True),
    schema.HISTORY_EVENTS: (np.int32, True),
    schema.HISTORY_TIMESTAMPS: (np.int64, True),
    schema.HISTORY_LENGTH: (np.int32, False),
    schema.TARGET_ITEM_ID: (np.int32, False),
    schema.TARGET_RATING: (np.float32, False),
    schema.TARGET_EVENT: (np.int32, False),
    schema.TARGET_TIMESTAMP: (np.int64, False),
    schema.LABEL: (np.float32, False),
}
USER_ROW = "user_row"
"""Position of an example among its user's examples of the split (0 = the oldest)."""
USER_ROWS = "user_rows"
"""Number of examples of the example's user in the split."""
ROW_FEATURES = {USER_ROW: (np.int32, False), USER_ROWS: (np.int32, False)}
"""What `iter_examples(..., row_features=True)` adds: enough for a model to pick its training rows
(`Recommender.train_examples`) from a stream, one example at a time."""
EARLIER_SPLITS = {"valid": ("train",), "test": ("train", "valid")}
"""The splits whose interactions precede each held-out split."""
_HISTORY_SOURCES = {
    schema.HISTORY_ITEM_IDS: "item",
    schema.HISTORY_RATINGS: "rating",
    schema.HISTORY_EVENTS: "event",
    schema.HISTORY_TIMESTAMPS: "timestamp",
}


def build_examples(ds, split, vocab, history_length=50, rule: TargetRule = TargetRule()):
    """Builds the examples of every split in memory.

    Args:
        ds: `InteractionData`.
        split: `Split` of `ds`.
        vocab: `Vocabulary` of `ds`.
        history_length: N, the number of past behaviours kept.
        rule: the target behaviours (valid and test examples are of those alone).

    Returns:
        dict "train"/"valid"/"test" -> dict feature name -> np.ndarray (see `FEATURES`;
        history features are [n, N], the others [n]).
    """
    return {name: next(iter_examples(ds, split, vocab, history_length, name, chunk_size=None, rule=rule))
            for name in SPLIT_NAMES}


def iter_examples(ds, split, vocab, history_length, split_name, chunk_size=65536, row_features=False,
                  shuffle_seed=None, rule: TargetRule = TargetRule()):
    """Yields the examples of one split in chunks, in (user, time, item) order.

    Memory stays at a few arrays per interaction plus one chunk of
    histories, so large data sets can be written out (see `tfrecord.py`).

    Args:
        ds, split, vocab, history_length: as in `build_examples`.
        split_name: "train", "valid" or "test".
        chunk_size: examples per chunk, or None for one chunk (always yielded,
            even when empty).
        row_features: also yield `ROW_FEATURES` (each example's place among its user's).
        shuffle_seed: None: examples in (user, time, item) order; an int: in
            the random order this seed draws (row features are computed
            before, so they still say each example's place among its user's).
        rule: the target behaviours: a "valid" or "test" example is one of
            the split's targets; "train" keeps every behaviour.

    Yields:
        dict feature name -> np.ndarray.
    """
    stage = SPLIT_NAMES.index(split_name)
    pool = _pool(ds, split, vocab, max_stage=stage, rule=rule)
    targets = np.flatnonzero((pool["stage"] == stage) & (pool["target"] | (stage == 0)))
    user_start = np.flatnonzero(np.r_[True, pool["user"][1:] != pool["user"][:-1]])
    first_of_user = np.repeat(user_start, np.diff(np.r_[user_start, len(pool["user"])]))
    rows = _user_rows(pool["user"][targets]) if row_features else {}
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(len(targets))
        targets, rows = targets[order], {name: values[order] for name, values in rows.items()}
    step = chunk_size or max(len(targets), 1)
    for begin in range(0, max(len(targets), 1), step):
        chunk = _gather(pool, targets[begin : begin + step], first_of_user, history_length)
        yield {**chunk, **{name: values[begin : begin + step] for name, values in rows.items()}}


def _user_rows(users):
    """`ROW_FEATURES` of examples whose `users` come in runs, one run per user."""
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if len(users) else np.zeros(0, np.int64)
    counts = np.diff(np.r_[starts, len(users)])
    return {USER_ROW: (np.arange(len(users)) - np.repeat(starts, counts)).astype(np.int32),
            USER_ROWS: np.repeat(counts, counts).astype(np.int32)}


def _pool(ds, split, vocab, max_stage, rule):
    """The interactions a split's histories may use, as sorted index arrays."""
    frames = [getattr(split, name) for name in SPLIT_NAMES[: max_stage + 1]]
    logs = pd.concat(frames, ignore_index=True)
    pool = {
        "user": vocab.user_index(logs[schema.USER_ID]),
        "item": vocab.item_index(logs[schema.ITEM_ID]),
        "timestamp": logs[schema.TIMESTAMP].to_numpy(dtype=np.int64),
        "stage": np.repeat(np.arange(len(frames)), [len(f) for f in frames]),
        "target": rule.mask(logs),
    }
    pool["rating"] = (
        logs[schema.RATING].to_numpy(dtype=np.float32) if ds.has_ratings else np.zeros(len(logs), np.float32)
    )
    pool["label"] = pool["rating"] if ds.has_ratings else np.ones(len(logs), np.float32)
    pool["event"] = (
        vocab.event_index(logs[schema.EVENT]) if ds.has_events else np.ones(len(logs), np.int32)
    )
    order = np.lexsort((pool["stage"], pool["item"], pool["timestamp"], pool["user"]))
    return {key: value[order] for key, value in pool.items()}


def _gather(pool, targets, first_of_user, history_length):
    positions = targets[:, None] + np.arange(-history_length, 0)[None, :]
    real = positions >= first_of_user[targets][:, None]
    positions = np.where(real, positions, 0)
    examples = {
        feature: np.where(real, pool[source][positions], 0).astype(FEATURES[feature][0])
        for feature, source in _HISTORY_SOURCES.items()
    }
    examples.update(
        {
            schema.USER_INDEX: pool["user"][targets],
            schema.HISTORY_LENGTH: real.sum(axis=1).astype(np.int32),
            schema.TARGET_ITEM_ID: pool["item"][targets],
            schema.TARGET_RATING: pool["rating"][targets],
            schema.TARGET_EVENT: pool["event"][targets],
            schema.TARGET_TIMESTAMP: pool["timestamp"][targets],
            schema.LABEL: pool["label"][targets],
        }
    )
    return {name: examples[name] for name in FEATURES}


def prior_items(split, vocab, name, examples, rule: TargetRule = TargetRule()):
    """The complete set of items each example's user met before its target.

    That is every item of the user in the earlier splits (train, and valid when
    evaluating test) plus the user's interactions in split `name` that come
    before the target in the (timestamp, item) order of the data; with a
    `rule` that excludes only earlier targets, the items of those behaviours.

    Args:
        split: `data.Split`.
        vocab: `data.Vocabulary`.
        name: "valid" or "test".
        examples: `examples[name]` from `data.build_examples`.
        rule: the `TargetRule` the examples were built with.

    Returns:
        list of int32 arrays of item indices, one per example.
    """
    if name not in EARLIER_SPLITS:
        raise ValueError(f"split name must be one of {sorted(EARLIER_SPLITS)}, got {name!r}")
    earlier = collections.defaultdict(set)
    for frame in (getattr(split, part) for part in EARLIER_SPLITS[name]):
        frame = frame[rule.excluded_mask(frame)]
        users = vocab.user_index(frame[schema.USER_ID].to_numpy())
        items = vocab.item_index(frame[schema.ITEM_ID].to_numpy())
        for user, item in zip(users.tolist(), items.tolist()):
            earlier[user].add(item)
    same = getattr(split, name)
    same_users = vocab.user_index(same[schema.USER_ID].to_numpy()).tolist()
    same_items = vocab.item_index(same[schema.ITEM_ID].to_numpy()).tolist()
    same_times = same[schema.TIMESTAMP].to_numpy().tolist()
    same_targets, same_excluded = rule.mask(same).tolist(), rule.excluded_mask(same).tolist()
    rows_of_user = collections.defaultdict(list)  # in the data's order
    for row in zip(same_users, same_items, same_times, same_targets, same_excluded):
        rows_of_user[row[0]].append(row[1:])
    result = []
    targets = zip(
        examples[schema.USER_INDEX].tolist(),
        examples[schema.TARGET_ITEM_ID].tolist(),
        examples[schema.TARGET_TIMESTAMP].tolist(),
    )
    for user, target, time in targets:
        before = set(earlier[user])
        for item, item_time, is_target, excluded in rows_of_user[user]:
            if (item, item_time, is_target) == (target, time, True):
                break
            if excluded:
                before.add(item)
        else:
            raise ValueError(
                f"{name} example of user index {user}: target item index {target} at "
                f"timestamp {time} is not an interaction of the {name} split"
            )
        result.append(np.fromiter(sorted(before), dtype=np.int32))
    return result
