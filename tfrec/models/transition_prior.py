"""`TransitionPrior`: item-to-item transition counts as a term of the model's score.

The counting evidence of the transitions baseline (`tfrec.baselines.Transitions`)
inside the model: with `E_j = sum_a decay**a * T[h_a, j]` over the last
`last_n` history items `h_a` (age `a = 0` the most recent) and `T[i, j]` how
often item j followed item i within a few steps in the training sequences,
the model ranks by

    score_j = q . e_j + weight * log(1 + E_j)

In the "shares" form `T[i, j]` is replaced by `SHARE_SCALE` times item j's
share of the stored successors of i (how likely j follows i, whatever i's
popularity); the form and the weight are chosen on validation
(`tfrec.evaluation.prior_weight`).

The network ranks broadly (it generalises across items and reads text); the
counts rank sharply where the log holds direct evidence (product lines,
sessions, bursts of related behaviours). `weight` is chosen on validation
after training (`tfrec.training.prior_weight`); 0 leaves the network alone.

The counts are stored sparsely: for each item its `neighbours` most frequent
successors, sorted by item index (`neighbours_for` sets how many from the
catalogue size, so the table stays within `MAX_ENTRIES` entries). They are
weights, so they are saved with the model and compiled into the exported
signatures.

Example:

>>> prior = TransitionPrior(num_rows=4, neighbours=2)
>>> prior.update_counts(*top_neighbours(np.array([1, 1, 2]), np.array([2, 3, 3]), np.array([5.0, 1.0, 2.0]), 4, 2))
>>> _ = prior.weight.assign(1.0)
>>> np.round(prior.catalogue_scores(tf.constant([[0, 1]])).numpy().astype(float), 3).tolist()
[[0.0, 0.0, 1.792, 0.693]]
"""

import keras
import numpy as np
import tensorflow as tf

MAX_ENTRIES = 1 << 23  # neighbour slots over the whole catalogue: 64 MB of ids and counts
MAX_NEIGHBOURS = 256
MIN_NEIGHBOURS = 4
LAST_N = 5
DECAY = 0.8
WINDOW = 3
FORMS = ("counts", "shares")
"""How the stored transitions vote: raw counts, or each item's share of its source's successors."""
SHARE_SCALE = 10.0


def neighbours_for(num_rows: int) -> int:
    """Successors kept per item: `MAX_NEIGHBOURS`, fewer for catalogues too large for the table.

    >>> neighbours_for(1683), neighbours_for(1_000_001)
    (256, 8)
    """
    return int(max(MIN_NEIGHBOURS, min(MAX_NEIGHBOURS, num_rows - 1, MAX_ENTRIES // max(num_rows, 1))))


def top_neighbours(sources, targets, counts, num_rows, neighbours):
    """The `neighbours` most frequent successors of each item, as dense `[num_rows, neighbours]` arrays.

    Args:
        sources, targets, counts: distinct transitions i -> j and their counts
            (`tfrec.data.sequences.transition_counts`).
        num_rows: catalogue rows (items + padding row 0).
        neighbours: successors kept per item (ties: the lower index).

    Returns:
        (ids int32, counts float32), each row sorted by id, unused slots (id 0, count 0) first.
    """
    ids = np.zeros((num_rows, neighbours), np.int32)
    kept = np.zeros((num_rows, neighbours), np.float32)
    order = np.lexsort((targets, -counts, sources))
    sources, targets, counts = sources[order], targets[order], counts[order]
    starts = np.searchsorted(sources, sources, side="left")
    rank = np.arange(len(sources)) - starts
    keep = rank < neighbours
    ids[sources[keep], rank[keep]] = targets[keep]
    kept[sources[keep], rank[keep]] = counts[keep]
    by_id = np.argsort(ids, axis=1, kind="stable")  # unused slots (id 0) first
    return np.take_along_axis(ids, by_id, axis=1), np.take_along_axis(kept, by_id, axis=1)


@keras.saving.register_keras_serializable(package="tfrec")
class TransitionPrior(keras.layers.Layer):
    """Sparse item-to-item transition counts and their weight in the score (see the module docstring).

    Args:
        num_rows: catalogue rows, padding row 0 included.
        neighbours: successors stored per item (`neighbours_for(num_rows)`).
        last_n: how many of the most recent history items vote.
        decay: weight factor per step of age.
        **kwargs: base layer arguments.
    """

    def __init__(self, num_rows: int, neighbours: int, last_n: int = LAST_N, decay: float = DECAY, **kwargs):
        super().__init__(**kwargs)
        if num_rows < 1 or neighbours < 1 or last_n < 1 or not 0 < decay <= 1:
            raise ValueError(f"TransitionPrior: expected num_rows, neighbours, last_n >= 1 and 0 < decay <= 1; "
                             f"got {num_rows}, {neighbours}, {last_n}, {decay}")
        self.num_rows, self.neighbours = int(num_rows), int(neighbours)
        self.last_n, self.decay = int(last_n), float(decay)
        self.neighbour_ids = self.add_weight(shape=(self.num_rows, self.neighbours), dtype="int32",
                                             initializer="zeros", trainable=False, name="neighbour_ids")
        self.neighbour_counts = self.add_weight(shape=(self.num_rows, self.neighbours), initializer="zeros",
                                                trainable=False, name="neighbour_counts")
        self.weight = self.add_weight(shape=(), initializer="zeros", trainable=False, name="weight")
        # 1.0: the "shares" form, 0.0: "counts" (a weight, so the exported signatures follow it).
        self.shares = self.add_weight(shape=(), initializer="zeros", trainable=False, name="shares")
        self.built = True

    @property
    def form(self) -> str:
        """The form of the evidence, one of `FORMS`."""
        return FORMS[int(round(float(self.shares.numpy())))]

    def set_form(self, form: str) -> None:
        """Makes the evidence use `form` (one of `FORMS`)."""
        if form not in FORMS:
            raise ValueError(f"TransitionPrior.set_form: expected one of {FORMS}, got {form!r}")
        self.shares.assign(float(FORMS.index(form)))

    def update_counts(self, ids, counts) -> None:
        """Stores `[num_rows, neighbours]` successor ids (each row sorted) and their counts (`top_neighbours`)."""
        self.neighbour_ids.assign(np.asarray(ids, np.int32))
        self.neighbour_counts.assign(np.asarray(counts, np.float32))

    def stored_transitions(self) -> tuple:
        """(sources, targets, counts) numpy arrays of the transitions the table holds."""
        counts = np.asarray(self.neighbour_counts.numpy())
        sources, slots = np.nonzero(counts)
        return sources, np.asarray(self.neighbour_ids.numpy())[sources, slots], counts[sources, slots]

    def fit(self, sources, targets, counts, add_stored: bool = False) -> None:
        """Keeps the `neighbours` most frequent successors of each item among the transitions i -> j
        (`tfrec.data.sequences.transition_counts`), plus the stored ones with `add_stored` (new logs
        added to what an earlier fit counted)."""
        if add_stored:
            stored = self.stored_transitions()
            sources, targets, counts = (np.concatenate([a, b]) for a, b in zip(stored, (sources, targets, counts)))
        codes, inverse = np.unique(np.asarray(sources, np.int64) * self.num_rows + targets, return_inverse=True)
        summed = np.bincount(inverse.reshape(-1), weights=counts, minlength=len(codes)).astype(np.float32)
        self.update_counts(*top_neighbours(codes // self.num_rows, codes % self.num_rows, summed, self.num_rows,
                                           self.neighbours))

    def _recent(self, history_ids):
        """Successor ids and decayed counts of the last `last_n` items: `[B, n * neighbours]` each."""
        recent = tf.cast(history_ids, tf.int32)[:, -self.last_n:]
        ages = tf.range(tf.shape(recent)[1] - 1, -1, -1)
        decays = tf.pow(tf.constant(self.decay), tf.cast(ages, tf.float32))
        ids = tf.gather(tf.convert_to_tensor(self.neighbour_ids), recent)
        counts = tf.gather(tf.convert_to_tensor(self.neighbour_counts), recent)
        shares = SHARE_SCALE * counts / tf.maximum(tf.reduce_sum(counts, axis=-1, keepdims=True), 1.0)
        counts = (counts + self.shares * (shares - counts)) * decays[None, :, None]
        batch = tf.shape(recent)[0]
        return tf.reshape(ids, [batch, -1]), tf.reshape(counts, [batch, -1])

    def evidence(self, history_ids):
        """`E` of every catalogue row after each history: float32 `[B, num_rows]`.

        Args:
            history_ids: int `[B, N]` item indices, most recent last, left-padded with 0.
        """
        ids, counts = self._recent(history_ids)
        batch = tf.shape(ids)[0]
        # int64: a batch of a thousand queries over a few million items passes 2^31 rows.
        segments = tf.range(tf.cast(batch, tf.int64))[:, None] * self.num_rows + tf.cast(ids, tf.int64)
        dense = tf.math.unsorted_segment_sum(counts, segments, tf.cast(batch, tf.int64) * self.num_rows)
        return tf.reshape(dense, [batch, self.num_rows])

    def catalogue_scores(self, history_ids):
        """`weight * log(1 + E)` of every catalogue row, `[B, num_rows]`."""
        return self.weight * tf.math.log1p(self.evidence(history_ids))

    def candidate_scores(self, history_ids, candidates):
        """`weight * log(1 + E)` of int `candidates` `[B, K]` only, `[B, K]`, without a catalogue-wide row."""
        recent = tf.cast(history_ids, tf.int32)[:, -self.last_n:]
        ids, counts = self._recent(history_ids)
        count = tf.shape(recent)[1]
        per_item_ids = tf.reshape(ids, [-1, self.neighbours])  # [B * n, neighbours], each row sorted
        per_item_counts = tf.reshape(counts, [-1, self.neighbours])
        wanted = tf.repeat(tf.cast(candidates, tf.int32), count, axis=0)  # [B * n, K]
        slots = tf.minimum(tf.searchsorted(per_item_ids, wanted), self.neighbours - 1)
        found = tf.logical_and(tf.equal(tf.gather(per_item_ids, slots, batch_dims=1), wanted), wanted > 0)
        values = tf.where(found, tf.gather(per_item_counts, slots, batch_dims=1), 0.0)
        evidence = tf.reduce_sum(tf.reshape(values, [-1, count, tf.shape(candidates)[1]]), axis=1)
        return self.weight * tf.math.log1p(evidence)

    def load_own_variables(self, store):
        """Keras' loading, plus the weights of a prior saved before it had a form (the counts form)."""
        if len(store.keys()) == len(self.variables) - 1:
            for index, variable in enumerate(self.variables[:-1]):
                variable.assign(store[str(index)])
            self.shares.assign(0.0)
            return
        super().load_own_variables(store)

    def get_config(self):
        return dict(super().get_config(), num_rows=self.num_rows, neighbours=self.neighbours,
                    last_n=self.last_n, decay=self.decay)
