"""Tiny real SavedModels in TF Serving layout for the serving tests and benchmark.

`TinyRecommender` follows the serving contract of `tfrec.export`: a catalogue
embedding table looked up from string item ids through a StaticHashTable,
signatures `serving_default` (history [B, N] tf.string + k int32 [B] ->
item_ids, scores [B, max k], a row's columns past its k "" and -inf), `recommend_from_text`, `embed_items` and `score`. Unknown ids
and k out of range fail inside the graph with InvalidArgumentError naming them.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import grpc
import numpy as np
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

CATALOGUE = [f"item{i}" for i in range(1, 41)]


class TinyRecommender(tf.Module):
    """Mean-of-history-embeddings recommender over a small string catalogue."""

    def __init__(self, item_ids, dim=8, seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.num_items = len(item_ids)
        self.item_ids = tf.constant([""] + list(item_ids))
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant([""] + list(item_ids)), tf.range(self.num_items + 1, dtype=tf.int32)
            ),
            default_value=-1,
        )
        self.embeddings = tf.Variable(rng.normal(size=(self.num_items + 1, dim)).astype("float32"))

    def _indices(self, ids):
        idx = self.table.lookup(ids)
        unknown = tf.boolean_mask(ids, idx < 0)
        with tf.control_dependencies(
            [tf.debugging.Assert(tf.size(unknown) == 0, ["unknown item ids:", unknown], summarize=5)]
        ):
            return tf.identity(idx)

    def _text_embeddings(self, text):
        return tf.gather(self.embeddings, tf.strings.to_hash_bucket_fast(text, self.num_items) + 1)

    def _top_k(self, query, exclude, k):
        checks = [
            tf.debugging.assert_less_equal(k, self.num_items, message="k is larger than the catalogue"),
            tf.debugging.assert_positive(k, message="k must be positive"),
            tf.debugging.assert_equal(tf.size(k), tf.shape(query)[0], message="k must hold one value per row"),
        ]
        with tf.control_dependencies(checks):
            k = tf.identity(k)
        scores = tf.matmul(query, self.embeddings, transpose_b=True)
        banned = tf.reduce_max(tf.one_hot(exclude, self.num_items + 1), axis=1)
        banned = tf.maximum(banned, tf.one_hot(tf.zeros_like(exclude[:, 0]), self.num_items + 1))
        scores = tf.where(banned > 0, tf.fill(tf.shape(scores), -1e9), scores)
        top = tf.math.top_k(scores, tf.reduce_max(k))
        wanted = tf.range(tf.shape(top.values)[1])[None, :] < k[:, None]
        return {"item_ids": tf.where(wanted, tf.gather(self.item_ids, top.indices), ""),
                "scores": tf.where(wanted, top.values, float("-inf"))}

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None], tf.string, name="history"),
            tf.TensorSpec([None], tf.int32, name="k"),
        ]
    )
    def recommend(self, history, k):
        idx = self._indices(history)
        mask = tf.cast(idx > 0, tf.float32)[:, :, None]
        query = tf.reduce_sum(tf.gather(self.embeddings, idx) * mask, 1) / tf.maximum(
            tf.reduce_sum(mask, 1), 1.0
        )
        return self._top_k(query, tf.concat([idx, tf.zeros_like(idx[:, :1])], 1), k)

    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.string, name="text"), tf.TensorSpec([None], tf.int32, name="k")]
    )
    def recommend_from_text(self, text, k):
        query = self._text_embeddings(text)
        return self._top_k(query, tf.zeros_like(tf.shape(text))[:, None], k)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def embed_items(self, text):
        return {"embeddings": self._text_embeddings(text)}

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None], tf.string, name="history"),
            tf.TensorSpec([None, None], tf.string, name="candidates"),
        ]
    )
    def score(self, history, candidates):
        idx = self._indices(history)
        query = tf.reduce_mean(tf.gather(self.embeddings, idx), 1)
        cand = tf.gather(self.embeddings, self._indices(candidates))
        return {"scores": tf.einsum("bd,bmd->bm", query, cand)}


def warmup_records(model_name, history=("item1", "item2")):
    """Two PredictionLog records (recommend on `history`, embed_items) as TF Serving replays them."""
    records = []
    for signature, inputs in (
        ("serving_default", {"history": [list(history)], "k": 3}),
        ("embed_items", {"text": ["a warm-up text"]}),
    ):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.signature_name = signature
        for name, value in inputs.items():
            dtype = tf.int32 if name == "k" else tf.string
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value, dtype=dtype))
        log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
        records.append(log.SerializeToString())
    return records


def save_version(
    base_path, version, seed=0, model_name="tiny", warmup=True, warmup_history=("item1", "item2"), item_ids=CATALOGUE
):
    """Saves a TinyRecommender as `base_path/version/`, atomically (temp dir then rename).

    With `warmup`, writes assets.extra/tf_serving_warmup_requests (recommend on `warmup_history`).

    Returns:
        The loaded-in-process SavedModel (for comparing answers with the server).
    """
    os.makedirs(base_path, exist_ok=True)
    model = TinyRecommender(item_ids, seed=seed)
    tmp = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=base_path)
    tf.saved_model.save(
        model,
        tmp,
        signatures={
            "serving_default": model.recommend,
            "recommend_from_text": model.recommend_from_text,
            "embed_items": model.embed_items,
            "score": model.score,
        },
    )
    if warmup:
        os.makedirs(os.path.join(tmp, "assets.extra"))
        with tf.io.TFRecordWriter(os.path.join(tmp, "assets.extra", "tf_serving_warmup_requests")) as w:
            for record in warmup_records(model_name, warmup_history):
                w.write(record)
    final = os.path.join(base_path, str(version))
    os.rename(tmp, final)
    return tf.saved_model.load(final)


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`python -m tfrec.serve FLAGS` as a subprocess, logging to `log_path`."""

    def __init__(self, flags, port, log_path):
        self.port = port
        self.target = f"127.0.0.1:{port}"
        self.log_path = log_path
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow")
        self._log = open(log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tfrec.serve", "--server=embedded", f"--port={port}", *flags],
            cwd=REPO_ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def wait_serving(self, timeout=90.0):
        """Blocks until the health service reports the whole server SERVING."""
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()[-3000:]}")
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
        raise TimeoutError(f"server not SERVING after {timeout} s:\n{self.log()[-3000:]}")

    def stop(self):
        """SIGTERM, then wait; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode
