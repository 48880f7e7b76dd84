"""tfrec before fine-tuning: pretrained item text embeddings, no training.

A user's profile is the mean of the (L2-normalised) text embeddings of their
most recent history items; every catalogue item is scored by its cosine with
that profile. This is what the pretrained encoder knows about the items
before any interaction log has tuned a tower.
"""

import numpy as np

from tfrec.baselines.base import Baseline, require_features
from tfrec.data import schema


class TextProfile(Baseline):
    """Scores items by cosine with the mean text embedding of the recent history.

    Args:
      item_vectors: float `[num_items + 1, d]` text embeddings by item index
        (row 0 = padding), e.g. `TextEncoder("minilm").encode_in_batches(texts)`.
      recent: how many of the latest history items form the profile (None: all).

    Example:

    >>> import numpy as np
    >>> vectors = np.array([[0, 0], [1, 0], [0.9, 0.1], [0, 1]], np.float32)
    >>> model = TextProfile(vectors).fit({})
    >>> scores = model.score({"history_item_ids": np.array([[0, 1]])})
    >>> int(np.argmax(scores[0, 2:])) + 2  # the item closest to item 1
    2
    """

    def __init__(self, item_vectors, recent=None):
        vectors = np.asarray(item_vectors, np.float32)
        if vectors.ndim != 2 or len(vectors) < 2:
            raise ValueError(f"item_vectors: expected [num_items + 1, d] with num_items >= 1, got {vectors.shape}")
        if recent is not None and recent < 1:
            raise ValueError(f"recent={recent!r}: expected None or >= 1")
        super().__init__(len(vectors) - 1)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self.item_vectors = np.where(norms > 0, vectors / np.maximum(norms, 1e-12), 0.0)
        self.item_vectors[0] = 0.0
        self.recent = recent

    def fit(self, train_examples):
        """Nothing to learn: the profile comes from the pretrained embeddings alone."""
        return self

    def score(self, examples):
        (history,) = require_features(examples, [schema.HISTORY_ITEM_IDS], "TextProfile.score")
        history = self._check_items(history, "TextProfile.score history_item_ids")
        if self.recent is not None:
            history = _latest(history, self.recent)
        profiles = self.item_vectors[history].sum(axis=1)  # ranks items as the mean does
        return profiles @ self.item_vectors.T


def _latest(history, count):
    """The last `count` non-padding items of each left- or right-padded row (others set to 0)."""
    present = history > 0
    from_end = np.cumsum(present[:, ::-1], axis=1)[:, ::-1]
    return np.where(present & (from_end <= count), history, 0)
