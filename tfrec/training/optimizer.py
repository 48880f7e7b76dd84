"""The optimizer of a training run: AdamW, warmup then decay, clipping.

Example:

>>> from tfrec.training.optimizer import build_optimizer
>>> opt = build_optimizer(learning_rate=1e-3, total_steps=1000,
...                       warmup_steps=100, decay="cosine",
...                       weight_decay=0.01, clipnorm=1.0)
>>> round(float(opt.learning_rate), 8)  # at step 0: 1/100 of the peak
1e-05
"""

import math

import keras
from keras import ops

DECAYS = ("cosine", "linear", "constant")


@keras.saving.register_keras_serializable(package="tfrec")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup to a peak learning rate, then cosine or linear decay.

    During the first `warmup_steps` steps the rate grows linearly from
    `peak / warmup_steps` to `peak`; it then decays to
    `peak * final_fraction` at `total_steps` ("cosine" or "linear") or stays
    at `peak` ("constant").

    Args:
        peak_learning_rate: float, the rate reached after warmup.
        total_steps: int, the number of optimizer steps of the whole run.
        warmup_steps: int, steps of linear warmup (0: none).
        decay: "cosine", "linear" or "constant".
        final_fraction: float in [0, 1], the end rate as a fraction of peak.

    Example:

    >>> schedule = WarmupDecay(1e-3, total_steps=100, warmup_steps=10)
    >>> round(float(schedule(9)), 6)
    0.001
    """

    def __init__(
        self,
        peak_learning_rate,
        total_steps,
        warmup_steps=0,
        decay="cosine",
        final_fraction=0.0,
    ):
        if decay not in DECAYS:
            raise ValueError(f"decay must be one of {DECAYS}, got {decay!r}")
        self.peak_learning_rate = float(peak_learning_rate)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.decay = decay
        self.final_fraction = float(final_fraction)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        peak = self.peak_learning_rate
        warmup = float(max(self.warmup_steps, 1))
        warming = peak * ops.minimum((step + 1.0) / warmup, 1.0)
        decay_steps = float(max(self.total_steps - self.warmup_steps, 1))
        progress = ops.clip((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
        if self.decay == "cosine":
            factor = 0.5 * (1.0 + ops.cos(math.pi * progress))
        elif self.decay == "linear":
            factor = 1.0 - progress
        else:
            factor = ops.ones_like(progress)
        final = self.final_fraction
        decayed = peak * (final + (1.0 - final) * factor)
        return ops.where(step < self.warmup_steps, warming, decayed)

    def get_config(self):
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "decay": self.decay,
            "final_fraction": self.final_fraction,
        }


def build_optimizer(
    learning_rate,
    total_steps,
    warmup_steps=0,
    decay="cosine",
    weight_decay=0.0,
    clipnorm=None,
):
    """Builds AdamW with a `WarmupDecay` schedule.

    Biases and normalisation scales/offsets are excluded from weight decay.

    Args:
        learning_rate: float, peak learning rate.
        total_steps: int, optimizer steps of the whole run.
        warmup_steps: int, linear warmup steps.
        decay: "cosine", "linear" or "constant".
        weight_decay: float, decoupled weight decay (AdamW).
        clipnorm: float or None; clips the global gradient norm.

    Returns:
        A `keras.optimizers.AdamW`.
    """
    schedule = WarmupDecay(learning_rate, total_steps, warmup_steps, decay)
    optimizer = keras.optimizers.AdamW(
        learning_rate=schedule,
        weight_decay=weight_decay,
        global_clipnorm=clipnorm or None,
    )
    optimizer.exclude_from_weight_decay(
        var_names=["bias", "gamma", "beta", "norm"]
    )
    return optimizer
