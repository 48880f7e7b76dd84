"""Trains a tfrec model and writes a run directory.

    python -m tfrec.train --flagfile=configs/ml100k_retrieval.flags --run_dir=runs/retrieval

Flags: the data flags of `tfrec.data.flags` (`--source`, `--split`, ...), one
flag per `ModelConfig` field (`--task`, `--encoder`, `--embedding_dim`, ...)
and the training flags below. Everything is checked before training starts.
A killed run resumes from `DIR/checkpoints` when the same command is rerun.
The files of the run directory are described in `tfrec.training.run_dir`.

Example:

>>> from absl import flags
>>> flags.FLAGS(["train", "--flagfile=configs/synthetic_tiny.flags", "--run_dir=/tmp/run"])
>>> metrics = train(flags.FLAGS)
>>> sorted(metrics)[:3]
['HR@10', 'HR@100', 'MRR']
"""

import math
import os
import sys
import time

import keras
import numpy as np
from absl import app, flags, logging

from tfrec import data
from tfrec.data import errors as data_errors
from tfrec.data import flags as data_flags
from tfrec.data import schema
from tfrec.models import build_model
from tfrec.training import (
    callbacks,
    checks,
    devices,
    model_flags,
    optimizer,
    projector,
    protocol,
    run_dir,
    summaries,
)

flags.DEFINE_integer("epochs", 10, "Training epochs.")
flags.DEFINE_integer("batch_size", 256, "GLOBAL batch size, split evenly over the replicas.")
flags.DEFINE_float("learning_rate", 1e-3, "Peak learning rate of AdamW.")
flags.DEFINE_integer("warmup_steps", 0, "Linear warmup steps (give this or --warmup_fraction).")
flags.DEFINE_float("warmup_fraction", 0.0, "Linear warmup as a fraction of all training steps.")
flags.DEFINE_enum("decay", "cosine", optimizer.DECAYS, "Learning-rate decay after warmup.")
flags.DEFINE_float("weight_decay", 0.01, "AdamW decoupled weight decay (not on biases and norms).")
flags.DEFINE_float("clipnorm", 1.0, "Clip the global gradient norm to this value; 0 disables.")
flags.DEFINE_integer("early_stopping_patience", 3,
                     "Stop after this many epochs without improvement of --monitor; 0 disables.")
flags.DEFINE_string("monitor", "auto",
                    "Validation metric for early stopping and the best weights, e.g. val_HR@10 or "
                    "val_RMSE; auto: val_HR@10 when the model ranks the catalogue, else val_RMSE "
                    "(rating) or val_AUC (click).")
flags.DEFINE_list("eval_ks", ["10", "100"], "Cut-offs K of HR@K, NDCG@K, Recall@K.")
flags.DEFINE_integer("eval_batch_size", 512, "Examples scored at once during evaluation.")
flags.DEFINE_enum("strategy", "auto", devices.STRATEGIES,
                  "auto: MirroredStrategy over all GPUs (or --cpu_replicas CPUs), one device otherwise.")
flags.DEFINE_integer("cpu_replicas", 1,
                     "Split the CPU into this many logical devices and mirror over them (for testing "
                     "multi-replica training without GPUs).")
flags.DEFINE_integer("max_steps", 0, "Stop after this many optimizer steps in total; 0: no limit.")
flags.DEFINE_integer("steps_per_epoch", 0, "Steps per epoch; 0: one pass over the training examples.")
flags.DEFINE_integer("checkpoint_every_steps", 100,
                     "Back up the training state every this many steps and after each epoch (0: after each epoch only).")
flags.DEFINE_integer("log_every_steps", 50,
                     "Write the batch loss and learning rate to TensorBoard every this many steps; 0: per epoch only.")
flags.DEFINE_integer("verbose", 1, "Keras progress output: 0 silent, 1 progress bar, 2 one line per epoch.")

FLAGS = flags.FLAGS


def _flag_values(flag_values):
    """All tfrec flags (data, model, training) as a dict."""
    values = {}
    for module in (data_flags, model_flags, run_dir, sys.modules[__name__]):
        for flag in flag_values.get_flags_for_module(module):
            values[flag.name] = flag.value
    return values


def _monitor(requested, config, ks):
    """`--monitor`, or for "auto" the first HR@K when the model ranks the
    catalogue, else RMSE (rating) or AUC (click)."""
    if requested != "auto":
        return requested
    if config.task in protocol.RANKS_CATALOGUE:
        return f"val_HR@{ks[0]}"
    return "val_RMSE" if config.ranking_target == "rating" else "val_AUC"


def _load_data(flag_values):
    try:
        return data_flags.from_flags()
    except (data_errors.DataError, OSError) as error:
        raise checks.ConfigError(f"--source={flag_values.source}: {error}") from error


def _check_same_run(directory, config_record):
    """A rerun in an existing run directory must train the same model on the same data."""
    existing_path = os.path.join(directory, run_dir.CONFIG)
    if not os.path.exists(existing_path):
        return
    existing = run_dir.read_json(existing_path)
    data_names = [flag.name for flag in FLAGS.get_flags_for_module(data_flags)]
    for section, names in (("model_config", None), ("flags", data_names)):
        old, new = existing.get(section, {}), config_record[section]
        for name in names or sorted(set(old) | set(new)):
            checks.require(
                old.get(name) == new.get(name),
                f"--run_dir={directory} holds a run with {name}={old.get(name)!r}, this command has "
                f"{name}={new.get(name)!r}: rerun the same command to resume, or use a new --run_dir",
            )


def _write_projector(directory, model, dataset, vocab):
    """Item embeddings with ids and titles for TensorBoard's projector."""
    model.refresh_catalogue()
    ids = vocab.item_ids[1:]
    titles = dataset.items.set_index(schema.ITEM_ID)[schema.TITLE].reindex(ids).fillna("").tolist()
    embeddings = np.asarray(model.item_embeddings(np.arange(1, vocab.num_items + 1, dtype=np.int32)))
    projector.write_projector(os.path.join(directory, run_dir.TENSORBOARD), embeddings,
                              {"item_id": ids, "title": titles})


def _fit_callbacks(flag_values, directory, valid, config, ks, best):
    """The callbacks of `model.fit`, in the order their epoch-end logs need."""
    checkpoints = os.path.join(directory, run_dir.CHECKPOINTS)
    fit_callbacks = [
        callbacks.Throughput(flag_values.batch_size),
        callbacks.ValidationMetrics(valid, config, ks, flag_values.eval_batch_size),
        best,
        callbacks.TrainingLog(os.path.join(directory, run_dir.TRAINING_LOG)),
        callbacks.TrainingBackup(os.path.join(checkpoints, "backup"), flag_values.checkpoint_every_steps),
        summaries.ScalarSummaries(os.path.join(directory, run_dir.TENSORBOARD), flag_values.log_every_steps),
    ]
    if flag_values.max_steps:
        fit_callbacks.append(callbacks.StopAtStep(flag_values.max_steps))
    return fit_callbacks


def _compile(model, flag_values, steps_per_epoch):
    """Compiles `model` with AdamW and the warmup/decay schedule (in the strategy scope)."""
    total_steps = flag_values.epochs * steps_per_epoch
    if flag_values.max_steps:
        total_steps = min(total_steps, flag_values.max_steps)
    warmup = flag_values.warmup_steps or round(flag_values.warmup_fraction * total_steps)
    model.compile(optimizer=optimizer.build_optimizer(
        flag_values.learning_rate, total_steps, warmup, flag_values.decay,
        flag_values.weight_decay, flag_values.clipnorm))


def train(flag_values=FLAGS):
    """Runs a training as configured by the parsed `flag_values`.

    Returns:
        dict, the contents of `DIR/metrics.json`.

    Raises:
        checks.ConfigError: a flag value (or its combination with the data) is
            invalid; raised before any training step.
    """
    started = time.time()
    # 1. Everything is checked before training starts.
    checks.require(flag_values.run_dir, "--run_dir is required")
    checks.check_training_flags(flag_values)
    checks.check_trainable(flag_values.encoder_trainable)
    config = model_flags.model_config(flag_values)
    ks = checks.parse_ks(flag_values.eval_ks)
    monitor = _monitor(flag_values.monitor, config, ks)
    checks.check_monitor(monitor, protocol.metric_names(config, ks))
    devices.configure_cpu_replicas(flag_values.cpu_replicas)
    strategy = devices.make_strategy(flag_values.strategy, flag_values.cpu_replicas)
    checks.check_batch_split(flag_values.batch_size, strategy.num_replicas_in_sync)
    dataset, split, vocab, examples = _load_data(flag_values)
    checks.check_data(config, dataset, vocab, examples, ks)
    directory = flag_values.run_dir
    config_record = {"flags": _flag_values(flag_values), "model_config": config.to_dict(),
                     "num_replicas": strategy.num_replicas_in_sync}
    _check_same_run(directory, config_record)
    texts = data.item_texts(dataset.items, vocab)
    keras.utils.set_random_seed(flag_values.seed)
    with strategy.scope():
        try:
            model = build_model(config, vocab, texts)
        except ValueError as error:
            raise checks.ConfigError(f"model flags: {error}") from error

    # 2. Training, resumed from DIR/checkpoints when a previous run was killed.
    train_examples = model.train_examples(examples["train"]) if hasattr(model, "train_examples") else examples["train"]
    num_train = len(next(iter(train_examples.values())))
    steps_per_epoch = flag_values.steps_per_epoch or math.ceil(num_train / flag_values.batch_size)
    with strategy.scope():
        _compile(model, flag_values, steps_per_epoch)
    train_ds = data.to_tf_dataset(train_examples, batch_size=flag_values.batch_size, shuffle=True,
                                  seed=flag_values.seed).repeat()
    os.makedirs(directory, exist_ok=True)
    run_dir.write_json_atomic(os.path.join(directory, run_dir.CONFIG), config_record)
    valid = protocol.HeldOut.from_split(split, vocab, "valid", examples)
    logging.info("training %s on %s: %d examples, %d steps per epoch, %d replica(s), monitor %s",
                 config.task, dataset.name, num_train, steps_per_epoch, strategy.num_replicas_in_sync, monitor)
    best = callbacks.BestWeights(monitor, os.path.join(directory, run_dir.CHECKPOINTS),
                                 flag_values.early_stopping_patience)
    if best.stopped:  # this directory's run already stopped early: nothing is left to train
        best.restore(model)
    else:
        model.fit(train_ds, epochs=flag_values.epochs, steps_per_epoch=steps_per_epoch, shuffle=False,
                  callbacks=_fit_callbacks(flag_values, directory, valid, config, ks, best),
                  verbose=flag_values.verbose)

    # 3. Held-out metrics of the best weights, then the run directory's files.
    test = protocol.HeldOut.from_split(split, vocab, "test", examples)
    results = protocol.evaluate_model(model, test, config, ks, flag_values.eval_batch_size)
    results["valid"] = protocol.evaluate_model(model, valid, config, ks, flag_values.eval_batch_size)
    epochs = [r for r in run_dir.read_jsonl(os.path.join(directory, run_dir.TRAINING_LOG)) if r["event"] == "epoch"]
    results["examples_per_second"] = float(np.median([r["examples_per_second"] for r in epochs]))
    results["epochs"] = epochs[-1]["epoch"]
    results["wall_time_seconds"] = time.time() - started
    run_dir.save_weights_atomic(model, os.path.join(directory, run_dir.WEIGHTS))
    run_dir.write_text_atomic(os.path.join(directory, run_dir.VOCABULARY), vocab.to_json())
    run_dir.write_text_atomic(os.path.join(directory, run_dir.ITEMS), run_dir.items_jsonl(vocab, texts))
    _write_projector(directory, model, dataset, vocab)
    run_dir.write_json_atomic(os.path.join(directory, run_dir.METRICS), results)
    logging.info("test metrics: %s", {k: v for k, v in results.items() if k != "valid"})
    return results


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        train(FLAGS)
    except checks.ConfigError as error:
        sys.exit(f"tfrec.train: error: {error}")


if __name__ == "__main__":
    app.run(main)
