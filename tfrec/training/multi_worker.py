"""The training loop of `TrainConfig.strategy="multi_worker"`, where Keras 3's `fit` fails.

Under `MultiWorkerMirroredStrategy`, Keras 3.15's `Model.fit` and
`Model.evaluate` stop before the first step (docs/distributed.md has the
errors): building the model they all-reduce the first input batch (a dict
of tensors, which the collective cannot convert), and each step they reduce
the scalar metrics `axis=0`. `fit` here runs the same steps without those
reductions:

- the model's own `train_step` inside `strategy.run` (its loss already
  divides by every replica of every worker), the model's optimizer;
- the metrics read in cross-replica context: their on-read variables sum
  over all workers, so the logs are the global ones, the same on every worker;
- the input: the dataset of GLOBAL batches each worker builds the same way
  (seeded shuffle), split by `tf.data` auto-sharding by data: global batch k
  is cut into one slice per replica, as one process would see it;
- the callbacks of `Model.fit` (`keras.callbacks.CallbackList`), in the same
  order: validation, best weights, early stopping, backups, TensorBoard; a
  stop asked for by a callback on any worker stops every worker.

Every worker runs every callback (reading a metric is a collective, so all
must do the same reads); only the chief's go to the run directory, the other
workers write to a temporary directory (`RunDirectory.state_directory`).

Example:

>>> strategy = tfrec.training.devices.make_strategy("multi_worker")  # TF_CONFIG set
>>> history = fit(model, dataset.repeat(), epochs=3, steps_per_epoch=100, callbacks=[...])
"""

import weakref

import keras
import tensorflow as tf


def distribute(strategy: tf.distribute.Strategy, dataset: tf.data.Dataset) -> tf.distribute.DistributedDataset:
    """`dataset` (of global batches) split over the replicas of all workers, by data, deterministically."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


def _step_function(model, step):
    """A `tf.function` running `step` (the model's train or test step) on every replica, then returning
    the model's metrics: read in cross-replica context, they sum over all workers."""
    strategy = model.distribute_strategy

    @tf.function
    def run(batch):
        strategy.run(step, args=(batch,))
        return model.get_metrics_result()

    return lambda batch: {name: float(value) for name, value in run(batch).items()}


def _any_worker(strategy):
    """A function of a bool returning True on every worker when it is True on any of them."""
    def replica_count(flag):
        return tf.distribute.get_replica_context().all_reduce("SUM", tf.identity(flag))

    @tf.function
    def count(flag):
        return strategy.run(replica_count, args=(flag,))

    return lambda flag: bool(strategy.experimental_local_results(count(tf.constant(float(flag))))[0] > 0)


def fit(model, dataset: tf.data.Dataset, epochs: int, steps_per_epoch: int, callbacks=(),
        verbose: int = 0) -> keras.callbacks.History:
    """`model.fit(dataset, epochs=..., steps_per_epoch=..., callbacks=...)` under a multi-worker strategy.

    Args:
        model: a compiled `tfrec.models.Recommender` whose variables were
            created in its strategy's scope.
        dataset: an infinite `tf.data.Dataset` of global batches, the same
            on every worker.
        epochs: epochs at most (a `TrainingBackup` restore starts later).
        steps_per_epoch: optimizer steps per epoch.
        callbacks: Keras callbacks.
        verbose: Keras' progress bar when 1.

    Returns:
        the `keras.callbacks.History`.
    """
    strategy = model.distribute_strategy
    with strategy.scope():
        model.optimizer.build(model.trainable_variables)
    iterator = iter(distribute(strategy, dataset))
    any_worker = _any_worker(strategy)

    train_step = _step_function(model, model.train_step)
    callback_list = keras.callbacks.CallbackList(list(callbacks), add_history=True, add_progbar=verbose == 1,
                                                 verbose=verbose, epochs=epochs, steps=steps_per_epoch, model=model)
    model.stop_training = False
    callback_list.on_train_begin()
    epoch_logs = None
    for epoch in range(model._initial_epoch or 0, epochs):  # set by a BackupAndRestore restore, as in Model.fit
        model.reset_metrics()
        callback_list.on_epoch_begin(epoch)
        for step in range(steps_per_epoch):
            callback_list.on_train_batch_begin(step)
            logs = train_step(next(iterator))
            callback_list.on_train_batch_end(step, logs)
            if any_worker(model.stop_training):
                break
        epoch_logs = dict(logs)
        callback_list.on_epoch_end(epoch, epoch_logs)
        model.stop_training = any_worker(model.stop_training)
        if model.stop_training:
            break
    model.optimizer.finalize_variable_values(model.trainable_weights)
    callback_list.on_train_end(logs=epoch_logs)
    model.refresh_catalogue()
    return model.history


_TEST_STEPS = weakref.WeakKeyDictionary()
"""Each model's traced test step, kept for the next validation (as `Model.evaluate` keeps its own)."""


def evaluate(model, dataset: tf.data.Dataset) -> dict:
    """`model.evaluate(dataset, return_dict=True)` under a multi-worker strategy: the losses over all of `dataset`.

    Every worker passes the same finite dataset of global batches; a replica
    whose slice of the last batch is empty runs the step on an empty batch.
    """
    if model not in _TEST_STEPS:
        _TEST_STEPS[model] = _step_function(model, model.test_step)
    test_step = _TEST_STEPS[model]
    model.reset_metrics()
    logs = {}
    for batch in distribute(model.distribute_strategy, dataset):
        logs = test_step(batch)
    return logs
