"""The TensorFlow Recommenders tutorial models, run as the reference baseline.

TFRS 0.7.7 needs Keras 2 (`tf_keras`, with `TF_USE_LEGACY_KERAS=1` set before
TensorFlow is imported) while tfrec runs on Keras 3, so the two never share a
process: the parent calls `run_tfrs(...)`, which writes the split's arrays to an
input `.npz`, runs `python -m tfrec.baselines.tfrs_runner` in a subprocess,
and reads back an output `.npz` of full-catalogue scores (retrieval) or rating
predictions (ranking) for the valid and test examples. Importing this module
imports neither TensorFlow nor tf_keras; only `main` (the subprocess) does.

The models follow the TFRS basic-retrieval and basic-ranking tutorials:
- retrieval: user and item id embeddings (dim 32), dot product, in-batch
  softmax (`tfrs.tasks.Retrieval`), Adagrad 0.1, batch 8192;
- ranking: user and item embeddings (32 each) concatenated -> Dense 256 relu ->
  Dense 64 relu -> Dense 1, mean squared error (`tfrs.tasks.Ranking`),
  Adagrad 0.1, batch 8192.
As in the tutorials the training set is shuffled once and the batches are
cached, so every epoch sees the same batches. "As published" is 3 epochs;
with `select_epoch`, training runs `epochs` epochs and keeps the epoch with the
best validation metric (NDCG@10 for retrieval, RMSE for ranking).

Example (parent side):

>>> out = run_tfrs("retrieval", 3, examples, num_users=943, num_items=1682,
...                work_dir="/tmp/tfrs")                     # doctest: +SKIP
>>> out["test_scores"].shape                                  # doctest: +SKIP
(943, 1683)

Command line (normally started by `run_tfrs`):
`TF_USE_LEGACY_KERAS=1 python -m tfrec.baselines.tfrs_runner --task=retrieval --epochs=3
--input=in.npz --output=out.npz`
"""

import os
import subprocess
import sys
import time

import numpy as np
from absl import app, flags

from tfrec.data import schema

TASKS = ("retrieval", "ranking")


def _exclusion_csr(histories, exclude):
    """CSR (indptr, indices) of the non-padding items of each history row plus `exclude` rows."""
    rows = []
    for i, history in enumerate(histories):
        items = history[history > 0]
        if exclude is not None:
            items = np.union1d(items, np.asarray(list(exclude[i]), dtype=np.int64))
        rows.append(np.asarray(items, dtype=np.int64))
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(r) for r in rows])
    indices = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    return indptr, indices


def write_inputs(path, examples, num_users, num_items, valid_exclude=None):
    """Writes the runner's input `.npz` from schema example dicts.

    Args:
      path: output file.
      examples: {"train", "valid", "test"} -> dict of schema feature arrays
        (USER_INDEX, TARGET_ITEM_ID, TARGET_RATING; valid also HISTORY_ITEM_IDS).
      num_users, num_items: vocabulary sizes (without padding).
      valid_exclude: optional complete prior items per valid example (list of
        int arrays), excluded from the validation ranking with the history.
    """
    arrays = {"num_users": np.int64(num_users), "num_items": np.int64(num_items)}
    columns = (("user", schema.USER_INDEX), ("item", schema.TARGET_ITEM_ID), ("rating", schema.TARGET_RATING))
    for part in ("train", "valid", "test"):
        for key, name in columns:
            if name not in examples[part]:
                raise KeyError(f"run_tfrs: examples[{part!r}] lacks feature {name!r}")
            arrays[f"{part}_{key}"] = np.asarray(examples[part][name])
    indptr, indices = _exclusion_csr(np.asarray(examples["valid"][schema.HISTORY_ITEM_IDS]), valid_exclude)
    arrays["valid_exclude_indptr"], arrays["valid_exclude_indices"] = indptr, indices
    np.savez(path, **arrays)


def run_tfrs(
    task,
    epochs,
    examples,
    num_users,
    num_items,
    work_dir,
    seed=0,
    select_epoch=False,
    valid_exclude=None,
    python=sys.executable,
):
    """Trains a TFRS tutorial model in a subprocess and returns its outputs.

    Args:
      task: "retrieval" or "ranking".
      epochs: epochs to train (the last one is kept unless `select_epoch`).
      examples: {"train", "valid", "test"} schema example dicts.
      num_users, num_items: vocabulary sizes (without padding).
      work_dir: directory for the input/output `.npz` files.
      seed: TensorFlow and shuffling seed.
      select_epoch: keep the epoch with the best validation metric.
      valid_exclude: optional complete prior items per valid example.
      python: interpreter to run the subprocess with.

    Returns:
      dict of numpy arrays: retrieval "valid_scores", "test_scores"
      [n, num_items + 1]; ranking "valid_pred", "test_pred" [n]; both
      "best_epoch", "valid_curve" (validation NDCG@10 or RMSE of every epoch
      with `select_epoch`, else of the last one), "train_seconds" (fit time
      without the per-epoch evaluation).

    Raises:
      ValueError on a bad task; RuntimeError with the subprocess' stderr tail
      if it fails.
    """
    if task not in TASKS:
        raise ValueError(f"run_tfrs: task must be one of {TASKS}, got {task!r}")
    os.makedirs(work_dir, exist_ok=True)
    stem = os.path.join(work_dir, f"tfrs_{task}_e{epochs}_s{seed}{'_select' if select_epoch else ''}")
    inputs, outputs = stem + "_in.npz", stem + "_out.npz"
    write_inputs(inputs, examples, num_users, num_items, valid_exclude)
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    command = [
        python,
        "-m",
        "tfrec.baselines.tfrs_runner",
        f"--task={task}",
        f"--epochs={epochs}",
        f"--seed={seed}",
        f"--input={inputs}",
        f"--output={outputs}",
        f"--select_epoch={'true' if select_epoch else 'false'}",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(
            f"tfrs_runner failed (exit {result.returncode}): {' '.join(command)}\n{result.stderr[-3000:]}"
        )
    with np.load(outputs) as data:
        return {name: data[name] for name in data.files}


# ---------------------------------------------------------------------------
# Subprocess side: everything below runs only under `python -m`.

FLAGS = flags.FLAGS


def _define_flags():
    flags.DEFINE_enum("task", "retrieval", list(TASKS), "Tutorial model: retrieval (two-tower) or ranking (MLP).")
    flags.DEFINE_integer("epochs", 3, "Training epochs (3 in the TFRS tutorials).")
    flags.DEFINE_integer("seed", 0, "TensorFlow and shuffling seed.")
    flags.DEFINE_string("input", None, "Input .npz written by write_inputs().")
    flags.DEFINE_string("output", None, "Output .npz (written to a temporary name, then renamed).")
    flags.DEFINE_bool("select_epoch", False, "Keep the epoch with the best validation metric instead of the last.")
    flags.DEFINE_integer("batch_size", 8192, "Training batch size (8192 in the tutorials).")
    flags.DEFINE_float("learning_rate", 0.1, "Adagrad learning rate (0.1 in the tutorials).")
    flags.DEFINE_integer("embedding_dim", 32, "User and item embedding size (32 in the tutorials).")
    flags.mark_flags_as_required(["input", "output"])


def _build_model(task, num_users, num_items, dim):
    import tensorflow as tf
    import tensorflow_recommenders as tfrs

    class TutorialModel(tfrs.Model):
        """The basic-retrieval / basic-ranking tutorial model on integer ids."""

        def __init__(self):
            super().__init__()
            self.user_embeddings = tf.keras.layers.Embedding(num_users + 1, dim)
            self.item_embeddings = tf.keras.layers.Embedding(num_items + 1, dim)
            if task == "retrieval":
                self.task = tfrs.tasks.Retrieval()
            else:
                self.rating_head = tf.keras.Sequential(
                    [
                        tf.keras.layers.Dense(256, activation="relu"),
                        tf.keras.layers.Dense(64, activation="relu"),
                        tf.keras.layers.Dense(1),
                    ]
                )
                self.task = tfrs.tasks.Ranking(loss=tf.keras.losses.MeanSquaredError())

        def predict_rating(self, users, items):
            features = tf.concat([self.user_embeddings(users), self.item_embeddings(items)], axis=1)
            return self.rating_head(features)

        def compute_loss(self, features, training=False):
            if task == "retrieval":
                return self.task(self.user_embeddings(features["user"]), self.item_embeddings(features["item"]))
            predictions = self.predict_rating(features["user"], features["item"])
            return self.task(labels=features["rating"], predictions=predictions)

    return TutorialModel()


def _outputs(model, task, data, part):
    """Full-catalogue scores (retrieval) or rating predictions (ranking) for one part."""
    users = data[f"{part}_user"].astype(np.int32)
    if task == "retrieval":
        items = model.item_embeddings.embeddings.numpy()
        return model.user_embeddings(users).numpy() @ items.T
    return model.predict_rating(users, data[f"{part}_item"].astype(np.int32)).numpy()[:, 0]


def _valid_metric(task, data, valid_output):
    """Validation metric: NDCG@10 (retrieval, higher is better) or RMSE (ranking, lower is better)."""
    from tfrec.evaluation import metrics

    if task == "retrieval":
        exclude = (data["valid_exclude_indptr"], data["valid_exclude_indices"])
        return metrics.ranking_metrics(valid_output, data["valid_item"], exclude=exclude, ks=(10,))["NDCG@10"]
    return metrics.rating_metrics(valid_output, data["valid_rating"])["RMSE"]


def main(argv):
    del argv
    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise SystemExit("tfrs_runner: set TF_USE_LEGACY_KERAS=1 before starting (TFRS needs Keras 2)")
    import tensorflow as tf

    with np.load(FLAGS.input) as stored:
        data = {name: stored[name] for name in stored.files}
    tf.random.set_seed(FLAGS.seed)
    num_users, num_items = int(data["num_users"]), int(data["num_items"])
    train = {
        "user": data["train_user"].astype(np.int32),
        "item": data["train_item"].astype(np.int32),
        "rating": data["train_rating"].astype(np.float32),
    }
    batches = (
        tf.data.Dataset.from_tensor_slices(train)
        .shuffle(len(train["user"]), seed=FLAGS.seed, reshuffle_each_iteration=False)
        .batch(FLAGS.batch_size)
        .cache()
    )
    model = _build_model(FLAGS.task, num_users, num_items, FLAGS.embedding_dim)
    model.compile(optimizer=tf.keras.optimizers.Adagrad(learning_rate=FLAGS.learning_rate))
    curve, best, train_seconds = [], None, 0.0
    for epoch in range(1, FLAGS.epochs + 1):
        start = time.perf_counter()
        model.fit(batches, epochs=1, verbose=0)
        train_seconds += time.perf_counter() - start
        if not FLAGS.select_epoch and epoch < FLAGS.epochs:
            continue
        valid_output = _outputs(model, FLAGS.task, data, "valid")
        curve.append(_valid_metric(FLAGS.task, data, valid_output))
        sign = 1.0 if FLAGS.task == "retrieval" else -1.0
        if best is None or sign * curve[-1] > sign * best["metric"]:
            best = {"metric": curve[-1], "epoch": epoch, "valid": valid_output}
            best["test"] = _outputs(model, FLAGS.task, data, "test")
    prefix = "scores" if FLAGS.task == "retrieval" else "pred"
    result = {
        f"valid_{prefix}": best["valid"].astype(np.float32),
        f"test_{prefix}": best["test"].astype(np.float32),
        "best_epoch": np.int64(best["epoch"]),
        "valid_curve": np.asarray(curve, dtype=np.float64),
        "train_seconds": np.float64(train_seconds),
    }
    partial = FLAGS.output + ".partial.npz"
    np.savez(partial, **result)
    os.replace(partial, FLAGS.output)


if __name__ == "__main__":
    _define_flags()
    app.run(main)
