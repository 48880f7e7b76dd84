"""The client facing a misbehaving server: every malformed answer is a `ServingError` naming the output.

The server here is a real gRPC server on a localhost socket whose Predict answers whatever the test sets.
"""

import time
from concurrent import futures

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

from tfrec.client import RecommenderClient, ServingError
from tfrec.client.answers import Expected, decode_outputs


class _ScriptedPredict(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Answers every Predict with `self.outputs` (name -> TensorProto) and records the requests."""

    def __init__(self):
        self.outputs = {}
        self.requests = []

    def Predict(self, request, context):  # noqa: N802 - gRPC's method name
        self.requests.append(request)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = 1
        for name, proto in self.outputs.items():
            response.outputs[name].CopyFrom(proto)
        return response

    def GetModelMetadata(self, request, context):  # noqa: N802 - gRPC's method name
        return get_model_metadata_pb2.GetModelMetadataResponse()  # no signature_def


@pytest.fixture(scope="module")
def scripted():
    servicer = _ScriptedPredict()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    client = RecommenderClient(f"127.0.0.1:{port}", "m", retries=0, timeout=10)
    try:
        yield servicer, client
    finally:
        client.close()
        server.stop(None)


def _strings(rows):
    return tf.make_tensor_proto(np.array(rows, dtype=object))


def _floats(rows):
    return tf.make_tensor_proto(np.array(rows, np.float32))


def _recommend_answer(rows, k):
    return {"item_ids": _strings([[f"i{j}" for j in range(k)]] * rows), "scores": _floats(np.zeros([rows, k]))}


def test_a_well_formed_answer_is_read(scripted):
    servicer, client = scripted
    servicer.outputs = _recommend_answer(3, 2)
    recs = client.recommend([["a"], ["b"], ["c"]], k=2)
    assert recs.item_ids.tolist() == [["i0", "i1"]] * 3 and recs.scores.dtype == np.float32


def _bloated():
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1.0] * 10)  # about 40 bytes of values
    proto.tensor_shape.dim.add(size=1)
    proto.tensor_shape.dim.add(size=100_000_000)
    return proto


def _bad_utf8():
    proto = _strings([["i0", "i1"]])
    proto.string_val[1] = b"\xff\xfe"
    return proto


@pytest.mark.parametrize("outputs, message", [
    ({"scores": _floats([[0.5, 0.25]])}, r"output 'item_ids' is missing; got \['scores'\]"),
    ({"item_ids": _bad_utf8(), "scores": _floats([[0.5, 0.25]])}, r"output 'item_ids' holds text that is not UTF-8"),
    ({"item_ids": _strings([["i0", "i1"]]), "scores": _bloated()},
     r"output 'scores' declares shape \[1, 100000000\] \(100000000 values\) but carries 10 values"),
    ({"item_ids": _strings([["i0", "i1"]]), "scores": tf.make_tensor_proto(np.zeros([1, 2], np.int64))},
     r"output 'scores' has dtype int64; expected float32"),
    ({"item_ids": _strings([["i0"]]), "scores": _floats([[0.5]])}, r"1 items per row; expected at least 2"),
    ({"item_ids": _strings([["i0", "i1", "i2"]]), "scores": _floats([[0.5, 0.25]])},
     r"'item_ids' and 'scores' have shapes \[1, 3\] and \[1, 2\]"),
])
def test_malformed_recommend_answers_name_the_output(scripted, outputs, message):
    servicer, client = scripted
    servicer.outputs = outputs
    with pytest.raises(ServingError, match=message) as info:
        client.recommend([["a"]], k=2)
    assert info.value.code == grpc.StatusCode.INTERNAL
    assert "malformed answer to 'm' signature 'serving_default'" in info.value.message


def test_an_answer_with_fewer_rows_than_histories_is_refused(scripted):
    servicer, client = scripted
    servicer.outputs = _recommend_answer(1, 2)
    with pytest.raises(ServingError, match=r"output '(item_ids|scores)' has shape \[1, 2\]; expected \[3, \?\]"):
        client.recommend([["a"], ["b"], ["c"]], k=2)


def test_an_explanation_narrower_than_the_history_is_refused(scripted):
    servicer, client = scripted
    servicer.outputs = {"influence": _floats(np.zeros([1, 2, 1])), "scores": _floats([[0.5, 0.25]])}
    with pytest.raises(ServingError, match=r"output 'influence' has shape \[1, 2, 1\]; expected \[1, 2, 3\]"):
        client.explain([["a", "b", "c"]], [["x", "y"]])
    servicer.outputs["influence"] = _floats(np.ones([1, 2, 3]))
    assert client.explain([["a", "b", "c"]], [["x", "y"]]).influence.shape == (1, 2, 3)


def test_embeddings_need_one_row_per_text(scripted):
    servicer, client = scripted
    servicer.outputs = {"embeddings": _floats(np.zeros([1, 4]))}
    with pytest.raises(ServingError, match=r"output 'embeddings' has shape \[1, 4\]; expected \[2, \?\]"):
        client.embed_items(["a", "b"])


@pytest.mark.parametrize("k", [2**31, 0, -1, 2.0, True])
def test_k_is_checked_before_sending_and_named(scripted, k):
    servicer, client = scripted
    sent = len(servicer.requests)
    with pytest.raises(ValueError, match=r"^k is .*; expected a positive int"):
        client.recommend([["a"]], k=k)
    assert len(servicer.requests) == sent


def test_metadata_without_signatures_is_a_serving_error(scripted):
    _, client = scripted
    with pytest.raises(ServingError, match=r"malformed answer to GetModelMetadata of 'm': no SignatureDefMap"):
        client.metadata()


def test_an_answer_of_the_wrong_shape_is_refused_before_it_is_read():
    # 2 MB on the wire: as a fixed-width str array, a million cells as wide as its one 3,000-character id
    ids = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[b"x" * 3000] + [b""] * 999_999)
    ids.tensor_shape.dim.add(size=1)
    ids.tensor_shape.dim.add(size=1_000_000)
    started = time.perf_counter()
    with pytest.raises(ServingError, match=r"'item_ids' has shape \[1, 1000000\]; expected \[1, 3\]"):
        decode_outputs({"item_ids": ids}, {"item_ids": Expected("string", (1, 3))}, "recommend")
    assert time.perf_counter() - started < 1.0
