"""What the client returns: plain NumPy values and the model version that answered.

`Recommendations` (top-k item ids and scores), `Scores` (candidate scores),
`Explanation` (each behaviour's influence on each candidate's score),
`Embeddings` (item embeddings), `Prediction` (the outputs of any Predict),
`VersionStatus` (`GetModelStatus`), `TensorInfo` and `ModelMetadata`
(`GetModelMetadata`).

Example:

>>> import numpy as np
>>> recs = Recommendations(np.array([["50", "172"]]), np.array([[0.5, 0.25]], np.float32), version=3)
>>> recs.to_lists()
[[('50', 0.5), ('172', 0.25)]]
"""

import dataclasses
from typing import Optional

import numpy as np


@dataclasses.dataclass(frozen=True)
class Recommendations:
    """Top-k items per query row.

    Attributes:
        item_ids: np.ndarray of str, [B, K], best first.
        scores: np.ndarray float32, [B, K].
        version: model version that answered.
        item_titles: np.ndarray of str, [B, K], the titles of `item_ids` from the
            export's catalogue (None from an export made before answers carried them).
        skipped_items: per row, the history item ids the export's catalogue did not know,
            skipped (None from an export made before answers reported them).
    """

    item_ids: np.ndarray
    scores: np.ndarray
    version: int
    item_titles: Optional[np.ndarray] = None
    skipped_items: Optional[list] = None

    def to_lists(self) -> list:
        """[[(item_id, score), ...] per row] as plain Python values."""
        return [
            [(str(i), float(s)) for i, s in zip(ids, scores)] for ids, scores in zip(self.item_ids, self.scores)
        ]

    def rows(self, start: int, stop: int) -> "Recommendations":
        """The recommendations of rows start..stop-1."""
        titles = None if self.item_titles is None else self.item_titles[start:stop]
        skipped = None if self.skipped_items is None else self.skipped_items[start:stop]
        return Recommendations(self.item_ids[start:stop], self.scores[start:stop], self.version, titles, skipped)

    def top(self, count: int) -> "Recommendations":
        """The first `count` columns (an answer merged with larger-k requests is wider than its own k)."""
        titles = None if self.item_titles is None else self.item_titles[:, :count]
        return dataclasses.replace(self, item_ids=self.item_ids[:, :count], scores=self.scores[:, :count],
                                   item_titles=titles)


@dataclasses.dataclass(frozen=True)
class Scores:
    """Candidate scores: `scores` np.ndarray float32 [B, M], the serving `version` and the
    `skipped_items` of each history (as `Recommendations`)."""

    scores: np.ndarray
    version: int
    skipped_items: Optional[list] = None


@dataclasses.dataclass(frozen=True)
class Explanation:
    """Influence of each behaviour on each candidate's score.

    Attributes:
        influence: np.ndarray float32 [B, M, N]: `influence[b, m, j]` is how
            much behaviour `histories[b][j]` raised candidate m's score (0 past
            the history's end).
        scores: np.ndarray float32 [B, M], the candidates' scores.
        version: model version that answered.
        skipped_items: as `Recommendations` (their influence columns are 0).
    """

    influence: np.ndarray
    scores: np.ndarray
    version: int
    skipped_items: Optional[list] = None

    def strongest(self, row: int, candidate: int, count: int = 3) -> list:
        """[(behaviour position, influence)] of the `count` behaviours that raised the score most."""
        values = self.influence[row, candidate]
        order = np.argsort(-values, kind="stable")[:count]
        return [(int(j), float(values[j])) for j in order if values[j] > 0]


@dataclasses.dataclass(frozen=True)
class Embeddings:
    """Item embeddings: `embeddings` np.ndarray float32 [B, d] and the serving `version`."""

    embeddings: np.ndarray
    version: int


@dataclasses.dataclass(frozen=True)
class Prediction:
    """Outputs of one Predict call: `outputs` (name -> np.ndarray) and the serving `version`."""

    outputs: dict
    version: int


@dataclasses.dataclass(frozen=True)
class VersionStatus:
    """State of one model version as `GetModelStatus` reports it (state e.g. "AVAILABLE")."""

    version: int
    state: str
    error_code: int
    error_message: str


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """dtype name (e.g. "string") and shape (None for unknown dimensions) of a signature tensor."""

    dtype: str
    shape: Optional[tuple]


@dataclasses.dataclass(frozen=True)
class ModelMetadata:
    """Signatures of the served version: `signatures` name -> {"inputs": {...}, "outputs": {...}} of TensorInfo."""

    version: int
    signatures: dict
