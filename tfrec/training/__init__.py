"""Training: `Trainer` and `TrainConfig`, and the pieces a fit uses.

- `trainer`: `TrainConfig`, `Trainer`, `TrainResult`;
- `run_dir`: the files of a run directory, `load_run`;
- `optimizer`: AdamW with warmup and decay; `devices`: the `tf.distribute` strategy;
- `callbacks`, `summaries`, `projector`: validation, best weights, logs, TensorBoard;
- `checks`: the data against the configs, before any step.

Example:

>>> from tfrec.training import Trainer, TrainConfig
>>> result = Trainer(TrainConfig(epochs=2)).fit(model, data, run_dir="runs/x")
"""

from tfrec.training.run_dir import Run, evaluate_run, load_run, load_run_data
from tfrec.training.trainer import TrainConfig, Trainer, TrainResult

__all__ = ["Run", "TrainConfig", "TrainResult", "Trainer", "evaluate_run", "load_run", "load_run_data"]
