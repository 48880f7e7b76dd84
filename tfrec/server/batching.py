"""Server-side request batching for the embedded server (`--enable_batching`).

`BatchScheduler` plays the role of TF Serving's shared batch scheduler: Predict
calls on the same signature wait up to `batch_timeout_micros` for others, are
concatenated along dimension 0 (up to `max_batch_size` rows), run as one call
on one of `num_batch_threads` threads, and each caller gets its rows back
(the queue and the merging are `tfrec.request_merging.RequestMerger`'s).

Unlike TF Serving's BatchingSession it also batches signatures with scalar
inputs (older exports' scalar `k`): only calls whose scalar inputs are
equal and whose other inputs agree beyond dimension 0 (e.g. the same history
length) are merged; any other call simply forms its own batch. tfrec's
signatures take `k` per row (`[B]`), so calls of any `k` merge, and each row
comes back as wide as its batch's largest `k` (padded with "" past its own,
as TF Serving's batching answers too; `RecommenderClient` cuts it back). If a merged call
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
from typing import Optional

import grpc
import tensorflow as tf
from absl import logging

from tfrec.request_merging import QueueFull, RequestMerger, row_slices
from tfrec.serving_errors import ServingError

_Call = collections.namedtuple("_Call", "function tensors rows")


def call_unbatched(function, tensors: dict) -> dict:
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

    def __init__(
        self,
        max_batch_size: int = 1000,
        batch_timeout_micros: int = 0,
        num_batch_threads: Optional[int] = None,
        max_enqueued_batches: int = 10,
    ):
        self.max_batch_size = max_batch_size
        self.timeout = batch_timeout_micros / 1e6
        self.max_queued_rows = max_enqueued_batches * max_batch_size
        self._merger = RequestMerger(
            _run_merged,
            max_rows=max_batch_size,
            max_delay_seconds=self.timeout,
            workers=num_batch_threads or os.cpu_count() or 1,
            isolate=lambda error: isinstance(error, tf.errors.InvalidArgumentError),
            max_queued_rows=self.max_queued_rows,
            name="batch",
        )

    @property
    def calls(self) -> int:
        """Calls queued for merging so far (calls that cannot be batched run directly, uncounted)."""
        return self._merger.calls

    @property
    def batches_run(self) -> int:
        """Merged calls run so far."""
        return self._merger.batches

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
        self._merger.close()
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
        try:
            return self._merger.run(key, _Call(function, tensors, rows), rows)
        except QueueFull as e:
            raise ServingError(
                grpc.StatusCode.UNAVAILABLE,
                f"the batch queue is full ({e.queued_rows} rows waiting; max_enqueued_batches x "
                f"max_batch_size = {e.max_queued_rows})",
            ) from None


def _run_merged(calls):
    """One call of the signature over the calls' tensors concatenated along dimension 0; outputs per call."""
    first = calls[0]
    if len(calls) == 1:
        return [call_unbatched(first.function, first.tensors)]
    merged = {
        name: tf.concat([c.tensors[name] for c in calls], 0) if value.shape.rank else value
        for name, value in first.tensors.items()
    }
    outputs = call_unbatched(first.function, merged)
    total = sum(c.rows for c in calls)
    bad = [name for name, value in outputs.items() if value.ndim == 0 or value.shape[0] != total]
    if bad:
        raise ServingError(grpc.StatusCode.INTERNAL, f"output {bad[0]!r} has no batch dimension of size {total}")
    return [{name: value[rows] for name, value in outputs.items()} for rows in row_slices([c.rows for c in calls])]


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
