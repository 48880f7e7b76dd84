"""TF Serving's JSON tensor codec for the REST API (`util/json_tensor` in TF Serving): pure functions.

`parse_predict_body` reads a `:predict` body (the row format `{"instances":
[...]}` or the columnar `{"inputs": ...}`), `json_inputs` turns its values
into TensorProtos of the signature's declared dtypes (binary strings as
`{"b64": "..."}`), and `outputs_json` writes a Predict's outputs back in the
request's format. Every refusal is a `ServingError` INVALID_ARGUMENT naming
the input and element at fault. The body must be strict UTF-8 JSON nested at
most `MAX_DEPTH` deep (checked before parsing), whose strings are valid
Unicode (a lone surrogate escape such as `"\\ud800"` is refused naming the
field) and whose integers have at most `MAX_INT_DIGITS` digits (longer ones
are refused by the input they are given for); an input of more than
`MAX_VALUES` values and lists is refused before any value is converted.

Example:

>>> parse_predict_body(b'{"instances": [[1.5, 2.0]]}')
('', True, [[1.5, 2.0]])
"""

import base64
import json
import re
from typing import Callable, Mapping, Tuple

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2

from tfrec.serving_errors import ServingError

MAX_RANK = 254  # TensorFlow's TensorShape limit
MAX_DEPTH = MAX_RANK + 4  # a rank-254 input inside {"instances": [{"name": ...}]}
MAX_INT_DIGITS = 20  # uint64's largest value has 20 digits
MAX_VALUES = 1 << 18  # values and lists of one input: far above a history batch, converted in well under a second

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class HugeInt:
    """A JSON integer with more than `MAX_INT_DIGITS` digits: kept as its digit count, never converted."""

    def __init__(self, text: str):
        self.digits = len(text.lstrip("-"))

    def __repr__(self):
        return f"<a {self.digits}-digit integer>"


def _parse_int(text: str):
    return HugeInt(text) if len(text) > MAX_INT_DIGITS + 1 else int(text)


def _invalid(message):
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def _json_text(value, limit=80):
    text = json.dumps(value, default=repr)
    return text if len(text) <= limit else text[:limit] + "..."


def _converter(dtype: tf.DType, where: str) -> Callable:
    """The function turning one JSON leaf into a value of `dtype`, refusing (naming `where`) what does not fit."""
    if dtype == tf.string:
        def to_bytes(value):
            if isinstance(value, str):
                return value.encode("utf-8")  # parse_predict_body refused lone surrogates
            if _is_b64(value):
                try:
                    return base64.b64decode(value["b64"], validate=True)
                except ValueError:
                    raise _invalid(f"{where}: {_json_text(value)} is not valid base64") from None
            raise _invalid(f"{where}: JSON value {_json_text(value)} is not a string; expected a string or "
                           '{"b64": "<base64>"}')
        return to_bytes
    if dtype == tf.bool:
        def to_bool(value):
            if not isinstance(value, bool):
                raise _invalid(f"{where}: JSON value {_json_text(value)} is not true or false; expected bool")
            return value
        return to_bool
    if dtype.is_integer:
        low, high = dtype.min, dtype.max

        def to_int(value):
            if isinstance(value, HugeInt):
                raise _invalid(f"{where}: a {value.digits}-digit integer is out of the range of {dtype.name} "
                               f"[{low}, {high}]")
            if isinstance(value, bool) or not isinstance(value, int):
                raise _invalid(f"{where}: JSON value {_json_text(value)} is not an integer; expected {dtype.name}")
            if not low <= value <= high:
                raise _invalid(f"{where}: {value} is out of the range of {dtype.name} [{low}, {high}]")
            return value
        return to_int
    if dtype in (tf.float16, tf.float32, tf.float64):
        info = np.finfo(dtype.as_numpy_dtype)
        exact = (1 << (info.nmant + 1)) - 1  # the largest integer the type holds exactly

        def to_float(value):
            if isinstance(value, HugeInt):
                raise _invalid(f"{where}: a {value.digits}-digit integer cannot be a {dtype.name} without loss of "
                               "precision")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise _invalid(f"{where}: JSON value {_json_text(value)} is not a number; expected {dtype.name}")
            if (abs(value) > exact if isinstance(value, int)
                    else np.isfinite(value) and not info.min <= value <= info.max):
                raise _invalid(f"{where}: {value} cannot be a {dtype.name} without loss of precision")
            return value
        return to_float
    raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f"{where}: JSON values cannot be converted to {dtype.name}")


def _is_b64(value) -> bool:
    """A binary string: {"b64": "<base64>"}."""
    return isinstance(value, dict) and list(value) == ["b64"] and isinstance(value["b64"], str)


def _is_named(value) -> bool:
    """A JSON object naming inputs (a {"b64": ...} object is a value, not names)."""
    return isinstance(value, dict) and not _is_b64(value)


def _shape(value, where, copies=1):
    """The shape of a JSON value taken from its first elements, refused (naming `where`) when `copies` of it
    would hold more than `MAX_VALUES` values and lists."""
    shape, probe = [], value
    while isinstance(probe, list):
        shape.append(len(probe))
        if len(shape) > MAX_RANK:
            raise _invalid(f"{where}: lists nested more than {MAX_RANK} deep")
        probe = probe[0] if probe else None
    count, nodes = copies, copies
    for size in shape:
        count *= size
        nodes += count
    if nodes > MAX_VALUES:
        raise _invalid(f"{where}: {nodes} values and lists (shape {[copies] + shape if copies > 1 else shape}); at "
                       f"most {MAX_VALUES} are accepted per input")
    return shape


def _dense(value, convert, where):
    """(shape, flat values) of a JSON value, nested lists checked to be a dense tensor."""
    shape = _shape(value, where)
    flat = []

    def walk(item, level):
        if not isinstance(item, list):
            if level != len(shape):
                raise _invalid(f"{where}: value {_json_text(item)} at depth {level}, expected lists {len(shape)} "
                               f"deep (shape {shape} from the first elements)")
            flat.append(convert(item))
        elif level == len(shape) or len(item) != shape[level]:
            raise _invalid(f"{where}: a list of {len(item)} at depth {level} does not fit shape {shape} (taken "
                           "from the first elements; the lists must form a dense tensor)")
        else:
            for element in item:
                walk(element, level + 1)

    walk(value, 0)
    return shape, flat


def _tensor(dtype, shape, flat):
    array = np.asarray(flat, dtype=object if dtype == tf.string else dtype.as_numpy_dtype)
    return tf.make_tensor_proto(array.reshape(shape), dtype=dtype)


def _declared(signature, names):
    """(dtype of each of `names` the signature declares, empty TensorProtos for the others): the servable
    refuses undeclared names with the gRPC message."""
    return ({name: signature.inputs[name].dtype for name in names if name in signature.inputs},
            {name: tensor_pb2.TensorProto() for name in names if name not in signature.inputs})


def _unnamed_input(signature, where):
    if len(signature.inputs) != 1:
        raise _invalid(f"{where} holds unnamed values, but signature {signature.name!r} takes "
                       f"{len(signature.inputs)} inputs {sorted(signature.inputs)}: name them in an object")
    return next(iter(signature.inputs))


def _columnar_inputs(signature, data) -> dict:
    """TensorProtos of the columnar `inputs` value: an object of named inputs, or the only input's value."""
    if not _is_named(data):
        data = {_unnamed_input(signature, "'inputs'"): data}
    dtypes, inputs = _declared(signature, data)
    for name, dtype in dtypes.items():
        where = f"'inputs' input {name!r}"
        inputs[name] = _tensor(dtype, *_dense(data[name], _converter(dtype, where), where))
    return inputs


def _row_inputs(signature, instances) -> dict:
    """TensorProtos batching the row format's `instances`: each instance one row of every input."""
    if not isinstance(instances, list) or not instances:
        raise _invalid(f"'instances' is {_json_text(instances)}; expected a non-empty list of instances")
    named = _is_named(instances[0])
    names = sorted(instances[0]) if named else [_unnamed_input(signature, "'instances'")]
    dtypes, inputs = _declared(signature, names)
    shapes, values = {}, {name: [] for name in dtypes}
    for index, instance in enumerate(instances):
        if _is_named(instance) != named:
            raise _invalid(f"'instances'[{index}] is {'not ' if named else ''}an object of named inputs, unlike "
                           "'instances'[0]: give every instance in the same form")
        row = instance if named else {names[0]: instance}
        if sorted(row) != names:
            raise _invalid(f"'instances'[{index}] has inputs {sorted(row)}; 'instances'[0] has {names}")
        if index == 0:  # the whole batch's size, before any value is converted
            for name in dtypes:
                _shape(row[name], f"'instances' input {name!r}", copies=len(instances))
        for name, dtype in dtypes.items():
            where = f"'instances'[{index}] input {name!r}"
            shape, flat = _dense(row[name], _converter(dtype, where), where)
            if shapes.setdefault(name, shape) != shape:
                raise _invalid(f"{where} has shape {shape}; 'instances'[0] has {shapes[name]} (every instance "
                               "must have the same shape)")
            values[name].extend(flat)
    for name, dtype in dtypes.items():
        inputs[name] = _tensor(dtype, [len(instances)] + shapes[name], values[name])
    return inputs


def parse_predict_body(body: bytes) -> Tuple[str, bool, object]:
    """Reads a `:predict` request body.

    Args:
        body: the raw request body (UTF-8 JSON object).

    Returns:
        (signature_name, row, data): `row` is True for the row format, and
        `data` is the `instances` list or the `inputs` value.

    Raises:
        ServingError: INVALID_ARGUMENT naming the problem (unparsable JSON,
            not an object, a non-string signature_name, both or neither of
            'instances' and 'inputs', an unknown key).

    Example:

    >>> parse_predict_body(b'{"signature_name": "embed_items", "inputs": ["a text"]}')
    ('embed_items', False, ['a text'])
    """
    if not body.strip():
        raise _invalid("JSON parse error: the request body is empty")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _invalid(f"the request body is not UTF-8 JSON (byte {e.start}: {body[e.start:e.start + 1]!r})") from None
    depth = _depth(body)  # before parsing: the parser and the codec recurse
    if depth > MAX_DEPTH:
        raise _invalid(f"the request body's JSON is nested {depth} deep; at most {MAX_DEPTH} is accepted")
    try:
        request = json.loads(text, parse_int=_parse_int)
    except json.JSONDecodeError as e:
        raise _invalid(f"JSON parse error: {e.msg} at offset {e.pos}") from None
    if _SURROGATE_ESCAPE.search(text):
        _refuse_lone_surrogates(request, "")
    if not isinstance(request, dict):
        raise _invalid(f"the request body is {_json_text(request)}; expected a JSON object "
                       '{"instances": [...]} or {"inputs": ...}')
    unknown = sorted(set(request) - {"signature_name", "instances", "inputs"})
    if unknown:
        raise _invalid(f"the request body has an unknown key {unknown[0]!r}; expected 'signature_name' and one of "
                       "'instances' (row format) or 'inputs' (columnar format)")
    signature_name = request.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise _invalid(f"'signature_name' is {_json_text(signature_name)}; expected a string")
    if ("instances" in request) == ("inputs" in request):
        raise _invalid("the request body needs exactly one of 'instances' (row format) or 'inputs' (columnar "
                       f"format); it has {'both' if 'inputs' in request else 'neither'}")
    row = "instances" in request
    return signature_name, row, request["instances" if row else "inputs"]


def _depth(body: bytes) -> int:
    """How deep the JSON's arrays and objects nest (brackets inside strings ignored; 0 when it has too few
    brackets to nest deeper than MAX_DEPTH), without parsing it."""
    if body.count(b"[") + body.count(b"{") <= MAX_DEPTH:
        return 0  # too few to nest too deep: not scanned
    code = np.frombuffer(_STRING.sub(b'""', body), dtype=np.uint8)
    steps = np.isin(code, (ord("["), ord("{"))).astype(np.int32) - np.isin(code, (ord("]"), ord("}")))
    return int(np.cumsum(steps).max(initial=0))


def _refuse_lone_surrogates(value, where: str) -> None:
    """INVALID_ARGUMENT naming the first string (key or value) of `value` that is not valid Unicode."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        at = f"{where}[{key!r}]" if where else repr(key)
        for text, what in ((key, "key"), (item, "value")):
            if isinstance(text, str):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError as e:
                    raise _invalid(f"{at}: the {what} {_json_text(text)} holds a lone surrogate "
                                   f"({text[e.start]!r} at character {e.start}); expected valid Unicode "
                                   "(a surrogate pair for characters beyond U+FFFF)") from None
        _refuse_lone_surrogates(item, at)


def json_inputs(signature, row: bool, data) -> dict:
    """The Predict inputs (name -> TensorProto) of a parsed body, in the signature's declared dtypes.

    Args:
        signature: the `servable.Signature` the request calls.
        row, data: as `parse_predict_body` returns them.

    Raises:
        ServingError: INVALID_ARGUMENT naming the input and element that is
            not a dense tensor of the declared dtype.
    """
    return _row_inputs(signature, data) if row else _columnar_inputs(signature, data)


def _json_values(name, proto):
    array = tf.make_ndarray(proto)
    if array.dtype == object:
        def text(value):
            if not name.endswith("_bytes"):
                try:
                    return value.decode("utf-8")
                except UnicodeDecodeError:
                    pass
            return {"b64": base64.b64encode(value).decode("ascii")}
        array = np.array([text(v) for v in array.ravel()], dtype=object).reshape(array.shape)
    elif array.dtype in (np.float16, np.float32):
        array = array.astype(str).astype(np.float64)  # the shortest decimal that reads back as the same value
    return array.tolist()


def outputs_json(outputs: Mapping[str, tensor_pb2.TensorProto], row: bool) -> dict:
    """The JSON answer of a Predict, in the request's format (TF Serving's shapes of it).

    Row format: `{"predictions": [one item per batch row]}`, each item the
    output's value, or an object of every output when there are several.
    Columnar: `{"outputs": value}` for one output, else `{"outputs": {name: value}}`.

    Raises:
        ServingError: INVALID_ARGUMENT when, in the row format, the outputs do
            not share a batch dimension.

    Example:

    >>> outputs_json({"scores": tf.make_tensor_proto([[0.5, 0.25]])}, row=True)
    {'predictions': [[0.5, 0.25]]}
    """
    values = {name: _json_values(name, proto) for name, proto in sorted(outputs.items())}
    if not row:
        return {"outputs": next(iter(values.values())) if len(values) == 1 else values}
    batch = {name: outputs[name].tensor_shape.dim[0].size if outputs[name].tensor_shape.dim else None
             for name in values}
    if None in batch.values() or len(set(batch.values())) != 1:
        raise _invalid(f"the outputs' batch sizes {batch} differ or are missing (None: a scalar), so they cannot be "
                       "given per instance; send the request in the columnar format ('inputs')")
    if len(values) == 1:
        return {"predictions": next(iter(values.values()))}
    return {"predictions": [{name: column[i] for name, column in values.items()}
                            for i in range(next(iter(batch.values())))]}
