"""How much each past behaviour moves a candidate item's score.

Two measures, both in the request's coordinates (history `[B, L]` of item
indices, 0 = padding anywhere, as `history_features` takes it; candidates
`[B, K]`); both return `(influence [B, K, L], scores [B, K])`, influence 0 at
padding:

- `occlusion_influence`: the score minus the score with that one behaviour
  removed (its context with it). All B x L removals run as one batch.
- `integrated_gradients`: the behaviour's embedding times the mean gradient
  of the score along the straight path from a zero embedding to it
  (Sundararajan et al., 2017); the influences of a row add up to the score
  minus the score with every behaviour embedding zeroed. The transition
  prior's part of a retrieval score (`TransitionPrior`) reads item ids, not
  embeddings: each behaviour gets its occlusion share of it.

The score is what the model ranks candidates by: the retrieval score (query
and item embedding dot product, plus the transition prior's term when the
model has one) for retrieval and multitask models, the
predicted rating or click probability for ranking models.

Both cost far more than a recommendation: occlusion scores B x L shortened
histories (times K candidates for ranking), integrated gradients B x K x
steps, each reading L behaviours with attention over L x L pairs.
`checked_cost` refuses a request above `MAX_EXPLAIN_COST` of those pairs
before anything is allocated; the in-process `Recommender.explain` and the
exported `explain` signatures both call it.

Example:

>>> influence, scores = occlusion_influence(model, tf.constant([[3, 5, 9]]), tf.constant([[12, 40]]))
>>> influence.shape, scores.shape
(TensorShape([1, 2, 3]), TensorShape([1, 2]))
"""

import tensorflow as tf

from tfrec.data import schema
from tfrec.models.features import candidate_features, history_features
from tfrec.models.request_encoder import require

METHODS = ("occlusion", "integrated_gradients")
# Attention pairs (per head and layer) one explain request may cost: 1 history of 256 behaviours by occlusion.
MAX_EXPLAIN_COST = 1 << 24


def explain_cost(model, indices, candidates, method="occlusion", steps=16):
    """int64 scalar: histories the towers read to explain `indices` `[B, L]` for `candidates` `[B, K]`
    by `method` (B x L, x K for ranking, for occlusion; B x K x steps for integrated gradients), times
    the L x L attention pairs of each."""
    shape = tf.cast(tf.shape(indices), tf.int64)
    count = tf.cast(tf.shape(candidates)[1], tf.int64)
    if method == "occlusion":
        histories = shape[0] * shape[1] * (1 if model.has_retrieval else count)
    else:
        histories = shape[0] * count * steps
    return histories * shape[1] * shape[1]


def checked_cost(model, indices, candidates, method="occlusion", steps=16) -> list:
    """Fails (ValueError eagerly, InvalidArgumentError in a graph) when `explain_cost` exceeds
    `MAX_EXPLAIN_COST`, naming the limit; returns the check ops for `tf.control_dependencies`."""
    cost = explain_cost(model, indices, candidates, method, steps)
    what = (f"explain ({method}) costs histories read x behaviours^2 attention pairs, at most "
            f"{MAX_EXPLAIN_COST} per request (explain fewer or shorter histories, or fewer candidates); got")
    return require(cost <= MAX_EXPLAIN_COST,
                   lambda: f"{what} {int(cost)} for histories {list(indices.shape)} and candidates "
                           f"{list(candidates.shape)}",
                   [what, cost, "for histories", tf.shape(indices), "and candidates", tf.shape(candidates)],
                   name="check_explain_cost")


def candidate_scores(model, features, candidates, history_vectors=None):
    """Scores `[B, K]` of int32 catalogue `candidates` `[B, K]` after schema `features`.

    `history_vectors` `[B, N, D]` optionally replaces the history's item embeddings.
    """
    candidates = tf.cast(candidates, tf.int32)
    if model.has_retrieval:
        queries = model.query_embeddings(features, history_vectors)
        scores = tf.einsum("bd,bkd->bk", queries, model.catalogue.gather(candidates))
        if model.transition_prior is None:
            return scores
        return scores + model.transition_prior.candidate_scores(features[schema.HISTORY_ITEM_IDS], candidates)
    if history_vectors is not None:
        history_vectors = tf.repeat(history_vectors, tf.shape(candidates)[1], axis=0)
    return tf.reshape(model.score(candidate_features(features, candidates), history_vectors), tf.shape(candidates))


def _repeat(context, times):
    return {name: tf.repeat(value, times, axis=0) for name, value in (context or {}).items()}


def occlusion_influence(model, indices, candidates, context=None):
    """Score minus the score without each behaviour: `(influence [B, K, L], scores [B, K])`.

    Args:
        model: a `tfrec.models.Recommender`.
        indices: int32 `[B, L]` history item indices, 0 = padding.
        candidates: int32 `[B, K]` catalogue indices to explain.
        context: optional `history_features` context (ratings, timestamps,
            events aligned with `indices`; now; users).
    """
    indices = tf.cast(indices, tf.int32)
    scores = candidate_scores(model, history_features(indices, context=context, default_event=model.default_event),
                              candidates)
    return _occlusion(model, indices, candidates, context, scores, candidate_scores), scores


def _occlusion(model, indices, candidates, context, scores, score):
    """`scores` `[B, K]` minus `score(model, features, candidates)` of each history without each behaviour:
    `[B, K, L]`, 0 at padding."""
    batch, length = tf.shape(indices)[0], tf.shape(indices)[1]
    # Row b * L + j of the occluded batch is history b without its behaviour j.
    removed = tf.tile(tf.eye(length, dtype=tf.bool), [batch, 1])
    occluded = tf.where(removed, 0, tf.repeat(indices, length, axis=0))
    features = history_features(occluded, context=_repeat(context, length), default_event=model.default_event)
    without = score(model, features, tf.repeat(candidates, length, axis=0))  # [B * L, K]
    without = tf.transpose(tf.reshape(without, [batch, length, -1]), [0, 2, 1])
    return tf.where(indices[:, None, :] > 0, scores[:, :, None] - without, 0.0)


def _prior_scores(model, features, candidates):
    return model.transition_prior.candidate_scores(features[schema.HISTORY_ITEM_IDS], candidates)


def integrated_gradients(model, indices, candidates, context=None, steps=16):
    """Integrated gradients over the behaviour embeddings: `(influence [B, K, L], scores [B, K])`.

    Args:
        model: a `tfrec.models.Recommender` whose behaviours are item
            embeddings (not behaviour-text mode).
        indices, candidates, context: as `occlusion_influence`.
        steps: points of the midpoint rule along the path.
    """
    if model.cfg.behaviour_text:
        raise ValueError("integrated_gradients needs item-embedding behaviours; a behaviour_text=True model "
                         "reads the history as text: use occlusion_influence")
    indices = tf.cast(indices, tf.int32)
    candidates = tf.cast(candidates, tf.int32)
    features = history_features(indices, context=context, default_event=model.default_event)
    scores = candidate_scores(model, features, candidates)
    batch, count = tf.shape(candidates)[0], tf.shape(candidates)[1]
    vectors = model.catalogue.gather(features[schema.HISTORY_ITEM_IDS])  # [B, N, D]
    # One row per (history, candidate, step): the rows' scores are independent,
    # so one backward pass of their sum gives every row's gradient.
    rows = count * steps
    alphas = tf.tile((tf.range(steps, dtype=tf.float32) + 0.5) / steps, [batch * count])
    repeated = {name: tf.repeat(value, rows, axis=0) for name, value in features.items()}
    targets = tf.reshape(tf.repeat(candidates, steps, axis=1), [-1, 1])
    path = tf.repeat(vectors, rows, axis=0) * alphas[:, None, None]
    with tf.GradientTape() as tape:
        tape.watch(path)
        total = tf.reduce_sum(candidate_scores(model, repeated, targets, history_vectors=path))
    gradients = tf.reshape(tape.gradient(total, path), [batch, count, steps, -1, tf.shape(vectors)[-1]])
    influence = tf.einsum("bnd,bknd->bkn", vectors, tf.reduce_mean(gradients, axis=2))
    # Back from the model's right-aligned positions to the request's columns.
    order = tf.argsort(tf.cast(indices > 0, tf.int32), axis=1, stable=True)
    influence = tf.gather(influence, tf.argsort(order, axis=1), batch_dims=1, axis=2)
    influence = tf.where(indices[:, None, :] > 0, influence, 0.0)
    if model.has_retrieval and model.transition_prior is not None:
        # The count prior reads item ids, not embeddings: its part is attributed by occlusion.
        influence += _occlusion(model, indices, candidates, context,
                                _prior_scores(model, features, candidates), _prior_scores)
    return influence, scores
