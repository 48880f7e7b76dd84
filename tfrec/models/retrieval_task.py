"""`RetrievalTask`: softmax retrieval loss over the catalogue or the batch.

Full softmax scores every catalogue item for every query (cheap for a few
thousand items). In-batch softmax uses the other rows' positives as
negatives, with keras-rs's `SamplingProbabilityCorrection` (logQ) and
`HardNegativeMining`, and accidental-hit removal (masking negatives that are
the positive item). Scores are cosine
similarities divided by a temperature.

Example:

>>> task = RetrievalTask(softmax="in_batch", temperature=0.1)
>>> loss = task(queries, target_ids, catalogue, log_probability)  # [M]
"""

import keras
import keras_rs
import tensorflow as tf

PADDING_LOGIT = -1e9


@keras.saving.register_keras_serializable(package="tfrec")
class RetrievalTask(keras.layers.Layer):
    """Per-query softmax cross-entropy of the positive item.

    Args:
        softmax: "full" or "in_batch".
        temperature: divides the cosine scores.
        logq_correction: in-batch only; subtract the log sampling probability
            of each candidate.
        remove_accidental_hits: in-batch only; ignore negatives that are the
            positive item.
        hard_negatives: keep only this many highest-scoring negatives (0: all).
        **kwargs: base layer arguments.

    Call args:
        queries: float `[M, D]` L2-normalised query vectors.
        target_ids: int32 `[M]` positive item indices.
        catalogue: float `[num_rows, D]` item vectors by index (row 0 padding).
        log_probability: float `[num_rows]` log sampling probability of each
            item (used by logQ correction).
        candidate_mask: optional float `[num_rows]`, 0 for items that are no
            full-softmax negatives (e.g. items absent from the training data);
            a query's own positive is scored all the same, so a validation
            target no training example named has a finite loss.
        query_exclusions: optional float `[M, num_rows]`, 1 for items that are
            no negatives of that query (e.g. the items its user already met,
            which evaluation excludes too); the query's own positive is kept.

    Returns:
        float32 `[M]` losses.
    """

    def __init__(self, softmax="full", temperature=0.1, logq_correction=False,
                 remove_accidental_hits=True, hard_negatives=0, **kwargs):
        super().__init__(**kwargs)
        if softmax not in ("full", "in_batch"):
            raise ValueError(f"softmax={softmax!r}: expected 'full' or 'in_batch'")
        self.softmax = softmax
        self.temperature = temperature
        self.logq_correction = logq_correction
        self.remove_accidental_hits = remove_accidental_hits
        self.hard_negatives = hard_negatives
        self.correction = keras_rs.layers.SamplingProbabilityCorrection()
        self.mining = keras_rs.layers.HardNegativeMining(max(hard_negatives, 1))

    def logits(self, queries, target_ids, catalogue, log_probability, candidate_mask=None,
               query_exclusions=None):
        """Returns (logits, one-hot labels) before the cross-entropy."""
        if self.softmax == "full":
            logits = tf.matmul(queries, catalogue, transpose_b=True) / self.temperature
            labels = tf.one_hot(target_ids, tf.shape(catalogue)[0])
            excluded = tf.zeros_like(labels)
            if candidate_mask is not None:
                excluded = tf.maximum(excluded, 1.0 - candidate_mask[None, :])
            if query_exclusions is not None:
                excluded = tf.maximum(excluded, query_exclusions)
            # The query's own positive is scored whatever the masks; padding never is.
            excluded = tf.maximum(excluded * (1.0 - labels), tf.one_hot(0, tf.shape(catalogue)[0])[None, :])
            return logits + excluded * PADDING_LOGIT, labels
        candidates = tf.gather(catalogue, target_ids)
        logits = tf.matmul(queries, candidates, transpose_b=True) / self.temperature
        labels = tf.eye(tf.shape(target_ids)[0])
        if query_exclusions is not None:
            logits += tf.gather(query_exclusions, target_ids, axis=1) * (1.0 - labels) * PADDING_LOGIT
        if self.logq_correction:
            probability = tf.exp(tf.gather(log_probability, target_ids))
            logits = self.correction(logits, tf.broadcast_to(probability[None, :], tf.shape(logits)))
        if self.remove_accidental_hits:
            # keras_rs.layers.RemoveAccidentalHits (0.4) adds ~1e-40 to the
            # duplicates' logits, which leaves them unchanged; mask them here.
            duplicate = tf.cast(tf.equal(target_ids[:, None], target_ids[None, :]), logits.dtype)
            logits += (duplicate - labels) * PADDING_LOGIT
        return logits, labels

    def call(self, queries, target_ids, catalogue, log_probability, candidate_mask=None,
             query_exclusions=None):
        logits, labels = self.logits(queries, target_ids, catalogue, log_probability, candidate_mask,
                                     query_exclusions)
        if self.hard_negatives > 0:
            logits, labels = self.mining(logits, labels)
        return keras.ops.categorical_crossentropy(labels, logits, from_logits=True)

    def get_config(self):
        config = super().get_config()
        config.update({
            "softmax": self.softmax,
            "temperature": self.temperature,
            "logq_correction": self.logq_correction,
            "remove_accidental_hits": self.remove_accidental_hits,
            "hard_negatives": self.hard_negatives,
        })
        return config
