"""`RecommenderClient`: calls one served model over TF Serving's gRPC API.

It wraps `PredictionService`/`ModelService` calls on one reused gRPC channel
and returns plain NumPy values (`tfrec.client.results`). It speaks only TF
Serving's API, so the same code runs against `tensorflow_model_server` or the
embedded `tfrec.serve` server. Every call has a deadline (`timeout` seconds per
attempt) and is retried with exponential backoff on UNAVAILABLE and
DEADLINE_EXCEEDED (all calls here are read-only, hence safe to repeat); any
other failure raises `ServingError` with the gRPC code and the server's message.
Every answer is checked against its request before it is read
(`tfrec.client.answers`): a missing output, another dtype, a row count or
width other than the request's, a tensor declaring more values than it
carries or text that is not UTF-8 raise `ServingError` (INTERNAL) naming the
output.

`recommend` and `score` also take the history's `ratings`, `timestamps` and
`events`, the request time `now` and the `user_ids`: given any of them, the
call goes to the `*_in_context` signature, so a model trained with them sees
them at serving too (`tfrec.client.requests.context_inputs`).

Example:

>>> from tfrec.client import RecommenderClient
>>> with RecommenderClient("localhost:8500", "retrieval") as client:        # doctest: +SKIP
...     recs = client.recommend([["50", "172"], ["1"]], k=5)
...     recs.item_ids[0], recs.scores[0], recs.version
"""

import time
from typing import Optional, Sequence

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tfrec.client.answers import Expected, decode_outputs
from tfrec.client.batching_client import BatchingClient
from tfrec.client.requests import (
    check_k,
    check_texts,
    context_inputs,
    int32_vector,
    pad_histories,
    string_tensor,
    uses_context,
)
from tfrec.client.results import Embeddings, Explanation, ModelMetadata, Prediction, Recommendations, Scores
from tfrec.client.results import TensorInfo, VersionStatus
from tfrec.serving_errors import ServingError

_RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
_STATE_NAMES = get_model_status_pb2.ModelVersionStatus.State.Name


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
        auth_token: bearer token sent with every call (a server started with
            --auth_token_file wants it).
        root_certificates: PEM bytes of the certificates that sign the
            server's: the channel then uses TLS (a server started with
            --ssl_cert / --ssl_key).
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
        auth_token: Optional[str] = None,
        root_certificates: Optional[bytes] = None,
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
        self._metadata = (("authorization", f"Bearer {auth_token}"),) if auth_token else None
        options = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
            # Reconnect about as often as calls retry (gRPC's own backoff grows to 120 s).
            ("grpc.initial_reconnect_backoff_ms", max(10, int(backoff_seconds * 1000))),
            ("grpc.min_reconnect_backoff_ms", max(10, int(backoff_seconds * 1000))),
            ("grpc.max_reconnect_backoff_ms", max(10, int(max_backoff_seconds * 1000))),
        ]
        if root_certificates is not None:
            credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self._channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
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
                return method(request, timeout=self.timeout, metadata=self._metadata)
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

        Raises:
            ServingError: the server's error, or INTERNAL naming an output
                that declares more values than it carries.
        """
        return self._predict(inputs, signature_name, output_filter)

    def _predict(self, inputs, signature_name, output_filter=(), expected=None):
        """`predict`, its answer checked against `expected` (output name -> `answers.Expected`)."""
        request = predict_pb2.PredictRequest(output_filter=list(output_filter))
        self._model_spec(request.model_spec, signature_name)
        for name, value in inputs.items():
            proto = value if isinstance(value, tensor_pb2.TensorProto) else tf.make_tensor_proto(value)
            request.inputs[name].CopyFrom(proto)
        response = self._call(self._prediction.Predict, request)
        outputs = decode_outputs(response.outputs, expected, f"{self.model_name!r} signature {signature_name!r}")
        return Prediction(outputs, response.model_spec.version.value)

    def _recommend(self, inputs, signature_name, rows, k):
        """Recommendations of one Predict of `signature_name`: [rows, >= max k] ids, scores and (optional)
        titles, cut to the widest of the rows' `k` (`Recommendations.top`)."""
        expected = {"item_ids": Expected("string", (rows, None)), "scores": Expected("float32", (rows, None)),
                    "item_titles": Expected("string", (rows, None), required=False)}
        prediction = self._predict(inputs, signature_name, expected=expected)
        outputs = prediction.outputs
        what = f"malformed answer to {self.model_name!r} signature {signature_name!r}"
        ids, scores = outputs["item_ids"], outputs["scores"]
        if ids.shape != scores.shape:
            raise ServingError(grpc.StatusCode.INTERNAL, f"{what}: 'item_ids' and 'scores' have shapes "
                               f"{list(ids.shape)} and {list(scores.shape)}")
        if ids.shape[1] < max(k):  # wider is fine: a batch merged with larger-k requests
            raise ServingError(grpc.StatusCode.INTERNAL, f"{what}: {ids.shape[1]} items per row; expected at "
                               f"least {max(k)}")
        return Recommendations(outputs["item_ids"], outputs["scores"], prediction.version, outputs.get("item_titles"),
                               _skipped(prediction)).top(max(k))

    def recommend(self, histories: Sequence[Sequence[str]], k=10, **context) -> Recommendations:
        """Top-k items for each history (signature `serving_default`, or
        `recommend_in_context` when any context argument is given).

        Args:
            histories: one list of item ids per query, most recent last (ragged is fine).
            k: how many items per query: an int, or a list of one per query.
            **context: optional `ratings`, `timestamps`, `events`, `now`,
                `user_ids` (see `context_inputs`).

        Returns:
            `Recommendations` ([B, max k] item_ids and scores, a row with a
            smaller k padded with "" and -inf; version; the history item ids
            the model's catalogue did not know, skipped, in `skipped_items`).
        """
        padded, k = pad_histories(histories), check_k(k, len(histories))
        inputs = {"history": string_tensor(padded), "k": int32_vector(k)}
        if not uses_context(context):
            return self._recommend(inputs, "serving_default", len(padded), k)
        inputs.update(context_inputs(histories, **context))
        return self._recommend(inputs, "recommend_in_context", len(padded), k)

    def recommend_from_text(self, texts: Sequence[str], k=10) -> Recommendations:
        """Top-k items for free-text queries (signature `recommend_from_text`; `k` as `recommend`)."""
        texts = check_texts(texts, "texts")
        k = check_k(k, len(texts))
        inputs = {"text": string_tensor(texts), "k": int32_vector(k)}
        return self._recommend(inputs, "recommend_from_text", len(texts), k)

    def _candidate_request(self, histories, candidates, context, signature, with_influence=False):
        """One Predict of `signature` (or `<signature>_in_context` when any context is given) on
        histories and one equal-length candidate row per history; its answer holds [B, M] `scores`
        (and, `with_influence`, [B, M, N] `influence`, N the padded history width)."""
        candidates = [check_texts(row, f"candidates[{i}]") for i, row in enumerate(candidates)]
        padded = pad_histories(histories)
        if len(candidates) != len(padded):
            raise ValueError(
                f"{len(candidates)} candidate rows for {len(histories)} histories; expected one per history"
            )
        for i, row in enumerate(candidates):
            if len(row) != len(candidates[0]):
                raise ValueError(f"candidates[{i}] has {len(row)} ids; expected {len(candidates[0])} like row 0")
        inputs = {"history": string_tensor(padded), "candidates": string_tensor(candidates)}
        if uses_context(context):
            inputs.update(context_inputs(histories, **context))
            signature = f"{signature}_in_context"
        rows, width = len(padded), len(candidates[0])
        expected = {"scores": Expected("float32", (rows, width))}
        if with_influence:
            expected["influence"] = Expected("float32", (rows, width, len(padded[0])))
        return self._predict(inputs, signature, expected=expected)

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
        prediction = self._candidate_request(histories, candidates, context, "score")
        return Scores(prediction.outputs["scores"], prediction.version, _skipped(prediction))

    def explain(self, histories: Sequence[Sequence[str]], candidates: Sequence[Sequence[str]],
                **context) -> Explanation:
        """How much each behaviour moves each candidate's score (signature `explain`, or
        `explain_in_context` when any context argument is given).

        Args:
            histories: one non-empty list of item ids per query (ragged is fine).
            candidates: one list of candidate ids per query (e.g. what
                `recommend` returned), all the same length.
            **context: as `score`.

        Returns:
            `Explanation`: influence float32 [B, M, N], column j being
            `histories[b][j]` (0 past its end); scores [B, M]; version.
        """
        empty = [i for i, history in enumerate(histories) if not history] if not isinstance(histories, str) else []
        if empty:
            raise ValueError(f"histories[{empty[0]}] is empty: there is no behaviour to explain")
        prediction = self._candidate_request(histories, candidates, context, "explain", with_influence=True)
        served = prediction.outputs["influence"]
        influence = np.zeros_like(served)
        for row, history in enumerate(histories):
            influence[row, :, :len(history)] = served[row, :, served.shape[2] - len(history):]
        return Explanation(influence, prediction.outputs["scores"], prediction.version, _skipped(prediction))

    def embed_items(self, texts: Sequence[str]) -> Embeddings:
        """Embeds item texts (signature `embed_items`): `Embeddings` (float32 [B, d], version)."""
        texts = check_texts(texts, "texts")
        prediction = self._predict({"text": string_tensor(texts)}, "embed_items",
                                   expected={"embeddings": Expected("float32", (len(texts), None))})
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
        if "signature_def" not in response.metadata or not response.metadata["signature_def"].Unpack(signature_map):
            raise ServingError(grpc.StatusCode.INTERNAL, f"malformed answer to GetModelMetadata of "
                                                         f"{self.model_name!r}: no SignatureDefMap 'signature_def'")

        def info(tensor_info):
            shape = tensor_info.tensor_shape
            dims = None if shape.unknown_rank else tuple(d.size if d.size >= 0 else None for d in shape.dim)
            try:
                return TensorInfo(tf.dtypes.as_dtype(tensor_info.dtype).name, dims)
            except TypeError:
                raise ServingError(grpc.StatusCode.INTERNAL, f"malformed answer to GetModelMetadata of "
                                                             f"{self.model_name!r}: tensor {tensor_info.name!r} has "
                                                             f"unknown dtype number {tensor_info.dtype}") from None

        signatures = {
            name: {
                "inputs": {k: info(v) for k, v in sig.inputs.items()},
                "outputs": {k: info(v) for k, v in sig.outputs.items()},
            }
            for name, sig in signature_map.signature_def.items()
            if not name.startswith("__")  # e.g. __saved_model_init_op
        }
        return ModelMetadata(response.model_spec.version.value, signatures)

    def batching(self, max_batch_size: int = 32, max_delay_ms: float = 2.0, max_in_flight: int = 2) -> BatchingClient:
        """A `BatchingClient` over this client (see its docstring)."""
        return BatchingClient(self, max_batch_size, max_delay_ms, max_in_flight)



def _skipped(prediction):
    """The `skipped_items` output as one list of str per row (padding dropped); None from an export
    made before signatures reported them."""
    skipped = prediction.outputs.get("skipped_items")
    return None if skipped is None else [[v.decode() for v in row if v] for row in skipped]
