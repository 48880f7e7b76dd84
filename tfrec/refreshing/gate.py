"""The gate of a refresh: does the refreshed model beat the served one on the held-out window?

Example:

>>> passed, verdict = gate({"HR@10": 0.10}, {"HR@10": 0.11}, "HR@10", min_improvement=0.0)
>>> passed
True
"""

from tfrec.config import require

LOWER_IS_BETTER = ("RMSE", "MAE", "LogLoss")


def gate(before: dict, after: dict, metric: str, min_improvement: float) -> tuple:
    """(passed, verdict) of the refreshed figures `after` against the served ones `before`.

    Raises:
        ConfigError: `metric` is not among the figures.
    """
    require(metric in before,
            f"RefreshConfig.gate_metric={metric!r}: expected one of the model's metrics {sorted(before)}")
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    gain = sign * (after[metric] - before[metric])
    passed = gain >= min_improvement
    direction = "lower" if sign < 0 else "higher"
    verdict = (f"{metric} {before[metric]:.4f} -> {after[metric]:.4f} ({direction} is better; improvement "
               f"{gain:+.4f}, required {min_improvement:+.4f}): "
               + ("exported as a new version" if passed else "not exported, the served version stays"))
    return passed, verdict
