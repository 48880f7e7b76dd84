"""Dense integer indices for item ids, user ids and event types.

Index 0 is padding / unknown in every table; real entries are 1..n in natural
id order (numeric when all ids are integers), so indices are stable for a
given catalogue.

Example:

>>> vocab = Vocabulary(item_ids=["1", "2", "10"], user_ids=["a"], events=["view"])
>>> vocab.item_index(["10", "nope"]).tolist(), vocab.num_items
([3, 0], 3)
"""

import json

import numpy as np
import pandas as pd

from tfrec.data import schema
from tfrec.data.dataset import natural_order


class Vocabulary:
    """Id <-> index tables.

    Args:
        item_ids: catalogue item ids, in index order, without the padding entry.
        user_ids: user ids, likewise.
        events: event names, likewise.

    Attributes:
        item_ids, user_ids, events: lists with [0] == "" (padding).
    """

    def __init__(self, item_ids, user_ids, events):
        self.item_ids = ["", *item_ids]
        self.user_ids = ["", *user_ids]
        self.events = ["", *events]
        self._indices = {
            "item": pd.Index(self.item_ids[1:]),
            "user": pd.Index(self.user_ids[1:]),
            "event": pd.Index(self.events[1:]),
        }

    @classmethod
    def from_data(cls, ds):
        """Builds the vocabulary of an `InteractionData`: all catalogue items, all users.

        Data without an event column gets the single event `schema.IMPLICIT_EVENT`.
        """
        users = ds.interactions[schema.USER_ID]
        if ds.users is not None:
            users = np.concatenate([users.to_numpy(dtype=object), ds.users[schema.USER_ID].to_numpy(dtype=object)])
        events = sorted(set(ds.interactions[schema.EVENT])) if ds.has_events else [schema.IMPLICIT_EVENT]
        return cls(natural_order(ds.items[schema.ITEM_ID]), natural_order(users), events)

    @property
    def num_items(self):
        return len(self.item_ids) - 1

    @property
    def num_users(self):
        return len(self.user_ids) - 1

    def _lookup(self, name, values):
        return (self._indices[name].get_indexer(np.asarray(values, dtype=object)) + 1).astype(np.int32)

    def item_index(self, ids):
        """Indices of item ids (np.int32; 0 for unknown ids and "")."""
        return self._lookup("item", ids)

    def user_index(self, ids):
        """Indices of user ids (np.int32; 0 for unknown ids)."""
        return self._lookup("user", ids)

    def event_index(self, events):
        """Indices of event names (np.int32; 0 for unknown events)."""
        return self._lookup("event", events)

    def to_json(self):
        """Serialises to a JSON string (see `from_json`)."""
        return json.dumps({"item_ids": self.item_ids[1:], "user_ids": self.user_ids[1:], "events": self.events[1:]})

    @classmethod
    def from_json(cls, text):
        """Inverse of `to_json`."""
        data = json.loads(text)
        return cls(data["item_ids"], data["user_ids"], data["events"])

    def __eq__(self, other):
        return isinstance(other, Vocabulary) and (self.item_ids, self.user_ids, self.events) == (
            other.item_ids,
            other.user_ids,
            other.events,
        )
