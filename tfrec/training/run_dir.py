"""The files of a training run directory, written atomically.

    DIR/config.json          {"data_config": {...}, "model_config": {...}, "train_config": {...},
                             "num_replicas": n, "data_name": "..."}
    DIR/metrics.json         test metrics (HR@K, NDCG@K, Recall@K, MRR; RMSE/MAE or
                             AUC/LogLoss), "valid": the same on the valid split,
                             "epochs" (last epoch trained), "examples_per_second"
                             (median over epochs), "wall_time_seconds" (this command),
                             "trained_at" (UTC), "baselines" (popularity and transitions,
                             or the training mean and biases, on the same test targets),
                             "data_summary" (sizes of the catalogue, users and split)
    DIR/vocabulary.json      `data.Vocabulary.to_json()`
    DIR/data_statistics.json {"rating_mean": mean training rating}
    DIR/items.jsonl          {"index", "item_id", "text", "title"} per catalogue item, index order
    DIR/model.weights.h5     the best weights
    DIR/training_log.jsonl   one JSON line per start / epoch / end
    DIR/checkpoints/         BackupAndRestore state (backup/) and best-epoch state
    DIR/tensorboard/         event files and the item-embedding projector

The files above are written to a temporary name in the same directory and
renamed, so a file that exists is complete (`metrics.json`, written last,
marks a finished run). The exceptions are appended logs (`training_log.jsonl`,
TensorBoard events) and Keras' backups, which keep the previous backup too.

`Trainer.fit(..., run_dir=DIR)` writes them (`write_run`); `load_run(DIR)`
rebuilds the trained model from them, `evaluate_run(DIR)` recomputes its
held-out metrics.

Example:

>>> run = load_run("runs/retrieval")
>>> run.model.recommend([["50", "172"]], k=5)
"""

import dataclasses
import json
import os
import tempfile

from keras.src.saving import saving_lib

from tfrec import data, file_modes
from tfrec.config import ConfigError, require
from tfrec.evaluation import protocol
from tfrec.models import ModelConfig, build_model

CONFIG = "config.json"
METRICS = "metrics.json"
VOCABULARY = "vocabulary.json"
DATA_STATISTICS = "data_statistics.json"
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
        file_modes.apply_umask(temporary)
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


def items_jsonl(vocab, item_texts, item_titles):
    """The text of `items.jsonl`: one line per catalogue item, index order."""
    lines = (
        json.dumps({"index": index, "item_id": vocab.item_ids[index], "text": item_texts[index],
                    "title": item_titles[index]})
        for index in range(1, vocab.num_items + 1)
    )
    return "".join(line + "\n" for line in lines)


def write_run(directory, model, prepared, metrics):
    """Writes a finished run's weights, vocabulary, catalogue and, last, `metrics.json`."""
    save_weights_atomic(model, os.path.join(directory, WEIGHTS))
    write_text_atomic(os.path.join(directory, VOCABULARY), prepared.vocab.to_json())
    write_json_atomic(os.path.join(directory, DATA_STATISTICS), {"rating_mean": prepared.rating_mean})
    write_text_atomic(os.path.join(directory, ITEMS),
                      items_jsonl(prepared.vocab, prepared.item_texts, prepared.item_titles))
    write_json_atomic(os.path.join(directory, METRICS), metrics)


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


def read_items(run_directory):
    """The run's item texts and titles, each `[0] == ""` then one per item in index order."""
    texts, titles = [""], [""]
    file = path(run_directory, ITEMS)
    with open(file, encoding="utf-8") as f:
        for row, line in enumerate(f, start=1):
            record = json.loads(line)
            if record["index"] != row:
                raise RunDirError(f"{file}: row {row} has index {record['index']}, expected {row}")
            texts.append(record["text"])
            titles.append(record.get("title", ""))
    return texts, titles


@dataclasses.dataclass
class RunCatalogue:
    """What a model is built on, as a run directory stores it (see `tfrec.models.build_model`)."""

    vocab: data.Vocabulary
    item_texts: list
    item_titles: list
    rating_mean: float


@dataclasses.dataclass
class Run:
    """A finished training run.

    Attributes:
        directory: the run directory.
        model: the model with the best weights loaded and its catalogue
            embeddings refreshed.
        catalogue: the `RunCatalogue` it was built on (vocabulary, item texts).
        model_config: the `ModelConfig`.
        data_config: the `tfrec.data.DataConfig` of its data.
        train_config: its `TrainConfig` as a dict.
    """

    directory: str
    model: object
    catalogue: RunCatalogue
    model_config: ModelConfig
    data_config: data.DataConfig
    train_config: dict

    @property
    def vocab(self):
        return self.catalogue.vocab


def check_run_directory(directory):
    """Raises `ConfigError` when `directory` cannot be a run directory (a file is in the way)."""
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ConfigError(f"the run directory {directory} is a file; expected a directory (new, or an earlier run's)")


def check_format(directory, saved_config):
    """Raises `ConfigError` for a `config.json` written before the configs were dataclasses."""
    if "data_config" not in saved_config:
        raise ConfigError(f"{directory}: written by an earlier tfrec (config.json holds flags, not configs); "
                          "train it again into a new run directory")


def read_config(directory):
    """The run's `config.json`, refusing one written before the configs were dataclasses (`check_format`)."""
    saved = read_json(path(directory, CONFIG))
    check_format(directory, saved)
    return saved


def load_run(directory):
    """Rebuilds the model of a finished run with its best weights.

    Args:
        directory: a run directory written by `Trainer.fit(..., run_dir=...)`.

    Returns:
        a `Run`.

    Raises:
        RunDirError: naming a missing file.
        ConfigError: a run directory of an earlier tfrec.
    """
    saved = read_config(directory)
    model_config = ModelConfig.from_dict(saved["model_config"])
    texts, titles = read_items(directory)
    statistics = read_json(path(directory, DATA_STATISTICS))
    catalogue = RunCatalogue(read_vocabulary(directory), texts, titles, statistics["rating_mean"])
    model = build_model(model_config, catalogue, encode_catalogue=False)  # the weights hold the encoded texts
    load_weights(model, path(directory, WEIGHTS))
    model.refresh_catalogue()
    return Run(directory, model, catalogue, model_config, data.DataConfig.from_dict(saved["data_config"]),
               saved.get("train_config", {}))


def load_run_data(directory, prepared=None, **data_overrides):
    """Loads the run at `directory` and prepares the data it was trained on.

    Args:
        directory: a finished run directory.
        prepared: the run's data as `tfrec.data.PreparedData`, when it cannot
            be loaded again from the run's `DataConfig` (e.g. DataFrames).
        **data_overrides: `DataConfig` fields replacing the run's (e.g.
            `source=` pointing at a moved copy of the data).

    Returns:
        (run, data): the `Run` and the `tfrec.data.PreparedData`.

    Raises:
        ConfigError: the data cannot be loaded again, or no longer gives the
            run's vocabulary.
    """
    run = load_run(directory)
    if prepared is None:
        config = run.data_config.replace(**data_overrides)
        require(config.source or os.environ.get(data.prepared.DATA_DIR_ENV),
                f"DataConfig.source=None: the run at {directory} was trained on data with no source to load again "
                "(e.g. DataFrames): pass the data (prepared=tfrec.data.from_dataframes(...)) or a source")
        prepared = data.prepare(config)
    require(
        prepared.vocab.item_ids == run.vocab.item_ids and prepared.vocab.num_users == run.vocab.num_users,
        f"DataConfig.source={prepared.config.source!r}: the data gives a different vocabulary than the run at "
        f"{directory} ({prepared.vocab.num_items} items, {prepared.vocab.num_users} users vs "
        f"{run.vocab.num_items} items, {run.vocab.num_users} users)",
    )
    return run, prepared


def evaluate_run(directory, split="test", prepared=None, **data_overrides):
    """The held-out metrics of a finished run, recomputed: those of its `metrics.json`
    (`split="test"`) or of its "valid" entry.

    Args:
        directory: a finished run directory.
        split: "test" or "valid".
        prepared, **data_overrides: see `load_run_data`.

    Returns:
        dict of metric name -> float.
    """
    run, prepared = load_run_data(directory, prepared, **data_overrides)
    held_out = protocol.HeldOut.from_data(prepared, split)
    ks = tuple(run.train_config.get("eval_ks", (10, 100)))
    return protocol.evaluate_model(run.model, held_out, run.model_config, ks,
                                   run.train_config.get("eval_batch_size", 512))
