"""Checks a Predict answer before the client reads it: a misbehaving or hostile server gets a `ServingError`.

Every output tensor is checked before it is converted: its declared shape
must match the values it carries (a 40-byte answer declaring a
[1, 100000000] float tensor is refused, not expanded to 400 MB), it must be
decodable (UTF-8 for strings), and, where the request fixes them, its dtype,
rank and dimensions must be the ones asked for (one row per history, `k`
columns, one column per candidate or history position). A failure raises
`ServingError` (code INTERNAL: the server answered something it should not
have) naming the output and what was expected.

Example:

>>> import numpy as np, tensorflow as tf
>>> spec = {"scores": Expected("float32", (2, 3))}
>>> decode_outputs({"scores": tf.make_tensor_proto(np.zeros([1, 3], np.float32))}, spec, "score")
Traceback (most recent call last):
tfrec.serving_errors.ServingError: INTERNAL: malformed answer to score: output 'scores' has shape [1, 3]; expected [2, 3]
"""

import dataclasses
import math
from typing import Optional

import grpc
import numpy as np
import tensorflow as tf

from tfrec.serving_errors import ServingError
from tfrec.tensor_protos import VALUE_FIELDS, dtype_name, to_ndarray


@dataclasses.dataclass(frozen=True)
class Expected:
    """What one output must be: dtype name ("string", "float32") and shape (None: any size on that axis)."""

    dtype: str
    shape: tuple
    required: bool = True


def _malformed(what, message):
    return ServingError(grpc.StatusCode.INTERNAL, f"malformed answer to {what}: {message}")


def _carried(proto, dtype):
    """How many values `proto` carries (tensor_content bytes / item size, or its value field's length)."""
    if proto.tensor_content:
        size = max(dtype.size, 1)  # strings have no fixed size: their content is never a whole number of them
        if len(proto.tensor_content) % size:
            return None
        return len(proto.tensor_content) // size
    return len(getattr(proto, VALUE_FIELDS[proto.dtype]))


def decode_output(name: str, proto, what: str, text: bool = False) -> np.ndarray:
    """The NumPy value of output `name`, or `ServingError` naming it when the proto's dtype is unknown or its
    declared shape is not what it carries. With `text`, strings are decoded to str (an error when not UTF-8);
    otherwise they stay bytes."""
    if proto.dtype not in VALUE_FIELDS:
        raise _malformed(what, f"output {name!r} has dtype {dtype_name(proto.dtype)}, which no signature answers")
    dtype = tf.dtypes.as_dtype(proto.dtype)
    dims = [d.size for d in proto.tensor_shape.dim]
    if any(d < 0 for d in dims):
        raise _malformed(what, f"output {name!r} declares shape {dims}: dimensions must not be negative")
    count = math.prod(dims)
    carried = _carried(proto, dtype)
    if carried != count:
        raise _malformed(what, f"output {name!r} declares shape {dims} ({count} values) but carries "
                               f"{'an unreadable number of' if carried is None else carried} values")
    try:
        array = to_ndarray(proto)
    except (ValueError, TypeError) as e:
        raise _malformed(what, f"output {name!r} is not a readable tensor ({e})") from None
    if dtype != tf.string or not text:
        return array
    decoded = np.empty(array.size, dtype=object)  # not a fixed-width str array: one long id would widen every cell
    try:
        decoded[:] = [value.decode("utf-8") for value in array.ravel()]
        return decoded.reshape(array.shape)
    except UnicodeDecodeError as e:
        raise _malformed(what, f"output {name!r} holds text that is not UTF-8 ({e})") from None


def decode_outputs(outputs, expected: Optional[dict], what: str) -> dict:
    """Every output of an answer as NumPy values, checked against `expected` (name -> `Expected`; None: no
    expectation beyond readable tensors). Expected string outputs come back as str, others as bytes.

    Args:
        outputs: the answer's map name -> TensorProto.
        expected: the outputs the request asks for and their dtypes and shapes.
        what: the call, for messages (e.g. "recommend (signature serving_default)").

    Raises:
        ServingError: INTERNAL naming the output that is missing, unreadable, or of another dtype or shape.
    """
    if expected:
        missing = [name for name, spec in expected.items() if spec.required and name not in outputs]
        if missing:
            raise _malformed(what, f"output {missing[0]!r} is missing; got {sorted(outputs)}")
    values = {}
    for name, proto in outputs.items():
        spec = (expected or {}).get(name)
        if spec is not None:
            if dtype_name(proto.dtype) != spec.dtype:
                raise _malformed(what, f"output {name!r} has dtype {dtype_name(proto.dtype)}; expected {spec.dtype}")
            shape, wanted = [d.size for d in proto.tensor_shape.dim], spec.shape  # checked before anything is read
            if len(shape) != len(wanted) or any(w is not None and s != w for s, w in zip(shape, wanted)):
                text = "[" + ", ".join("?" if w is None else str(w) for w in wanted) + "]"
                raise _malformed(what, f"output {name!r} has shape {shape}; expected {text}")
        values[name] = decode_output(name, proto, what, text=spec is not None)
    return values
