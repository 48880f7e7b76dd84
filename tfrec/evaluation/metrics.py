"""Full-catalogue ranking, rating and click metrics (the protocol of docs/evaluation.md).

Ranking protocol: every catalogue item (columns 1..num_items of a score
matrix) is a candidate for every example. Items the user interacted with
before the target are removed from the ranking: the items of the example's
history row, plus, when `exclude` is given, every item listed there (pass the
user's complete prior items there, because a history truncated to its last 50
behaviours must not decide what is excluded). The target itself always stays
a candidate, even if the user met it before. Column 0 (padding) never ranks.

Ties are broken deterministically and, by default, conservatively
(`ties="pessimistic"`): the target's 0-based rank is the number of remaining
candidates whose score is greater than *or equal to* the target's score, i.e.
every item tied with the target is ranked before it. A model that gives the
same score to everything therefore gets the worst rank, never a lucky one.
`ties="optimistic"` counts only strictly greater scores (every tie ranked
after the target): the convention of the reference figures of docs/evaluation.md, kept to
reproduce them. Scores must be finite.

From the rank `r` of the single target of each example:
HR@K = Recall@K = mean(r < K); NDCG@K = mean(1 / log2(r + 2) if r < K else 0);
MRR = mean(1 / (r + 1)) over the full ranking (not truncated).

Example:

>>> import numpy as np
>>> from tfrec.evaluation import metrics
>>> scores = np.array([[0.0, 0.9, 0.5, 0.1]])   # 1 example, 3 items
>>> history = np.array([[0, 1]])                 # item 1 already seen
>>> metrics.ranking_metrics(scores, np.array([2]), history, ks=(1,))["HR@1"]
1.0
"""

from collections.abc import Sequence

import numpy as np

DEFAULT_BATCH_SIZE = 1024
"""Rows of the score matrix processed at once (bounds the temporary masks)."""


class NonFiniteScoresError(ValueError):
    """Scores hold NaN or infinity (a model whose training diverged scores so)."""


def _as_exclusion_lists(exclude, n):
    """Normalises `exclude` to a list of `n` int arrays (or None).

    Accepts a sequence of `n` int arrays / sets / lists, or a CSR-like pair
    `(indptr, indices)` with `len(indptr) == n + 1`.
    """
    if exclude is None:
        return None
    if (
        isinstance(exclude, tuple)
        and len(exclude) == 2
        and isinstance(exclude[0], np.ndarray)
        and isinstance(exclude[1], np.ndarray)
    ):
        indptr, indices = exclude
        if indptr.ndim != 1 or len(indptr) != n + 1:
            raise ValueError(
                f"exclude: CSR indptr must have length n + 1 = {n + 1}, got shape {indptr.shape}"
            )
        return [indices[indptr[i] : indptr[i + 1]] for i in range(n)]
    if not isinstance(exclude, Sequence) and not isinstance(exclude, np.ndarray):
        raise TypeError(
            "exclude: expected a sequence of int arrays (one per example) or a CSR pair "
            f"(indptr, indices), got {type(exclude).__name__}"
        )
    if len(exclude) != n:
        raise ValueError(f"exclude: expected {n} rows (one per example), got {len(exclude)}")
    return [
        np.fromiter(row, dtype=np.int64) if isinstance(row, (set, frozenset)) else np.asarray(row, dtype=np.int64)
        for row in exclude
    ]


def _check_inputs(scores, targets, histories):
    scores = np.asarray(scores)
    targets = np.asarray(targets)
    if scores.ndim != 2:
        raise ValueError(f"scores: expected shape [n, num_items + 1], got {scores.shape}")
    n, width = scores.shape
    if targets.shape != (n,):
        raise ValueError(f"target_item_ids: expected shape ({n},), got {targets.shape}")
    if not np.issubdtype(targets.dtype, np.integer):
        raise TypeError(f"target_item_ids: expected integer item indices, got dtype {targets.dtype}")
    bad = np.flatnonzero((targets <= 0) | (targets >= width))
    if bad.size:
        raise ValueError(
            f"target_item_ids: row {bad[0]} has target {targets[bad[0]]}; expected an item index "
            f"in 1..{width - 1} (0 is padding)"
        )
    if histories is not None:
        histories = np.asarray(histories)
        if histories.ndim != 2 or histories.shape[0] != n:
            raise ValueError(f"history_item_ids: expected shape [{n}, N], got {histories.shape}")
        if not np.issubdtype(histories.dtype, np.integer):
            raise TypeError(f"history_item_ids: expected integer item indices, got dtype {histories.dtype}")
        bad = np.argwhere((histories < 0) | (histories >= width))
        if bad.size:
            r, c = bad[0]
            raise ValueError(
                f"history_item_ids: row {r} column {c} has {histories[r, c]}; expected 0..{width - 1}"
            )
    return scores, targets, histories


TIES = ("pessimistic", "optimistic")


def target_ranks(
    scores, target_item_ids, history_item_ids=None, exclude=None, batch_size=DEFAULT_BATCH_SIZE, ties="pessimistic"
):
    """0-based full-catalogue rank of each example's target (see module doc).

    Args:
      scores: float array [n, num_items + 1]; column 0 is padding and ignored.
      target_item_ids: int array [n], item indices in 1..num_items.
      history_item_ids: optional int array [n, N] (0 = padding): items
        excluded from each example's ranking.
      exclude: optional further exclusions, one entry per example: a sequence
        of int arrays / sets, or a CSR pair `(indptr, indices)` of numpy arrays.
      batch_size: rows processed at once.
      ties: "pessimistic" (tied items rank before the target) or "optimistic"
        (after it).

    Returns:
      int64 array [n]: number of remaining candidates scored >= the target
      (> the target with `ties="optimistic"`).

    Raises:
      ValueError / TypeError naming the argument, row and value on bad input.
    """
    if ties not in TIES:
        raise ValueError(f"ties: expected one of {TIES}, got {ties!r}")
    ahead = np.greater_equal if ties == "pessimistic" else np.greater
    scores, targets, histories = _check_inputs(scores, target_item_ids, history_item_ids)
    n, width = scores.shape
    exclusions = _as_exclusion_lists(exclude, n)
    ranks = np.empty(n, dtype=np.int64)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        block = scores[start:stop]
        if not np.all(np.isfinite(block)):
            row = start + int(np.argwhere(~np.isfinite(block))[0, 0])
            raise NonFiniteScoresError(f"scores: row {row} holds a non-finite value; scores must be finite")
        rows = np.arange(stop - start)
        candidate = np.ones(block.shape, dtype=bool)
        candidate[:, 0] = False
        if histories is not None:
            candidate[rows[:, None], histories[start:stop]] = False
        if exclusions is not None:
            for i, items in enumerate(exclusions[start:stop]):
                if items.size and (items.min() < 0 or items.max() >= width):
                    raise ValueError(
                        f"exclude: row {start + i} holds item {items[(items < 0) | (items >= width)][0]}; "
                        f"expected 0..{width - 1}"
                    )
                candidate[i, items] = False
        block_targets = targets[start:stop]
        candidate[rows, block_targets] = False  # the target is not ranked against itself
        target_scores = block[rows, block_targets]
        ranks[start:stop] = np.count_nonzero(candidate & ahead(block, target_scores[:, None]), axis=1)
    return ranks


def metrics_from_ranks(ranks, ks=(10, 100)):
    """HR@K, Recall@K, NDCG@K for each K in `ks`, and MRR, from 0-based ranks.

    Args:
      ranks: int array [n] of 0-based target ranks (from `target_ranks`).
      ks: cut-offs.

    Returns:
      dict of floats: "HR@K", "Recall@K", "NDCG@K" per K, and "MRR".
    """
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        raise ValueError("ranks: no examples to evaluate")
    result = {}
    for k in ks:
        if int(k) != k or k < 1:
            raise ValueError(f"ks: cut-off {k!r} must be a positive integer")
        hit = ranks < k
        result[f"HR@{k}"] = float(np.mean(hit))
        result[f"Recall@{k}"] = result[f"HR@{k}"]
        result[f"NDCG@{k}"] = float(np.mean(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0)))
    result["MRR"] = float(np.mean(1.0 / (ranks + 1.0)))
    return result


def ranking_metrics(
    scores,
    target_item_ids,
    history_item_ids=None,
    ks=(10, 100),
    exclude=None,
    batch_size=DEFAULT_BATCH_SIZE,
    ties="pessimistic",
):
    """Full-catalogue HR@K, Recall@K, NDCG@K and MRR (one target per example).

    Args:
      scores: float array [n, num_items + 1]; column 0 (padding) never ranks.
      target_item_ids: int array [n].
      history_item_ids: optional int array [n, N] of items to exclude (0 = padding).
      ks: cut-offs.
      exclude: optional complete prior items per example (see `target_ranks`).
      batch_size: rows processed at once.
      ties: tie convention (see `target_ranks`).

    Returns:
      dict of floats, e.g. {"HR@10", "Recall@10", "NDCG@10", "HR@100",
      "Recall@100", "NDCG@100", "MRR"} for ks=(10, 100).

    Example:

    >>> scores = np.array([[0.0, 0.2, 0.9, 0.5]])
    >>> ranking_metrics(scores, np.array([3]), ks=(1, 2))["HR@2"]
    1.0
    """
    ranks = target_ranks(scores, target_item_ids, history_item_ids, exclude, batch_size, ties)
    return metrics_from_ranks(ranks, ks)


def hit_rate_curve(
    scores,
    target_item_ids,
    history_item_ids=None,
    max_k=100,
    exclude=None,
    batch_size=DEFAULT_BATCH_SIZE,
    ties="pessimistic",
):
    """HR@K for K = 1..max_k (entry K - 1), under the same protocol.

    Arguments as in `ranking_metrics`.

    Returns:
      float64 array [max_k], non-decreasing.
    """
    if max_k < 1:
        raise ValueError(f"max_k: must be >= 1, got {max_k}")
    ranks = target_ranks(scores, target_item_ids, history_item_ids, exclude, batch_size, ties)
    return hit_rate_curve_from_ranks(ranks, max_k)


def hit_rate_curve_from_ranks(ranks, max_k=100):
    """HR@K for K = 1..max_k from 0-based ranks (entry K - 1)."""
    ranks = np.asarray(ranks)
    counts = np.bincount(np.minimum(ranks, max_k), minlength=max_k + 1)[:max_k]
    return np.cumsum(counts) / len(ranks)


def _check_pair(a, b, a_name, b_name):
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"{a_name} has {a.size} values but {b_name} has {b.size}")
    if a.size == 0:
        raise ValueError(f"{a_name}: no values to evaluate")
    for name, values in ((a_name, a), (b_name, b)):
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{name}: index {int(np.argmax(~np.isfinite(values)))} is not finite")
    return a, b


def rating_metrics(pred, true):
    """RMSE and MAE of rating predictions.

    Args:
      pred: predicted ratings [n].
      true: observed ratings [n].

    Returns:
      {"RMSE": float, "MAE": float}

    Example:

    >>> rating_metrics([3.0, 4.0], [4.0, 4.0])
    {'RMSE': 0.7071067811865476, 'MAE': 0.5}
    """
    pred, true = _check_pair(pred, true, "pred", "true")
    err = pred - true
    return {"RMSE": float(np.sqrt(np.mean(err**2))), "MAE": float(np.mean(np.abs(err)))}


def click_metrics(prob, label, epsilon=1e-7):
    """ROC AUC (Mann-Whitney rank statistic, ties count one half) and LogLoss.

    Args:
      prob: predicted click probabilities [n] in [0, 1].
      label: 0/1 labels [n]; both classes must be present.
      epsilon: probabilities are clipped to [epsilon, 1 - epsilon] for LogLoss.

    Returns:
      {"AUC": float, "LogLoss": float}

    Example:

    >>> click_metrics([0.1, 0.8, 0.6], [0, 1, 0])["AUC"]
    1.0
    """
    prob, label = _check_pair(prob, label, "prob", "label")
    bad = np.flatnonzero((label != 0) & (label != 1))
    if bad.size:
        raise ValueError(f"label: index {bad[0]} is {label[bad[0]]}; expected 0 or 1")
    bad = np.flatnonzero((prob < 0) | (prob > 1))
    if bad.size:
        raise ValueError(f"prob: index {bad[0]} is {prob[bad[0]]}; expected a probability in [0, 1]")
    positives = int(label.sum())
    negatives = label.size - positives
    if positives == 0 or negatives == 0:
        raise ValueError(f"label: AUC needs both classes, got {positives} positives and {negatives} negatives")
    # Average ranks (1-based) with ties sharing the mean rank.
    order = np.argsort(prob, kind="mergesort")
    sorted_prob = prob[order]
    _, first, counts = np.unique(sorted_prob, return_index=True, return_counts=True)
    mean_rank = first + (counts + 1) / 2.0
    ranks = np.empty_like(prob)
    ranks[order] = np.repeat(mean_rank, counts)
    auc = (ranks[label == 1].sum() - positives * (positives + 1) / 2.0) / (positives * negatives)
    clipped = np.clip(prob, epsilon, 1 - epsilon)
    logloss = -np.mean(label * np.log(clipped) + (1 - label) * np.log(1 - clipped))
    return {"AUC": float(auc), "LogLoss": float(logloss)}
