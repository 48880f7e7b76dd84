"""Checks run before training starts, so a bad run fails in seconds.

Each check raises `ConfigError` naming the flag, the value found and what is
expected.

Example:

>>> check_batch_split(batch_size=10, num_replicas=4)
Traceback (most recent call last):
ConfigError: --batch_size=10 is the global batch size and must be divisible by the 4 replicas ...
"""

import re

from tfrec.data import schema

LOWER_IS_BETTER = ("RMSE", "MAE", "LogLoss", "loss")
_TRAINABLE = re.compile(r"^(all|none|top:\d+)$")


class ConfigError(ValueError):
    """A flag value, or its combination with the data, cannot work."""


def require(condition, message):
    """Raises `ConfigError(message)` unless `condition`."""
    if not condition:
        raise ConfigError(message)


def check_training_flags(values):
    """Checks the training flags on their own (no data needed).

    Args:
        values: object with the training flag attributes (e.g. `absl.flags.FLAGS`).
    """
    for name in ("epochs", "batch_size", "eval_batch_size", "cpu_replicas"):
        value = getattr(values, name)
        require(value >= 1, f"--{name}={value}: expected an integer >= 1")
    for name in ("warmup_steps", "early_stopping_patience", "max_steps", "steps_per_epoch",
                 "checkpoint_every_steps", "log_every_steps"):
        value = getattr(values, name)
        require(value >= 0, f"--{name}={value}: expected an integer >= 0")
    require(values.learning_rate > 0, f"--learning_rate={values.learning_rate}: expected > 0")
    require(0.0 <= values.warmup_fraction < 1.0,
            f"--warmup_fraction={values.warmup_fraction}: expected 0 <= value < 1")
    require(not (values.warmup_steps and values.warmup_fraction),
            f"--warmup_steps={values.warmup_steps} and --warmup_fraction={values.warmup_fraction}: "
            "give one of them, not both")
    require(values.weight_decay >= 0, f"--weight_decay={values.weight_decay}: expected >= 0")
    require(values.clipnorm >= 0, f"--clipnorm={values.clipnorm}: expected >= 0 (0 = no clipping)")
    parse_ks(values.eval_ks)


def parse_ks(texts):
    """`--eval_ks` as a tuple of positive ints."""
    require(texts and all(str(k).isdigit() and int(k) >= 1 for k in texts),
            f"--eval_ks={','.join(map(str, texts or []))}: expected positive integers, e.g. 10,100")
    return tuple(int(k) for k in texts)


def check_trainable(spec):
    """Checks the syntax of `--encoder_trainable` ("all", "none" or "top:N")."""
    require(bool(_TRAINABLE.match(spec)),
            f"--encoder_trainable={spec!r}: expected 'all', 'none' or 'top:N' (N an integer)")


def check_batch_split(batch_size, num_replicas):
    """The global batch must split evenly over the replicas."""
    require(batch_size % num_replicas == 0,
            f"--batch_size={batch_size} is the global batch size and must be divisible by the "
            f"{num_replicas} replicas (per-replica batch {batch_size / num_replicas:g})")


def check_data(config, dataset, vocab, examples, ks):
    """Checks that the data fits the task and the evaluation.

    Args:
        config: `ModelConfig`.
        dataset: `data.InteractionData`.
        vocab: `data.Vocabulary`.
        examples: dict split -> example arrays.
        ks: ranking cut-offs.
    """
    if config.task in ("ranking", "multitask") and config.ranking_target == "rating":
        require(dataset.has_ratings,
                f"--task={config.task} with --ranking_target=rating needs ratings, but the source "
                f"{dataset.name!r} has no '{schema.RATING}' column (use --ranking_target=click or "
                "a source with ratings)")
    largest = max(ks)
    require(largest <= vocab.num_items,
            f"--eval_ks={','.join(map(str, ks))}: K={largest} is larger than the catalogue "
            f"({vocab.num_items} items)")
    for name in ("train", "valid", "test"):
        count = len(examples[name][schema.TARGET_ITEM_ID])
        require(count > 0, f"--split: the {name} split has no examples")


def metric_mode(monitor):
    """"min" for error-like metrics (RMSE, MAE, LogLoss, loss), else "max"."""
    return "min" if monitor.split("_", 1)[-1] in LOWER_IS_BETTER else "max"


def check_monitor(monitor, available):
    """`monitor` must name one of the validation metrics the model produces.

    Args:
        monitor: e.g. "val_HR@10".
        available: the metric names without "val_" prefix.
    """
    names = sorted(f"val_{name}" for name in available)
    require(monitor in names, f"--monitor={monitor!r}: expected one of {names}")
