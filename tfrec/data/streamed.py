"""`StreamedData`: examples converted to sharded TFRecords, read back as training goes.

`python -m tfrec.data convert` writes every split's examples, the vocabulary,
the item texts and each held-out example's prior items (`tfrecord.py`). The
`tfrecord:DIR` source reads them back: the training examples stream from the
shard files through tf.data, so the examples (each `history_length` behaviours
wide) are never all in memory, only a shuffle buffer of them. The conversion
writes them in a seeded random order, so any stretch of the files mixes every
user. What stays in memory grows with the logs, not with the examples: the
held-out examples and their prior items (about two item ids per training
behaviour under `leave_last_out`), and the four scalar columns the baselines
fit on (about 20 bytes per training example). Under `multi_worker` every
worker reads every shard and the global batches are split by data
(docs/distributed.md). Models and trainers take it where they take a
`PreparedData`.

Example:

>>> data = tfrec.data.prepare(tfrec.data.DataConfig(source="tfrecord:converted/"))  # doctest: +SKIP
>>> data.num_examples("train"), data.vocab.num_items  # doctest: +SKIP
(98114, 1682)
"""

import dataclasses
import json
import os
from typing import ClassVar

import numpy as np

from tfrec.config import require
from tfrec.data import errors, texts, tfrecord
from tfrec.data.examples import FEATURES, ROW_FEATURES
from tfrec.data.targets import TargetRule
from tfrec.data.vocabulary import Vocabulary

HELD_OUT = ("valid", "test")
SPLIT_FIELDS = ("split", "split_fractions", "split_seed", "cold_fraction", "history_length")
"""`DataConfig` fields that shaped the converted examples: a run on them must give the conversion's values."""


@dataclasses.dataclass
class StreamedData:
    """A converted data set: vocabulary, item texts, held-out examples; training examples on disk.

    Attributes:
        directory: the conversion's directory.
        metadata: its `metadata.json`.
        vocab: the `Vocabulary`.
        examples: "valid"/"test" -> feature name -> np.ndarray (no "train": see
            `training_examples`).
        item_texts: text of each catalogue index, `[0] == ""` (padding).
        item_titles: title of each catalogue index, `[0] == ""`.
        config: the `DataConfig` it was loaded with.
    """

    directory: str
    metadata: dict
    vocab: Vocabulary
    examples: dict
    item_texts: list
    item_titles: list
    config: object

    streamed: ClassVar[bool] = True

    @property
    def name(self) -> str:
        return self.metadata.get("source", self.config.source)

    @property
    def fingerprint(self) -> str:
        """The content fingerprint of the tables the conversion read (`PreparedData.fingerprint`)."""
        return self.metadata["fingerprint"]

    @property
    def has_ratings(self) -> bool:
        """Whether the converted logs had ratings."""
        return self.metadata["has_ratings"]

    @property
    def rating_mean(self) -> float:
        """Mean rating of the training interactions (0.0 without ratings)."""
        return self.metadata["rating_mean"]

    def num_examples(self, split: str) -> int:
        """The number of examples of `split` ("train", "valid" or "test")."""
        return self.metadata["splits"][split]["examples"]

    target_rule: ClassVar[TargetRule] = TargetRule()
    """Every behaviour is a target: a conversion writes the examples of every behaviour."""

    def training_examples(self, parallel_batch: int = 1024):
        """The training examples as an unbatched `tf.data.Dataset` read from the shards, with
        `examples.ROW_FEATURES` (which `Recommender.train_examples` selects rows by)."""
        return tfrecord.read_tfrecords(self.directory, "train", parallel_batch, features=[*FEATURES, *ROW_FEATURES])

    def training_columns(self, names) -> dict:
        """Columns `names` of the training examples, read from the shards into numpy arrays."""
        return _read_all(self.directory, "train", list(names))

    def held_out_prior(self, split: str) -> list:
        """The items each example of `split` follows, which its ranking excludes (written by the conversion)."""
        return tfrecord.read_prior(self.directory, split)

    def summary(self) -> dict:
        """Sizes of the catalogue, users and split parts, the fingerprint and the directory: what a run records."""
        return {"name": self.name, "split": self.metadata.get("split"), "items": self.vocab.num_items,
                "users": self.vocab.num_users, **self.metadata["interactions"],
                "target_rule": self.target_rule.to_dict(),
                **{f"{part}_targets": self.num_examples(part) for part in ("valid", "test")},
                "fingerprint": self.fingerprint, "streamed_from": self.directory}


def load_streamed(config) -> StreamedData:
    """Opens the conversion `config.source` names (`tfrecord:DIR`).

    Args:
        config: `DataConfig`; its `SPLIT_FIELDS` must be the conversion's.

    Returns:
        `StreamedData` whose `config` is the conversion's `DataConfig` (its
        table options as they were applied) with `config.source`.

    Raises:
        SourceError: not a complete conversion of this tfrec (file named).
        ConfigError: a `SPLIT_FIELDS` value differs from the conversion's.
    """
    directory = config.source.partition(":")[2]
    if not directory:
        raise errors.SourceError("expected tfrecord:DIR, the --output_dir of `python -m tfrec.data convert`",
                                 file=config.source)
    metadata = tfrecord.read_metadata(directory)
    for key in ("fingerprint", "has_ratings", "rating_mean", "interactions", "data_config"):
        if key not in metadata:
            raise errors.SourceError(f"{tfrecord.METADATA_FILE} has no {key!r}: converted by an earlier tfrec; "
                                     "convert the data again", file=directory)
    converted = type(config).from_dict(metadata["data_config"])
    for field in SPLIT_FIELDS:
        require(getattr(config, field) == getattr(converted, field),
                f"DataConfig.{field}={getattr(config, field)!r}: the examples in {directory} were converted with "
                f"{field}={getattr(converted, field)!r}; use that, or convert again")
    vocab = Vocabulary.from_json(_read(directory, tfrecord.VOCABULARY_FILE))
    try:
        records = [json.loads(line) for line in _read(directory, tfrecord.ITEMS_FILE).splitlines() if line.strip()]
    except json.JSONDecodeError as error:
        raise errors.SourceError(f"{tfrecord.ITEMS_FILE} is not JSON lines ({error})", file=directory) from None
    if [r["item_id"] for r in records] != vocab.item_ids[1:]:
        raise errors.SourceError(f"{tfrecord.ITEMS_FILE} does not list the vocabulary's items in index order",
                                 file=directory)
    item_texts = ["", *(r["text"] for r in records)]
    item_titles = ["", *(r.get("title") or texts.title_from_text(r["text"]) for r in records)]
    examples = {split: _read_all(directory, split, list(FEATURES)) for split in HELD_OUT}
    return StreamedData(directory, metadata, vocab, examples, item_texts, item_titles,
                        converted.replace(source=config.source))


def _read(directory, name):
    path = os.path.join(directory, name)
    if not os.path.isfile(path):
        raise errors.SourceError(f"no {name}: converted without the vocabulary and items", file=directory)
    with open(path, encoding="utf-8") as f:
        return f.read()


def _read_all(directory, split, names) -> dict:
    """Features `names` of every example of `split`, as numpy arrays."""
    dataset = tfrecord.read_tfrecords(directory, split, features=names).batch(65536)
    columns = {name: [] for name in names}
    for batch in dataset.as_numpy_iterator():
        for name in names:
            columns[name].append(batch[name])
    return {name: np.concatenate(parts) if parts else
            np.zeros((0, *dataset.element_spec[name].shape[1:]), dataset.element_spec[name].dtype.as_numpy_dtype)
            for name, parts in columns.items()}
