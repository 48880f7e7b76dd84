"""Request merging: concurrent calls with the same key run as one merged call.

`RequestMerger` is the mechanism under both batching sides of serving: the
client's `tfrec.client.BatchingClient` (many `recommend` calls, one Predict)
and the server's `tfrec.server.batching.BatchScheduler` (`--enable_batching`).
Callers block in `run(key, request, rows)`; their calls wait in one queue.
When the oldest waiting call has waited `max_delay_seconds`, or the calls of
its key hold `max_rows` rows, a worker takes the calls of that key in arrival
order (up to `max_rows` rows; always at least one) and hands them to
`run_batch`, which makes one merged call and returns one answer per request.
If the merged call fails with an error `isolate` accepts (an invalid input of
one caller), each call is run again alone so only the faulty one fails; any
other failure goes to every caller of the batch.

What a key, a request and an answer are is up to the user: the merger only
compares keys, counts rows and moves requests and answers.

Example:

>>> def run_batch(requests):  # one merged call for all the requests
...     return [2 * r for r in requests]
>>> merger = RequestMerger(run_batch, max_rows=8, max_delay_seconds=0.002)
>>> merger.run(key="k=5", request=21)
42
>>> merger.close()
"""

import collections
import threading
import time
from concurrent import futures
from typing import Any, Callable, Hashable, Optional, Sequence

_Call = collections.namedtuple("_Call", "key request rows future enqueued")


class QueueFull(Exception):
    """`RequestMerger.run` refused a call: `queued_rows` rows wait, at most `max_queued_rows` may."""

    def __init__(self, queued_rows: int, max_queued_rows: int):
        super().__init__(f"{queued_rows} rows queued, at most {max_queued_rows}")
        self.queued_rows = queued_rows
        self.max_queued_rows = max_queued_rows


def row_slices(rows: Sequence[int]) -> list:
    """The `slice` of each request's rows in a merged call, e.g. [2, 1] -> [slice(0, 2), slice(2, 3)]."""
    slices, start = [], 0
    for count in rows:
        slices.append(slice(start, start + count))
        start += count
    return slices


class RequestMerger:
    """Merges concurrent calls with equal keys and runs them on worker threads.

    Args:
        run_batch: called with the requests of one batch (a list, in arrival
            order, all with the same key); makes one merged call and returns
            one answer per request, in the same order.
        max_rows: most rows in one batch (a single larger call runs alone).
        max_delay_seconds: longest the oldest call waits for others to join.
        workers: threads running batches; batches keep forming while all are busy.
        isolate: errors of a merged call for which this returns True are
            retried call by call (default: none are).
        max_queued_rows: calls beyond this many waiting rows are refused with
            `QueueFull` (default: no limit).
        name: names the threads and the error after `close`.

    Attributes:
        calls: calls queued so far. batches: batches taken so far (not
            counting the one-by-one retries of an isolated failure).
    """

    def __init__(
        self,
        run_batch: Callable[[list], Sequence[Any]],
        max_rows: int,
        max_delay_seconds: float,
        workers: int = 1,
        isolate: Callable[[Exception], bool] = lambda error: False,
        max_queued_rows: Optional[int] = None,
        name: str = "request-merger",
    ):
        self.max_rows = max_rows
        self.max_delay_seconds = max_delay_seconds
        self.max_queued_rows = max_queued_rows
        self.name = name
        self.calls = 0
        self.batches = 0
        self._run_batch = run_batch
        self._isolate = isolate
        self._queue = collections.deque()
        self._rows_by_key = collections.Counter()
        self._queued_rows = 0
        self._cond = threading.Condition()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def run(self, key: Hashable, request: Any, rows: int = 1) -> Any:
        """Queues `request` (`rows` rows) under `key`; blocks until its answer.

        Raises:
            QueueFull: more than `max_queued_rows` rows would wait.
            RuntimeError: the merger is closed.
            Exception: what the (merged or lone) call raised.
        """
        call = _Call(key, request, rows, futures.Future(), time.monotonic())
        with self._cond:
            if self._closed:
                raise RuntimeError(f"{self.name} is closed")
            if self.max_queued_rows is not None and self._queued_rows + rows > self.max_queued_rows:
                raise QueueFull(self._queued_rows, self.max_queued_rows)
            self.calls += 1
            self._queue.append(call)
            self._rows_by_key[key] += rows
            self._queued_rows += rows
            self._cond.notify_all()
        return call.future.result()

    def close(self) -> None:
        """Runs what is queued, then stops the threads; later `run` calls raise RuntimeError."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()

    def _work(self):
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            self._answer(batch)

    def _take_batch(self):
        """Blocks until a batch is due; returns its calls (None when closed and drained)."""
        with self._cond:
            while True:
                if not self._queue:
                    if self._closed:
                        return None
                    self._cond.wait()
                    continue
                first = self._queue[0]
                wait = first.enqueued + self.max_delay_seconds - time.monotonic()
                if self._closed or wait <= 0 or self._rows_by_key[first.key] >= self.max_rows:
                    return self._pop(first.key)
                self._cond.wait(wait)

    def _pop(self, key):
        """Takes the calls of `key` that fit in one batch, in arrival order (holding the condition)."""
        batch, rows, keep = [], 0, collections.deque()
        for call in self._queue:
            if call.key == key and (not batch or rows + call.rows <= self.max_rows):
                batch.append(call)
                rows += call.rows
            else:
                keep.append(call)
        self._queue = keep
        self._rows_by_key[key] -= rows
        if not self._rows_by_key[key]:
            del self._rows_by_key[key]
        self._queued_rows -= rows
        self.batches += 1
        return batch

    def _answer(self, batch):
        try:
            answers = self._run_batch([call.request for call in batch])
        except Exception as e:  # noqa: BLE001 - hand the failure to the callers waiting on it
            if len(batch) > 1 and self._isolate(e):
                for call in batch:  # isolate the faulty call(s)
                    self._answer([call])
                return
            for call in batch:
                call.future.set_exception(e)
            return
        for call, answer in zip(batch, answers):
            call.future.set_result(answer)
