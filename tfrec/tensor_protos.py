"""NumPy arrays to and from `TensorProto`s, fast for the dtypes tfrec's signatures take and answer.

`tf.make_ndarray` and `tf.make_tensor_proto` handle every dtype and layout,
and on a one-history request each call costs more than the rest of the
server's Python work around the model (a NumPy version check, shape
inference). `to_ndarray` and `to_tensor_proto` read and write the value field
(or `tensor_content`) directly for strings, floats, integers and booleans,
and leave anything else to TensorFlow's, so both ends of a Predict (server and
client) convert at the cost of a copy.

Example:

>>> import numpy as np
>>> proto = to_tensor_proto(np.array([[1.5, 2.0]], np.float32))
>>> to_ndarray(proto).tolist(), [d.size for d in proto.tensor_shape.dim]
([[1.5, 2.0]], [1, 2])
>>> to_ndarray(to_tensor_proto(np.array([b"a", b"b"], object))).tolist()
[b'a', b'b']
"""

import math

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

# The repeated field holding the values of each dtype (TensorProto keeps one per kind of value).
VALUE_FIELDS = {
    types_pb2.DT_STRING: "string_val", types_pb2.DT_FLOAT: "float_val", types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT32: "int_val", types_pb2.DT_INT64: "int64_val", types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_HALF: "half_val", types_pb2.DT_BFLOAT16: "half_val", types_pb2.DT_INT16: "int_val",
    types_pb2.DT_INT8: "int_val", types_pb2.DT_UINT8: "int_val",
}
ALL_VALUE_FIELDS = ("string_val", "float_val", "double_val", "int_val", "int64_val", "bool_val", "half_val",
                    "scomplex_val", "dcomplex_val", "resource_handle_val", "variant_val", "uint32_val", "uint64_val")
# The dtypes converted here; the others go through TensorFlow's functions.
_NUMPY_TYPES = {
    types_pb2.DT_FLOAT: np.dtype(np.float32), types_pb2.DT_DOUBLE: np.dtype(np.float64),
    types_pb2.DT_INT32: np.dtype(np.int32), types_pb2.DT_INT64: np.dtype(np.int64),
    types_pb2.DT_BOOL: np.dtype(np.bool_),
}
_DATA_TYPES = {numpy_type: data_type for data_type, numpy_type in _NUMPY_TYPES.items()}


def dtype_name(number: int) -> str:
    """TensorFlow's name of DataType `number` ("float32"), else its enum name ("DT_INVALID") or the bare number."""
    try:
        return tf.dtypes.as_dtype(number).name
    except TypeError:
        return types_pb2.DataType.Name(number) if number in types_pb2.DataType.values() else f"DataType {number}"


def to_ndarray(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """The value of `proto` as a NumPy array (strings as an object array of bytes), as `tf.make_ndarray`
    gives it; a proto carrying fewer values than its shape declares is expanded as TensorFlow does
    (callers that must refuse it check the count first)."""
    dims = [d.size for d in proto.tensor_shape.dim]
    count = math.prod(dims)
    if proto.dtype == types_pb2.DT_STRING and not proto.tensor_content and len(proto.string_val) == count:
        array = np.empty(count, dtype=object)
        array[:] = list(proto.string_val)
        return array.reshape(dims)
    numpy_type = _NUMPY_TYPES.get(proto.dtype)
    if numpy_type is None:
        return tf.make_ndarray(proto)
    if proto.tensor_content:
        if len(proto.tensor_content) != count * numpy_type.itemsize:
            return tf.make_ndarray(proto)
        return np.frombuffer(proto.tensor_content, numpy_type).reshape(dims).copy()
    values = getattr(proto, VALUE_FIELDS[proto.dtype])
    if len(values) != count:
        return tf.make_ndarray(proto)
    return np.asarray(values, numpy_type).reshape(dims)


def to_tensor_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """`array` as a TensorProto: strings (bytes or str) in `string_val`, numbers in `tensor_content`, as
    `tf.make_tensor_proto` writes them; other dtypes through it."""
    array = np.asarray(array)
    data_type = _DATA_TYPES.get(array.dtype)
    if data_type is not None:
        proto = tensor_pb2.TensorProto(dtype=data_type, tensor_content=np.ascontiguousarray(array).tobytes())
    elif array.dtype == object:
        proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING)
        try:  # bytes (what TensorFlow answers) or str, which protobuf writes as UTF-8 as TensorFlow does
            proto.string_val.extend(array.ravel().tolist())
        except TypeError:  # anything else: TensorFlow's conversion, and its error
            return tf.make_tensor_proto(array)
    else:
        return tf.make_tensor_proto(array)
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    return proto
