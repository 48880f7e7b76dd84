"""Behaviour towers: a user's recent behaviours -> one query vector per position.

`BehaviourTower` reads the history as a sequence of item embeddings (from the
`ItemTower`, so input and output item representations are shared) plus, per
behaviour, its rating, event type, recency position and time gaps, and pools
it causally: output position i only sees behaviours 0..i, so one history
window trains a next-item prediction at every position (SASRec-style). The
pooling is a small pre-norm causal transformer, a single causal attention
layer, or a causal running mean.

`BehaviourTextTower` verbalises the most recent behaviours
("rated 5: Star Wars (1977); rated 2: ...") and encodes that text with BERT.

Example:

>>> tower = BehaviourTower(embedding_dim=16, encoder="transformer")
>>> hidden = tower({"item_vectors": tf.random.normal([2, 5, 16]),
...                 "item_ids": tf.constant([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5]])})
>>> hidden.shape
TensorShape([2, 5, 16])
"""

import keras
import keras_hub
import tensorflow as tf

from tfrec.text_encoder import TextEncoder

MAX_POSITIONS = 512
GAP_BUCKETS = 34  # 0 = unknown, then 1 + floor(log2(1 + seconds)) up to 2^32 s
RATING_BUCKETS = 11  # ratings rounded and clipped to 0..10; 0 = absent


def gap_bucket(later, earlier):
    """Log2 buckets of `later - earlier` seconds; 0 where either time is 0 (unknown)."""
    known = tf.logical_and(later > 0, earlier > 0)
    seconds = tf.cast(tf.maximum(later - earlier, 0), tf.float32)
    bucket = 1 + tf.cast(tf.math.floor(tf.math.log(1.0 + seconds) / tf.math.log(2.0)), tf.int32)
    return tf.where(known, tf.minimum(bucket, GAP_BUCKETS - 1), 0)


def causal_mask(valid):
    """int32 `[B, N, N]` mask: query i may attend key j iff j <= i and j is valid."""
    length = tf.shape(valid)[1]
    lower = tf.linalg.band_part(tf.ones([length, length], tf.int32), -1, 0)
    return lower[None, :, :] * tf.cast(valid, tf.int32)[:, None, :]


@keras.saving.register_keras_serializable(package="tfrec")
class BehaviourTower(keras.layers.Layer):
    """Causal sequence encoder over behaviour embeddings.

    Args:
        embedding_dim: size of item vectors and outputs.
        encoder: "transformer", "attention" or "mean".
        num_layers: transformer blocks (encoder="transformer").
        num_heads: attention heads.
        dropout: dropout on the inputs and inside attention blocks.
        num_events: event vocabulary size (0 or 1 = no event feature).
        use_ratings: add a rating embedding per behaviour.
        use_time_gaps: add embeddings of the log-bucketed gap to the previous
            behaviour and to the next behaviour (the query time).
        **kwargs: base layer arguments.

    Call args:
        inputs: dict with `item_vectors` float `[B, N, D]`, `item_ids` int32
            `[B, N]` (0 = padding), and as enabled `ratings` float `[B, N]`,
            `events` int32 `[B, N]`, `timestamps` int64 `[B, N]`,
            `next_timestamps` int64 `[B, N]` (time of the behaviour each
            position predicts).
        training: dropout switch.

    Returns:
        float32 `[B, N, D]`: position i summarises behaviours 0..i.
    """

    def __init__(self, embedding_dim=64, encoder="transformer", num_layers=2, num_heads=2,
                 dropout=0.2, num_events=0, use_ratings=False, use_time_gaps=False, **kwargs):
        super().__init__(**kwargs)
        self.embedding_dim = embedding_dim
        self.encoder = encoder
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.dropout = dropout
        self.num_events = num_events
        self.use_ratings = use_ratings
        self.use_time_gaps = use_time_gaps
        self.position_embedding = keras.layers.Embedding(MAX_POSITIONS, embedding_dim, name="position")
        if use_ratings:
            self.rating_embedding = keras.layers.Embedding(RATING_BUCKETS, embedding_dim, name="rating")
        if num_events > 1:
            self.event_embedding = keras.layers.Embedding(num_events, embedding_dim, name="event")
        if use_time_gaps:
            self.previous_gap_embedding = keras.layers.Embedding(GAP_BUCKETS, embedding_dim, name="previous_gap")
            self.next_gap_embedding = keras.layers.Embedding(GAP_BUCKETS, embedding_dim, name="next_gap")
        self.input_norm = keras.layers.LayerNormalization(name="input_norm")
        self.input_dropout = keras.layers.Dropout(dropout)
        self.blocks = []
        if encoder == "transformer":
            self.blocks = [
                keras_hub.layers.TransformerEncoder(
                    intermediate_dim=embedding_dim * 2, num_heads=num_heads, dropout=dropout,
                    activation="gelu", normalize_first=True, name=f"block_{i}")
                for i in range(num_layers)
            ]
        elif encoder == "attention":
            self.attention = keras.layers.MultiHeadAttention(
                num_heads=num_heads, key_dim=embedding_dim // num_heads, dropout=dropout, name="attention")
        elif encoder != "mean":
            raise ValueError(f"encoder={encoder!r}: expected 'transformer', 'attention' or 'mean'")
        self.output_norm = keras.layers.LayerNormalization(name="output_norm")

    def build(self, input_shape=None):
        dim = self.embedding_dim
        for layer in (self.position_embedding, getattr(self, "rating_embedding", None),
                      getattr(self, "event_embedding", None),
                      getattr(self, "previous_gap_embedding", None),
                      getattr(self, "next_gap_embedding", None)):
            if layer is not None:
                layer.build((None, None))
        self.input_norm.build((None, None, dim))
        for block in self.blocks:
            block.build((None, None, dim))
        if self.encoder == "attention":
            self.attention.build((None, None, dim), (None, None, dim))
        self.output_norm.build((None, None, dim))
        self.built = True

    def call(self, inputs, training=False):
        ids = inputs["item_ids"]
        valid = ids > 0
        length = tf.shape(ids)[1]
        # Position 0 is the most recent behaviour, so left padding does not shift positions.
        recency = tf.minimum(tf.range(length - 1, -1, -1), MAX_POSITIONS - 1)
        x = inputs["item_vectors"] + self.position_embedding(recency)[None]
        if self.use_ratings:
            ratings = tf.clip_by_value(tf.round(inputs["ratings"]), 0, RATING_BUCKETS - 1)
            x += self.rating_embedding(tf.cast(ratings, tf.int32))
        if self.num_events > 1:
            x += self.event_embedding(tf.clip_by_value(inputs["events"], 0, self.num_events - 1))
        if self.use_time_gaps:
            times = inputs["timestamps"]
            previous = tf.concat([tf.zeros_like(times[:, :1]), times[:, :-1]], axis=1)
            x += self.previous_gap_embedding(gap_bucket(times, previous))
            x += self.next_gap_embedding(gap_bucket(inputs["next_timestamps"], times))
        x = self.input_dropout(self.input_norm(x), training=training)
        x *= tf.cast(valid, x.dtype)[:, :, None]
        mask = causal_mask(valid)
        if self.encoder == "transformer":
            for block in self.blocks:
                x = block(x, attention_mask=mask, training=training)
        elif self.encoder == "attention":
            x = x + self.attention(x, x, attention_mask=mask, training=training)
        else:
            weights = tf.cast(mask, x.dtype)
            x = tf.matmul(weights, x) / tf.maximum(tf.reduce_sum(weights, -1, keepdims=True), 1.0)
        return self.output_norm(x)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape["item_vectors"])

    def get_config(self):
        config = super().get_config()
        config.update({
            "embedding_dim": self.embedding_dim,
            "encoder": self.encoder,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "dropout": self.dropout,
            "num_events": self.num_events,
            "use_ratings": self.use_ratings,
            "use_time_gaps": self.use_time_gaps,
        })
        return config


def verbalise_history(titles, item_ids, ratings, max_items):
    """Writes the most recent behaviours as text, most recent first.

    Args:
        titles: `tf.string` `[num_rows]` item titles by catalogue index.
        item_ids: int32 `[B, N]` history, most recent last, 0 = padding.
        ratings: float `[B, N]` ratings (0 = none) or None.
        max_items: how many of the most recent behaviours to write.

    Returns:
        `tf.string` `[B]`, e.g. "rated 5: Star Wars (1977); rated 2: Heat (1995)"
        (or "watched: ..." where there is no rating).

    Example:

    >>> verbalise_history(tf.constant(["", "Heat", "Up"]), tf.constant([[1, 2]]),
    ...                   tf.constant([[2.0, 5.0]]), 10).numpy()
    array([b'rated 5: Up; rated 2: Heat'], dtype=object)
    """
    ids = tf.reverse(item_ids[:, -max_items:], axis=[1])
    names = tf.gather(titles, ids)
    if ratings is None:
        prefixes = tf.fill(tf.shape(names), "watched: ")
    else:
        stars = tf.reverse(ratings[:, -max_items:], axis=[1])
        rated = tf.strings.join(["rated ", tf.strings.as_string(tf.cast(tf.round(stars), tf.int32)), ": "])
        prefixes = tf.where(stars > 0, rated, "watched: ")
    phrases = tf.strings.join([prefixes, names])
    phrases = tf.where(ids > 0, phrases, "")
    joined = tf.strings.reduce_join(tf.where(ids > 0, phrases + "; ", ""), axis=1)
    return tf.strings.regex_replace(joined, "; $", "")


@keras.saving.register_keras_serializable(package="tfrec")
class BehaviourTextTower(keras.layers.Layer):
    """Encodes the verbalised recent history with BERT into a query vector.

    Args:
        titles: list of str, item title per catalogue index (index 0 = ""),
            or None for titles given by `set_titles` before the tower is
            called (the catalogue, saved by the model owning the tower).
        embedding_dim: output size.
        encoder: dict of `TextEncoder` arguments.
        max_items: behaviours verbalised.
        **kwargs: base layer arguments.

    Call args:
        inputs: dict with `item_ids` int32 `[B, N]` and optional `ratings`.

    Returns:
        float32 `[B, embedding_dim]` (not normalised).
    """

    def __init__(self, titles=None, embedding_dim=64, encoder=None, max_items=10, **kwargs):
        super().__init__(**kwargs)
        self.embedding_dim = embedding_dim
        self.encoder_args = dict(encoder or {})
        self.max_items = max_items
        self.text_encoder = TextEncoder(**self.encoder_args, name="history_text_encoder")
        self.projection = keras.layers.Dense(embedding_dim, name="history_text_projection")
        self.titles = None
        if titles is not None:
            self.set_titles(titles)

    def set_titles(self, titles) -> None:
        """Sets the item titles the histories are written with, one per catalogue index."""
        self.titles = list(titles)
        self._titles = tf.constant(self.titles)

    def build(self, input_shape=None):
        self.projection.build((None, self.text_encoder.hidden_dim))
        self.built = True

    def texts(self, inputs):
        """The verbalised histories, `tf.string` `[B]`."""
        return verbalise_history(self._titles, inputs["item_ids"], inputs.get("ratings"), self.max_items)

    def encode_texts(self, texts, training=False):
        """Query vectors for already verbalised histories, `[B, embedding_dim]`."""
        return self.projection(self.text_encoder(texts, training=training))

    def call(self, inputs, training=False):
        return self.encode_texts(self.texts(inputs), training=training)

    def get_config(self):
        config = super().get_config()
        config.update({
            "embedding_dim": self.embedding_dim,
            "encoder": self.encoder_args,
            "max_items": self.max_items,
        })
        return config
