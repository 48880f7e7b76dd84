"""Checks of a training against its data, run before training starts, so a bad run fails in seconds.

Each check raises `tfrec.config.ConfigError` naming the config field (the
command lines show it as the flag of the same name), the value found and what
is expected.

Example:

>>> check_batch_split(batch_size=10, num_replicas=4)
Traceback (most recent call last):
tfrec.config.ConfigError: TrainConfig.batch_size=10 is the global batch size and must be divisible by the 4 replicas ...
"""

from tfrec.config import require
from tfrec.data import schema

LOWER_IS_BETTER = ("RMSE", "MAE", "LogLoss", "loss")


def check_batch_split(batch_size: int, num_replicas: int) -> None:
    """The global batch must split evenly over the replicas."""
    require(batch_size % num_replicas == 0,
            f"TrainConfig.batch_size={batch_size} is the global batch size and must be divisible by the "
            f"{num_replicas} replicas (per-replica batch {batch_size / num_replicas:g})")


def check_data(model_config, data, ks) -> None:
    """Checks that the data fits the task and the evaluation.

    Args:
        model_config: `ModelConfig`.
        data: `tfrec.data.PreparedData`.
        ks: ranking cut-offs.
    """
    if model_config.task in ("ranking", "multitask") and model_config.ranking_target == "rating":
        require(data.has_ratings,
                f"ModelConfig.task={model_config.task!r} with ranking_target='rating' needs ratings, but the "
                f"source {data.name!r} has no '{schema.RATING}' column (use ranking_target='click' or a source "
                "with ratings)")
    require(not model_config.use_ratings or data.has_ratings,
            f"ModelConfig.use_ratings=True: the source {data.name!r} has no '{schema.RATING}' column")
    require(not (data.streamed and model_config.behaviour_text),
            "ModelConfig.behaviour_text=True picks rows from all of a user's examples at once: it needs examples "
            f"in memory, not the converted ones of {data.name!r}")
    largest = max(ks)
    require(largest <= data.vocab.num_items,
            f"TrainConfig.eval_ks={','.join(map(str, ks))}: K={largest} is larger than the catalogue "
            f"({data.vocab.num_items} items)")
    for name in ("train", "valid", "test"):
        require(data.num_examples(name) > 0, f"DataConfig.split={data.config.split!r}: the {name} split has no examples")


def metric_mode(monitor: str) -> str:
    """"min" for error-like metrics (RMSE, MAE, LogLoss, loss), else "max"."""
    return "min" if monitor.split("_", 1)[-1] in LOWER_IS_BETTER else "max"


def check_monitor(monitor: str, available) -> None:
    """`monitor` must name one of the validation metrics the model produces.

    Args:
        monitor: e.g. "val_HR@10".
        available: the metric names without "val_" prefix.
    """
    names = sorted(f"val_{name}" for name in available)
    require(monitor in names, f"TrainConfig.monitor={monitor!r}: expected one of {names}")
