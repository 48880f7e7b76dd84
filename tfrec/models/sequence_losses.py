"""Per-position training losses: what each position predicts, and their mean over a global batch.

A history window of N behaviours plus its target carries N next-item
predictions: position i predicts behaviour i + 1 (`next_values`,
`next_item_ids`), the last one the target. `global_mean` averages the
losses of the predicted positions over a batch split across replicas.

Example:

>>> global_mean(tf.constant([1.0, 3.0])).numpy()  # one replica: the plain mean
2.0
"""

import tensorflow as tf

from tfrec.data import schema


def next_values(features, history_key, target_key):
    """Shifts a history feature by one: the value at the behaviour each position predicts."""
    history = features[history_key]
    target = tf.cast(features[target_key], history.dtype)
    return tf.concat([history[:, 1:], target[:, None]], axis=1)


def next_item_ids(features):
    """int32 `[B, N]`: the item each position predicts."""
    return tf.cast(next_values(features, schema.HISTORY_ITEM_IDS, schema.TARGET_ITEM_ID), tf.int32)


def earlier_items(history_ids, num_rows):
    """float `[B, N, num_rows]`: 1 where an item of `history_ids` `[B, N]` occurs at or before each position."""
    return tf.minimum(tf.cumsum(tf.one_hot(tf.cast(history_ids, tf.int32), num_rows), axis=1), 1.0)


def global_mean(values, weights=None):
    """Mean of `values` (weighted by `weights` of the same shape, if given) over the whole global batch,
    times the number of replicas.

    Each replica holds a different number of predicted positions, so its loss
    is its own sum divided by the count summed over all replicas;
    `Recommender.compute_loss` then divides by the number of replicas as
    Keras expects. With one replica this is the plain mean.
    """
    context = tf.distribute.get_replica_context()
    if weights is not None:
        weights = tf.cast(weights, values.dtype)
        values = values * weights
    count = tf.cast(tf.size(values), values.dtype) if weights is None else tf.reduce_sum(weights)
    replicas = 1
    if context is not None and context.num_replicas_in_sync > 1:
        replicas = context.num_replicas_in_sync
        count = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.stop_gradient(count))
    return tf.math.divide_no_nan(tf.reduce_sum(values), count) * replicas
