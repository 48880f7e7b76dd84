"""`DataConfig` and `prepare`: a source loaded, validated, split and turned into examples.

`PreparedData` is what models are built from and trainers fit on: the
validated tables, the split, the vocabulary, the examples of every split and
each catalogue item's text and title by vocabulary index.

Example:

>>> data = prepare(DataConfig(source="synthetic:users=50,items=80,per_user=12", history_length=10))
>>> data.vocab.num_items, data.examples["test"]["history_item_ids"].shape
(80, (50, 10))
"""

import dataclasses
import functools
import hashlib
import os
from typing import ClassVar, Optional

import numpy as np
import pandas as pd

from tfrec.config import Config, ConfigError, require
from tfrec.data import errors, schema, sources, splits, table, texts
from tfrec.data.dataset import InteractionData
from tfrec.data.examples import build_examples, prior_items
from tfrec.data.targets import EXCLUSIONS, TargetRule
from tfrec.data.vocabulary import Vocabulary

DATA_DIR_ENV = "TFREC_DATA_DIR"
NO_DATA_MESSAGE = (
    "DataConfig.source=None: no data given; use movielens:DIR (an unpacked MovieLens 100K/1M/latest-small "
    f"directory), set {DATA_DIR_ENV}=DIR to use movielens:DIR by default, or use tfds:movielens/100k "
    "on a machine with internet (or table:... for your own files, synthetic: for generated data)"
)


@dataclasses.dataclass
class DataConfig(Config):
    """Where the behaviour logs come from and how they become examples.

    Attributes:
        source: movielens:DIR, tfds:NAME, table:interactions=FILE,items=FILE[,users=FILE]
            or synthetic:users=200,items=300,per_user=30,seed=0. Default:
            movielens:$TFREC_DATA_DIR when that is set.
        split: how interactions are split into train/valid/test.
        split_fractions: train,valid,test shares for the temporal and random splits.
        split_seed: seed of the random and cold_items splits.
        cold_fraction: share of items held out of training by the cold_items split.
        history_length: number of past behaviours in each example's history.
        on_bad_rows: error: stop at the first bad row; skip: skip bad rows and
            report counts.
        duplicates: table source: interaction rows repeating an earlier row exactly,
            or with the same user, item, time (and event) but another rating:
            error: stop at the first; drop: drop exact repeats and report their
            count (conflicting rows still stop); keep: keep every row.
        user_col: table source: column holding the user id.
        item_col: table source: column holding the item id (both files).
        time_col: table source: column holding the time of the interaction.
        rating_col: table source: column holding the rating (optional).
        event_col: table source: column holding the event type (optional).
        title_col: table source: item column holding the title.
        description_col: table source: item column holding the description.
        genres_col: table source: item column holding genres/tags.
        genres_separator: table source: separator between tags in the genres column.
        text_cols: table source: item columns whose values, in this order,
            make the item text the encoder reads (e.g. title,brand,categories,description;
            default: title, genres, description); an item needs one non-empty.
        time_format: table source: format of the time column: 'unix' (seconds),
            'unix_ms', 'iso' or a strftime pattern (read as UTC).
        rating_range: table source: low,high bounds of valid ratings (default:
            any finite number).
        delimiter: table source: CSV/TSV field delimiter (default: from the
            file extension).
        target_events: the events that are targets, e.g. purchase: only they
            are held out and scored (and trained on, see
            `ModelConfig.context_loss_weight`); the others stay in the
            histories as context. Default: every event.
        target_min_rating: the lowest rating of a target behaviour (e.g. 4:
            the next film the user will like); default: any.
        seen_exclusion: which earlier items a ranking leaves out: targets (the
            items the user already had as a target, e.g. bought; with every
            behaviour a target, every item met) or all (every item met).
    """

    source: Optional[str] = None
    split: str = "leave_last_out"
    split_fractions: tuple[float, ...] = (0.8, 0.1, 0.1)
    split_seed: int = 0
    cold_fraction: float = 0.1
    history_length: int = 50
    on_bad_rows: str = "error"
    duplicates: str = "error"
    user_col: str = table.ColumnMap.user
    item_col: str = table.ColumnMap.item
    time_col: str = table.ColumnMap.time
    rating_col: str = table.ColumnMap.rating
    event_col: str = table.ColumnMap.event
    title_col: str = table.ColumnMap.title
    description_col: str = table.ColumnMap.description
    genres_col: str = table.ColumnMap.genres
    genres_separator: str = "|"
    text_cols: tuple[str, ...] = ()
    time_format: str = "unix"
    rating_range: Optional[tuple[float, ...]] = None
    delimiter: Optional[str] = None
    target_events: tuple[str, ...] = ()
    target_min_rating: Optional[float] = None
    seen_exclusion: str = "targets"

    CHOICES: ClassVar[dict] = {"split": splits.SPLITS, "on_bad_rows": errors.ON_BAD_ROWS,
                               "duplicates": errors.DUPLICATES, "seen_exclusion": EXCLUSIONS}

    def validate(self):
        """Raises `ConfigError` naming the first invalid field; returns self."""
        self.check_choices()
        self.check_range("history_length", minimum=1)
        fractions = np.asarray(self.split_fractions, dtype=np.float64)
        require(len(fractions) == 3 and (fractions >= 0).all() and np.isclose(fractions.sum(), 1.0),
                f"{self.name('split_fractions')}: expected 3 non-negative numbers summing to 1")
        self.check_range("cold_fraction", above=0.0, below=1.0)
        require(self.delimiter is None or (len(self.delimiter) == 1 and self.delimiter not in '\r\n"'),
                f"{self.name('delimiter')}: expected one character other than a quote or a line end, e.g. ';' "
                "or a tab")
        require(self.rating_range is None or (len(self.rating_range) == 2 and self.rating_range[0] < self.rating_range[1]),
                f"{self.name('rating_range')}: expected low,high with low < high")
        return self

    def resolved_source(self) -> str:
        """`source`, else movielens:$TFREC_DATA_DIR, else raises `SourceError` saying how to give data."""
        if self.source:
            return self.source
        if os.environ.get(DATA_DIR_ENV):
            return f"movielens:{os.environ[DATA_DIR_ENV]}"
        raise errors.SourceError(NO_DATA_MESSAGE)

    def with_absolute_source(self) -> "DataConfig":
        """This config with the paths of `source` absolute (`sources.absolute`): the form a run
        directory saves, so later commands find the data from any working directory."""
        return self.replace(source=sources.absolute(self.source)) if self.source else self

    def columns(self) -> table.ColumnMap:
        """The table source's `ColumnMap`."""
        return table.ColumnMap(user=self.user_col, item=self.item_col, time=self.time_col,
                               rating=self.rating_col, event=self.event_col, title=self.title_col,
                               description=self.description_col, genres=self.genres_col,
                               text=tuple(self.text_cols))

    def table_options(self) -> dict:
        """The `assemble` options of table sources and DataFrames."""
        return {"rating_range": tuple(self.rating_range) if self.rating_range else None,
                "time_format": self.time_format, "genres_separator": self.genres_separator,
                "duplicates": self.duplicates}

    def load_tables(self) -> InteractionData:
        """Loads and validates the source's tables."""
        return sources.load(self.resolved_source(), on_bad_rows=self.on_bad_rows, columns=self.columns(),
                            delimiter=self.delimiter, **self.table_options())

    def target_rule(self) -> TargetRule:
        """The `TargetRule` of `target_events`, `target_min_rating` and `seen_exclusion`."""
        return TargetRule(tuple(self.target_events), self.target_min_rating, self.seen_exclusion)

    def checked_target_rule(self, tables: InteractionData) -> TargetRule:
        """`target_rule()`, checked against `tables`: raises `ConfigError` naming the flag otherwise."""
        try:
            return self.target_rule().check(tables)
        except ValueError as error:
            raise ConfigError(f"{self.name('target_events')}/{self.name('target_min_rating')}: {error}") from error

    def split_tables(self, tables: InteractionData) -> splits.Split:
        """Splits the interactions of `tables` as configured (leave-last-out on the target behaviours)."""
        rule = self.checked_target_rule(tables)
        return splits.split_interactions(tables, self.split, fractions=self.split_fractions,
                                         seed=self.split_seed, cold_fraction=self.cold_fraction,
                                         targets=None if rule.selects_all else rule.mask(tables.interactions))


@dataclasses.dataclass
class PreparedData:
    """A data set ready for training: tables, split, vocabulary, examples, item texts.

    Attributes:
        tables: the validated `InteractionData`.
        split: its `Split` into train/valid/test interactions.
        vocab: the `Vocabulary` (dense indices of items, users, events).
        examples: "train"/"valid"/"test" -> feature name -> np.ndarray
            (`tfrec.data.build_examples`).
        item_texts: text of each catalogue index, `[0] == ""` (padding).
        item_titles: title of each catalogue index, `[0] == ""`.
        config: the `DataConfig` it was prepared with.
    """

    tables: InteractionData
    split: splits.Split
    vocab: Vocabulary
    examples: dict
    item_texts: list
    item_titles: list
    config: DataConfig

    @property
    def name(self) -> str:
        """The source the tables came from."""
        return self.tables.name

    @functools.cached_property
    def fingerprint(self) -> str:
        """A hash of the interactions' and items' contents (not of file names or dates): a resumed run
        checks that it trains on the data it started on."""
        return tables_fingerprint(self.tables)

    @property
    def has_ratings(self) -> bool:
        """Whether the logs have ratings."""
        return self.tables.has_ratings

    @property
    def target_rule(self) -> TargetRule:
        """Which behaviours are the targets (`DataConfig.target_events`, `target_min_rating`)."""
        return self.config.target_rule()

    streamed: ClassVar[bool] = False
    """Whether the training examples stream from files (`StreamedData`) rather than sit in `examples`."""

    def num_examples(self, split: str) -> int:
        """The number of examples of `split` ("train", "valid" or "test")."""
        return len(self.examples[split][schema.TARGET_ITEM_ID])

    def training_examples(self) -> dict:
        """The training examples, as `Trainer.fit` feeds them to `Recommender.adapt` and `train_examples`."""
        return self.examples["train"]

    def training_columns(self, names) -> dict:
        """Columns `names` of the training examples, as numpy arrays."""
        return {name: self.examples["train"][name] for name in names}

    def held_out_prior(self, split: str) -> list:
        """The items each example of `split` ("valid" or "test") follows, which its ranking excludes."""
        return prior_items(self.split, self.vocab, split, self.examples[split], self.target_rule)

    def summary(self) -> dict:
        """Sizes of the catalogue, users and split parts, the target rule and the held-out targets, and the
        fingerprint: what a run records."""
        return {"name": self.name, "split": self.split.name, "items": self.vocab.num_items,
                "users": self.vocab.num_users, **interaction_counts(self.tables, self.split),
                "target_rule": self.target_rule.to_dict(),
                **{f"{part}_targets": self.num_examples(part) for part in ("valid", "test")},
                "fingerprint": self.fingerprint}

    def training_not_in(self, trained: pd.DataFrame, replay: float = 0.0, seed: int = 0) -> "PreparedData":
        """The same data with only the training examples whose target behaviour is not a row of
        `trained` (their histories keep every earlier behaviour): what a warm-started model
        fine-tunes on, `trained` being the behaviours its previous training learnt from (its
        `split.train`). A previous model's held-out behaviours, each user's last ones, are among
        them: it never trained on them.

        Replay draws users, not examples: a drawn user keeps all of their
        training examples, so a sequence-trained model learns from the same
        history windows as a full retrain for them, and the windows to train
        (the cost of an epoch) grow with the share. A draw by example would
        touch nearly every user's windows on sparse data.

        Args:
            trained: behaviours with `user_id`, `item_id` and `timestamp` columns.
            replay: share of the users whose other training examples are kept
                too, drawn at random (0: none; 1: all, i.e. fine-tuning on every log).
            seed: seed of the draw.

        Raises:
            ConfigError: every training example is in `trained`, or `replay` is not in [0, 1].

        Example:
            >>> new = data.training_not_in(previous_data.split.train, replay=0.25)
        """
        require(0.0 <= replay <= 1.0, f"replay={replay}: expected a share in [0, 1]")
        train = self.examples["train"]
        keys = [np.asarray(train[key]) for key in (schema.USER_INDEX, schema.TARGET_ITEM_ID, schema.TARGET_TIMESTAMP)]
        trained_keys = [self.vocab.user_index(trained[schema.USER_ID]), self.vocab.item_index(trained[schema.ITEM_ID]),
                        trained[schema.TIMESTAMP].to_numpy(np.int64)]
        # A view and a purchase of an item at one second are two behaviours.
        if self.tables.has_events and schema.EVENT in trained:
            keys.append(np.asarray(train[schema.TARGET_EVENT]))
            trained_keys.append(self.vocab.event_index(trained[schema.EVENT]))
        new = ~pd.MultiIndex.from_arrays(keys).isin(pd.MultiIndex.from_arrays(trained_keys))
        require(new.any(), f"all {len(new)} training examples are among the {len(trained)} trained behaviours: "
                "nothing new to train on")
        replayed_users = np.random.default_rng(seed).random(self.vocab.num_users + 1) < replay  # index 0: unknown
        keep = new | replayed_users[np.asarray(train[schema.USER_INDEX])]
        examples = dict(self.examples, train={name: np.asarray(value)[keep] for name, value in train.items()})
        return dataclasses.replace(self, examples=examples)

    @property
    def rating_mean(self) -> float:
        """Mean rating of the training interactions (0.0 without ratings)."""
        return training_rating_mean(self.tables, self.split)


def training_rating_mean(tables: InteractionData, split: splits.Split) -> float:
    """Mean rating of the training interactions (0.0 without ratings)."""
    if not tables.has_ratings:
        return 0.0
    return float(np.mean(split.train[schema.RATING].to_numpy(np.float64)))


def interaction_counts(tables: InteractionData, split: splits.Split) -> dict:
    """{"interactions": all, "train_interactions": ..., "valid_interactions": ..., "test_interactions": ...}."""
    return {"interactions": len(tables.interactions),
            **{f"{part}_interactions": count for part, count in split.sizes().items()}}


def tables_fingerprint(tables: InteractionData) -> str:
    """A hash of the contents of `tables`' interactions and items (`PreparedData.fingerprint`)."""
    digest = hashlib.sha256()
    for frame in (tables.interactions, tables.items):
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        digest.update(",".join(map(str, frame.columns)).encode())
    return digest.hexdigest()[:32]


def prepare(config: DataConfig, tables: Optional[InteractionData] = None,
            split: Optional[splits.Split] = None) -> "PreparedData | streamed.StreamedData":
    """Loads (unless `tables` is given), splits (unless `split` is given) and builds the examples.

    A `tfrecord:DIR` source (the output of `python -m tfrec.data convert`) gives a
    `tfrec.data.streamed.StreamedData` instead: its training examples are read
    from the files as training goes.

    Args:
        config: `DataConfig`; its `source` and table options are ignored when
            `tables` is given, its split options when `split` is.
        tables: already loaded `InteractionData` (e.g. from `from_dataframes`).
        split: a `Split` of `tables` made otherwise (e.g. time windows of a refresh).

    Returns:
        `PreparedData`.

    Raises:
        tfrec.config.ConfigError: an invalid config field.
        tfrec.data.DataError: a bad file, row or field (named in the message).
    """
    config.validate()
    if tables is None and sources.source_kind(config.resolved_source()) == sources.STREAMED:
        from tfrec.data import streamed  # TensorFlow reads the files

        require(config.target_rule().selects_all,
                f"{config.name('target_events')}/{config.name('target_min_rating')}: a tfrecord: source holds the "
                "examples of every behaviour; convert the data again without a target rule, or read the tables")
        return streamed.load_streamed(config)
    if tables is None:
        tables = config.load_tables()
    if split is None:
        split = config.split_tables(tables)
    vocab = Vocabulary.from_data(tables)
    examples = build_examples(tables, split, vocab, config.history_length, config.checked_target_rule(tables))
    return PreparedData(tables, split, vocab, examples, texts.item_texts(tables.items, vocab),
                        texts.item_titles(tables.items, vocab), config)
