"""TensorBoard scalars of a training run, written with TensorFlow alone.

`tf.summary.scalar` is implemented by the `tensorboard` package, which
TensorFlow no longer installs, so `keras.callbacks.TensorBoard` cannot log
without it. `ScalarSummaries` writes the same event files through the core
`tf.summary.write` op with the scalars plugin's metadata, which TensorBoard
reads as ordinary scalars:

    DIR/train/       epoch_<log> for every training log (loss, sub-losses,
                     examples_per_second...), epoch_learning_rate, and every
                     `every_steps` steps batch_<log> and batch_learning_rate
    DIR/validation/  epoch_<name> for every val_<name> log (prefix dropped):
                     the validation metrics (epoch_HR@10, ...) and losses
                     (epoch_loss, ...), drawn beside the training ones

Scalars are indexed by epoch (epoch_*) and optimizer step (batch_*), so a
resumed run continues the same curves. DIR itself holds the item-embedding
projector (`tfrec.training.projector`).

Example:

>>> model.fit(ds, epochs=3, callbacks=[ScalarSummaries("runs/x/tensorboard", every_steps=50)])
"""

import os

import keras
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
)


def write_scalar(tag, value, step):
    """Writes one scalar to the default summary writer."""
    tf.summary.write(tag, tf.constant(float(value), tf.float32), step=step, metadata=SCALAR_METADATA)


REFERENCE_METRICS = ("HR@10", "NDCG@10")


class ScalarSummaries(keras.callbacks.Callback):
    """Writes the training and validation logs as TensorBoard scalars.

    Put it after the callbacks that add logs (validation metrics, throughput).

    Args:
        log_dir: the TensorBoard log directory.
        every_steps: also write the batch logs every this many optimizer
            steps; 0 writes per epoch only.
        references: optional {baseline name: its validation metrics}: each
            epoch also writes the baseline's `REFERENCE_METRICS` under the
            run `baseline_NAME`, so that TensorBoard draws them as flat lines
            on the validation curves' charts.
    """

    def __init__(self, log_dir, every_steps=0, references=None):
        super().__init__()
        self.log_dir = log_dir
        self.every_steps = every_steps
        self.references = references or {}
        self._writers = {}

    def _writer(self, name):
        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(os.path.join(self.log_dir, name))
        return self._writers[name]

    def _learning_rate(self):
        return float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        if not self.every_steps or step % self.every_steps:
            return
        with self._writer("train").as_default():
            for name, value in (logs or {}).items():
                write_scalar(f"batch_{name}", value, step)
            write_scalar("batch_learning_rate", self._learning_rate(), step)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        with self._writer("train").as_default():
            for name, value in logs.items():
                if not name.startswith("val_"):
                    write_scalar(f"epoch_{name}", value, epoch)
            write_scalar("epoch_learning_rate", self._learning_rate(), epoch)
        with self._writer("validation").as_default():
            for name, value in logs.items():
                if name.startswith("val_"):
                    write_scalar(f"epoch_{name[len('val_'):]}", value, epoch)
        for baseline, figures in self.references.items():
            with self._writer(f"baseline_{baseline}").as_default():
                for name in REFERENCE_METRICS:
                    if name in figures:
                        write_scalar(f"epoch_{name}", figures[name], epoch)
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}
