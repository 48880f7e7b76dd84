"""Training: `Trainer` and `TrainConfig`, and the pieces a fit uses.

- `config`: `TrainConfig`; `trainer`: `Trainer`, `TrainResult`;
- `run_dir`: `RunDirectory`, the one owner of a run directory's files, and `load_run`;
- `atomic_files`: files written through a temporary name and a rename;
- `optimizer`: AdamW with warmup and decay; `devices`: the `tf.distribute` strategy;
- `callbacks`, `summaries`, `projector`: validation, best weights, logs, TensorBoard;
- `checks`: the data against the configs, before any step.

Example:

>>> from tfrec.training import Trainer, TrainConfig
>>> result = Trainer(TrainConfig(epochs=2)).fit(model, data, run_dir="runs/x")
"""

from tfrec.training.config import TrainConfig
from tfrec.training.run_dir import Run, RunDirectory, evaluate_run, load_run, load_run_data
from tfrec.training.trainer import Trainer, TrainResult

__all__ = ["Run", "RunDirectory", "TrainConfig", "TrainResult", "Trainer", "evaluate_run", "load_run",
           "load_run_data"]
