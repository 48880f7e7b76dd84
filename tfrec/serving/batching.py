"""Server-side request batching for the embedded server (`--enable_batching`).

`BatchScheduler` plays the role of TF Serving's shared batch scheduler: Predict
calls on the same signature wait up to `batch_timeout_micros` for others, are
concatenated along dimension 0 (up to `max_batch_size` rows), run as one call
on one of `num_batch_threads` threads, and each caller gets its rows back.

Unlike TF Serving's BatchingSession it also batches signatures with scalar
inputs (the recommend signature's `k`): only calls whose scalar inputs are
equal and whose other inputs agree beyond dimension 0 (e.g. the same history
length) are merged; any other call simply forms its own batch. If a merged call
fails with INVALID_ARGUMENT (one caller's unknown item id), its requests are run
one by one so only the faulty one fails. `allowed_batch_sizes` and
`pad_variable_length_inputs` are not applied (no padding: requests of
different shapes go to different batches).

Example:

>>> params = config.read_batching_parameters("serving/batching.config")  # doctest: +SKIP
>>> scheduler = BatchScheduler.from_parameters(params)                # doctest: +SKIP
>>> outputs = scheduler.run(signature.function, tensors)  # name -> np.ndarray  # doctest: +SKIP
"""

import collections
import os
import threading
import time
from concurrent import futures

import grpc
import tensorflow as tf
from absl import logging

from tfrec.serving.errors import ServingError

_Task = collections.namedtuple("_Task", "function tensors rows future enqueued")


def call_unbatched(function, tensors) -> dict:
    """Runs `function(**tensors)`; returns outputs as NumPy arrays."""
    return {name: value.numpy() for name, value in function(**tensors).items()}


class BatchScheduler:
    """Merges concurrent calls of the same signature into one.

    Args:
        max_batch_size: most rows in one merged call.
        batch_timeout_micros: longest a call waits for others to join.
        num_batch_threads: threads running merged calls.
        max_enqueued_batches: queued calls beyond `max_enqueued_batches *
            max_batch_size` rows are refused with UNAVAILABLE (as TF Serving does).
    """

    def __init__(self, max_batch_size=1000, batch_timeout_micros=0, num_batch_threads=None, max_enqueued_batches=10):
        self.max_batch_size = max_batch_size
        self.timeout = batch_timeout_micros / 1e6
        self.max_queued_rows = max_enqueued_batches * max_batch_size
        self.batches_run = 0
        self.calls = 0
        self._queues = {}  # merge key -> list of _Task
        self._queued_rows = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._work, name=f"batch-{i}", daemon=True)
            for i in range(num_batch_threads or os.cpu_count() or 1)
        ]
        for thread in self._threads:
            thread.start()

    @classmethod
    def from_parameters(cls, params) -> "BatchScheduler":
        """From a `BatchingParameters` message; unset fields take TF Serving's defaults."""
        if list(params.allowed_batch_sizes) or params.pad_variable_length_inputs:
            logging.warning(
                "allowed_batch_sizes / pad_variable_length_inputs are not applied by the embedded server: "
                "requests of different shapes form separate batches, without padding"
            )
        kwargs = {
            name: getattr(params, name).value
            for name in ("max_batch_size", "batch_timeout_micros", "num_batch_threads", "max_enqueued_batches")
            if params.HasField(name)
        }
        return cls(**kwargs)

    def stop(self) -> None:
        """Runs what is queued, then stops the threads."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()
        logging.info("Batch scheduler ran %d calls in %d batches", self.calls, self.batches_run)

    def run(self, function, tensors: dict) -> dict:
        """Runs `function(**tensors)`, possibly merged with concurrent calls.

        Returns:
            dict output name -> np.ndarray (this call's rows only).

        Raises:
            tf.errors.OpError: the call failed in the graph.
            ServingError: UNAVAILABLE when the queue is full.
        """
        key, rows = _merge_key(function, tensors)
        if key is None or rows > self.max_batch_size:
            return call_unbatched(function, tensors)
        task = _Task(function, tensors, rows, futures.Future(), time.monotonic())
        with self._cond:
            if self._queued_rows + rows > self.max_queued_rows:
                raise ServingError(
                    grpc.StatusCode.UNAVAILABLE,
                    f"the batch queue is full ({self._queued_rows} rows waiting; max_enqueued_batches x "
                    f"max_batch_size = {self.max_queued_rows})",
                )
            self.calls += 1
            self._queues.setdefault(key, []).append(task)
            self._queued_rows += rows
            self._cond.notify_all()
        return task.future.result()

    def _work(self):
        while True:
            with self._cond:
                tasks = self._next_batch()
            if tasks is None:
                return
            self.batches_run += 1
            self._execute(tasks)

    def _next_batch(self):
        """Blocks (holding the condition) until a batch is due; None when stopping and idle."""
        while True:
            if not self._queues:
                if self._stopping:
                    return None
                self._cond.wait()
                continue
            key, queue = min(self._queues.items(), key=lambda item: item[1][0].enqueued)
            wait = queue[0].enqueued + self.timeout - time.monotonic()
            if sum(t.rows for t in queue) >= self.max_batch_size or wait <= 0 or self._stopping:
                taken, rows = [], 0
                while queue and (not taken or rows + queue[0].rows <= self.max_batch_size):
                    rows += queue[0].rows
                    taken.append(queue.pop(0))
                if not queue:
                    del self._queues[key]
                self._queued_rows -= rows
                return taken
            self._cond.wait(wait)

    def _execute(self, tasks):
        first = tasks[0]
        try:
            if len(tasks) == 1:
                first.future.set_result(call_unbatched(first.function, first.tensors))
                return
            merged = {
                name: tf.concat([t.tensors[name] for t in tasks], 0) if value.shape.rank else value
                for name, value in first.tensors.items()
            }
            outputs = call_unbatched(first.function, merged)
        except tf.errors.InvalidArgumentError as e:
            if len(tasks) > 1:
                for task in tasks:  # isolate the faulty request(s)
                    self._execute([task])
            else:
                first.future.set_exception(e)
            return
        except Exception as e:  # noqa: BLE001 - hand the failure to every waiting caller
            for task in tasks:
                task.future.set_exception(e)
            return
        total = sum(t.rows for t in tasks)
        bad = [name for name, value in outputs.items() if value.ndim == 0 or value.shape[0] != total]
        if bad:
            for task in tasks:
                task.future.set_exception(
                    ServingError(grpc.StatusCode.INTERNAL, f"output {bad[0]!r} has no batch dimension of size {total}")
                )
            return
        start = 0
        for task in tasks:
            task.future.set_result({name: value[start:start + task.rows] for name, value in outputs.items()})
            start += task.rows


def _merge_key(function, tensors):
    """(key, rows): calls with equal keys can be concatenated; key None = cannot batch."""
    parts, rows = [id(function)], None
    for name in sorted(tensors):
        value = tensors[name]
        if value.shape.rank == 0:
            parts.append((name, value.dtype, value.numpy().item()))
            continue
        if rows is None:
            rows = value.shape[0]
        elif value.shape[0] != rows:
            return None, 0
        parts.append((name, value.dtype, tuple(value.shape[1:])))
    return (tuple(parts), rows) if rows is not None else (None, 0)
