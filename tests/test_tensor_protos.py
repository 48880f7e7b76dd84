"""NumPy arrays to and from TensorProtos: the fast paths give what TensorFlow's own functions give."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

from tfrec.tensor_protos import dtype_name, to_ndarray, to_tensor_proto

ARRAYS = [
    np.array([[b"a", "é".encode(), b""]], dtype=object),
    np.array([[0.5, -1.25], [3.0, np.inf]], np.float32),
    np.array([1, -2, 2**31 - 1], np.int32),
    np.array([[2**40]], np.int64),
    np.array([True, False]),
    np.array(7, np.int32),
    np.zeros([0, 3], np.float32),
    np.array([1.5], np.float16),  # not converted here: TensorFlow's functions
]


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype}{list(a.shape)}")
def test_round_trip_matches_tensorflow(array):
    proto = to_tensor_proto(array)
    reference = tf.make_tensor_proto(array)
    assert proto.dtype == reference.dtype
    assert [d.size for d in proto.tensor_shape.dim] == list(array.shape)
    np.testing.assert_array_equal(tf.make_ndarray(proto), array)  # TensorFlow reads what we write
    decoded = to_ndarray(reference)  # and we read what TensorFlow writes
    assert decoded.dtype == array.dtype and decoded.shape == array.shape
    np.testing.assert_array_equal(decoded, array)


def test_value_fields_and_short_protos_read_as_tensorflow_does():
    ints = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT32, int_val=[4, 5])
    ints.tensor_shape.dim.add(size=2)
    assert to_ndarray(ints).tolist() == [4, 5]
    filled = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[2.0])  # one value declared for 3
    filled.tensor_shape.dim.add(size=3)
    np.testing.assert_array_equal(to_ndarray(filled), tf.make_ndarray(filled))
    decoded = to_ndarray(ints)
    decoded[0] = 9  # a writable copy, not a view of the message
    assert to_ndarray(ints).tolist() == [4, 5]


def test_strings_that_are_not_bytes_go_through_tensorflow():
    proto = to_tensor_proto(np.array(["a", "b"], dtype=object))
    assert proto.dtype == types_pb2.DT_STRING and tf.make_ndarray(proto).tolist() == [b"a", b"b"]


def test_dtype_names():
    assert dtype_name(types_pb2.DT_FLOAT) == "float32" and dtype_name(types_pb2.DT_INVALID) == "DT_INVALID"
    assert dtype_name(999) == "DataType 999"
