"""Evaluation: full-catalogue ranking, rating and click metrics (numpy), complete-history examples, the
reference baselines' figures (`references`) and the held-out figures of a training run (`run_figures`)."""

from tfrec.evaluation import metrics
from tfrec.evaluation.full_history import full_history_examples
from tfrec.evaluation.metrics import (
    click_metrics,
    hit_rate_curve,
    hit_rate_curve_from_ranks,
    metrics_from_ranks,
    ranking_metrics,
    rating_metrics,
    target_ranks,
)

__all__ = [
    "metrics",
    "click_metrics",
    "full_history_examples",
    "hit_rate_curve",
    "hit_rate_curve_from_ranks",
    "metrics_from_ranks",
    "ranking_metrics",
    "rating_metrics",
    "target_ranks",
]
