"""`TrainConfig`: how a model is trained and validated, one field a `python -m tfrec.train` flag.

Example:

>>> TrainConfig(epochs=3, batch_size=64).validate().monitor_for(ModelConfig(task="retrieval"))
'val_HR@10'
"""

import dataclasses
from typing import Optional, ClassVar

from tfrec.config import Config, require
from tfrec.evaluation import protocol
from tfrec.training import devices, optimizer

RESUMABLE_CHANGES = ("verbose", "log_every_steps", "checkpoint_every_steps", "eval_batch_size")
"""`TrainConfig` fields a resumed run may change: how it reports and checkpoints, not what it learns."""


@dataclasses.dataclass
class TrainConfig(Config):
    """How a model is trained and validated.

    Attributes:
        epochs: training epochs (at most; early stopping may end sooner);
            0: derived from the data (`auto_settings.auto_epochs`: about
            20,000 steps, 3 to 100 epochs).
        batch_size: GLOBAL batch size, split evenly over the replicas; 0:
            derived from the number of training windows
            (`auto_settings.auto_batch_size`: 8 up to 256).
        learning_rate: peak learning rate of AdamW.
        warmup_steps: linear warmup steps; when > 0 it replaces warmup_fraction.
        warmup_fraction: linear warmup as a fraction of all training steps.
        decay: learning-rate decay after warmup.
        weight_decay: AdamW decoupled weight decay (not on biases and norms).
        clipnorm: clip the global gradient norm to this value; 0 disables.
        early_stopping_patience: stop after this many epochs without
            improvement of monitor; 0 disables; unset (the default): enough
            epochs for `auto_settings.PATIENCE_STEPS` steps, at least 8, so
            that a small, noisy validation set does not stop a run early.
        monitor: validation metric for early stopping and the best weights,
            e.g. val_HR@10 or val_RMSE; auto: val_HR@10 when the model ranks
            the catalogue, else val_RMSE (rating) or val_AUC (click).
        eval_ks: cut-offs K of HR@K, NDCG@K, Recall@K.
        eval_batch_size: examples scored at once during evaluation.
        strategy: auto: MirroredStrategy over all GPUs (or cpu_replicas CPUs),
            TensorFlow's default strategy on one device; multi_worker:
            MultiWorkerMirroredStrategy over the cluster of the TF_CONFIG
            environment variable (docs/distributed.md), trained by
            `tfrec.training.multi_worker.fit`, the run directory written by
            the chief alone.
        cpu_replicas: split the CPU into this many logical devices and mirror
            over them (for testing multi-replica training without GPUs).
        max_steps: stop after this many optimizer steps in total; 0: no limit.
        steps_per_epoch: steps per epoch; 0: one pass over the training examples.
        checkpoint_every_steps: with a run directory, back up the training
            state every this many steps and after each epoch (0: after each
            epoch only).
        log_every_steps: with a run directory, write the batch loss and
            learning rate to TensorBoard every this many steps; 0: per epoch only.
        verbose: progress output: 0 silent; 1 Keras' progress bar on a terminal,
            one line per epoch otherwise (a log file); 2 one line per epoch.
        seed: seed of the shuffling of training examples.
    """

    epochs: int = 0
    batch_size: int = 0
    learning_rate: float = 2e-3
    warmup_steps: int = 0
    warmup_fraction: float = 0.05
    decay: str = "cosine"
    weight_decay: float = 0.01
    clipnorm: float = 1.0
    early_stopping_patience: Optional[int] = None
    monitor: str = "auto"
    eval_ks: tuple[int, ...] = (10, 100)
    eval_batch_size: int = 512
    strategy: str = "auto"
    cpu_replicas: int = 1
    max_steps: int = 0
    steps_per_epoch: int = 0
    checkpoint_every_steps: int = 100
    log_every_steps: int = 50
    verbose: int = 1
    seed: int = 0

    CHOICES: ClassVar[dict] = {"decay": optimizer.DECAYS, "strategy": devices.STRATEGIES}
    REMOVED: ClassVar[dict] = dict.fromkeys(
        ("text_adaptation_steps", "text_adaptation_layers", "text_adaptation_batch_size",
         "text_adaptation_learning_rate", "text_adaptation_window", "text_adaptation_length"),
        (None, "the behaviour-aware text adaptation"))
    """A run trained after the removed text adaptation still loads and resumes: its weights hold the adapted
    item text vectors."""

    def validate(self):
        """Raises `ConfigError` naming the first invalid field; returns self."""
        self.check_choices()
        for name in ("eval_batch_size", "cpu_replicas"):
            self.check_range(name, minimum=1)
        for name in ("epochs", "batch_size", "warmup_steps", "early_stopping_patience", "max_steps", "steps_per_epoch",
                     "checkpoint_every_steps", "log_every_steps", "weight_decay", "clipnorm"):
            if getattr(self, name) is not None:
                self.check_range(name, minimum=0)
        self.check_range("learning_rate", above=0)
        self.check_range("warmup_fraction", minimum=0.0, below=1.0)
        require(len(self.eval_ks) > 0 and all(isinstance(k, int) and k >= 1 for k in self.eval_ks),
                f"{self.name('eval_ks')}: expected positive integers, e.g. 10,100")
        return self

    def monitor_for(self, model_config) -> str:
        """`monitor`, or for "auto" the first HR@K when the model ranks the
        catalogue, else RMSE (rating) or AUC (click)."""
        if self.monitor != "auto":
            return self.monitor
        if model_config.task in protocol.RANKS_CATALOGUE:
            return f"val_HR@{self.eval_ks[0]}"
        return "val_RMSE" if model_config.ranking_target == "rating" else "val_AUC"
