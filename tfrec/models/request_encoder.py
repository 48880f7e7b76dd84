"""`RequestEncoder`: a recommendation request as the tensors the model reads.

A request names items by id: histories `[B, N]` of item ids left-padded with
"" (`tfrec.request_format`), optionally the history's ratings, timestamps and
event names, the request time, the user and `k`. This layer looks the ids up,
checks the request and builds the schema features the towers read
(`tfrec.models.features.history_features`). One class serves every path, as a
keras-hub preprocessor serves training, predict and the exported graph:
`Recommender.recommend`, `explain` and the exported signatures
(`tfrec.exporting.serving_module`) all encode their requests with it, the
model from its vocabulary in memory, an export from the catalogue's asset
files (its lookup tables then become SavedModel assets).

Checks fail the request naming what is wrong: run eagerly (the in-process
API) they raise `ValueError` naming the Python argument; in a graph (an
exported signature) they raise `InvalidArgumentError` naming the signature
input, which TF Serving answers as INVALID_ARGUMENT.

Example:

>>> encoder = RequestEncoder(["i1", "i2", "i3"], user_ids=["u1"], events=["view"])
>>> encoded = encoder({"history": tf.constant([["", "i3", "i1"]]), "k": tf.constant(2)})
>>> encoded["history"].numpy().tolist(), encoded["features"]["history_length"].numpy().tolist()
([[0, 3, 1]], [2])
"""

from typing import Callable, Sequence, Union

import keras
import tensorflow as tf

from tfrec.models.features import history_features
from tfrec.request_format import PADDING_ID

# Request inputs, named as the exported signatures name them.
HISTORY = "history"
CANDIDATES = "candidates"
HISTORY_RATINGS = "history_ratings"
HISTORY_TIMESTAMPS = "history_timestamps"
HISTORY_EVENTS = "history_events"
TIMESTAMP = "timestamp"
USER_ID = "user_id"
K = "k"
CONTEXT_INPUTS = (HISTORY_RATINGS, HISTORY_TIMESTAMPS, HISTORY_EVENTS, TIMESTAMP, USER_ID)
# What an unknown id of an input is called: in a signature's error, in the in-process API's.
_UNKNOWN = {
    HISTORY: ("item ids in history", "item ids in history"),
    CANDIDATES: ("item ids in candidates", "candidate item ids"),
    HISTORY_EVENTS: ("events in history_events", "events"),
}

Vocabulary = Union[str, Sequence[str]]


def vocabulary_table(vocabulary: Vocabulary, reverse: bool = False) -> tf.lookup.StaticHashTable:
    """A lookup table between ids and their position in `vocabulary` (0 = the first id).

    Args:
        vocabulary: the ids in index order (index 1 first), as a list of str
            or the path of a file holding one per line (the file then becomes
            a SavedModel asset of a module that tracks the table).
        reverse: map int64 positions to ids ("" when out of range) instead of
            ids to positions (-1 when unknown).
    """
    if isinstance(vocabulary, str):
        line, number = tf.lookup.TextFileIndex.WHOLE_LINE, tf.lookup.TextFileIndex.LINE_NUMBER
        (key_dtype, key_index), (value_dtype, value_index) = (
            ((tf.int64, number), (tf.string, line)) if reverse else ((tf.string, line), (tf.int64, number)))
        initializer = tf.lookup.TextFileInitializer(vocabulary, key_dtype=key_dtype, key_index=key_index,
                                                    value_dtype=value_dtype, value_index=value_index)
    else:
        ids = tf.constant(list(vocabulary), tf.string, shape=[len(vocabulary)])
        positions = tf.range(len(vocabulary), dtype=tf.int64)
        initializer = tf.lookup.KeyValueTensorInitializer(*((positions, ids) if reverse else (ids, positions)))
    return tf.lookup.StaticHashTable(initializer, default_value=PADDING_ID if reverse else -1)


def require(condition, eager_message: Callable[[], str], graph_message: list, name: str, summarize=None) -> list:
    """Fails the request unless the bool tensor `condition` holds.

    Eagerly raises `ValueError(eager_message())`; in a graph returns the
    Assert op (for `tf.control_dependencies`) whose `InvalidArgumentError`
    prints `graph_message` (str and tensors).
    """
    if tf.executing_eagerly():
        if not bool(condition):
            raise ValueError(eager_message())
        return []
    return [tf.debugging.Assert(condition, graph_message, summarize=summarize, name=name)]


def checked_top_k(retrieval, queries, k, exclude=None, bonus=None):
    """`retrieval.top_k(queries, k, exclude, bonus)`, failing when fewer than `k` items are left after `exclude`."""
    scores, indices = retrieval.top_k(queries, k, exclude, bonus)
    checks = require(tf.reduce_all(tf.math.is_finite(scores)),
                     lambda: f"k={int(k)} exceeds the number of catalogue items left after excluding the history",
                     ["k =", k, "exceeds the number of catalogue items left after excluding the history"],
                     name="check_k_after_exclusion")
    with tf.control_dependencies(checks):
        return tf.identity(scores), tf.identity(indices)


def _count(vocabulary: Vocabulary) -> int:
    if isinstance(vocabulary, str):
        with tf.io.gfile.GFile(vocabulary) as lines:
            return sum(1 for _ in lines)
    return len(vocabulary)


@keras.saving.register_keras_serializable(package="tfrec")
class RequestEncoder(keras.layers.Layer):
    """Looks up and checks a request; builds the features the model reads.

    Args:
        item_ids: the catalogue's item ids in index order (index 1 first), a
            list of str or the path of a file holding one per line.
        user_ids: the model's user ids, likewise (an id not among them is a
            new user: index 0, no error).
        events: the model's event names, likewise.
        default_event: event index of history items given no event
            (`Recommender.default_event`).
        num_model_items: items the model's towers know, indices 1..this
            (default: every item); later ones (added after training) are read
            as padding by the towers but stay in `history`.
        max_k: the largest `k` accepted (default: the number of items).
        **kwargs: base layer arguments.

    Call args:
        inputs: dict of tensors named as the exported signatures' inputs:
            `history` string `[B, N]` ("" = padding), and optionally
            `candidates` string `[B, M]`, `history_ratings` float32 `[B, N]`,
            `history_timestamps` int64 `[B, N]`, `history_events` string
            `[B, N]`, `timestamp` int64 `[B]` (the request time), `user_id`
            string `[B]`, `k` int32 `[]`.

    Returns:
        dict: `features`, the schema features of the history as the model
        reads it (`history_features`); `history`, int32 `[B, N]` catalogue
        indices of the request's columns (0 = padding); `model_history`, the
        same with the items the model does not know as 0; `context`, the
        checked context of `history_features` (`ratings`, `timestamps`,
        `events`, `now`, `users`: those given); and, when given, `candidates`
        int32 `[B, M]` and the checked `k`.

    Raises:
        ValueError (eagerly) or InvalidArgumentError (in a graph): unknown
            item ids or event names (named, at most 20), context not aligned
            with `history`, `k` outside `[1, max_k]`.

    Example:

    >>> encoder = RequestEncoder("item_ids.txt", "user_ids.txt", "events.txt", max_k=100)  # doctest: +SKIP
    """

    def __init__(self, item_ids: Vocabulary, user_ids: Vocabulary, events: Vocabulary, default_event: int = 0,
                 num_model_items: int = None, max_k: int = None, **kwargs):
        super().__init__(**kwargs)
        self.item_ids, self.user_ids, self.events = item_ids, user_ids, events
        self.num_items = _count(item_ids)
        self.default_event = default_event
        self.num_model_items = self.num_items if num_model_items is None else num_model_items
        self.max_k = self.num_items if max_k is None else max_k
        self.item_table = vocabulary_table(item_ids)
        self.user_table = vocabulary_table(user_ids)
        self.event_table = vocabulary_table(events)
        self.built = True  # no weights

    def call(self, inputs):
        indices = self._indices(self.item_table, inputs[HISTORY], HISTORY)
        model_history = tf.where(indices > self.num_model_items, tf.zeros_like(indices), indices)
        context = self._context(indices, {name: inputs[name] for name in CONTEXT_INPUTS if name in inputs})
        encoded = {
            "features": history_features(model_history, context=context, default_event=self.default_event),
            "history": indices,
            "model_history": model_history,
            "context": context,
        }
        if CANDIDATES in inputs:
            encoded["candidates"] = self._indices(self.item_table, inputs[CANDIDATES], CANDIDATES)
        if K in inputs:
            encoded["k"] = self.checked_k(inputs[K])
        return encoded

    def _indices(self, table, ids, name):
        """int32 indices (position + 1) of string `ids`, "" -> 0; fails naming the unknown ids."""
        empty = tf.equal(ids, PADDING_ID)
        indices = table.lookup(ids) + 1
        unknown = tf.logical_and(tf.equal(indices, 0), tf.logical_not(empty))
        served, in_process = _UNKNOWN[name]
        checks = require(
            tf.logical_not(tf.reduce_any(unknown)),
            lambda: f"unknown {in_process}: {sorted({v.decode() for v in tf.boolean_mask(ids, unknown).numpy()})[:20]}",
            [f"unknown {served}:", tf.boolean_mask(ids, unknown)], name=f"check_{name}_ids", summarize=20)
        with tf.control_dependencies(checks):
            return tf.cast(tf.where(empty, tf.zeros_like(indices), indices), tf.int32)

    def _context(self, indices, inputs):
        """The `history_features` context of the context `inputs` given, after checking their shapes."""
        checks = []
        for name, value in inputs.items():
            if value.shape.rank == 2:
                checks += require(
                    tf.reduce_all(tf.equal(tf.shape(value), tf.shape(indices))),
                    lambda: f"{name} must have the shape of history {indices.shape}, got {value.shape}",
                    [f"{name} must have the shape of history", tf.shape(indices), "got", tf.shape(value)],
                    name=f"check_{name}_shape")
            else:
                checks += require(
                    tf.equal(tf.shape(value)[0], tf.shape(indices)[0]),
                    lambda: f"{name} must hold one value per history row ({indices.shape[0]}), got {value.shape[0]}",
                    [f"{name} must hold one value per history row", tf.shape(indices)[0], "got", tf.shape(value)[0]],
                    name=f"check_{name}_shape")
        with tf.control_dependencies(checks):
            inputs = {name: tf.identity(value) for name, value in inputs.items()}
        context = {}
        if HISTORY_RATINGS in inputs:
            context["ratings"] = tf.cast(inputs[HISTORY_RATINGS], tf.float32)
        if HISTORY_TIMESTAMPS in inputs:
            context["timestamps"] = tf.cast(inputs[HISTORY_TIMESTAMPS], tf.int64)
        if HISTORY_EVENTS in inputs:
            context["events"] = self._indices(self.event_table, inputs[HISTORY_EVENTS], HISTORY_EVENTS)
        if TIMESTAMP in inputs:
            context["now"] = tf.cast(inputs[TIMESTAMP], tf.int64)
        if USER_ID in inputs:  # an id unseen in training is a new user: index 0, no error
            context["users"] = tf.cast(self.user_table.lookup(inputs[USER_ID]) + 1, tf.int32)
        return context

    def checked_k(self, k):
        """`k` as int32, failing unless 1 <= k <= `max_k` (requests that name no history, e.g. by text)."""
        k = tf.cast(k, tf.int32)
        checks = require(tf.logical_and(k >= 1, k <= self.max_k),
                         lambda: f"k={int(k)}: expected 1 <= k <= {self.max_k} (the catalogue size)",
                         [f"k must be in [1, {self.max_k}] (catalogue of {self.num_items} items), got k =", k],
                         name="check_k")
        with tf.control_dependencies(checks):
            return tf.identity(k)

    def get_config(self):
        config = super().get_config()
        config.update({
            "item_ids": self.item_ids,
            "user_ids": self.user_ids,
            "events": self.events,
            "default_event": self.default_event,
            "num_model_items": self.num_model_items,
            "max_k": self.max_k,
        })
        return config
