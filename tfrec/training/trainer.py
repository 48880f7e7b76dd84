"""`Trainer`: fits a tfrec model on prepared data, the way `python -m tfrec.train` does.

AdamW with linear warmup and cosine (or linear) decay, decoupled weight
decay, gradient clipping, full-catalogue validation after every epoch, early
stopping with the best weights restored, then the held-out metrics of the
split. Given a `run_dir`, it also keeps resumable checkpoints (a killed fit
resumes when called again on the same directory), TensorBoard scalars and
the item-embedding projector, and writes the run directory's files
(`tfrec.training.run_dir.RunDirectory`), which `load_run`, `tfrec.evaluate`
and `tfrec.export` read.

`fit` runs four steps: `_prepare` (checks, the schedule,
the compiled model and its input), `_fit` (Keras' fit with the validation,
best-weights and logging callbacks), `_evaluate` (the held-out figures,
`tfrec.evaluation.run_figures`) and `_report` (the run facts and files).

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
import sys
import tempfile
import time
from typing import Optional, Union

import numpy as np
import tensorflow as tf
from absl import logging

from tfrec.config import require
from tfrec.data import pipeline
from tfrec.evaluation import prior_weight, protocol, references, run_figures
from tfrec.evaluation.metrics import NonFiniteScoresError
from tfrec.training import auto_settings, callbacks, checks, devices, multi_worker, optimizer, summaries
from tfrec.training.config import TrainConfig
from tfrec.training.run_dir import BACKUP, CHECKPOINTS, CONFIG, TENSORBOARD, TRAINING_LOG, RunDirectory


@dataclasses.dataclass
class TrainResult:
    """What `Trainer.fit` returns.

    Attributes:
        metrics: the test metrics of the best weights, their validation
            metrics under "valid", and "epochs" (trained), "max_epochs" and
            "batch_size" (as used, auto ones resolved), "examples_per_second"
            (median over epochs), "wall_time_seconds", "trained_at" (UTC),
            "baselines" (`tfrec.evaluation.references` on the same test
            targets; their validation figures under "valid" -> "baselines"),
            "data_summary" (sizes) and "transition_prior" (its weight and
            the validation figures of each weight tried, for a model with a
            prior): the contents of `DIR/metrics.json`.
        history: per-epoch logs of this call (`keras.callbacks.History.history`).
        run_dir: the run directory, or None.
    """

    metrics: dict
    history: dict
    run_dir: Optional[str] = None


RUN_FACTS = ("valid", "epochs", "max_epochs", "batch_size", "examples_per_second", "wall_time_seconds", "trained_at",
             "baselines", "data_summary", "transition_prior", "derived_settings")
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


@dataclasses.dataclass
class FitPlan:
    """What `Trainer._prepare` settles before the first step, for the steps after it.

    Attributes:
        record: the run's `config.json` (configs and data facts).
        monitor: the validation metric of early stopping and the best weights.
        train_ds: the repeated, batched training dataset.
        valid: the valid `protocol.HeldOut` the epochs are validated on.
        num_train: training windows (examples the model trains on).
        valid_baselines: the reference baselines' validation metrics (`references.reference_metrics`).
        patience: epochs without improvement before early stopping (0: never), auto resolved.
        batch_size, steps_per_epoch, epochs: the schedule, auto values resolved.
    """

    record: dict
    monitor: str
    train_ds: tf.data.Dataset
    valid: protocol.HeldOut
    num_train: int
    valid_baselines: dict
    patience: int
    batch_size: int
    steps_per_epoch: int
    epochs: int


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

    def fit(self, model, data, run_dir: Union[str, RunDirectory, None] = None) -> TrainResult:
        """Trains `model` on `data`'s train split, validating on its valid split.

        Args:
            model: a `tfrec.models.Recommender`, built on `data`, not compiled.
            data: `tfrec.data.PreparedData`.
            run_dir: optional run directory (a path, or a `RunDirectory` already
                checked): checkpoints, TensorBoard logs and the run's files; a
                fit killed there resumes when called again with the same configs.

        Returns:
            `TrainResult`.

        Raises:
            ConfigError: a config value, or its combination with the data,
                cannot work; raised before any training step.
            callbacks.TrainingDivergedError: the training loss became NaN or
                infinite (the step and the optimizer settings named).
            disk_space.StorageError: no room for a backup or the best weights.
        """
        started = time.time()
        run = RunDirectory(run_dir) if isinstance(run_dir, str) else run_dir
        plan = self._prepare(model, data, run)
        with self._state_directory(run) as state:
            history = self._fit(model, plan, state, keep_files=run is not None)
            prior = self._calibrate(model, plan)
            figures = self._evaluate(model, data, plan)
            if prior:
                figures["transition_prior"] = prior
            metrics = self._report(model, data, plan, figures, state.epoch_records(history), started,
                                   state if run else None)
        return TrainResult(metrics, history, run.path if run else None)

    def _prepare(self, model, data, run: Optional[RunDirectory]) -> FitPlan:
        """Checks everything against the data (and a resumed run), then settles the schedule, compiles the
        model and makes its training dataset."""
        self._clip_default_ks(data.vocab.num_items)
        cfg = self.config
        self._progress("preparing to train %s on %s (%d training examples): checks, model adaptation to the "
                       "examples, input pipeline, compilation", model.cfg.task, data.name, data.num_examples("train"))
        monitor = self._check(model, data)
        record = {"data_config": data.config.with_absolute_source().to_dict(), "model_config": model.cfg.to_dict(),
                  "train_config": cfg.to_dict(), "num_replicas": self.strategy.num_replicas_in_sync,
                  "data_name": data.name, "data_fingerprint": data.fingerprint}
        if run:
            run.check_same_run(record)
        training = data.training_examples()  # arrays, or a dataset streamed from TFRecords
        model.adapt(training)
        train_examples = model.train_examples(training)
        num_train = pipeline.count(train_examples)
        batch_size, steps_per_epoch, epochs = self._schedule(model, num_train)
        patience = cfg.early_stopping_patience
        if patience is None:
            patience = auto_settings.auto_patience(steps_per_epoch)
        record["warm_start_from"] = getattr(model, "warm_started_from", None)
        with self.strategy.scope():
            model.compile(optimizer=self._optimizer(epochs * steps_per_epoch))
        train_ds = pipeline.to_tf_dataset(train_examples, batch_size=batch_size, shuffle=True, seed=cfg.seed,
                                          cache=False).repeat()
        self._progress("training %s on %s: %d training windows (of %d training examples), batch %d%s, "
                     "%d steps per epoch, %d epochs at most%s, %d replica(s), monitor %s, patience %d%s", model.cfg.task,
                     data.name, num_train, data.num_examples("train"), batch_size,
                     "" if cfg.batch_size else " (auto)", steps_per_epoch, epochs, "" if cfg.epochs else " (auto)",
                     self.strategy.num_replicas_in_sync, monitor, patience,
                     "" if cfg.early_stopping_patience is not None else " (auto)")
        valid_baselines = references.reference_metrics(data, model.cfg, cfg.eval_ks, split="valid")
        return FitPlan(record, monitor, train_ds, protocol.HeldOut.from_data(data, "valid"), num_train,
                       valid_baselines, patience, batch_size, steps_per_epoch, epochs)

    def _progress(self, message: str, *args) -> None:
        """Says what the fit is doing: on standard error when `TrainConfig.verbose`, else in the absl log."""
        if self.config.verbose:
            print("tfrec.Trainer: " + message % args, file=sys.stderr, flush=True)
        else:
            logging.info(message, *args)

    def _clip_default_ks(self, num_items: int) -> None:
        """The default cut-offs (`eval_ks`) larger than a small catalogue become its size, said once; cut-offs
        given explicitly stay, and `_check` refuses them."""
        ks = self.config.eval_ks
        if ks == TrainConfig().eval_ks and max(ks) > num_items:
            clipped = tuple(dict.fromkeys(min(k, num_items) for k in ks))
            logging.info("TrainConfig.eval_ks=%s: the catalogue has %d items, so the cut-offs are %s",
                         ",".join(map(str, ks)), num_items, ",".join(map(str, clipped)))
            self.config = self.config.replace(eval_ks=clipped)

    def _schedule(self, model, num_train: int) -> tuple:
        """(batch size, steps per epoch, epochs) of the config, auto values derived from `num_train` windows
        and, for the epochs, from whether `model` is warm-started."""
        cfg = self.config
        batch_size = cfg.batch_size or auto_settings.auto_batch_size(num_train, self.strategy.num_replicas_in_sync)
        steps_per_epoch = cfg.steps_per_epoch or math.ceil(num_train / batch_size)
        warm_start = bool(getattr(model, "warm_started_from", None))
        return batch_size, steps_per_epoch, cfg.epochs or auto_settings.auto_epochs(steps_per_epoch, warm_start)

    def _check(self, model, data) -> str:
        """The monitor, after checking it, the data and the model against the configs."""
        monitor = self.config.monitor_for(model.cfg)
        checks.check_monitor(monitor, protocol.metric_names(model.cfg, self.config.eval_ks))
        checks.check_data(model.cfg, data, self.config.eval_ks)
        require(model.item_ids == list(data.vocab.item_ids),
                "the model was built on another catalogue than the data's: build it with "
                "tfrec.models.build_model(model_config, data)")
        if self.strategy.num_replicas_in_sync > 1:
            outside = [v.path for v in model.variables
                       if not self.strategy.extended.variable_created_in_scope(v.value)]
            require(not outside, f"the model's variables (e.g. {outside[:1]}) were not created in the "
                    f"{self.strategy.num_replicas_in_sync}-replica strategy's scope: build the model with "
                    "trainer.build_model(...) or inside trainer.strategy.scope()")
        return monitor

    @contextlib.contextmanager
    def _state_directory(self, run: Optional[RunDirectory]):
        """The `RunDirectory` of the fit's state: `run`'s own (`RunDirectory.state_directory`), or a
        temporary one (removed afterwards) for the best-epoch state of a fit without a run directory."""
        if run:
            with run.state_directory(self.worker_task) as state:
                yield state
            return
        with tempfile.TemporaryDirectory(prefix="tfrec-fit-") as temporary:
            yield RunDirectory(temporary)

    def _fit(self, model, plan: FitPlan, state: RunDirectory, keep_files: bool) -> dict:
        """Keras' fit over the plan, the best weights restored; returns this call's per-epoch logs.
        `keep_files`: `state` is a run's, which keeps its config, training log, backups and TensorBoard scalars."""
        if keep_files:
            state.write_json(CONFIG, plan.record)
        best = callbacks.BestWeights(plan.monitor, state.file(CHECKPOINTS), plan.patience,
                                     smoothing=auto_settings.stopping_smoothing(plan.patience))
        if best.stopped:  # this directory's run already stopped early: nothing is left to train
            best.restore(model)
            return {}
        divergence = callbacks.StopOnDivergence(self.config.learning_rate, self.config.clipnorm)
        fit_callbacks = [divergence] + self._callbacks(model.cfg, plan, best, state if keep_files else None)
        verbose = 1 if self._progress_bar() else 0
        try:
            if devices.is_multi_worker(self.strategy):  # where Model.fit fails
                fitted = multi_worker.fit(model, plan.train_ds, plan.epochs, plan.steps_per_epoch, fit_callbacks,
                                          verbose)
            else:
                fitted = model.fit(plan.train_ds, epochs=plan.epochs, steps_per_epoch=plan.steps_per_epoch,
                                   shuffle=False, callbacks=fit_callbacks, verbose=verbose)
        except NonFiniteScoresError:  # finite weights, so large the validation scores overflow
            raise divergence.diverged("the validation scores became NaN or infinite") from None
        return fitted.history

    def _calibrate(self, model, plan: FitPlan) -> Optional[dict]:
        """Sets the form and weight of the model's transition prior to the best on validation (`choose_prior_weight`);
        returns the choice for `metrics.json`, or None for a model without a prior."""
        if getattr(model, "transition_prior", None) is None:
            return None
        choice = prior_weight.choose_prior_weight(model, plan.valid, batch_size=self.config.eval_batch_size)
        model.transition_prior.weight.assign(choice.weight)
        model.transition_prior.set_form(choice.form)
        logging.info("%s", choice.summary())
        return {"weight": choice.weight, "form": choice.form, "neighbours": model.transition_prior.neighbours,
                "valid": {form: {str(weight): {name: figures[name] for name in prior_weight.CRITERIA}
                                 for weight, figures in by_weight.items()}
                          for form, by_weight in choice.table.items()}}

    def _evaluate(self, model, data, plan: FitPlan) -> dict:
        """The held-out figures of the best weights, and the reference baselines' (`run_figures`)."""
        return run_figures.held_out_figures(model, data, self.config.eval_ks, self.config.eval_batch_size,
                                            valid=plan.valid, valid_baselines=plan.valid_baselines)

    def _report(self, model, data, plan: FitPlan, figures: dict, records: list, started: float,
                run: Optional[RunDirectory]) -> dict:
        """`figures` with the run facts (`RUN_FACTS`) of the epoch `records`: the contents of `metrics.json`,
        written to `run` with the model, its catalogue and the projector when the fit has a run directory."""
        metrics = {key: value for key, value in figures.items() if key != "baselines"}
        metrics["examples_per_second"] = float(np.median([r["examples_per_second"] for r in records])) \
            if records else 0.0
        metrics["epochs"] = records[-1]["epoch"] if records else 0
        metrics["max_epochs"] = plan.epochs
        metrics["derived_settings"] = {**getattr(model, "derived_settings", {}), "early_stopping_patience": (
            f"{plan.patience}: set" if self.config.early_stopping_patience is not None else
            f"{plan.patience}: {auto_settings.PATIENCE_STEPS} steps of {plan.steps_per_epoch} per epoch, at least "
            f"{auto_settings.MIN_PATIENCE}") + (f", on the mean of the last "
            f"{auto_settings.stopping_smoothing(plan.patience)} epochs" if plan.patience else "")}
        metrics["batch_size"] = plan.batch_size
        metrics["wall_time_seconds"] = time.time() - started
        metrics["trained_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        metrics["baselines"] = figures["baselines"]
        metrics["data_summary"] = {**data.summary(), "training_windows": plan.num_train}
        if run:
            run.write_run(model, data, metrics)
            run.write_projector(model, data)
        logging.info("test metrics: %s", {k: v for k, v in metrics.items() if not isinstance(v, (dict, str))})
        return metrics

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

    def _callbacks(self, model_config, plan: FitPlan, best: callbacks.BestWeights,
                   run: Optional[RunDirectory]) -> list:
        """The callbacks of `model.fit`, in the order their epoch-end logs need; `run`: where the
        training log, backups and TensorBoard scalars go, if anywhere."""
        cfg = self.config
        fit_callbacks = [
            callbacks.Throughput(plan.batch_size),
            callbacks.ValidationMetrics(plan.valid, model_config, cfg.eval_ks, cfg.eval_batch_size),
            best,
        ]
        if run:
            fit_callbacks += [
                callbacks.TrainingLog(run.file(TRAINING_LOG)),
                callbacks.TrainingBackup(run.file(BACKUP), cfg.checkpoint_every_steps),
                summaries.ScalarSummaries(run.file(TENSORBOARD), cfg.log_every_steps, plan.valid_baselines),
            ]
        if cfg.max_steps:
            fit_callbacks.append(callbacks.StopAtStep(cfg.max_steps))
        if cfg.verbose and not self._progress_bar():
            fit_callbacks.append(callbacks.EpochLine(plan.epochs, best.monitor))
        return fit_callbacks
