"""Which training rows a `Recommender` learns from, and the training-data state it adapts to.

With `sequence_training` a row's history window trains a prediction at
every position, so per user the rows whose windows tile the sequence without
overlap suffice (`window_rows`); in behaviour-text mode every row costs a
BERT pass, so at most `BEHAVIOUR_TEXT_ROWS_PER_USER` evenly spaced rows per
user are kept (`spread_rows`). `TrainingExamples` gives the model
`train_examples` and `adapt` (the item frequencies and the items trained).

Example:

>>> window_rows(np.array([7, 7, 7, 7, 7]), window=2).tolist()
[0, 2, 4]
"""

import numpy as np
import tensorflow as tf

from tfrec.config import require
from tfrec.data import schema
from tfrec.data.examples import ROW_FEATURES, USER_ROW, USER_ROWS
from tfrec.data.sequences import transition_counts

BEHAVIOUR_TEXT_ROWS_PER_USER = 10
SEQUENCE_COLUMNS = (schema.USER_INDEX, schema.TARGET_TIMESTAMP, schema.TARGET_ITEM_ID)
"""The columns the transition prior's counts are rebuilt from (`tfrec.data.sequences.user_sequences`)."""


def example_columns(examples, names, batch_size=65536):
    """`examples` (a dict of arrays, or an unbatched dataset) as dicts of numpy arrays of `names`."""
    if not isinstance(examples, tf.data.Dataset):
        yield examples
        return
    selected = examples.map(lambda e: {name: e[name] for name in names})
    yield from selected.batch(batch_size).as_numpy_iterator()


class TrainingExamples:
    """The training-data side of `Recommender` (a mixin: it reads the model's `cfg`, `num_rows`,
    `item_log_probability`, `trained_items` and `warm_started_from`)."""

    def adapt(self, examples):
        """Sets the training-data state of the softmax from the training examples.

        The item sampling probabilities (logQ correction) follow the targets'
        frequencies, and the items that occur nowhere in `examples` (e.g. cold
        items held out) are no full-softmax negatives and are embedded from
        their text and `untrained_id_vector` (`refresh_catalogue`), unless the
        model was warm-started and learnt them before: a refresh fits on the
        logs its model never trained on, and the items they do not name keep
        their trained vectors. A `transition_prior` counts the examples'
        item-to-item transitions (added to the counts it holds when the model
        was warm-started: new logs add to what it learnt). `Trainer.fit` calls it.

        Args:
            examples: dict of numpy arrays keyed by schema feature names, or an
                unbatched `tf.data.Dataset` of such examples (read in one pass,
                as Keras preprocessing layers adapt).
        """
        counts = np.zeros(self.num_rows, np.float64)
        seen = np.zeros(self.num_rows, np.float32)
        behaviours = []  # (user, time, item) of every example, for the transition prior
        for batch in example_columns(examples, (schema.HISTORY_ITEM_IDS, *SEQUENCE_COLUMNS)):
            targets = np.asarray(batch[schema.TARGET_ITEM_ID])
            counts += np.bincount(targets, minlength=self.num_rows)[:self.num_rows]
            seen[targets] = 1.0
            seen[np.asarray(batch[schema.HISTORY_ITEM_IDS]).ravel()] = 1.0
            if self.transition_prior is not None:
                behaviours.append({name: np.asarray(batch[name]) for name in SEQUENCE_COLUMNS})
        if self.transition_prior is not None and behaviours:
            columns = {name: np.concatenate([b[name] for b in behaviours]) for name in SEQUENCE_COLUMNS}
            self.transition_prior.fit(*transition_counts(columns, self.num_rows - 1, where="Recommender.adapt"),
                                      add_stored=bool(self.warm_started_from))
        counts[0] = 0
        self.item_log_probability.assign(np.log((counts + 1.0) / (counts + 1.0).sum()).astype(np.float32))
        seen[0] = 0.0
        if self.warm_started_from:
            seen = np.maximum(seen, self.trained_items.numpy())
        self.trained_items.assign(seen)

    def train_examples(self, examples):
        """Selects the training rows this model learns from best (no state changes).

        With `sequence_training`, keeps for each user the rows whose history
        windows tile the user's sequence without overlap (the user's last row,
        then every `history_length`-th row before it); each kept row trains a
        prediction at every position. In behaviour-text mode keeps at most
        `BEHAVIOUR_TEXT_ROWS_PER_USER` evenly spaced rows per user (each row
        costs a BERT pass). Otherwise returns the examples unchanged.

        Args:
            examples: dict of numpy arrays keyed by schema feature names, rows
                of a user in chronological order; or an unbatched
                `tf.data.Dataset` of examples that carry `examples.ROW_FEATURES`
                (`StreamedData.training_examples`), filtered example by example.

        Returns:
            the same kind as `examples`, a subset of the rows.
        """
        if isinstance(examples, tf.data.Dataset):
            return self._train_rows_of_stream(examples)
        users = np.asarray(examples[schema.USER_INDEX])
        if self.cfg.behaviour_text:
            keep = spread_rows(users, BEHAVIOUR_TEXT_ROWS_PER_USER)
        elif self.cfg.sequence_training:
            keep = window_rows(users, examples[schema.HISTORY_ITEM_IDS].shape[1])
        else:
            return examples
        return {name: np.asarray(value)[keep] for name, value in examples.items()}

    def _train_rows_of_stream(self, dataset):
        """`train_examples` of a dataset: the rule of `window_rows` on each example's `ROW_FEATURES`."""
        require(not self.cfg.behaviour_text,
                "ModelConfig.behaviour_text=True picks rows from all of a user's examples at once: it needs "
                "examples in memory, not a tfrecord: source")
        spec = dataset.element_spec
        require(all(name in spec for name in ROW_FEATURES),
                f"the training examples lack {sorted(ROW_FEATURES)}: convert the data again with this tfrec")
        if self.cfg.sequence_training:
            window = spec[schema.HISTORY_ITEM_IDS].shape[-1]
            dataset = dataset.filter(lambda e: (e[USER_ROWS] - 1 - e[USER_ROW]) % window == 0)
        return dataset.map(lambda e: {name: value for name, value in e.items() if name not in ROW_FEATURES})


def window_rows(users, window: int) -> np.ndarray:
    """Row indices: per user, the last row then every `window`-th row before it."""
    keep = []
    for user_rows in _rows_by_user(users):
        keep.extend(user_rows[::-1][::window][::-1])
    return np.sort(np.asarray(keep, np.int64))


def spread_rows(users, per_user: int) -> np.ndarray:
    """Row indices: per user, at most `per_user` evenly spaced rows, always the last."""
    keep = []
    for user_rows in _rows_by_user(users):
        picks = np.unique(np.linspace(len(user_rows) - 1, 0, per_user).round().astype(int))
        keep.extend(user_rows[picks])
    return np.sort(np.asarray(keep, np.int64))


def _rows_by_user(users):
    order = np.argsort(users, kind="stable")
    boundaries = np.flatnonzero(np.diff(users[order])) + 1
    return np.split(order, boundaries)
