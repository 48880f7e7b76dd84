"""Keras callbacks of a training run.

- `ValidationMetrics`: the full-catalogue validation metrics and the model's
  loss on the validation examples, each epoch, as `val_<name>` logs (so the
  progress bar, TensorBoard and early stopping see them).
- `EpochLine`: one printed line per epoch, where a progress bar cannot redraw.
- `Throughput`: training examples per second, as the `examples_per_second` log.
- `BestWeights`: keeps the weights of the best epoch on disk, stops early after
  `patience` epochs without improvement, restores the best weights at the end.
  Its state survives a killed and resumed run.
- `TrainingLog`: one JSON line per epoch (and per start) in `training_log.jsonl`.
- `StopAtStep`: stops once the optimizer has made `max_steps` steps.
- `StopOnDivergence`: raises `TrainingDivergedError` as soon as the training
  loss is NaN or infinite (first in the list: before validation meets the NaN
  scores).
- `TrainingBackup`: `keras.callbacks.BackupAndRestore` that backs up every
  `every_steps` steps *and* after every epoch.

Put them before `summaries.ScalarSummaries` in the callback list: the logs
they add are then written to TensorBoard too.

Example:

>>> callbacks = [Throughput(batch_size=256),
...              ValidationMetrics(valid, config, ks=(10, 100)),
...              BestWeights("val_HR@10", "runs/x/checkpoints", patience=3)]
"""

import json
import math
import os
import shutil
import time

import keras
from absl import logging

from tfrec.config import ConfigError
from tfrec.data import pipeline
from tfrec.evaluation import protocol
from tfrec.training import atomic_files, checks, devices, multi_worker


BEST_WEIGHTS = "best.weights.h5"
TEMPORARY_MARK = ".tmp"  # in the names of backup files being written
"""File of `BestWeights` in its directory."""


class ValidationMetrics(keras.callbacks.Callback):
    """Adds the validation metrics of `protocol.evaluate_model` to the epoch logs,
    and the model's losses on the validation examples (`val_loss`,
    `val_retrieval_loss`, ... as `Model.evaluate` gives them: the loss of each
    held-out target).

    Args:
        held_out: `protocol.HeldOut` validation set.
        config: the model's `ModelConfig`.
        ks: ranking cut-offs.
        batch_size: examples scored at once.
    """

    def __init__(self, held_out, config, ks=(10, 100), batch_size=1024):
        super().__init__()
        self.held_out = held_out
        self.config = config
        self.ks = tuple(ks)
        self.batch_size = batch_size
        self._dataset = None

    def on_epoch_end(self, epoch, logs=None):
        values = protocol.evaluate_model(self.model, self.held_out, self.config, self.ks, self.batch_size)
        if self._dataset is None:
            self._dataset = pipeline.to_tf_dataset(self.held_out.examples, batch_size=self.batch_size, shuffle=False)
        if devices.is_multi_worker(self.model.distribute_strategy):  # where Model.evaluate fails
            values.update(multi_worker.evaluate(self.model, self._dataset))
        else:
            values.update(self.model.evaluate(self._dataset, verbose=0, return_dict=True))
        logs.update({f"val_{name}": float(value) for name, value in values.items()})


class EpochLine(keras.callbacks.Callback):
    """Prints one line per epoch: the loss, validation loss, monitored metric and its best, throughput, time.

    What a log that is not a terminal gets instead of Keras' progress bar. Put
    it after the callbacks that add those logs.

    Args:
        epochs: epochs at most.
        monitor: the monitored log, e.g. "val_HR@10".

    Example output:

        epoch 3/30: loss 6.6262, val_loss 6.1034, val_HR@10 0.1620, best_val_HR@10 0.1620, 249 examples/s, 12 s
    """

    def __init__(self, epochs, monitor):
        super().__init__()
        self.epochs = epochs
        self.monitor = monitor
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        names = ("loss", "val_loss", self.monitor, f"best_{self.monitor}")
        figures = "".join(f"{name} {float(logs[name]):.4f}, " for name in names if logs.get(name) is not None)
        print(f"epoch {epoch + 1}/{self.epochs}: {figures}{logs.get('examples_per_second', 0.0):.0f} examples/s, "
              f"{time.perf_counter() - self._start:.0f} s", flush=True)


class Throughput(keras.callbacks.Callback):
    """Logs training examples per second of each epoch (`examples_per_second`).

    Only the training steps are timed: put it first among the callbacks that
    work at epoch end (validation is not counted).

    Args:
        batch_size: global batch size.
    """

    def __init__(self, batch_size):
        super().__init__()
        self.batch_size = batch_size
        self._start = None
        self._steps = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self._steps += 1

    def on_epoch_end(self, epoch, logs=None):
        elapsed = time.perf_counter() - self._start
        logs["examples_per_second"] = self._steps * self.batch_size / max(elapsed, 1e-9)


class BestWeights(keras.callbacks.Callback):
    """Best-epoch weights, early stopping and their restoration, resumable.

    After each epoch, if `monitor` improved, the weights go to
    `directory/best.weights.h5`; the best value, its epoch, the stopping
    state and whether training stopped early go to `directory/best.json`
    (both written atomically). A rerun of a killed training picks this state
    up. At the end of training the best weights are loaded back into the model.

    Stopping reads the mean of the last `smoothing` epochs' values, not the
    single epoch: a few hundred validation users make one epoch's HR@10 swing
    by a few points, and one lucky epoch would otherwise start a count that
    ends a run still improving (and, under a decaying learning rate, before
    its best epochs). Training stops after `patience` epochs in which that
    mean did not beat its best (0: never). The weights kept are still those
    of the best single epoch, as Keras' own callbacks keep them.

    Args:
        monitor: log name, e.g. "val_HR@10" or "val_RMSE".
        directory: where the state lives (the run's checkpoints directory).
        patience: epochs without improvement of the smoothed value before stopping; 0 disables.
        mode: "max" or "min"; default from `checks.metric_mode(monitor)`.
        smoothing: epochs averaged for the stopping decision (1: the epoch's own value).
    """

    def __init__(self, monitor, directory, patience=0, mode=None, smoothing=1):
        super().__init__()
        if smoothing < 1:
            raise ValueError(f"smoothing: expected at least 1 epoch, got {smoothing}")
        self.monitor = monitor
        self.patience = patience
        self.smoothing = smoothing
        self.mode = mode or checks.metric_mode(monitor)
        self.weights_path = os.path.join(directory, BEST_WEIGHTS)
        self.state_path = os.path.join(directory, "best.json")
        self.state = {"best": None, "epoch": None, "wait": 0, "stopped": False, "recent": [], "best_smoothed": None}
        if os.path.exists(self.state_path):
            self.state.update(atomic_files.read_json(self.state_path))
            if self.state["best_smoothed"] is None:  # a state written before smoothing: its count goes on
                self.state["best_smoothed"] = self.state["best"]

    @property
    def stopped(self):
        """True when an earlier run of this directory already stopped early."""
        return self.state["stopped"]

    def _better(self, value, best):
        return best is None or (value > best if self.mode == "max" else value < best)

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor not in logs:
            raise KeyError(f"TrainConfig.monitor={self.monitor!r} is not among the epoch logs {sorted(logs)}")
        value = float(logs[self.monitor])
        if self._better(value, self.state["best"]):
            atomic_files.save_weights_atomic(self.model, self.weights_path)
            self.state.update(best=value, epoch=epoch + 1)
        recent = (self.state["recent"] + [value])[-self.smoothing:]
        smoothed = sum(recent) / len(recent)
        if self._better(smoothed, self.state["best_smoothed"]):
            self.state.update(best_smoothed=smoothed, wait=0)
        else:
            self.state["wait"] += 1
        self.state["recent"] = recent
        self.state["stopped"] = bool(self.patience and self.state["wait"] >= self.patience)
        atomic_files.write_json_atomic(self.state_path, self.state)
        logs[f"best_{self.monitor}"] = self.state["best"]
        if self.state["stopped"]:
            logging.info("early stopping: the mean %s of the last %d epochs has not improved for %d epochs "
                         "(best epoch %.4f at epoch %d)", self.monitor, len(recent), self.state["wait"],
                         self.state["best"], self.state["epoch"])
            self.model.stop_training = True

    def restore(self, model):
        """Loads the best weights into `model` (when an epoch has been evaluated)."""
        if os.path.exists(self.weights_path):
            atomic_files.load_weights(model, self.weights_path)
            logging.info("restored the best weights: %s=%.4f at epoch %d",
                         self.monitor, self.state["best"], self.state["epoch"])

    def on_train_end(self, logs=None):
        self.restore(self.model)


class TrainingLog(keras.callbacks.Callback):
    """Appends JSON lines to `path`: a "start" record (the epoch and optimizer
    step training starts from, > 0 when a killed run resumed), one "epoch"
    record per epoch with its logs, and an "end" record.

    Args:
        path: the `.jsonl` file.
    """

    def __init__(self, path):
        super().__init__()
        self.path = path
        self._started = False

    def _write(self, record):
        record["step"] = int(self.model.optimizer.iterations.numpy())
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def on_train_begin(self, logs=None):
        self._started = False

    def on_epoch_begin(self, epoch, logs=None):
        if not self._started:
            self._started = True
            self._write({"event": "start", "epoch": epoch})
            if epoch:
                logging.info("resuming from the checkpoint of epoch %d", epoch)

    def on_epoch_end(self, epoch, logs=None):
        self._write({"event": "epoch", "epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}})

    def on_train_end(self, logs=None):
        self._write({"event": "end"})


class StopAtStep(keras.callbacks.Callback):
    """Stops training once the optimizer has made `max_steps` steps.

    Args:
        max_steps: int >= 1.
    """

    def __init__(self, max_steps):
        super().__init__()
        self.max_steps = max_steps

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) >= self.max_steps:
            self.model.stop_training = True


class TrainingDivergedError(ConfigError):
    """The training loss became NaN or infinite: the optimizer settings cannot train this model."""


class StopOnDivergence(keras.callbacks.Callback):
    """Raises `TrainingDivergedError` naming the epoch and step where training stopped being finite: the
    loss after a step, or the weights at an epoch's end (the last update can break them after a finite loss).
    Weights large enough to overflow the scores are caught by the trainer, from validation, with `diverged`.

    Args:
        learning_rate, clipnorm: the optimizer settings, for the message.
    """

    def __init__(self, learning_rate: float, clipnorm: float):
        super().__init__()
        self.learning_rate = learning_rate
        self.clipnorm = clipnorm
        self._epoch = 0

    def diverged(self, what: str) -> "TrainingDivergedError":
        """The error saying that `what` happened at the current epoch and step."""
        return TrainingDivergedError(
            f"training diverged: {what} at epoch {self._epoch + 1}, step {int(self.model.optimizer.iterations)} "
            f"(TrainConfig.learning_rate={self.learning_rate:g}, TrainConfig.clipnorm={self.clipnorm:g}); "
            "train again with a lower learning rate, or clip the gradients (a clipnorm such as 1.0)")

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise self.diverged(f"the loss became {float(loss)}")

    def on_epoch_end(self, epoch, logs=None):
        broken = next((v.path for v in self.model.trainable_weights
                       if not bool(keras.ops.all(keras.ops.isfinite(v.value)))), None)
        if broken is not None:
            raise self.diverged(f"the weights became NaN or infinite (e.g. {broken})")


class TrainingBackup(keras.callbacks.BackupAndRestore):
    """Backs up the training state every `every_steps` steps and after each epoch.

    A rerun of a killed training restores the latest backup (weights,
    optimizer state, finished epochs) and continues from the start of the
    interrupted epoch. Backups are kept when training ends, so rerunning a
    finished run trains no more.

    Args:
        directory: backup directory (used by nothing else).
        every_steps: steps between backups within an epoch; 0: epoch ends only.
    """

    def __init__(self, directory, every_steps=0):
        super().__init__(directory, save_freq=every_steps or "epoch", double_checkpoint=True,
                         delete_checkpoint=False)

    def _pairs(self):
        return ((self._weights_path, self._prev_weights_path),
                (self._training_metadata_path, self._prev_training_metadata_path))

    def on_train_begin(self, logs=None):
        """Repairs what a kill during a backup left, then restores the backup (Keras' own step)."""
        if os.path.isdir(self.backup_dir):
            for name in os.listdir(self.backup_dir):
                if TEMPORARY_MARK in name:  # a save interrupted before its rename
                    os.unlink(os.path.join(self.backup_dir, name))
            complete = all(os.path.exists(latest) for latest, _ in self._pairs())
            if not complete and all(os.path.exists(previous) for _, previous in self._pairs()):
                logging.warning("%s: the latest backup is incomplete (a kill while saving it); resuming from the "
                                "one before", self.backup_dir)
                for latest, previous in self._pairs():
                    shutil.copyfile(previous, latest)
        try:
            super().on_train_begin(logs)
        except OSError as error:  # a truncated backup with nothing to fall back on
            logging.warning("%s: the backup cannot be read (%s); training starts again from the first epoch",
                            self.backup_dir, error)
            shutil.rmtree(self.backup_dir)
            super().on_train_begin(logs)

    def _save_model(self):
        """Writes the backup under temporary names, then renames: a kill leaves either backup whole. Checks
        the free space first (`StorageError`): h5py may crash the process on a full disk."""
        os.makedirs(self.backup_dir, exist_ok=True)
        atomic_files.require_room_for_weights(self.backup_dir, self.model.weights + self.model.optimizer.variables,
                                              f"backing up the training state in {self.backup_dir}",
                                              self._weights_path)
        weights = self._weights_path.removesuffix(".weights.h5") + f"{TEMPORARY_MARK}{os.getpid()}.weights.h5"
        metadata = f"{self._training_metadata_path}{TEMPORARY_MARK}{os.getpid()}"
        self.model.save_weights(weights, overwrite=True)
        with open(metadata, "w") as f:
            json.dump({"epoch": self._current_epoch, "batch": self._last_batch_seen}, f)
        for (latest, previous), written in zip(self._pairs(), (weights, metadata)):
            if os.path.exists(latest):
                os.replace(latest, previous)
            os.replace(written, latest)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if self.save_freq != "epoch":
            self._save_model()
