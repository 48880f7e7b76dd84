"""Request encoding: checked Python inputs to the TensorProtos of the export contract.

Histories are lists of item ids, most recent last; ragged histories are
left-padded with "" (`tfrec.request_format.PADDING_ID`, the padding id of
the export contract) by `pad_histories`, by the rule the model's own
requests follow. `context_inputs` encodes the history's `ratings`,
`timestamps` and `events`, the request time `now` and the `user_ids` for the
`*_in_context` signatures. Every check raises `ValueError`/`TypeError` naming
the argument, row and position at fault, before anything is sent.

Example:

>>> pad_histories([["50", "172"], ["1"]])
[['50', '172'], ['', '1']]
>>> string_tensor([["50", "172"], ["", "1"]]).tensor_shape.dim[1].size
2
"""

import functools
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from tfrec.request_format import PADDING_ID, nfc, pad, padded_width


def string_tensor(rows: Sequence) -> tensor_pb2.TensorProto:
    """[B, N] (or [B] for a flat list of str) tf.string TensorProto."""
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING)
    if rows and isinstance(rows[0], (list, tuple)):
        dims = [len(rows), len(rows[0])]
        values = [nfc(s).encode() for row in rows for s in row]
    else:
        dims = [len(rows)]
        values = [nfc(s).encode() for s in rows]
    proto.tensor_shape.CopyFrom(tensor_shape_pb2.TensorShapeProto(dim=[{"size": d} for d in dims]))
    proto.string_val.extend(values)
    return proto


def int32_vector(values: Sequence[int]) -> tensor_pb2.TensorProto:
    """A [B] tf.int32 TensorProto."""
    return tensor_pb2.TensorProto(dtype=types_pb2.DT_INT32, int_val=list(values),
                                  tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[{"size": len(values)}]))


def check_texts(values: Sequence[str], what: str) -> list:
    """`values` as a list; ValueError when empty, TypeError naming `what[i]` when not a str."""
    values = list(values)
    if not values:
        raise ValueError(f"{what} is empty; expected at least one")
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise TypeError(f"{what}[{i}] is {type(value).__name__} {value!r}; expected str")
    return values


def pad_histories(histories: Sequence[Sequence[str]]) -> list:
    """Left-pads ragged histories with "" to one length (at least 1), most recent last.

    Raises:
        ValueError: no histories. TypeError: an item id that is not a str,
            naming its row and position.
    """
    if isinstance(histories, str) or not histories:
        raise ValueError(f"histories is {histories!r}; expected a non-empty list of histories (lists of item ids)")
    rows = []
    for i, history in enumerate(histories):
        if isinstance(history, str):
            raise TypeError(f"histories[{i}] is the str {history!r}; expected a list of item ids ([history] for one)")
        rows.append(list(history))
        for j, item in enumerate(rows[-1]):
            if not isinstance(item, str):
                raise TypeError(f"histories[{i}][{j}] is {type(item).__name__} {item!r}; expected a str item id")
    return pad(rows)


def _check_number(value, what, integer):
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, kinds):
        expected = "an int (Unix time)" if integer else "a number"
        raise TypeError(f"{what} is {type(value).__name__} {value!r}; expected {expected}")
    return value


def _check_str(value, what):
    if not isinstance(value, str):
        raise TypeError(f"{what} is {type(value).__name__} {value!r}; expected a str")
    return value


def _aligned(rows, what, histories, check):
    """Checks ragged values aligned with ragged `histories` with `check(value, label)`; returns lists."""
    if isinstance(rows, str) or len(rows) != len(histories):
        raise ValueError(f"{what} has {len(rows)} rows for {len(histories)} histories; expected one per history")
    checked = []
    for i, (row, history) in enumerate(zip(rows, histories)):
        row = list(row)
        if len(row) != len(history):
            raise ValueError(f"{what}[{i}] has {len(row)} values for {len(history)} history items; expected one per item")
        checked.append([check(value, f"{what}[{i}][{j}]") for j, value in enumerate(row)])
    return checked


def _per_history(values, what, histories, check):
    """Checks one value per history with `check(value, label)`; returns a list."""
    if isinstance(values, (str, bytes, int, float, np.number)) or len(values) != len(histories):
        raise ValueError(f"{what} is {values!r}; expected one value per history ({len(histories)})")
    return [check(value, f"{what}[{i}]") for i, value in enumerate(values)]


CONTEXT_ARGUMENTS = ("ratings", "timestamps", "events", "now", "user_ids")


def context_inputs(
    histories: Sequence[Sequence[str]],
    ratings: Optional[Sequence[Sequence[float]]] = None,
    timestamps: Optional[Sequence[Sequence[int]]] = None,
    events: Optional[Sequence[Sequence[str]]] = None,
    now: Optional[Sequence[int]] = None,
    user_ids: Optional[Sequence[str]] = None,
) -> dict:
    """The context inputs of the `*_in_context` signatures, left-padded like `pad_histories`.

    Args:
        histories: ragged lists of item ids (as for `pad_histories`).
        ratings: per history, one rating per item (0 = unknown); default all 0.
        timestamps: per history, one Unix time (int) per item; default all 0.
        events: per history, one event name (str) per item; default "" (the
            model's only event type if it was trained on one).
        now: one request time (int) per history; default each history's latest timestamp.
        user_ids: one user id (str) per history; default "" (a new user).

    Returns:
        dict name -> TensorProto: `history_ratings`, `history_timestamps`,
        `history_events`, `timestamp`, `user_id`.

    Raises:
        ValueError, TypeError: naming the argument, row and position at fault.

    Example:

    >>> inputs = context_inputs([["a", "b"], ["c"]], ratings=[[5, 3], [4]], timestamps=[[10, 20], [30]])
    >>> tf.make_ndarray(inputs["history_ratings"]).tolist(), tf.make_ndarray(inputs["timestamp"]).tolist()
    ([[5.0, 3.0], [0.0, 4.0]], [20, 30])
    """
    width = padded_width(pad_histories(histories))
    histories = [list(history) for history in histories]
    numbers = functools.partial(_check_number, integer=False)
    integers = functools.partial(_check_number, integer=True)

    def rows(values, fill):
        return [[fill] * len(history) for history in histories] if values is None else values

    ratings = _aligned(rows(ratings, 0), "ratings", histories, numbers)
    times = _aligned(rows(timestamps, 0), "timestamps", histories, integers)
    events = _aligned(rows(events, PADDING_ID), "events", histories, _check_str)
    now = [max(row, default=0) for row in times] if now is None else _per_history(now, "now", histories, integers)
    users = _per_history([""] * len(histories) if user_ids is None else user_ids, "user_ids", histories, _check_str)

    def padded(rows, dtype, fill=0):
        return np.array(pad(rows, fill, width), dtype).reshape(len(rows), width)

    return {
        "history_ratings": tf.make_tensor_proto(padded(ratings, np.float32)),
        "history_timestamps": tf.make_tensor_proto(padded(times, np.int64)),
        "history_events": tf.make_tensor_proto(padded([[nfc(e) for e in row] for row in events], object, PADDING_ID)),
        "timestamp": tf.make_tensor_proto(np.array(now, np.int64)),
        "user_id": tf.make_tensor_proto(np.array([nfc(u) for u in users], object)),
    }


def uses_context(context: dict) -> bool:
    """True when any context argument is set; TypeError naming an unknown one."""
    unknown = sorted(set(context) - set(CONTEXT_ARGUMENTS))
    if unknown:
        raise TypeError(f"unknown context arguments {unknown}; expected some of {list(CONTEXT_ARGUMENTS)}")
    return any(value is not None for value in context.values())


MAX_K = 2**31 - 1  # k travels as int32


def check_k(k, rows: int) -> list:
    """`k` as one int per row (the `k` input `[B]` of the signatures): an int is repeated, a list must hold
    `rows` values; ValueError naming the value unless each is an int in 1..`MAX_K`.

    Example:

    >>> check_k(5, rows=2), check_k([3, 10], rows=2)
    ([5, 5], [3, 10])
    """
    values = [k] * rows if isinstance(k, (int, np.integer)) else k
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or len(values) != rows:
        raise ValueError(f"k is {k!r}; expected a positive int, or one per row ({rows})")
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= MAX_K:
            raise ValueError(f"{'k' if values is not k else f'k[{i}]'} is {value!r}; expected a positive int "
                             f"of at most {MAX_K} (an int32)")
    return [int(value) for value in values]
