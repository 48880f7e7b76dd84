"""`Trainer`: fits a tfrec model on prepared data, the way `python -m tfrec.train` does.

AdamW with linear warmup and cosine (or linear) decay, decoupled weight
decay, gradient clipping, full-catalogue validation after every epoch, early
stopping with the best weights restored, then the held-out metrics of the
split. Given a `run_dir`, it also keeps resumable checkpoints (a killed fit
resumes when called again on the same directory), TensorBoard scalars and
the item-embedding projector, and writes the run directory's files
(`tfrec.training.run_dir`), which `load_run`, `tfrec.evaluate` and
`tfrec.export` read.

Example:

>>> data = tfrec.data.prepare(tfrec.data.DataConfig(source="synthetic:users=60,items=80"))
>>> model = tfrec.models.build_model(tfrec.models.ModelConfig(encoder="tiny"), data)
>>> result = Trainer(TrainConfig(epochs=2, batch_size=32)).fit(model, data)
>>> sorted(result.metrics)[:3]
['HR@10', 'HR@100', 'MRR']
"""

import contextlib
import dataclasses
import datetime
import math
import os
import sys
import tempfile
import time
from typing import ClassVar, Optional

import keras
import numpy as np
from absl import logging

from tfrec.config import Config, ConfigError, require
from tfrec.data import pipeline
from tfrec.baselines import references
from tfrec.evaluation import protocol
from tfrec.training import (auto_settings, callbacks, checks, devices, multi_worker, optimizer, projector,
                            summaries, text_adaptation)
from tfrec.training import run_dir as run_files


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
            improvement of monitor; 0 disables.
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
        text_adaptation_steps: before training, fine-tune the item text
            encoder for this many steps on items that follow each other in
            the training sequences (`tfrec.training.text_adaptation`); 0: off.
            Needs ModelConfig.use_text and encoder_trainable 'none'.
        text_adaptation_layers: top encoder layers the adaptation fine-tunes.
        text_adaptation_batch_size: item pairs per adaptation step.
        text_adaptation_learning_rate: peak learning rate of the adaptation.
        text_adaptation_window: items at most this many behaviours apart make a pair.
        text_adaptation_length: tokens of each item text the adaptation reads
            (the first ones).
    """

    epochs: int = 0
    batch_size: int = 0
    learning_rate: float = 2e-3
    warmup_steps: int = 0
    warmup_fraction: float = 0.05
    decay: str = "cosine"
    weight_decay: float = 0.01
    clipnorm: float = 1.0
    early_stopping_patience: int = 8
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
    text_adaptation_steps: int = 0
    text_adaptation_layers: int = 1
    text_adaptation_batch_size: int = 32
    text_adaptation_learning_rate: float = 5e-5
    text_adaptation_window: int = 3
    text_adaptation_length: int = 64

    CHOICES: ClassVar[dict] = {"decay": optimizer.DECAYS, "strategy": devices.STRATEGIES}

    def validate(self):
        """Raises `ConfigError` naming the first invalid field; returns self."""
        self.check_choices()
        for name in ("eval_batch_size", "cpu_replicas"):
            self.check_range(name, minimum=1)
        for name in ("epochs", "batch_size", "warmup_steps", "early_stopping_patience", "max_steps", "steps_per_epoch",
                     "checkpoint_every_steps", "log_every_steps", "weight_decay", "clipnorm", "text_adaptation_steps"):
            self.check_range(name, minimum=0)
        for name in ("text_adaptation_layers", "text_adaptation_batch_size", "text_adaptation_window",
                     "text_adaptation_length"):
            self.check_range(name, minimum=1)
        self.check_range("text_adaptation_learning_rate", above=0)
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


@dataclasses.dataclass
class TrainResult:
    """What `Trainer.fit` returns.

    Attributes:
        metrics: the test metrics of the best weights, their validation
            metrics under "valid", and "epochs" (trained), "max_epochs" and
            "batch_size" (as used, auto ones resolved), "examples_per_second"
            (median over epochs), "wall_time_seconds", "trained_at" (UTC),
            "baselines" (`references.reference_metrics` on the same test
            targets) and "data_summary" (sizes): the contents of
            `DIR/metrics.json`.
        history: per-epoch logs of this call (`keras.callbacks.History.history`).
        run_dir: the run directory, or None.
    """

    metrics: dict
    history: dict
    run_dir: Optional[str] = None


RUN_FACTS = ("valid", "epochs", "max_epochs", "batch_size", "examples_per_second", "wall_time_seconds", "trained_at",
             "baselines", "data_summary")
"""Keys of `TrainResult.metrics` that describe the run rather than the held-out figures."""


def format_metrics(metrics: dict) -> str:
    """One line of a run's metrics (`TrainResult.metrics`, or `evaluate_run`'s): figures, then run facts.

    >>> format_metrics({"HR@10": 0.14634, "MRR": 0.07104, "epochs": 19, "max_epochs": 30, "batch_size": 128,
    ...                 "examples_per_second": 397.2, "wall_time_seconds": 177.4})
    'HR@10 0.1463, MRR 0.0710 (19 of 30 epochs, batch 128, 397 examples/s, 177 s)'
    """
    line = ", ".join(f"{name} {value:.4f}" for name, value in metrics.items()
                     if name not in RUN_FACTS and isinstance(value, float))
    if "epochs" in metrics:
        line += (f" ({metrics['epochs']} of {metrics['max_epochs']} epochs, batch {metrics['batch_size']}, "
                 f"{metrics['examples_per_second']:.0f} examples/s, {metrics['wall_time_seconds']:.0f} s)")
    return line


class Trainer:
    """Trains tfrec models with one `TrainConfig`.

    A multi-replica strategy (several GPUs, or `cpu_replicas` > 1) needs the
    model's variables created in its scope: build the model inside
    `trainer.strategy.scope()` (or with `trainer.build_model`).

    Args:
        config: `TrainConfig`.

    Example:

    >>> trainer = Trainer(TrainConfig(epochs=3))
    >>> model = trainer.build_model(ModelConfig(encoder="tiny"), data)
    >>> trainer.fit(model, data, run_dir="runs/x").metrics["HR@10"]
    """

    def __init__(self, config: TrainConfig):
        self.config = config.validate()
        devices.configure_cpu_replicas(config.cpu_replicas)
        self.strategy = devices.make_strategy(config.strategy, config.cpu_replicas)
        # The task of a multi-worker cluster ("worker-1"); None when this process is the chief or alone.
        self.worker_task = None
        if devices.is_multi_worker(self.strategy) and not self.strategy.extended.should_checkpoint:
            resolver = self.strategy.cluster_resolver
            self.worker_task = f"{resolver.task_type}-{resolver.task_id}"
        if config.batch_size:
            checks.check_batch_split(config.batch_size, self.strategy.num_replicas_in_sync)

    def build_model(self, model_config, data):
        """`tfrec.models.build_model(model_config, data)` in this trainer's strategy scope."""
        from tfrec.models import build_model

        with self.strategy.scope():
            return build_model(model_config, data)

    def fit(self, model, data, run_dir: Optional[str] = None) -> TrainResult:
        """Trains `model` on `data`'s train split, validating on its valid split.

        Args:
            model: a `tfrec.models.Recommender`, built on `data`, not compiled.
            data: `tfrec.data.PreparedData`.
            run_dir: optional run directory: checkpoints, TensorBoard logs and
                the run's files; a fit killed there resumes when called again
                with the same configs.

        Returns:
            `TrainResult`.

        Raises:
            ConfigError: a config value, or its combination with the data,
                cannot work; raised before any training step.
        """
        started = time.time()
        if run_dir:
            run_files.check_run_directory(run_dir)
        cfg = self.config
        model_config = model.cfg
        monitor = cfg.monitor_for(model_config)
        checks.check_monitor(monitor, protocol.metric_names(model_config, cfg.eval_ks))
        checks.check_data(model_config, data, cfg.eval_ks)
        self._check_model(model, data)
        record = {"data_config": data.config.to_dict(), "model_config": model_config.to_dict(),
                  "train_config": cfg.to_dict(), "num_replicas": self.strategy.num_replicas_in_sync,
                  "data_name": data.name, "data_fingerprint": data.fingerprint}
        if run_dir:
            _check_same_run(run_dir, record)

        if cfg.text_adaptation_steps:
            self._adapt_text(model, data, run_dir)
        training = data.training_examples()  # arrays, or a dataset streamed from TFRecords
        model.adapt(training)
        train_examples = model.train_examples(training)
        num_train = pipeline.count(train_examples)
        batch_size = cfg.batch_size or auto_settings.auto_batch_size(num_train, self.strategy.num_replicas_in_sync)
        steps_per_epoch = cfg.steps_per_epoch or math.ceil(num_train / batch_size)
        warm_start = getattr(model, "warm_started_from", None)
        epochs = cfg.epochs or auto_settings.auto_epochs(steps_per_epoch, warm_start=bool(warm_start))
        record["warm_start_from"] = warm_start
        with self.strategy.scope():
            model.compile(optimizer=self._optimizer(epochs * steps_per_epoch))
        train_ds = pipeline.to_tf_dataset(train_examples, batch_size=batch_size, shuffle=True, seed=cfg.seed,
                                          cache=False).repeat()
        valid = protocol.HeldOut.from_data(data, "valid")
        logging.info("training %s on %s: %d training windows (of %d training examples), batch %d%s, "
                     "%d steps per epoch, %d epochs at most%s, %d replica(s), monitor %s", model_config.task,
                     data.name, num_train, data.num_examples("train"), batch_size,
                     "" if cfg.batch_size else " (auto)", steps_per_epoch, epochs, "" if cfg.epochs else " (auto)",
                     self.strategy.num_replicas_in_sync, monitor)
        with _state_directory(run_dir, self.worker_task) as directory:
            if run_dir:
                run_files.write_json_atomic(os.path.join(directory, run_files.CONFIG), record)
            best = callbacks.BestWeights(monitor, os.path.join(directory, run_files.CHECKPOINTS),
                                         cfg.early_stopping_patience)
            history = {}
            if best.stopped:  # this directory's run already stopped early: nothing is left to train
                best.restore(model)
            else:
                fit_callbacks = self._callbacks(directory if run_dir else None, valid, model_config, best,
                                                batch_size, epochs)
                verbose = 1 if self._progress_bar() else 0
                if devices.is_multi_worker(self.strategy):  # where Model.fit fails
                    fitted = multi_worker.fit(model, train_ds, epochs, steps_per_epoch, fit_callbacks, verbose)
                else:
                    fitted = model.fit(train_ds, epochs=epochs, steps_per_epoch=steps_per_epoch, shuffle=False,
                                       callbacks=fit_callbacks, verbose=verbose)
                history = fitted.history
            metrics = self._held_out_metrics(model, data, valid)
            records = _epoch_records(directory, history) if run_dir else _history_records(history)
            metrics["examples_per_second"] = float(np.median([r["examples_per_second"] for r in records])) \
                if records else 0.0
            metrics["epochs"] = records[-1]["epoch"] if records else 0
            metrics["max_epochs"] = epochs
            metrics["batch_size"] = batch_size
            metrics["wall_time_seconds"] = time.time() - started
            metrics["trained_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
            metrics["baselines"] = references.reference_metrics(data, model_config, cfg.eval_ks)
            metrics["data_summary"] = {**data.summary(), "training_windows": num_train}
            if run_dir:
                run_files.write_run(directory, model, data, metrics)
                _write_projector(directory, model, data)
        logging.info("test metrics: %s", {k: v for k, v in metrics.items() if not isinstance(v, (dict, str))})
        return TrainResult(metrics, history, run_dir)

    def _check_model(self, model, data):
        require(model.item_ids == list(data.vocab.item_ids),
                "the model was built on another catalogue than the data's: build it with "
                "tfrec.models.build_model(model_config, data)")
        if self.strategy.num_replicas_in_sync > 1:
            outside = [v.path for v in model.variables
                       if not self.strategy.extended.variable_created_in_scope(v.value)]
            require(not outside, f"the model's variables (e.g. {outside[:1]}) were not created in the "
                    f"{self.strategy.num_replicas_in_sync}-replica strategy's scope: build the model with "
                    "trainer.build_model(...) or inside trainer.strategy.scope()")

    def _adapt_text(self, model, data, run_dir):
        """Runs the behaviour-aware text adaptation, unless a resumed run already holds its result."""
        cfg = self.config
        require(model.cfg.use_text and model.cfg.encoder_trainable == "none",
                f"TrainConfig.text_adaptation_steps={cfg.text_adaptation_steps} needs ModelConfig.use_text=True and "
                f"encoder_trainable='none' (got use_text={model.cfg.use_text}, "
                f"encoder_trainable={model.cfg.encoder_trainable!r})")
        if run_dir and _has_training_state(run_dir):
            logging.info("resuming: the run's saved weights hold the adapted text encoder")
            return
        require(not data.streamed, f"TrainConfig.text_adaptation_steps={cfg.text_adaptation_steps} reads the "
                "training interactions in memory: it needs a table source, not a tfrecord: one")
        pairs = text_adaptation.cooccurrence_pairs(data.split.train, data.vocab, cfg.text_adaptation_window)
        with self.strategy.scope():
            losses = text_adaptation.adapt_item_text(
                model.item_tower, pairs, steps=cfg.text_adaptation_steps, layers=cfg.text_adaptation_layers,
                batch_size=cfg.text_adaptation_batch_size, learning_rate=cfg.text_adaptation_learning_rate,
                length=cfg.text_adaptation_length, seed=cfg.seed)
        logging.info("text adaptation: %d pairs, mean loss of the first / last 10 steps %.4f -> %.4f",
                     len(pairs), np.mean(losses[:10]), np.mean(losses[-10:]))

    def _optimizer(self, total_steps):
        cfg = self.config
        if cfg.max_steps:
            total_steps = min(total_steps, cfg.max_steps)
        warmup = cfg.warmup_steps or round(cfg.warmup_fraction * total_steps)
        return optimizer.build_optimizer(cfg.learning_rate, total_steps, warmup, cfg.decay, cfg.weight_decay,
                                         cfg.clipnorm)

    def _progress_bar(self):
        """Keras' progress bar is for a terminal: elsewhere it writes every redraw, escape codes included."""
        return self.config.verbose == 1 and sys.stdout.isatty()

    def _callbacks(self, directory, valid, model_config, best, batch_size, epochs):
        """The callbacks of `model.fit`, in the order their epoch-end logs need."""
        cfg = self.config
        fit_callbacks = [
            callbacks.Throughput(batch_size),
            callbacks.ValidationMetrics(valid, model_config, cfg.eval_ks, cfg.eval_batch_size),
            best,
        ]
        if directory:
            checkpoints = os.path.join(directory, run_files.CHECKPOINTS)
            fit_callbacks += [
                callbacks.TrainingLog(os.path.join(directory, run_files.TRAINING_LOG)),
                callbacks.TrainingBackup(os.path.join(checkpoints, "backup"), cfg.checkpoint_every_steps),
                summaries.ScalarSummaries(os.path.join(directory, run_files.TENSORBOARD), cfg.log_every_steps),
            ]
        if cfg.max_steps:
            fit_callbacks.append(callbacks.StopAtStep(cfg.max_steps))
        if cfg.verbose and not self._progress_bar():
            fit_callbacks.append(callbacks.EpochLine(epochs, best.monitor))
        return fit_callbacks

    def _held_out_metrics(self, model, data, valid):
        cfg = self.config
        test = protocol.HeldOut.from_data(data, "test")
        metrics = protocol.evaluate_model(model, test, model.cfg, cfg.eval_ks, cfg.eval_batch_size)
        metrics["valid"] = protocol.evaluate_model(model, valid, model.cfg, cfg.eval_ks, cfg.eval_batch_size)
        return metrics



@contextlib.contextmanager
def _state_directory(directory, worker_task=None):
    """`directory`, or a temporary one (removed afterwards) for the best-epoch state of a fit without one,
    or for the files of the non-chief `worker_task` of a multi-worker fit (`multi_worker.worker_directory`)."""
    if directory and worker_task:
        with multi_worker.worker_directory(directory, worker_task) as temporary:
            yield temporary
        return
    if directory:
        os.makedirs(directory, exist_ok=True)
        yield directory
        return
    with tempfile.TemporaryDirectory(prefix="tfrec-fit-") as temporary:
        yield temporary


def _has_training_state(directory):
    """Whether a fit in `directory` resumes from saved weights (a backup, or the best epoch's)."""
    checkpoints = os.path.join(directory, run_files.CHECKPOINTS)
    backup = os.path.join(checkpoints, "backup")
    return bool(os.path.isdir(backup) and os.listdir(backup)) or os.path.exists(
        os.path.join(checkpoints, callbacks.BEST_WEIGHTS))


def _epoch_records(directory, history):
    """The epoch records of the run's training log (all epochs, resumed ones included)."""
    path = os.path.join(directory, run_files.TRAINING_LOG)
    if not os.path.exists(path):
        return _history_records(history)
    return [r for r in run_files.read_jsonl(path) if r["event"] == "epoch"]


def _history_records(history):
    count = len(next(iter(history.values()), []))
    return [{"epoch": epoch + 1, **{key: values[epoch] for key, values in history.items()}} for epoch in range(count)]


# Fields a resumed run may change: how it reports and checkpoints, not what it learns.
RESUMABLE_CHANGES = ("verbose", "log_every_steps", "checkpoint_every_steps", "eval_batch_size")


def _check_same_run(directory, record):
    """A rerun in an existing run directory must train the same model the same way on the same data."""
    existing_path = os.path.join(directory, run_files.CONFIG)
    if not os.path.exists(existing_path):
        return
    existing = run_files.read_json(existing_path)
    run_files.check_format(directory, existing)
    from tfrec.data import DataConfig
    from tfrec.models import ModelConfig

    for section, config_class in (("data_config", DataConfig), ("model_config", ModelConfig),
                                  ("train_config", TrainConfig)):
        cls = config_class.__name__
        # Through the config class: a run written before a field existed holds its default.
        old, new = config_class.from_dict(existing.get(section, {})).to_dict(), record[section]
        for name in sorted(set(old) | set(new)):
            if section == "train_config" and name in RESUMABLE_CHANGES:
                continue
            if old.get(name) != new.get(name):
                raise ConfigError(
                    f"{cls}.{name}={new.get(name)!r}: the run directory {directory} holds a run with "
                    f"{old.get(name)!r}; fit the same configs to resume it, or use a new run directory")
    if existing.get("data_fingerprint", record["data_fingerprint"]) != record["data_fingerprint"]:
        raise ConfigError(
            f"the data of {record['data_name']} changed since the run in {directory} started (content "
            f"fingerprint {existing['data_fingerprint']} then, {record['data_fingerprint']} now): resume it on the "
            "data it started on, or train on the new data in a new run directory")


def _write_projector(directory, model, data):
    """Item embeddings with ids and titles for TensorBoard's projector."""
    model.refresh_catalogue()
    ids = data.vocab.item_ids[1:]
    embeddings = np.asarray(model.item_embeddings(np.arange(1, data.vocab.num_items + 1, dtype=np.int32)))
    projector.write_projector(os.path.join(directory, run_files.TENSORBOARD), embeddings,
                              {"item_id": ids, "title": data.item_titles[1:]})
