"""The files of a training run directory, written atomically.

    DIR/config.json          {"flags": {...}, "model_config": {...}, "num_replicas": n}
    DIR/metrics.json         test metrics (HR@K, NDCG@K, Recall@K, MRR; RMSE/MAE or
                             AUC/LogLoss), "valid": the same on the valid split,
                             "epochs" (last epoch trained), "examples_per_second"
                             (median over epochs), "wall_time_seconds" (this command)
    DIR/vocabulary.json      `data.Vocabulary.to_json()`
    DIR/items.jsonl          {"index", "item_id", "text"} per catalogue item, index order
    DIR/model.weights.h5     the best weights
    DIR/training_log.jsonl   one JSON line per start / epoch / end
    DIR/checkpoints/         BackupAndRestore state (backup/) and best-epoch state
    DIR/tensorboard/         event files and the item-embedding projector

The files above are written to a temporary name in the same directory and
renamed, so a file that exists is complete (`metrics.json`, written last,
marks a finished run). The exceptions are appended logs (`training_log.jsonl`,
TensorBoard events) and Keras' backups, which keep the previous backup too.

Example:

>>> write_json_atomic("runs/x/metrics.json", {"HR@10": 0.2})
>>> read_json("runs/x/metrics.json")
{'HR@10': 0.2}
"""

import json
import os
import tempfile

from absl import flags
from keras.src.saving import saving_lib

from tfrec import data

RUN_DIR = flags.DEFINE_string(
    "run_dir", None, "Directory of the run: config, metrics, weights, checkpoints, TensorBoard logs."
)

CONFIG = "config.json"
METRICS = "metrics.json"
VOCABULARY = "vocabulary.json"
ITEMS = "items.jsonl"
WEIGHTS = "model.weights.h5"
TRAINING_LOG = "training_log.jsonl"
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"


class RunDirError(FileNotFoundError):
    """A run directory lacks a file a finished run has."""


def write_text_atomic(path, text):
    """Writes `text` to `path` through a temporary file and a rename."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def write_json_atomic(path, value):
    """Writes `value` as indented JSON, atomically."""
    write_text_atomic(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def save_weights_atomic(model, path):
    """Saves the model's weights, without its optimizer state, to `path`
    (a `.weights.h5` file) through a temporary file and a rename.

    `model.load_weights(path)` reads it back into a model built the same way,
    compiled or not.
    """
    suffix = ".weights.h5"
    if not path.endswith(suffix):
        raise ValueError(f"weights path {path!r} must end with {suffix!r}")
    temporary = f"{path[: -len(suffix)]}.tmp{os.getpid()}{suffix}"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        # keras.Model.save_weights has no way to leave the optimizer out.
        saving_lib.save_weights_only(model, temporary, objects_to_skip=_optimizer(model))
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _optimizer(model):
    optimizer = getattr(model, "optimizer", None)
    return [optimizer] if optimizer is not None else None


def load_weights(model, path):
    """Loads weights written by `save_weights_atomic`, leaving the optimizer as it is."""
    saving_lib.load_weights_only(model, path, objects_to_skip=_optimizer(model))


def items_jsonl(vocab, item_texts):
    """The text of `items.jsonl`: one line per catalogue item, index order."""
    lines = (
        json.dumps({"index": index, "item_id": vocab.item_ids[index], "text": item_texts[index]})
        for index in range(1, vocab.num_items + 1)
    )
    return "".join(line + "\n" for line in lines)


def path(run_directory, name):
    """`run_directory/name`, raising `RunDirError` when it does not exist."""
    full = os.path.join(run_directory, name)
    if not os.path.exists(full):
        raise RunDirError(f"{full}: not found; is {run_directory!r} the directory of a finished "
                          "`python -m tfrec.train` run?")
    return full


def read_json(file):
    """The JSON value in `file`."""
    with open(file, encoding="utf-8") as f:
        return json.load(f)


def read_jsonl(file):
    """The records of a JSON-lines file."""
    with open(file, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_vocabulary(run_directory):
    """The run's `data.Vocabulary`."""
    with open(path(run_directory, VOCABULARY), encoding="utf-8") as f:
        return data.Vocabulary.from_json(f.read())


def read_item_texts(run_directory):
    """The run's item texts, `[0] == ""` then one per item in index order."""
    texts = [""]
    file = path(run_directory, ITEMS)
    with open(file, encoding="utf-8") as f:
        for row, line in enumerate(f, start=1):
            record = json.loads(line)
            if record["index"] != row:
                raise RunDirError(f"{file}: row {row} has index {record['index']}, expected {row}")
            texts.append(record["text"])
    return texts
