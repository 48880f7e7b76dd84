"""`RequestEncoder`: a recommendation request as the tensors the model reads.

A request names items by id: histories `[B, N]` of item ids left-padded with
"" (`tfrec.request_format`), optionally the history's ratings, timestamps and
event names, the request time, the user and `k` (one per row, `[B]`; a
scalar is broadcast). This layer looks the ids up,
checks the request and builds the schema features the towers read
(`tfrec.models.features.history_features`).

Two rules bound and soften what a live request may hold:

- History item ids the catalogue does not know (a new SKU) are skipped with
  their ratings, timestamps and events, the rest of the history kept in
  order, and reported in `skipped_items` (`unknown_items="skip"`, the
  default); `unknown_items="error"` fails the request naming them instead.
- Only the newest `max_history_length` known behaviours of a history reach
  the model (default `MAX_HISTORY_LENGTH`, the positions the behaviour tower
  tells apart), so the work per row is bounded whatever the request's width;
  the exclusion of already-seen items still covers the whole history. One class serves every path, as a
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
>>> encoded = encoder({"history": tf.constant([["", "i3", "new", "i1"]]), "k": tf.constant(2)})
>>> encoded["history"].numpy().tolist(), encoded["skipped_items"].numpy().tolist(), encoded["k"].numpy().tolist()
([[3, 1]], [[b'new']], [2])
"""

from typing import Callable, Sequence, Union

import keras
import tensorflow as tf

from tfrec.models.behaviour_tower import MAX_POSITIONS
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
# What a request's unknown history item ids do: dropped and reported, or the request fails.
UNKNOWN_ITEMS = ("skip", "error")
# Newest behaviours of a history the model reads: the positions the behaviour tower tells apart.
MAX_HISTORY_LENGTH = MAX_POSITIONS


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
    """`retrieval.top_k` at `max(k)` with each row cut to its own `k` (int32 `[B]`): `(scores, indices)`
    `[B, max(k)]`, a row's columns past its `k` padded with score -inf and index 0; fails when a row has
    fewer than its `k` items left after `exclude`."""
    scores, indices = retrieval.top_k(queries, tf.reduce_max(k), exclude, bonus)
    wanted = tf.range(tf.shape(scores)[1])[None, :] < k[:, None]
    checks = require(tf.reduce_all(tf.logical_or(tf.math.is_finite(scores), tf.logical_not(wanted))),
                     lambda: f"k={k.numpy().tolist()} exceeds the number of catalogue items left after excluding "
                             "the history",
                     ["k =", k, "exceeds the number of catalogue items left after excluding the history"],
                     name="check_k_after_exclusion")
    with tf.control_dependencies(checks):
        return (tf.where(wanted, scores, tf.constant(float("-inf"), scores.dtype)),
                tf.where(wanted, indices, tf.zeros_like(indices)))


def _count(vocabulary: Vocabulary) -> int:
    if isinstance(vocabulary, str):
        with tf.io.gfile.GFile(vocabulary) as lines:
            return sum(1 for _ in lines)
    return len(vocabulary)


def _compacted(keep, values, fill):
    """`values` `[B, N]` with each row's `keep` entries moved right (order kept), the rest `fill`."""
    order = tf.argsort(tf.cast(keep, tf.int32), axis=1, stable=True)
    kept = tf.gather(tf.where(keep, values, tf.fill(tf.shape(values), tf.constant(fill, values.dtype))), order,
                     batch_dims=1)
    return kept, order


def request_columns(values, positions):
    """`values` `[B, K, L]` over the model's history columns as `[B, K, N]` over the request's
    history columns (`RequestEncoder`'s `positions`), 0 where a request column reached no model column.

    Example:

    >>> request_columns(tf.constant([[[1.0, 2.0]]]), tf.constant([[-1, 0, 1]])).numpy().tolist()
    [[[0.0, 1.0, 2.0]]]
    """
    gathered = tf.gather(values, tf.maximum(positions, 0), axis=2, batch_dims=1)
    return tf.where((positions >= 0)[:, None, :], gathered, tf.zeros_like(gathered))


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
        unknown_items: "skip" (history item ids not in `item_ids` are dropped
            and reported in `skipped_items`) or "error" (they fail the request).
        max_history_length: newest known behaviours of a history the model
            reads (`MAX_HISTORY_LENGTH` by default).
        **kwargs: base layer arguments.

    Call args:
        inputs: dict of tensors named as the exported signatures' inputs:
            `history` string `[B, N]` ("" = padding), and optionally
            `candidates` string `[B, M]`, `history_ratings` float32 `[B, N]`,
            `history_timestamps` int64 `[B, N]`, `history_events` string
            `[B, N]`, `timestamp` int64 `[B]` (the request time), `user_id`
            string `[B]`, `k` int32 `[B]` (or `[]`, broadcast to every row).
        unknown_items: overrides the layer's `unknown_items` for this call.

    Returns:
        dict: `features`, the schema features of the history as the model
        reads it (`history_features`); `history`, int32 `[B, N']` catalogue
        indices of the request's known items, right-aligned, every one of them
        (for excluding seen items); `history_context`, the `ratings` and
        `events` given, aligned with `history` (which seen items are
        excluded may depend on them); `model_history`, int32 `[B, L]` its newest
        `L <= max_history_length` columns with the items the model does not
        know as 0; `positions`, int32 `[B, N]`, the `model_history` column of
        each request column (-1: padding, skipped or older than the window);
        `skipped_items`, string `[B, S]` (S >= 1) the skipped ids of each row
        in request order, padded with ""; `context`, the checked context of
        `history_features` aligned with `model_history` (`ratings`,
        `timestamps`, `events`, `now`, `users`: those given); and, when given,
        `candidates` int32 `[B, M]` and the checked `k` int32 `[B]`.

    Raises:
        ValueError (eagerly) or InvalidArgumentError (in a graph): unknown
            item ids with `unknown_items="error"`, unknown candidates or event
            names (named, at most 20), context not aligned with `history`,
            `k` outside `[1, max_k]` or not one per row.

    Example:

    >>> encoder = RequestEncoder("item_ids.txt", "user_ids.txt", "events.txt", max_k=100)  # doctest: +SKIP
    """

    def __init__(self, item_ids: Vocabulary, user_ids: Vocabulary, events: Vocabulary, default_event: int = 0,
                 num_model_items: int = None, max_k: int = None, unknown_items: str = "skip",
                 max_history_length: int = MAX_HISTORY_LENGTH, **kwargs):
        super().__init__(**kwargs)
        _check_unknown_items(unknown_items)
        if max_history_length < 1:
            raise ValueError(f"max_history_length={max_history_length}: expected at least 1")
        self.item_ids, self.user_ids, self.events = item_ids, user_ids, events
        self.num_items = _count(item_ids)
        self.default_event = default_event
        self.num_model_items = self.num_items if num_model_items is None else num_model_items
        self.max_k = self.num_items if max_k is None else max_k
        self.unknown_items = unknown_items
        self.max_history_length = max_history_length
        self.item_table = vocabulary_table(item_ids)
        self.user_table = vocabulary_table(user_ids)
        self.event_table = vocabulary_table(events)
        self.built = True  # no weights

    def call(self, inputs, unknown_items: str = None):
        unknown_items = _check_unknown_items(unknown_items or self.unknown_items)
        ids = inputs[HISTORY]
        looked_up = self._indices(self.item_table, ids, HISTORY, fail=unknown_items == "error")
        unknown = tf.logical_and(tf.equal(looked_up, -1), tf.not_equal(ids, PADDING_ID))
        raw_context = {name: inputs[name] for name in CONTEXT_INPUTS if name in inputs}
        context = self._context(looked_up, raw_context)
        keep = looked_up > 0
        history, order = _compacted(keep, looked_up, 0)
        counts = tf.reduce_sum(tf.cast(keep, tf.int32), axis=1)
        width, known_width = tf.shape(ids)[1], tf.maximum(tf.reduce_max(counts), 1)
        length = tf.minimum(known_width, self.max_history_length)
        # Request column j sits at column argsort(order)[j] of `history`; the model reads its last `length`.
        column = tf.argsort(order, axis=1, stable=True) - (width - length)
        model_history = history[:, width - length:]
        model_history = tf.where(model_history > self.num_model_items, tf.zeros_like(model_history), model_history)
        # Compacted once: the whole known history's ratings and events (aligned with `history`, what
        # exclusion reads) and the model's window of them.
        compacted = {name: _compacted(keep, context[name], 0)[0]
                     for name in ("ratings", "timestamps", "events") if name in context}
        history_context = {name: compacted[name][:, width - known_width:]
                           for name in ("ratings", "events") if name in compacted}
        context.update({name: values[:, width - length:] for name, values in compacted.items()})
        encoded = {
            "features": history_features(model_history, context=context, default_event=self.default_event),
            "history": history[:, width - known_width:],
            "history_context": history_context,
            "model_history": model_history,
            "positions": tf.where(tf.logical_and(keep, column >= 0), column, -tf.ones_like(column)),
            "skipped_items": _compacted(unknown, ids, PADDING_ID)[0][
                :, width - tf.maximum(tf.reduce_max(tf.reduce_sum(tf.cast(unknown, tf.int32), axis=1)), 1):],
            "context": context,
        }
        if CANDIDATES in inputs:
            encoded["candidates"] = self._indices(self.item_table, inputs[CANDIDATES], CANDIDATES)
        if K in inputs:
            encoded["k"] = self.checked_k(inputs[K], tf.shape(ids)[0])
        return encoded

    def _indices(self, table, ids, name, fail=True):
        """int32 indices (position + 1) of string `ids`, "" -> 0, unknown -> -1; unless not `fail`, fails
        naming the unknown ids."""
        empty = tf.equal(ids, PADDING_ID)
        indices = table.lookup(ids) + 1
        unknown = tf.logical_and(tf.equal(indices, 0), tf.logical_not(empty))
        served, in_process = _UNKNOWN[name]
        checks = [] if not fail else require(
            tf.logical_not(tf.reduce_any(unknown)),
            lambda: f"unknown {in_process}: {sorted({v.decode() for v in tf.boolean_mask(ids, unknown).numpy()})[:20]}",
            [f"unknown {served}:", tf.boolean_mask(ids, unknown)], name=f"check_{name}_ids", summarize=20)
        with tf.control_dependencies(checks):
            indices = tf.where(empty, tf.zeros_like(indices), tf.where(unknown, -tf.ones_like(indices), indices))
            return tf.cast(indices, tf.int32)

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

    def checked_k(self, k, rows):
        """`k` as int32 `[rows]` (a scalar is broadcast), failing unless one per row with 1 <= k <= `max_k`."""
        k = tf.cast(k, tf.int32)
        if k.shape.rank == 0:
            k = tf.fill([rows], k)
        checks = require(tf.equal(tf.size(k), rows),
                         lambda: f"k holds {int(tf.size(k))} values for {int(rows)} rows; expected one per row",
                         ["k must hold one value per row: got", tf.size(k), "for rows:", rows], name="check_k_rows")
        checks += require(tf.reduce_all(tf.logical_and(k >= 1, k <= self.max_k)),
                          lambda: f"k={k.numpy().tolist()}: expected 1 <= k <= {self.max_k} (the catalogue size)",
                          [f"k must be in [1, {self.max_k}] (catalogue of {self.num_items} items), got k =", k],
                          name="check_k", summarize=20)
        with tf.control_dependencies(checks):
            return tf.reshape(k, [-1])

    def get_config(self):
        config = super().get_config()
        config.update({
            "item_ids": self.item_ids,
            "user_ids": self.user_ids,
            "events": self.events,
            "default_event": self.default_event,
            "num_model_items": self.num_model_items,
            "max_k": self.max_k,
            "unknown_items": self.unknown_items,
            "max_history_length": self.max_history_length,
        })
        return config


def _check_unknown_items(unknown_items: str) -> str:
    if unknown_items not in UNKNOWN_ITEMS:
        raise ValueError(f"unknown_items={unknown_items!r}: expected one of {list(UNKNOWN_ITEMS)}")
    return unknown_items
