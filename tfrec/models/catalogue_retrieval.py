"""`CatalogueRetrieval`: the catalogue's item embeddings as state, and exact top-k over them.

A `keras_rs.layers.BruteForceRetrieval` whose candidates are every catalogue
index (row 0 = padding), set with `update_candidates`, that can also exclude
items per query (the history a user already met) and never returns padding.
The model keeps its item vectors here (`Recommender.refresh_catalogue`) and
the exported signatures retrieve with the same layer, so an in-process
`recommend` and the served one answer alike.

`top_k` scores the catalogue in chunks of `chunk_rows` rows and keeps, per
chunk, only the `k + exclusions + 1` best: the excluded items and padding are
then dropped from that short list, never from a `[B, num_rows]` matrix. The
answers are exactly those of scoring every row and masking (ties go to the
lower index in both).

The stored vectors can be `float32`, `bfloat16` or `int8` (one float32 scale
per row, the row's largest magnitude / 127): a smaller catalogue, scored by
casting each chunk back to float32, with plain TensorFlow ops only.

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

CATALOGUE_DTYPES = ("float32", "bfloat16", "int8")
CHUNK_ROWS = 1 << 16
_INT8_MAX = 127.0


def _check_dtype(dtype):
    if dtype not in CATALOGUE_DTYPES:
        raise ValueError(f"catalogue_dtype={dtype!r}: expected one of {CATALOGUE_DTYPES}")


def _quantized(embeddings, dtype):
    """(stored rows, per-row float32 scales or None) of float `[num_rows, D]` `embeddings` in `dtype`.

    `int8` rows are `round(row / scale)` with `scale = max |row| / 127` (1 for
    an all-zero row); `bfloat16` rows are cast; `float32` rows are unchanged.
    """
    embeddings = tf.convert_to_tensor(embeddings, tf.float32)
    if dtype == "float32":
        return embeddings, None
    if dtype != "int8":
        return tf.cast(embeddings, dtype), None
    largest = tf.reduce_max(tf.abs(embeddings), axis=1)
    scales = tf.where(largest > 0, largest / _INT8_MAX, tf.ones_like(largest))
    return tf.cast(tf.round(embeddings / scales[:, None]), tf.int8), scales


@keras.saving.register_keras_serializable(package="tfrec")
class CatalogueRetrieval(keras_rs.layers.BruteForceRetrieval):
    """Brute-force retrieval over catalogue indices with per-query exclusions.

    Args:
        candidate_embeddings: optional float `[num_rows, D]`, row i = catalogue
            index i (row 0 = padding, never returned).
        k: default number of items `call` returns (at most the number of rows
            of `candidate_embeddings`: `top_k` takes its own `k`).
        catalogue_dtype: how the rows are stored, one of `CATALOGUE_DTYPES`.
        chunk_rows: rows scored at a time by `top_k`.
        **kwargs: base layer arguments.
    """

    def __init__(self, candidate_embeddings=None, k=10, catalogue_dtype="float32", chunk_rows=CHUNK_ROWS,
                 **kwargs):
        _check_dtype(catalogue_dtype)
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
        if candidate_embeddings is not None:
            # The base layer refuses fewer candidates than `k`: a catalogue of
            # fewer than 10 items would fail to build.
            k = min(k, int(candidate_embeddings.shape[0]))
        super().__init__(k=k, **kwargs)
        self.catalogue_dtype = catalogue_dtype
        self.chunk_rows = chunk_rows
        self.candidate_scales = None
        if candidate_embeddings is not None:
            self.update_candidates(candidate_embeddings)

    def update_candidates(self, candidate_embeddings, candidate_ids=None):
        """Stores float `[num_rows, D]` `candidate_embeddings` in `catalogue_dtype` (ids only for float32)."""
        if self.catalogue_dtype != "float32" and candidate_ids is not None:
            raise ValueError(f"a {self.catalogue_dtype} catalogue takes no candidate_ids: its ids are the row indices")
        rows, scales = _quantized(candidate_embeddings, self.catalogue_dtype)
        super().update_candidates(rows, candidate_ids)
        if scales is None:
            return
        if self.candidate_scales is None:
            self.candidate_scales = keras.Variable(scales, trainable=False, name="candidate_scales")
        else:
            self.candidate_scales.assign(scales)

    def gather(self, indices):
        """The stored embeddings of int catalogue `indices`, `indices.shape + [D]` (float32)."""
        indices = tf.cast(indices, tf.int32)
        rows = tf.cast(tf.gather(self.candidate_embeddings, indices), tf.float32)
        if self.candidate_scales is None:
            return rows
        return rows * tf.gather(self.candidate_scales, indices)[..., None]

    def _chunk_scores(self, queries, start, size):
        """`[B, size]` scores of rows `start .. start + size - 1`."""
        # A slice of whole rows shares the variable's buffer; transpose_b spares a transposed copy.
        stored = tf.convert_to_tensor(self.candidate_embeddings)[start:start + size]
        scores = tf.matmul(queries, tf.cast(stored, queries.dtype), transpose_b=True)
        if self.candidate_scales is not None:
            scores = scores * tf.convert_to_tensor(self.candidate_scales)[start:start + size][None, :]
        return scores

    def scores(self, queries):
        """Scores of every catalogue index, `[B, num_rows]` (padding included)."""
        return self._chunk_scores(tf.cast(queries, tf.float32), 0, int(self.candidate_embeddings.shape[0]))

    def top_k(self, queries, k, exclude=None, bonus=None):
        """The `k` best catalogue items of each query.

        Args:
            queries: float `[B, D]`.
            k: int or int32 scalar tensor.
            exclude: optional int `[B, N]` catalogue indices each query must
                not get (0 entries ignored); their score and padding's are -inf.
            bonus: optional float `[B, R]` added to the scores of rows 0..R-1
                (R at most the number of rows; later rows get nothing), such as
                `TransitionPrior.catalogue_scores`.

        Returns:
            (scores float32 `[B, k]`, indices int32 `[B, k]`), best first; a
            score of -inf means fewer than `k` items were left.
        """
        queries = tf.cast(queries, tf.float32)
        # Padding (index 0) is excluded from every query.
        banned = tf.zeros([tf.shape(queries)[0], 1], tf.int32)
        if exclude is not None:
            banned = tf.concat([banned, tf.cast(exclude, tf.int32)], axis=1)
        # At most `width` - k of a chunk's best are banned: the k best allowed ones are among them.
        width = tf.cast(k, tf.int32) + tf.shape(banned)[1]
        num_rows = int(self.candidate_embeddings.shape[0])
        if bonus is not None:
            bonus = tf.cast(bonus, tf.float32)
            bonus = tf.pad(bonus, [[0, 0], [0, num_rows - tf.shape(bonus)[1]]])
        best_scores, best_indices = [], []
        for start in range(0, num_rows, self.chunk_rows):
            size = min(self.chunk_rows, num_rows - start)
            chunk = self._chunk_scores(queries, start, size)
            if bonus is not None:
                chunk += bonus[:, start:start + size]
            scores, indices = tf.math.top_k(chunk, k=tf.minimum(width, size))
            best_scores.append(scores)
            best_indices.append(indices + start)
        # Chunks in row order: among equal scores the lower index stays first, as in one top_k.
        scores, indices = tf.concat(best_scores, axis=1), tf.concat(best_indices, axis=1)
        # Membership by binary search in the sorted banned rows: memory linear in the history's length.
        banned = tf.sort(banned, axis=1)
        at = tf.minimum(tf.searchsorted(banned, indices), tf.shape(banned)[1] - 1)
        hit = tf.equal(tf.gather(banned, at, batch_dims=1), indices)
        scores = tf.where(hit, tf.constant(float("-inf"), scores.dtype), scores)
        scores, positions = tf.math.top_k(scores, k=k)
        return scores, tf.gather(indices, positions, batch_dims=1)

    def get_config(self):
        # keras-rs' `Retrieval.get_config` stores its `compute_score` method under `return_scores`.
        return dict(super().get_config(), return_scores=self.return_scores, catalogue_dtype=self.catalogue_dtype,
                    chunk_rows=self.chunk_rows)
