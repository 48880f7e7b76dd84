"""`BatchingClient`: merges many small concurrent `recommend` calls into one Predict.

Worker threads of a `tfrec.request_merging.RequestMerger` collect requests
for up to `max_delay_ms` or `max_batch_size` rows, whatever their `k` (the
signatures take one `k` per row), send one Predict through the
`RecommenderClient` and hand each caller its rows, cut to its own `k`. It saves
the per-request cost of gRPC on both ends, which server-side batching
(`--enable_batching`) cannot.

Example:

>>> from tfrec.client import RecommenderClient
>>> with RecommenderClient("localhost:8500", "retrieval") as client:       # doctest: +SKIP
...     with client.batching(max_batch_size=32, max_delay_ms=2) as batched:
...         batched.recommend([["50", "172"]], k=5)                       # from many threads
"""

import collections
from typing import TYPE_CHECKING, Sequence

import grpc

from tfrec.client.requests import check_k, pad_histories
from tfrec.client.results import Recommendations
from tfrec.request_merging import RequestMerger, row_slices
from tfrec.serving_errors import ServingError

if TYPE_CHECKING:
    from tfrec.client.recommender_client import RecommenderClient

_Pending = collections.namedtuple("_Pending", "rows k")
_KEY = "recommend"  # every call merges with every other: `k` travels per row


def _is_invalid_argument(error: Exception) -> bool:
    return isinstance(error, ServingError) and error.code == grpc.StatusCode.INVALID_ARGUMENT


class BatchingClient:
    """Merges concurrent small `recommend` calls into one Predict.

    Calls (any `k`) that arrive within `max_delay_ms` of the oldest
    waiting one are padded to a common history length and sent together (up to
    `max_batch_size` rows); each caller receives its own rows. If a merged
    Predict fails with INVALID_ARGUMENT (one caller's unknown item id), each
    call of that batch is retried alone so only the faulty one fails. Closing
    it does not close the underlying `RecommenderClient`.

    Args:
        client: the `RecommenderClient` that sends the Predicts.
        max_batch_size: most history rows in one Predict.
        max_delay_ms: longest a call waits for others to join its batch.
        max_in_flight: Predicts sent concurrently (batches keep forming meanwhile).

    Example:

    >>> with client.batching(max_batch_size=32, max_delay_ms=2) as batched:  # doctest: +SKIP
    ...     recs = batched.recommend([["1", "2"]], k=10)   # from many threads
    """

    def __init__(
        self, client: "RecommenderClient", max_batch_size: int = 32, max_delay_ms: float = 2.0, max_in_flight: int = 2
    ):
        if max_batch_size < 1 or max_delay_ms < 0 or max_in_flight < 1:
            raise ValueError(
                f"max_batch_size={max_batch_size}, max_delay_ms={max_delay_ms}, max_in_flight={max_in_flight}; "
                "expected >= 1, >= 0, >= 1"
            )
        self.client = client
        self.max_batch_size = max_batch_size
        self.max_delay = max_delay_ms / 1000.0
        self._merger = RequestMerger(
            self._send,
            max_rows=max_batch_size,
            max_delay_seconds=self.max_delay,
            workers=max_in_flight,
            isolate=_is_invalid_argument,
            name="BatchingClient",
        )

    @property
    def batches_sent(self) -> int:
        """Predicts sent so far (not counting the one-by-one retries after INVALID_ARGUMENT)."""
        return self._merger.batches

    def recommend(self, histories: Sequence[Sequence[str]], k=10) -> Recommendations:
        """Same as `RecommenderClient.recommend`, possibly answered by a merged Predict."""
        rows = pad_histories(histories)
        return self._merger.run(_KEY, _Pending(rows, check_k(k, len(rows))), len(rows))

    def close(self) -> None:
        """Sends what is queued, then stops the background threads."""
        self._merger.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _send(self, batch):
        """One Predict for the calls of `batch` (`recommend` left-pads them to one length), each caller's
        answer cut to its largest `k`."""
        recs = self.client.recommend([row for pending in batch for row in pending.rows],
                                     [k for pending in batch for k in pending.k])
        return [recs.rows(s.start, s.stop).top(max(pending.k))
                for s, pending in zip(row_slices([len(pending.rows) for pending in batch]), batch)]

