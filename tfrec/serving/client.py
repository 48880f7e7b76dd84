"""Client library for the recommender's TF Serving API.

`RecommenderClient` wraps `PredictionService`/`ModelService` calls on one
reused gRPC channel and returns plain NumPy values. It speaks only TF
Serving's API, so the same code runs against `tensorflow_model_server` or the
embedded `tfrec.serve` server. Every call has a deadline (`timeout` seconds per
attempt) and is retried with exponential backoff on UNAVAILABLE and
DEADLINE_EXCEEDED (all calls here are read-only, hence safe to repeat); any
other failure raises `ServingError` with the gRPC code and the server's message.

Histories are lists of item ids, most recent last; ragged histories are
left-padded with "" (the padding id of the export contract). `recommend` and
`score` also take the history's `ratings`, `timestamps` and `events`, the
request time `now` and the `user_ids`: given any of them, the call goes to the
`*_in_context` signature, so a model trained with them sees them at serving too.

`BatchingClient` (from `RecommenderClient.batching()`) merges many small
concurrent `recommend` calls into one Predict: a background thread collects
requests for up to `max_delay_ms` or `max_batch_size` rows, sends one Predict
and hands each caller its rows.

Example:

>>> from tfrec.serving.client import RecommenderClient
>>> with RecommenderClient("localhost:8500", "retrieval") as client:        # doctest: +SKIP
...     recs = client.recommend([["50", "172"], ["1"]], k=5)
...     recs.item_ids[0], recs.scores[0], recs.version
...     with client.batching(max_batch_size=32, max_delay_ms=2) as batched:
...         batched.recommend([["50", "172"]], k=5)
"""

import collections
import dataclasses
import functools
import threading
import time
from concurrent import futures
from typing import Optional, Sequence

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tfrec.serving.errors import ServingError

_RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
_STATE_NAMES = get_model_status_pb2.ModelVersionStatus.State.Name


@dataclasses.dataclass(frozen=True)
class Recommendations:
    """Top-k items per query row.

    Attributes:
        item_ids: np.ndarray of str, [B, K], best first.
        scores: np.ndarray float32, [B, K].
        version: model version that answered.
    """

    item_ids: np.ndarray
    scores: np.ndarray
    version: int

    def to_lists(self) -> list:
        """[[(item_id, score), ...] per row] as plain Python values."""
        return [
            [(str(i), float(s)) for i, s in zip(ids, scores)] for ids, scores in zip(self.item_ids, self.scores)
        ]

    def rows(self, start: int, stop: int) -> "Recommendations":
        """The recommendations of rows start..stop-1."""
        return Recommendations(self.item_ids[start:stop], self.scores[start:stop], self.version)


@dataclasses.dataclass(frozen=True)
class Scores:
    """Candidate scores: `scores` np.ndarray float32 [B, M] and the serving `version`."""

    scores: np.ndarray
    version: int


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


def _string_tensor(rows) -> tensor_pb2.TensorProto:
    """[B, N] (or [B] for a flat list of str) tf.string TensorProto."""
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING)
    if rows and isinstance(rows[0], (list, tuple)):
        dims = [len(rows), len(rows[0])]
        values = [s.encode() for row in rows for s in row]
    else:
        dims = [len(rows)]
        values = [s.encode() for s in rows]
    proto.tensor_shape.CopyFrom(tensor_shape_pb2.TensorShapeProto(dim=[{"size": d} for d in dims]))
    proto.string_val.extend(values)
    return proto


def _int32_scalar(value: int) -> tensor_pb2.TensorProto:
    return tensor_pb2.TensorProto(dtype=types_pb2.DT_INT32, int_val=[value], tensor_shape={})


def _check_texts(values, what) -> list:
    values = list(values)
    if not values:
        raise ValueError(f"{what} is empty; expected at least one")
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise TypeError(f"{what}[{i}] is {type(value).__name__} {value!r}; expected str")
    return values


def pad_histories(histories: Sequence[Sequence[str]]) -> list:
    """Left-pads ragged histories with "" to one length (at least 1), most recent last.

    Raises:
        ValueError: no histories. TypeError: an item id that is not a str,
            naming its row and position.
    """
    if isinstance(histories, str) or not histories:
        raise ValueError(f"histories is {histories!r}; expected a non-empty list of histories (lists of item ids)")
    rows = []
    for i, history in enumerate(histories):
        if isinstance(history, str):
            raise TypeError(f"histories[{i}] is the str {history!r}; expected a list of item ids ([history] for one)")
        rows.append(list(history))
        for j, item in enumerate(rows[-1]):
            if not isinstance(item, str):
                raise TypeError(f"histories[{i}][{j}] is {type(item).__name__} {item!r}; expected a str item id")
    width = max(1, max(len(r) for r in rows))
    return [[""] * (width - len(r)) + r for r in rows]


def _check_number(value, what, integer):
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, kinds):
        expected = "an int (Unix time)" if integer else "a number"
        raise TypeError(f"{what} is {type(value).__name__} {value!r}; expected {expected}")
    return value


def _check_str(value, what):
    if not isinstance(value, str):
        raise TypeError(f"{what} is {type(value).__name__} {value!r}; expected a str")
    return value


def _aligned(rows, what, histories, check):
    """Checks ragged values aligned with ragged `histories` with `check(value, label)`; returns lists."""
    if isinstance(rows, str) or len(rows) != len(histories):
        raise ValueError(f"{what} has {len(rows)} rows for {len(histories)} histories; expected one per history")
    checked = []
    for i, (row, history) in enumerate(zip(rows, histories)):
        row = list(row)
        if len(row) != len(history):
            raise ValueError(f"{what}[{i}] has {len(row)} values for {len(history)} history items; expected one per item")
        checked.append([check(value, f"{what}[{i}][{j}]") for j, value in enumerate(row)])
    return checked


def _per_history(values, what, histories, check):
    """Checks one value per history with `check(value, label)`; returns a list."""
    if isinstance(values, (str, bytes, int, float, np.number)) or len(values) != len(histories):
        raise ValueError(f"{what} is {values!r}; expected one value per history ({len(histories)})")
    return [check(value, f"{what}[{i}]") for i, value in enumerate(values)]


CONTEXT_ARGUMENTS = ("ratings", "timestamps", "events", "now", "user_ids")


def context_inputs(histories, ratings=None, timestamps=None, events=None, now=None, user_ids=None) -> dict:
    """The context inputs of the `*_in_context` signatures, left-padded like `pad_histories`.

    Args:
        histories: ragged lists of item ids (as for `pad_histories`).
        ratings: per history, one rating per item (0 = unknown); default all 0.
        timestamps: per history, one Unix time (int) per item; default all 0.
        events: per history, one event name (str) per item; default "" (the
            model's only event type if it was trained on one).
        now: one request time (int) per history; default each history's latest timestamp.
        user_ids: one user id (str) per history; default "" (a new user).

    Returns:
        dict name -> TensorProto: `history_ratings`, `history_timestamps`,
        `history_events`, `timestamp`, `user_id`.

    Raises:
        ValueError, TypeError: naming the argument, row and position at fault.

    Example:

    >>> inputs = context_inputs([["a", "b"], ["c"]], ratings=[[5, 3], [4]], timestamps=[[10, 20], [30]])
    >>> tf.make_ndarray(inputs["history_ratings"]).tolist(), tf.make_ndarray(inputs["timestamp"]).tolist()
    ([[5.0, 3.0], [0.0, 4.0]], [20, 30])
    """
    width = len(pad_histories(histories)[0])
    histories = [list(history) for history in histories]
    numbers = functools.partial(_check_number, integer=False)
    integers = functools.partial(_check_number, integer=True)

    def rows(values, fill):
        return [[fill] * len(history) for history in histories] if values is None else values

    ratings = _aligned(rows(ratings, 0), "ratings", histories, numbers)
    times = _aligned(rows(timestamps, 0), "timestamps", histories, integers)
    events = _aligned(rows(events, ""), "events", histories, _check_str)
    now = [max(row, default=0) for row in times] if now is None else _per_history(now, "now", histories, integers)
    users = _per_history([""] * len(histories) if user_ids is None else user_ids, "user_ids", histories, _check_str)

    def padded(rows, dtype, fill=0):
        return np.array([[fill] * (width - len(row)) + row for row in rows], dtype).reshape(len(rows), width)

    return {
        "history_ratings": tf.make_tensor_proto(padded(ratings, np.float32)),
        "history_timestamps": tf.make_tensor_proto(padded(times, np.int64)),
        "history_events": tf.make_tensor_proto(padded(events, object, "")),
        "timestamp": tf.make_tensor_proto(np.array(now, np.int64)),
        "user_id": tf.make_tensor_proto(np.array(users, object)),
    }


def _given(context):
    """True when any context argument is set; TypeError naming an unknown one."""
    unknown = sorted(set(context) - set(CONTEXT_ARGUMENTS))
    if unknown:
        raise TypeError(f"unknown context arguments {unknown}; expected some of {list(CONTEXT_ARGUMENTS)}")
    return any(value is not None for value in context.values())


def _check_k(k):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k is {k!r}; expected a positive int")
    return int(k)


class RecommenderClient:
    """Calls one served recommender model.

    Args:
        target: "host:port" of the model server.
        model_name: served model name (as in models.config).
        version: pin this version (default: the latest the server serves).
        version_label: pin this label (e.g. "stable"); not with `version`.
        timeout: deadline in seconds of each attempt.
        retries: extra attempts on UNAVAILABLE / DEADLINE_EXCEEDED.
        backoff_seconds: first wait between attempts; doubles each retry
            (capped at `max_backoff_seconds`).
        max_backoff_seconds: longest wait between attempts.
        max_message_bytes: largest message sent or received.
    """

    def __init__(
        self,
        target: str,
        model_name: str,
        version: Optional[int] = None,
        version_label: Optional[str] = None,
        timeout: float = 10.0,
        retries: int = 3,
        backoff_seconds: float = 0.1,
        max_backoff_seconds: float = 2.0,
        max_message_bytes: int = 64 << 20,
    ):
        if version is not None and version_label is not None:
            raise ValueError("give version or version_label, not both")
        self.target = target
        self.model_name = model_name
        self.version = version
        self.version_label = version_label
        self.timeout = timeout
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.retries_made = 0
        self._channel = grpc.insecure_channel(
            target,
            options=[
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.max_receive_message_length", max_message_bytes),
                # Reconnect about as often as calls retry (gRPC's own backoff grows to 120 s).
                ("grpc.initial_reconnect_backoff_ms", max(10, int(backoff_seconds * 1000))),
                ("grpc.min_reconnect_backoff_ms", max(10, int(backoff_seconds * 1000))),
                ("grpc.max_reconnect_backoff_ms", max(10, int(max_backoff_seconds * 1000))),
            ],
        )
        self._prediction = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        """Closes the channel."""
        self._channel.close()

    def _model_spec(self, spec, signature_name=None):
        spec.name = self.model_name
        if self.version is not None:
            spec.version.value = self.version
        elif self.version_label is not None:
            spec.version_label = self.version_label
        if signature_name is not None:
            spec.signature_name = signature_name

    def _call(self, method, request):
        delay = self.backoff_seconds
        for attempt in range(self.retries + 1):
            try:
                return method(request, timeout=self.timeout)
            except grpc.RpcError as e:
                if e.code() not in _RETRYABLE or attempt == self.retries:
                    raise ServingError(e.code(), e.details() or e.code().name) from None
            self.retries_made += 1
            time.sleep(delay)
            delay = min(delay * 2, self.max_backoff_seconds)

    def predict(self, inputs: dict, signature_name: str = "serving_default", output_filter=()) -> Prediction:
        """One Predict call.

        Args:
            inputs: input name -> `TensorProto` or anything `tf.make_tensor_proto` accepts.
            signature_name: signature to run.
            output_filter: output names to return (empty: all).

        Returns:
            `Prediction` with NumPy outputs and the version that served.
        """
        request = predict_pb2.PredictRequest(output_filter=list(output_filter))
        self._model_spec(request.model_spec, signature_name)
        for name, value in inputs.items():
            proto = value if isinstance(value, tensor_pb2.TensorProto) else tf.make_tensor_proto(value)
            request.inputs[name].CopyFrom(proto)
        response = self._call(self._prediction.Predict, request)
        outputs = {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
        return Prediction(outputs, response.model_spec.version.value)

    def _recommendations(self, prediction):
        ids = prediction.outputs["item_ids"]
        decoded = np.array([b.decode() for b in ids.ravel()], dtype=str).reshape(ids.shape)
        return Recommendations(decoded, prediction.outputs["scores"], prediction.version)

    def recommend(self, histories: Sequence[Sequence[str]], k: int = 10, **context) -> Recommendations:
        """Top-k items for each history (signature `serving_default`, or
        `recommend_in_context` when any context argument is given).

        Args:
            histories: one list of item ids per query, most recent last (ragged is fine).
            k: how many items per query.
            **context: optional `ratings`, `timestamps`, `events`, `now`,
                `user_ids` (see `context_inputs`).

        Returns:
            `Recommendations` ([B, K] item_ids and scores, version).
        """
        inputs = {"history": _string_tensor(pad_histories(histories)), "k": _int32_scalar(_check_k(k))}
        if not _given(context):
            return self._recommendations(self.predict(inputs))
        inputs.update(context_inputs(histories, **context))
        return self._recommendations(self.predict(inputs, "recommend_in_context"))

    def recommend_from_text(self, texts: Sequence[str], k: int = 10) -> Recommendations:
        """Top-k items for free-text queries (signature `recommend_from_text`)."""
        inputs = {"text": _string_tensor(_check_texts(texts, "texts")), "k": _int32_scalar(_check_k(k))}
        return self._recommendations(self.predict(inputs, "recommend_from_text"))

    def score(self, histories: Sequence[Sequence[str]], candidates: Sequence[Sequence[str]], **context) -> Scores:
        """Scores candidate items per history (signature `score`, or
        `score_in_context` when any context argument is given).

        Args:
            histories: one list of item ids per query (ragged is fine).
            candidates: one list of candidate ids per query, all the same length.
            **context: optional `ratings`, `timestamps`, `events`, `now`,
                `user_ids` (see `context_inputs`).

        Returns:
            `Scores` (float32 [B, M], version).
        """
        candidates = [_check_texts(row, f"candidates[{i}]") for i, row in enumerate(candidates)]
        padded = pad_histories(histories)
        if len(candidates) != len(padded):
            raise ValueError(
                f"{len(candidates)} candidate rows for {len(histories)} histories; expected one per history"
            )
        for i, row in enumerate(candidates):
            if len(row) != len(candidates[0]):
                raise ValueError(f"candidates[{i}] has {len(row)} ids; expected {len(candidates[0])} like row 0")
        inputs = {"history": _string_tensor(padded), "candidates": _string_tensor(candidates)}
        signature = "score"
        if _given(context):
            inputs.update(context_inputs(histories, **context))
            signature = "score_in_context"
        prediction = self.predict(inputs, signature)
        return Scores(prediction.outputs["scores"], prediction.version)

    def embed_items(self, texts: Sequence[str]) -> Embeddings:
        """Embeds item texts (signature `embed_items`): `Embeddings` (float32 [B, d], version)."""
        prediction = self.predict({"text": _string_tensor(_check_texts(texts, "texts"))}, "embed_items")
        return Embeddings(prediction.outputs["embeddings"], prediction.version)

    def status(self) -> list:
        """`VersionStatus` of every version the server knows of this model, newest first."""
        request = get_model_status_pb2.GetModelStatusRequest()
        self._model_spec(request.model_spec)
        response = self._call(self._models.GetModelStatus, request)
        return [
            VersionStatus(s.version, _STATE_NAMES(s.state), s.status.error_code, s.status.error_message)
            for s in response.model_version_status
        ]

    def wait_until_available(self, timeout: float = 300.0, poll_seconds: float = 0.5, process=None) -> int:
        """Blocks until a version of the model is AVAILABLE; returns that version.

        Uses only `GetModelStatus`, so it works against TF Serving as well as
        the embedded server (while the server starts, UNAVAILABLE and
        NOT_FOUND are expected and waited through).

        Args:
            timeout: seconds to wait at most; then raises `TimeoutError`.
            poll_seconds: pause between two status calls.
            process: optional `subprocess.Popen` of the server: if it exits,
                raises `RuntimeError` at once instead of waiting on.
        """
        deadline = time.monotonic() + timeout
        while True:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"the model server exited with status {process.returncode} before serving")
            try:
                available = [s.version for s in self.status() if s.state == "AVAILABLE"]
                if available:
                    return max(available)
            except ServingError as error:
                if error.code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND):
                    raise
            if time.monotonic() > deadline:
                raise TimeoutError(f"model {self.model_name!r} at {self.target} not AVAILABLE after {timeout} s")
            time.sleep(poll_seconds)

    def metadata(self) -> ModelMetadata:
        """Signatures (inputs/outputs with dtype and shape) of the version this client targets."""
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._model_spec(request.model_spec)
        response = self._call(self._prediction.GetModelMetadata, request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)

        def info(tensor_info):
            shape = tensor_info.tensor_shape
            dims = None if shape.unknown_rank else tuple(d.size if d.size >= 0 else None for d in shape.dim)
            return TensorInfo(tf.dtypes.as_dtype(tensor_info.dtype).name, dims)

        signatures = {
            name: {
                "inputs": {k: info(v) for k, v in sig.inputs.items()},
                "outputs": {k: info(v) for k, v in sig.outputs.items()},
            }
            for name, sig in signature_map.signature_def.items()
            if not name.startswith("__")  # e.g. __saved_model_init_op
        }
        return ModelMetadata(response.model_spec.version.value, signatures)

    def batching(self, max_batch_size: int = 32, max_delay_ms: float = 2.0, max_in_flight: int = 2) -> "BatchingClient":
        """A `BatchingClient` over this client (see its docstring)."""
        return BatchingClient(self, max_batch_size, max_delay_ms, max_in_flight)


_Pending = collections.namedtuple("_Pending", "rows k future enqueued")


class BatchingClient:
    """Merges concurrent small `recommend` calls into one Predict.

    Calls with the same `k` that arrive within `max_delay_ms` of the oldest
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

    def __init__(self, client: RecommenderClient, max_batch_size=32, max_delay_ms=2.0, max_in_flight=2):
        if max_batch_size < 1 or max_delay_ms < 0 or max_in_flight < 1:
            raise ValueError(
                f"max_batch_size={max_batch_size}, max_delay_ms={max_delay_ms}, max_in_flight={max_in_flight}; "
                "expected >= 1, >= 0, >= 1"
            )
        self.client = client
        self.max_batch_size = max_batch_size
        self.max_delay = max_delay_ms / 1000.0
        self.batches_sent = 0
        self._queue = collections.deque()
        self._cond = threading.Condition()
        self._slots = threading.Semaphore(max_in_flight)
        self._senders = futures.ThreadPoolExecutor(max_in_flight, thread_name_prefix="batch-predict")
        self._closed = False
        self._thread = threading.Thread(target=self._dispatch, name="batching-client", daemon=True)
        self._thread.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        """Sends what is queued, then stops the background thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()
        self._senders.shutdown(wait=True)

    def recommend(self, histories: Sequence[Sequence[str]], k: int = 10) -> Recommendations:
        """Same as `RecommenderClient.recommend`, possibly answered by a merged Predict."""
        rows, k = pad_histories(histories), _check_k(k)
        future = futures.Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("BatchingClient is closed")
            self._queue.append(_Pending(rows, k, future, time.monotonic()))
            self._cond.notify_all()
        return future.result()

    def _take_batch(self):
        """Waits for a batch to form; returns its calls (empty list when closed and drained)."""
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if not self._queue:
                return []
            first = self._queue[0]
            deadline = first.enqueued + self.max_delay

            def ready_rows():
                return sum(len(p.rows) for p in self._queue if p.k == first.k)

            while not self._closed and ready_rows() < self.max_batch_size and time.monotonic() < deadline:
                self._cond.wait(deadline - time.monotonic())
            batch, rows, keep = [], 0, collections.deque()
            for pending in self._queue:
                fits = pending.k == first.k and (not batch or rows + len(pending.rows) <= self.max_batch_size)
                if fits:
                    batch.append(pending)
                    rows += len(pending.rows)
                else:
                    keep.append(pending)
            self._queue = keep
            return batch

    def _dispatch(self):
        while True:
            self._slots.acquire()
            batch = self._take_batch()
            if not batch:
                self._slots.release()
                return
            self.batches_sent += 1
            self._senders.submit(self._send, batch)

    def _send(self, batch):
        try:
            self._answer(batch)
        finally:
            self._slots.release()

    def _answer(self, batch):
        width = max(len(p.rows[0]) for p in batch)
        rows = [[""] * (width - len(r)) + r for p in batch for r in p.rows]
        try:
            recs = self.client.recommend(rows, batch[0].k)
        except ServingError as e:
            if e.code == grpc.StatusCode.INVALID_ARGUMENT and len(batch) > 1:
                for pending in batch:
                    self._answer([pending])
                return
            for pending in batch:
                pending.future.set_exception(e)
            return
        except Exception as e:  # noqa: BLE001 - hand any failure to the callers waiting on it
            for pending in batch:
                pending.future.set_exception(e)
            return
        start = 0
        for pending in batch:
            pending.future.set_result(recs.rows(start, start + len(pending.rows)))
            start += len(pending.rows)
