"""`RatingHead`: predicted rating or click logit of a candidate given a history.

For every position i of a history window the head scores the item the user
interacts with next, from: the behaviour tower's causal summary of behaviours
0..i, the candidate's item vector, a target attention over behaviours 0..i
(the candidate is the query; each behaviour contributes its item vector plus
an embedding of the rating it got, so how the user rated similar items is
read directly), the running mean of the user's ratings, an optional stack of
`keras_rs.layers.FeatureCross` (DCN) layers, an MLP, and item (and optional
user) biases.

Example:

>>> head = RatingHead(num_rows=6, embedding_dim=16)
>>> out = head({"context": c, "candidates": t, "history_vectors": h,
...             "history_ids": ids, "history_ratings": r})  # [B, N]
"""

import keras
import keras_rs
import tensorflow as tf

from tfrec.models.behaviour_tower import RATING_BUCKETS, causal_mask


@keras.saving.register_keras_serializable(package="tfrec")
class RatingHead(keras.layers.Layer):
    """Scores (history prefix, next item) pairs at every position.

    Args:
        num_rows: catalogue size including the padding row (for item biases).
        embedding_dim: size of the item and context vectors.
        num_users: user vocabulary size for user biases (0 = none).
        dcn_layers: number of `FeatureCross` layers before the MLP.
        dropout: dropout inside the MLP.
        offset: initial value of the global bias (e.g. the mean rating).
        num_heads: heads of the target attention.
        **kwargs: base layer arguments.

    Call args:
        inputs: dict with `context` `[B, N, D]` (behaviour tower output),
            `candidates` `[B, N, D]` (vector of the item scored at each
            position), `candidate_ids` int32 `[B, N]`, `history_vectors`
            `[B, N, D]`, `history_ids` int32 `[B, N]`, `history_ratings` float
            `[B, N]`, and `user_index` int32 `[B]` when `num_users` > 0.
        training: dropout switch.

    Returns:
        float32 `[B, N]` raw scores (a rating, or a logit for clicks).
    """

    def __init__(self, num_rows, embedding_dim=64, num_users=0, dcn_layers=0, dropout=0.2,
                 offset=0.0, num_heads=2, **kwargs):
        super().__init__(**kwargs)
        self.num_rows = num_rows
        self.embedding_dim = embedding_dim
        self.num_users = num_users
        self.dcn_layers = dcn_layers
        self.dropout = dropout
        self.offset = offset
        self.num_heads = num_heads
        self.rating_embedding = keras.layers.Embedding(RATING_BUCKETS, embedding_dim, name="rating")
        self.target_attention = keras.layers.MultiHeadAttention(
            num_heads=num_heads, key_dim=embedding_dim // num_heads, name="target_attention")
        self.crosses = [keras_rs.layers.FeatureCross(name=f"cross_{i}") for i in range(dcn_layers)]
        self.hidden = [keras.layers.Dense(embedding_dim * 2, activation="relu", name="hidden_0"),
                       keras.layers.Dense(embedding_dim, activation="relu", name="hidden_1")]
        self.hidden_dropout = keras.layers.Dropout(dropout)
        self.output_dense = keras.layers.Dense(1, name="score")
        zeros = keras.initializers.Zeros()
        self.item_bias = keras.layers.Embedding(num_rows, 1, embeddings_initializer=zeros, name="item_bias")
        if num_users:
            self.user_bias = keras.layers.Embedding(num_users + 1, 1, embeddings_initializer=zeros,
                                                    name="user_bias")

    def build(self, input_shape=None):
        dim = self.embedding_dim
        self.rating_embedding.build((None, None))
        self.target_attention.build((None, None, dim), (None, None, dim))
        features = 5 * dim + 2
        for cross in self.crosses:
            cross.build((None, features))
        self.hidden[0].build((None, features))
        self.hidden[1].build((None, dim * 2))
        self.output_dense.build((None, dim))
        self.output_dense.bias.assign([self.offset])
        self.item_bias.build((None,))
        if self.num_users:
            self.user_bias.build((None,))
        self.built = True

    def call(self, inputs, training=False):
        context = inputs["context"]
        candidates = inputs["candidates"]
        ids = inputs["history_ids"]
        ratings = inputs["history_ratings"]
        valid = ids > 0
        rated = tf.cast(tf.logical_and(valid, ratings > 0), context.dtype)
        buckets = tf.cast(tf.clip_by_value(tf.round(ratings), 0, RATING_BUCKETS - 1), tf.int32)
        values = inputs["history_vectors"] + self.rating_embedding(buckets)
        attended = self.target_attention(candidates, values, attention_mask=causal_mask(valid),
                                         training=training)
        count = tf.cumsum(rated, axis=1)
        mean_rating = tf.math.divide_no_nan(tf.cumsum(ratings * rated, axis=1), count)
        x = tf.concat([context, candidates, context * candidates, attended, candidates * attended,
                       mean_rating[..., None], tf.math.log1p(count)[..., None]], axis=-1)
        crossed = x
        for cross in self.crosses:
            crossed = cross(x, crossed)
        h = crossed
        for dense in self.hidden:
            h = self.hidden_dropout(dense(h), training=training)
        score = self.output_dense(h)[..., 0] + self.item_bias(inputs["candidate_ids"])[..., 0]
        if self.num_users:
            score += self.user_bias(inputs["user_index"])[:, None, 0]
        return score

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_rows": self.num_rows,
            "embedding_dim": self.embedding_dim,
            "num_users": self.num_users,
            "dcn_layers": self.dcn_layers,
            "dropout": self.dropout,
            "offset": self.offset,
            "num_heads": self.num_heads,
        })
        return config
