"""The model input builder: the schema feature dict of a batch of histories.

Models read the feature dicts of `tfrec.data.build_examples`. At inference
(`Recommender.recommend`, the exported signatures) a request holds only
histories (item indices, 0 = padding anywhere) and, optionally, their
context; `history_features` turns it into the same dict, real behaviours
moved to the right as training examples have them.

Example:

>>> features = history_features(tf.constant([[0, 4, 0, 7]]))
>>> features["history_item_ids"].numpy().tolist(), features["history_length"].numpy().tolist()
([[0, 0, 4, 7]], [2])
"""

import tensorflow as tf

from tfrec.data import schema


def history_features(indices, targets=None, context=None, default_event=0):
    """Builds the schema features the models read from item indices.

    The client pads with "" anywhere; the towers expect real items most
    recent last and left-padded with 0, so real entries (and their context)
    are moved to the right keeping their order. Without `context` ratings,
    timestamps and the user are absent (0, as for padding).

    Args:
        indices: int32 [B, N] history item indices, 0 = padding.
        targets: optional int32 [B] target (candidate) item indices, default 0.
        context: optional dict of already checked tensors: `ratings` float32
            [B, N], `timestamps` int64 [B, N], `events` int32 [B, N] (event
            indices, 0 = not given), `now` int64 [B], `users` int32 [B].
        default_event: event index of real history items given no event.

    Returns:
        dict of schema feature name -> tensor with batch size B.
    """
    is_item = indices > 0
    order = tf.argsort(tf.cast(is_item, tf.int32), axis=1, stable=True)
    batch = tf.shape(indices)[0]
    context = dict(context or {})

    def aligned(name, dtype):
        values = context.get(name, tf.zeros(tf.shape(indices), dtype))
        return tf.gather(tf.where(is_item, values, tf.zeros_like(values)), order, batch_dims=1)

    events = aligned("events", tf.int32)
    history = tf.gather(indices, order, batch_dims=1)
    return {
        schema.USER_INDEX: context.get("users", tf.zeros([batch], tf.int32)),
        schema.HISTORY_ITEM_IDS: history,
        schema.HISTORY_LENGTH: tf.reduce_sum(tf.cast(is_item, tf.int32), axis=1),
        schema.HISTORY_RATINGS: aligned("ratings", tf.float32),
        schema.HISTORY_EVENTS: tf.where(tf.logical_and(history > 0, events == 0), default_event, events),
        schema.HISTORY_TIMESTAMPS: aligned("timestamps", tf.int64),
        schema.TARGET_ITEM_ID: tf.zeros([batch], tf.int32) if targets is None else targets,
        schema.TARGET_RATING: tf.zeros([batch], tf.float32),
        schema.TARGET_EVENT: tf.zeros([batch], tf.int32),
        schema.TARGET_TIMESTAMP: context.get("now", tf.zeros([batch], tf.int64)),
        schema.LABEL: tf.zeros([batch], tf.float32),
    }


def candidate_features(features, candidates):
    """One example per (row, candidate): schema `features` `[B]` repeated for the int candidate
    indices `candidates` `[B, M]`, `TARGET_ITEM_ID` the candidate (`[B * M]`, row-major)."""
    count = tf.shape(candidates)[1]
    pairs = {name: tf.repeat(value, count, axis=0) for name, value in features.items()}
    pairs[schema.TARGET_ITEM_ID] = tf.reshape(tf.cast(candidates, tf.int32), [-1])
    return pairs
