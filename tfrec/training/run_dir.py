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

`RunDirectory` owns them: `Trainer.fit(..., run_dir=DIR)` writes them
through it; `load_run(DIR)` rebuilds the trained model from them,
`evaluate_run(DIR)` recomputes its held-out metrics.

Example:

>>> run = load_run("runs/retrieval")
>>> run.model.recommend([["50", "172"]], k=5)
"""

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from typing import Optional

import numpy as np

from tfrec import data
from tfrec.config import ConfigError, require
from tfrec.evaluation import protocol
from tfrec.models import ModelConfig, build_model
from tfrec.training import atomic_files, callbacks, projector
from tfrec.training.config import RESUMABLE_CHANGES, TrainConfig

CONFIG = "config.json"
METRICS = "metrics.json"
VOCABULARY = "vocabulary.json"
DATA_STATISTICS = "data_statistics.json"
ITEMS = "items.jsonl"
WEIGHTS = "model.weights.h5"
TRAINING_LOG = "training_log.jsonl"
CHECKPOINTS = "checkpoints"
BACKUP = os.path.join(CHECKPOINTS, "backup")
TENSORBOARD = "tensorboard"


class RunDirError(FileNotFoundError):
    """A run directory lacks a file a finished run has."""


class RunDirectory:
    """The one owner of a run directory: its paths, the files it reads and writes, its training state.

    Creating one checks that `path` can be a run directory (new, or an earlier
    run's), before any file is read or written.

    Args:
        path: the run directory.

    Raises:
        ConfigError: `path` is a file.

    Example:

    >>> run = RunDirectory("runs/retrieval")
    >>> run.read_config()["model_config"]["task"]
    'retrieval'
    """

    def __init__(self, path: str):
        if os.path.exists(path) and not os.path.isdir(path):
            raise ConfigError(f"the run directory {path} is a file; expected a directory (new, or an earlier run's)")
        self.path = path

    def file(self, name: str) -> str:
        """`path/name`, whether or not it exists."""
        return os.path.join(self.path, name)

    def existing(self, name: str) -> str:
        """`path/name`, raising `RunDirError` when it does not exist."""
        full = self.file(name)
        if not os.path.exists(full):
            raise RunDirError(f"{full}: not found; is {self.path!r} the directory of a finished "
                              "`python -m tfrec.train` run?")
        return full

    # Reading a finished run.

    def read_config(self) -> dict:
        """The run's `config.json`, refusing one written before the configs were dataclasses, or by a run
        trained with a feature since removed; the fields of removed features it did not use are dropped
        (`Config.without_removed`)."""
        saved = atomic_files.read_json(self.existing(CONFIG))
        if "data_config" not in saved:
            raise ConfigError(f"{self.path}: written by an earlier tfrec (config.json holds flags, not configs); "
                              "train it again into a new run directory")
        for section, config_class in (("model_config", ModelConfig), ("train_config", TrainConfig)):
            if section in saved:
                if not isinstance(saved[section], dict):
                    raise ConfigError(f"{self.path}: config.json {section} is {type(saved[section]).__name__}; "
                                      "expected an object of fields")
                try:
                    saved[section] = config_class.without_removed(saved[section])
                except ConfigError as error:
                    raise ConfigError(f"{self.path}: {error}") from None
        return saved

    def read_vocabulary(self) -> data.Vocabulary:
        """The run's `data.Vocabulary`."""
        with open(self.existing(VOCABULARY), encoding="utf-8") as f:
            return data.Vocabulary.from_json(f.read())

    def read_items(self) -> tuple:
        """The run's item texts and titles, each `[0] == ""` then one per item in index order."""
        texts, titles = [""], [""]
        file = self.existing(ITEMS)
        with open(file, encoding="utf-8") as f:
            for row, line in enumerate(f, start=1):
                record = json.loads(line)
                if record["index"] != row:
                    raise RunDirError(f"{file}: row {row} has index {record['index']}, expected {row}")
                texts.append(record["text"])
                titles.append(record.get("title", ""))
        return texts, titles

    def read_metrics(self) -> dict:
        """The finished run's `metrics.json`."""
        return atomic_files.read_json(self.existing(METRICS))

    def read_training_log(self) -> list:
        """The records of `training_log.jsonl`, one per start / epoch / end."""
        return atomic_files.read_jsonl(self.existing(TRAINING_LOG))

    def read_catalogue(self) -> "RunCatalogue":
        """What the run's model was built on."""
        texts, titles = self.read_items()
        statistics = atomic_files.read_json(self.existing(DATA_STATISTICS))
        return RunCatalogue(self.read_vocabulary(), texts, titles, statistics["rating_mean"])

    # Training into it.

    def check_same_run(self, record: dict) -> None:
        """Raises `ConfigError` unless the run this directory holds, if any, trains the same model the
        same way on the same data as `record` (the `config.json` of the new fit) describes."""
        if not os.path.exists(self.file(CONFIG)):
            return
        existing = self.read_config()
        for section, config_class in (("data_config", data.DataConfig), ("model_config", ModelConfig),
                                      ("train_config", TrainConfig)):
            # Through the config class: a run written before a field existed holds its default.
            old = config_class.from_dict(existing.get(section, {}))
            if section == "data_config":  # a run saved before sources were stored absolute
                old = old.with_absolute_source()
            old, new = old.to_dict(), record[section]
            for name in sorted(set(old) | set(new)):
                if section == "train_config" and name in RESUMABLE_CHANGES:
                    continue
                if old.get(name) != new.get(name):
                    raise ConfigError(
                        f"{config_class.__name__}.{name}={new.get(name)!r}: the run directory {self.path} holds a "
                        f"run with {old.get(name)!r}; fit the same configs to resume it, or use a new run directory")
        if existing.get("data_fingerprint", record["data_fingerprint"]) != record["data_fingerprint"]:
            raise ConfigError(
                f"the data of {record['data_name']} changed since the run in {self.path} started (content "
                f"fingerprint {existing['data_fingerprint']} then, {record['data_fingerprint']} now): resume it on "
                "the data it started on, or train on the new data in a new run directory")

    def has_training_state(self) -> bool:
        """Whether a fit here resumes from saved weights (a backup, or the best epoch's)."""
        backup = self.file(BACKUP)
        return bool(os.path.isdir(backup) and os.listdir(backup)) or os.path.exists(
            os.path.join(self.file(CHECKPOINTS), callbacks.BEST_WEIGHTS))

    @contextlib.contextmanager
    def state_directory(self, worker_task: Optional[str] = None):
        """Yields the `RunDirectory` a fit writes its state and files to: this one, or for the
        non-chief `worker_task` of a multi-worker fit (e.g. "worker-1") a temporary one holding a copy of
        this one's `checkpoints/` (so a resumed run restores the chief's backup on every worker), removed
        afterwards. Its name follows from this directory and the task, so a rerun first removes what a
        killed worker left there."""
        if not worker_task:
            os.makedirs(self.path, exist_ok=True)
            yield self
            return
        digest = hashlib.sha1(os.path.abspath(self.path).encode()).hexdigest()[:12]
        directory = os.path.join(tempfile.gettempdir(), f"tfrec-{worker_task}-{digest}")
        shutil.rmtree(directory, ignore_errors=True)
        try:
            if os.path.isdir(self.file(CHECKPOINTS)):
                shutil.copytree(self.file(CHECKPOINTS), os.path.join(directory, CHECKPOINTS))
            else:
                os.makedirs(directory)
            yield RunDirectory(directory)
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    def epoch_records(self, history: dict) -> list:
        """The epoch records of the run's training log (all epochs, resumed ones included), or without a
        log those of `history` (`keras.callbacks.History.history` of this fit)."""
        if not os.path.exists(self.file(TRAINING_LOG)):
            count = len(next(iter(history.values()), []))
            return [{"epoch": epoch + 1, **{key: values[epoch] for key, values in history.items()}}
                    for epoch in range(count)]
        return [r for r in self.read_training_log() if r["event"] == "epoch"]

    def write_json(self, name: str, value) -> None:
        """Writes `path/name` as indented JSON, atomically (e.g. `CONFIG`: the configs of a fit and the
        facts of its data)."""
        atomic_files.write_json_atomic(self.file(name), value)

    def write_run(self, model, prepared, metrics: dict) -> None:
        """Writes a finished run's weights, vocabulary, catalogue and, last, `metrics.json`."""
        atomic_files.save_weights_atomic(model, self.file(WEIGHTS))
        atomic_files.write_text_atomic(self.file(VOCABULARY), prepared.vocab.to_json())
        atomic_files.write_json_atomic(self.file(DATA_STATISTICS), {"rating_mean": prepared.rating_mean})
        atomic_files.write_text_atomic(self.file(ITEMS),
                                       _items_jsonl(prepared.vocab, prepared.item_texts, prepared.item_titles))
        atomic_files.write_json_atomic(self.file(METRICS), metrics)

    def write_projector(self, model, prepared) -> None:
        """Item embeddings with ids and titles for TensorBoard's projector."""
        model.refresh_catalogue()
        ids = prepared.vocab.item_ids[1:]
        embeddings = np.asarray(model.item_embeddings(np.arange(1, prepared.vocab.num_items + 1, dtype=np.int32)))
        projector.write_projector(self.file(TENSORBOARD), embeddings,
                                  {"item_id": ids, "title": prepared.item_titles[1:]})


def _items_jsonl(vocab, item_texts, item_titles) -> str:
    """The text of `items.jsonl`: one line per catalogue item, index order."""
    lines = (
        json.dumps({"index": index, "item_id": vocab.item_ids[index], "text": item_texts[index],
                    "title": item_titles[index]})
        for index in range(1, vocab.num_items + 1)
    )
    return "".join(line + "\n" for line in lines)


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


def load_run(directory):
    """Rebuilds the model of a finished run with its best weights.

    Args:
        directory: a run directory written by `Trainer.fit(..., run_dir=...)`.

    Returns:
        a `Run`.

    Raises:
        RunDirError: naming a missing file.
        ConfigError: a run directory of an earlier tfrec, or of a run trained with a feature since removed.
    """
    run = RunDirectory(directory)
    saved = run.read_config()
    model_config = ModelConfig.from_dict(saved["model_config"])
    catalogue = run.read_catalogue()
    model = build_model(model_config, catalogue, encode_catalogue=False)  # the weights hold the encoded texts
    atomic_files.load_weights(model, run.existing(WEIGHTS))
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
