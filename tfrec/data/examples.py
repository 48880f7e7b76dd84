"""Training and evaluation examples: a target behaviour and the history before it.

For every target interaction the example holds the user's previous
`history_length` behaviours strictly before it in the sorted order (user,
timestamp, item id), most recent last, left-padded with 0. Which behaviours a
history may draw on depends on the target's split, so nothing leaks:

- train target: earlier train interactions;
- valid target: earlier train and valid interactions;
- test target: earlier train, valid and test interactions.

Example:

>>> from tfrec.data import splits, synthetic, vocabulary
>>> ds = synthetic.generate(users=4, items=20, per_user=6)
>>> vocab = vocabulary.Vocabulary.from_data(ds)
>>> ex = build_examples(ds, splits.split_interactions(ds), vocab, history_length=3)
>>> ex["test"]["history_item_ids"].shape
(4, 3)
"""

import numpy as np
import pandas as pd

from tfrec.data import schema
from tfrec.data.splits import SPLIT_NAMES

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
_HISTORY_SOURCES = {
    schema.HISTORY_ITEM_IDS: "item",
    schema.HISTORY_RATINGS: "rating",
    schema.HISTORY_EVENTS: "event",
    schema.HISTORY_TIMESTAMPS: "timestamp",
}


def build_examples(ds, split, vocab, history_length=50):
    """Builds the examples of every split in memory.

    Args:
        ds: `InteractionData`.
        split: `Split` of `ds`.
        vocab: `Vocabulary` of `ds`.
        history_length: N, the number of past behaviours kept.

    Returns:
        dict "train"/"valid"/"test" -> dict feature name -> np.ndarray (see `FEATURES`;
        history features are [n, N], the others [n]).
    """
    return {name: next(iter_examples(ds, split, vocab, history_length, name, chunk_size=None)) for name in SPLIT_NAMES}


def iter_examples(ds, split, vocab, history_length, split_name, chunk_size=65536):
    """Yields the examples of one split in chunks, in (user, time, item) order.

    Memory stays at a few arrays per interaction plus one chunk of
    histories, so large data sets can be written out (see `tfrecord.py`).

    Args:
        ds, split, vocab, history_length: as in `build_examples`.
        split_name: "train", "valid" or "test".
        chunk_size: examples per chunk, or None for one chunk (always yielded,
            even when empty).

    Yields:
        dict feature name -> np.ndarray.
    """
    stage = SPLIT_NAMES.index(split_name)
    pool = _pool(ds, split, vocab, max_stage=stage)
    targets = np.flatnonzero(pool["stage"] == stage)
    user_start = np.flatnonzero(np.r_[True, pool["user"][1:] != pool["user"][:-1]])
    first_of_user = np.repeat(user_start, np.diff(np.r_[user_start, len(pool["user"])]))
    step = chunk_size or max(len(targets), 1)
    for begin in range(0, max(len(targets), 1), step):
        yield _gather(pool, targets[begin : begin + step], first_of_user, history_length)


def _pool(ds, split, vocab, max_stage):
    """The interactions a split's histories may use, as sorted index arrays."""
    frames = [getattr(split, name) for name in SPLIT_NAMES[: max_stage + 1]]
    logs = pd.concat(frames, ignore_index=True)
    pool = {
        "user": vocab.user_index(logs[schema.USER_ID]),
        "item": vocab.item_index(logs[schema.ITEM_ID]),
        "timestamp": logs[schema.TIMESTAMP].to_numpy(dtype=np.int64),
        "stage": np.repeat(np.arange(len(frames)), [len(f) for f in frames]),
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
