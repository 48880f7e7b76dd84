"""`RankingTask`: the loss and predictions of a ranking head's raw scores.

Rating targets train with the squared error and predict the score itself;
click targets train with binary cross-entropy on the positive (label 1) and a
sampled negative (label 0) and predict the click probability.

Example:

>>> task = RankingTask("click")
>>> losses = task(positive_scores, negative_scores=negative_scores)  # [M]
>>> probabilities = task.predictions(positive_scores)
"""

import keras
import tensorflow as tf

TARGETS = ("rating", "click")


@keras.saving.register_keras_serializable(package="tfrec")
class RankingTask(keras.layers.Layer):
    """Per-example ranking loss.

    Args:
        target: "rating" (MSE) or "click" (binary cross-entropy).
        **kwargs: base layer arguments.

    Call args:
        positive_scores: float `[M]` raw scores of the items users met.
        labels: float `[M]` ratings (rating target).
        negative_scores: float `[M]` raw scores of sampled unseen items (click target).

    Returns:
        float32 `[M]` losses.
    """

    def __init__(self, target="rating", **kwargs):
        super().__init__(**kwargs)
        if target not in TARGETS:
            raise ValueError(f"target={target!r}: expected one of {TARGETS}")
        self.target = target

    def call(self, positive_scores, labels=None, negative_scores=None):
        if self.target == "rating":
            return tf.square(positive_scores - labels)
        positive = keras.ops.binary_crossentropy(tf.ones_like(positive_scores), positive_scores, from_logits=True)
        negative = keras.ops.binary_crossentropy(tf.zeros_like(negative_scores), negative_scores, from_logits=True)
        return (positive + negative) / 2.0

    def predictions(self, scores):
        """The predicted rating, or the click probability, of raw `scores`."""
        return tf.sigmoid(scores) if self.target == "click" else scores

    def get_config(self):
        config = super().get_config()
        config.update({"target": self.target})
        return config
