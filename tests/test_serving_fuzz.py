"""Property test of the embedded server's request decoder: random TensorProtos never crash it nor hang it.

Every Predict on the tiny fixture, whatever its inputs (any dtype, shapes with
negative or huge dimensions, value fields that do not match the dtype, random
bytes, strings that are not UTF-8, nothing at all), is answered within the
deadline with OK, or INVALID_ARGUMENT / RESOURCE_EXHAUSTED and a message.
"""

import datetime

import grpc
import pytest
import tensorflow as tf
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

import serving_fixtures as sf
from test_serving_reliability import _serving
from tfrec.server import config
from tfrec.server.server import Server, ServerOptions

DEADLINE_SECONDS = 10.0
ANSWERS = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED)

# Inputs of each signature of the fixture, with a valid value of each.
VALID = {
    "history": tf.make_tensor_proto([["item1", "item2"]]),
    "candidates": tf.make_tensor_proto([["item3", "item4"]]),
    "text": tf.make_tensor_proto(["space opera"]),
    "k": tf.make_tensor_proto(3, dtype=tf.int32),
}
SIGNATURES = {
    "serving_default": ("history", "k"),
    "recommend_from_text": ("text", "k"),
    "embed_items": ("text",),
    "score": ("history", "candidates"),
}

DTYPES = st.one_of(
    st.sampled_from([tf.string, tf.int32, tf.int64, tf.float32, tf.float64, tf.bool, tf.half, tf.uint8,
                     tf.complex64, tf.resource, tf.variant]).map(lambda dtype: dtype.as_datatype_enum),
    st.integers(0, 300),  # DT_INVALID, *_REF types and numbers no dtype has
)
DIMS = st.one_of(st.integers(-3, 5), st.sampled_from([2**31, 2**32 + 1, 2**62, 2**63 - 1, -2**63]))
STRINGS = st.one_of(st.sampled_from([b"item1", b"item7", b"", b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80"]),
                    st.binary(max_size=12), st.text(max_size=8).map(str.encode))
VALUES = {
    "string_val": st.lists(STRINGS, max_size=8),
    "int_val": st.lists(st.integers(-2**31, 2**31 - 1), max_size=8),
    "int64_val": st.lists(st.integers(-2**63, 2**63 - 1), max_size=8),
    "float_val": st.lists(st.floats(width=32), max_size=8),
    "double_val": st.lists(st.floats(), max_size=8),
    "bool_val": st.lists(st.booleans(), max_size=8),
    "half_val": st.lists(st.integers(0, 2**16 - 1), max_size=8),
    "tensor_content": st.binary(max_size=64),
}


@st.composite
def tensor_protos(draw):
    """A TensorProto of random dtype, declared shape and value fields (often inconsistent)."""
    proto = tensor_pb2.TensorProto(dtype=draw(DTYPES))
    for size in draw(st.lists(DIMS, max_size=4)):
        proto.tensor_shape.dim.add(size=size)
    proto.tensor_shape.unknown_rank = draw(st.booleans())
    for field in draw(st.sets(st.sampled_from(sorted(VALUES)), max_size=2)):
        value = draw(VALUES[field])
        if field == "tensor_content":
            proto.tensor_content = value
        else:
            getattr(proto, field).extend(value)
    return proto


@st.composite
def string_matrices(draw):
    """A well-formed string TensorProto of random shape and bytes (a history of unknown or non-UTF-8 ids)."""
    rows, cols = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    values = draw(st.lists(STRINGS, min_size=rows * cols, max_size=rows * cols))
    proto = tensor_pb2.TensorProto(dtype=tf.string.as_datatype_enum, string_val=values)
    for size in (rows, cols)[:draw(st.integers(0, 2))]:
        proto.tensor_shape.dim.add(size=size)
    return proto


def _found(name, dtype, dims, **values):
    """A request with a valid `k` and input `name` as given: the cases the fuzzing found, kept as examples."""
    request = predict_pb2.PredictRequest(model_spec={"name": "tiny"}, inputs={"k": VALID["k"]})
    proto = request.inputs[name]
    proto.dtype = dtype
    for size in dims:
        proto.tensor_shape.dim.add(size=size)
    for field, content in values.items():
        getattr(proto, field).extend(content)
    return request


@st.composite
def requests(draw):
    signature = draw(st.sampled_from(sorted(SIGNATURES)))
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "tiny"
    request.model_spec.signature_name = signature
    names = list(SIGNATURES[signature]) + draw(st.lists(st.sampled_from(["user", "", "k"]), max_size=1))
    for name in names:
        kind = draw(st.sampled_from(["valid", "random", "strings", "missing"]))
        if kind == "valid" and name in VALID:
            request.inputs[name].CopyFrom(VALID[name])
        elif kind == "strings":
            request.inputs[name].CopyFrom(draw(string_matrices()))
        elif kind != "missing":
            request.inputs[name].CopyFrom(draw(tensor_protos()))
    return request


@pytest.fixture(scope="module")
def stub(tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    sf.save_version(str(base / "tiny"), 1, warmup=False)
    server = Server(ServerOptions(config.single_model_config("tiny", str(base / "tiny")), port=0, poll_wait_seconds=0,
                                  max_message_bytes=64 * 1024))
    server.start()
    try:
        target = f"127.0.0.1:{server.port}"
        _serving(target)
        with grpc.insecure_channel(target) as channel:
            yield prediction_service_pb2_grpc.PredictionServiceStub(channel)
    finally:
        server.stop()


@settings(max_examples=400, deadline=datetime.timedelta(seconds=DEADLINE_SECONDS), database=None)
@given(request=requests())
@example(request=_found("history", 34, [1, 1], string_val=[b"item1"]))  # a number no DataType has
@example(request=_found("history", tf.string.as_datatype_enum, [2**32, 2**32]))  # 2**64 elements: int64 wraps to 0
def test_random_tensor_protos_are_answered_ok_or_with_a_client_error(stub, request):
    try:
        stub.Predict(request, timeout=DEADLINE_SECONDS)
    except grpc.RpcError as e:
        assert e.code() in ANSWERS, f"{e.code().name}: {e.details()}"
        assert e.details()
