"""`CatalogueRetrieval`: the catalogue's item embeddings as state, and exact top-k over them.

A `keras_rs.layers.BruteForceRetrieval` whose candidates are every catalogue
index (row 0 = padding), set with `update_candidates`, that can also exclude
items per query (the history a user already met) and never returns padding.
The model keeps its item vectors here (`Recommender.refresh_catalogue`) and
the exported signatures retrieve with the same layer, so an in-process
`recommend` and the served one answer alike.

Example:

>>> retrieval = CatalogueRetrieval(k=2)
>>> retrieval.update_candidates(tf.constant([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.7, 0.7]]))
>>> scores, indices = retrieval.top_k(tf.constant([[1.0, 0.1]]), 2, exclude=tf.constant([[1]]))
>>> indices.numpy().tolist()
[[3, 2]]
"""

import keras
import keras_rs
import tensorflow as tf


@keras.saving.register_keras_serializable(package="tfrec")
class CatalogueRetrieval(keras_rs.layers.BruteForceRetrieval):
    """Brute-force retrieval over catalogue indices with per-query exclusions.

    Args:
        candidate_embeddings: optional float `[num_rows, D]`, row i = catalogue
            index i (row 0 = padding, never returned).
        k: default number of items `call` returns (at most the number of rows
            of `candidate_embeddings`: `top_k` takes its own `k`).
        **kwargs: base layer arguments.
    """

    def __init__(self, candidate_embeddings=None, k=10, **kwargs):
        if candidate_embeddings is not None:
            # The base layer refuses fewer candidates than `k`: a catalogue of
            # fewer than 10 items would fail to build.
            k = min(k, int(candidate_embeddings.shape[0]))
        super().__init__(candidate_embeddings=candidate_embeddings, k=k, **kwargs)

    def gather(self, indices):
        """The stored embeddings of int catalogue `indices`, `indices.shape + [D]`."""
        return tf.gather(self.candidate_embeddings, tf.cast(indices, tf.int32))

    def scores(self, queries):
        """Scores of every catalogue index, `[B, num_rows]` (padding included)."""
        return self.compute_score(queries, self.candidate_embeddings)

    def top_k(self, queries, k, exclude=None):
        """The `k` best catalogue items of each query.

        Args:
            queries: float `[B, D]`.
            k: int or int32 scalar tensor.
            exclude: optional int `[B, N]` catalogue indices each query must
                not get (0 entries ignored); their score and padding's are -inf.

        Returns:
            (scores float32 `[B, k]`, indices int32 `[B, k]`), best first; a
            score of -inf means fewer than `k` items were left.
        """
        scores = self.scores(queries)
        num_rows = tf.shape(scores)[1]
        excluded = tf.broadcast_to(tf.range(num_rows)[None, :] == 0, tf.shape(scores))
        if exclude is not None:
            exclude = tf.cast(exclude, tf.int32)
            rows = tf.repeat(tf.range(tf.shape(exclude)[0]), tf.shape(exclude)[1])
            hits = tf.scatter_nd(tf.stack([rows, tf.reshape(exclude, [-1])], axis=1),
                                 tf.ones([tf.size(exclude)], tf.int32), tf.shape(scores))
            excluded = tf.logical_or(excluded, hits > 0)
        scores = tf.where(excluded, tf.constant(float("-inf"), scores.dtype), scores)
        return tf.math.top_k(scores, k=k)
