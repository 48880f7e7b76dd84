"""Batch size and epoch count derived from the training data, for `TrainConfig`'s 0 = auto.

A user who brings data should not have to guess either. Sequence training
makes one window per user (more for long histories), so a data set of a few
thousand users has only a few thousand windows: at a batch of 256 an epoch is
a handful of steps, and validation swings from epoch to epoch. The tuned
configs of MovieLens-100K (about 1,500 windows) and Amazon Office (4,930)
both train best at a batch of 8 for 15,000-25,000 steps; the rules below
reproduce those settings and grow the batch with the data.

Example:

>>> auto_batch_size(4930)
8
>>> auto_batch_size(2_000_000)
256
>>> auto_epochs(steps_per_epoch=617)
33
>>> auto_epochs(steps_per_epoch=617, warm_start=True)
6
"""

import math

STEPS_PER_EPOCH = 500  # the batch grows once an epoch would exceed about this many steps
MIN_BATCH, MAX_BATCH = 8, 256
TOTAL_STEPS = 20_000  # optimizer steps the epoch count aims at
WARM_START_STEPS = TOTAL_STEPS // 6  # a warm-started model only adapts: about a quarter of the 12-16k
# steps after which early stopping ends a new model (scripts/bench_refresh.py)
MIN_EPOCHS, MAX_EPOCHS = 3, 100
PATIENCE_STEPS = TOTAL_STEPS // 10  # early stopping waits at least this many steps without improvement
MIN_PATIENCE = 8
MAX_SMOOTHING = 5  # early stopping reads the mean of at most this many epochs


def auto_batch_size(num_windows: int, replicas: int = 1) -> int:
    """The power of two nearest below `num_windows / STEPS_PER_EPOCH`, within [8, 256],
    rounded up to a multiple of `replicas`."""
    batch = 2 ** max(0, math.floor(math.log2(max(num_windows, 1) / STEPS_PER_EPOCH)))
    batch = min(max(batch, MIN_BATCH), MAX_BATCH)
    return math.ceil(batch / replicas) * replicas


def auto_epochs(steps_per_epoch: int, warm_start: bool = False) -> int:
    """Epochs of about `TOTAL_STEPS` steps (`WARM_START_STEPS` for a warm-started model), within
    [3, 100]; early stopping may end sooner."""
    total = WARM_START_STEPS if warm_start else TOTAL_STEPS
    return min(max(math.ceil(total / max(steps_per_epoch, 1)), MIN_EPOCHS), MAX_EPOCHS)


def auto_patience(steps_per_epoch: int) -> int:
    """Epochs without improvement before early stopping: `PATIENCE_STEPS` steps, at least `MIN_PATIENCE`.

    A few hundred validation users make validation HR@10 swing by several points from epoch to epoch; a
    patience counted in steps rather than epochs keeps a small data set's short epochs from ending a run
    on noise.

    >>> auto_patience(617), auto_patience(42)
    (8, 48)
    """
    return max(MIN_PATIENCE, math.ceil(PATIENCE_STEPS / max(steps_per_epoch, 1)))


def stopping_smoothing(patience: int) -> int:
    """Epochs whose mean validation figure early stopping compares: half the patience, within [1, 5].

    A mean of a few epochs is not fooled by one lucky epoch; half the patience leaves the mean time to
    move before the patience runs out, and a patience below 4 keeps the epoch's own value.

    >>> stopping_smoothing(8), stopping_smoothing(48), stopping_smoothing(3)
    (4, 5, 1)
    """
    return max(1, min(MAX_SMOOTHING, patience // 2))
