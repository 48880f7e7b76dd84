"""TF Serving's JSON tensor codec (`tfrec.server.json_tensor`) alone: no server, no model."""

import dataclasses

import grpc
import pytest
import tensorflow as tf

from tfrec.server.json_tensor import json_inputs, outputs_json, parse_predict_body
from tfrec.serving_errors import ServingError


@dataclasses.dataclass
class Signature:
    """What the codec reads of a `servable.Signature`: its name and input specs."""

    name: str
    inputs: dict


SCORE = Signature("score", {"history": tf.TensorSpec([None, None], tf.string), "k": tf.TensorSpec([], tf.int32)})


def _refused(call, message):
    with pytest.raises(ServingError, match=message) as raised:
        call()
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("body, message", [
    (b"", "the request body is empty"),
    (b"{", "JSON parse error"),
    (b"[1]", "expected a JSON object"),
    (b'{"instances": [1], "inputs": [1]}', "has both"),
    (b'{"instances": [1], "extra": 1}', "unknown key 'extra'"),
    (b'{"signature_name": 3, "inputs": [1]}', "'signature_name' is 3"),
])
def test_bad_bodies_are_refused_naming_the_problem(body, message):
    _refused(lambda: parse_predict_body(body), message)


def test_row_format_becomes_batched_tensors_of_the_declared_dtypes():
    name, row, data = parse_predict_body(b'{"signature_name": "score", "instances": [{"history": ["a", "b"], "k": 2}, '
                                         b'{"history": ["c", {"b64": "ZA=="}], "k": 1}]}')
    inputs = json_inputs(SCORE, row, data)
    assert (name, row) == ("score", True)
    assert tf.make_ndarray(inputs["history"]).tolist() == [[b"a", b"b"], [b"c", b"d"]]
    assert inputs["k"].dtype == tf.int32.as_datatype_enum and tf.make_ndarray(inputs["k"]).tolist() == [2, 1]


def test_columnar_format_and_its_refusals_name_the_input():
    inputs = json_inputs(SCORE, False, {"history": [["a"]], "k": 3})
    assert tf.make_ndarray(inputs["k"]).tolist() == 3
    _refused(lambda: json_inputs(SCORE, False, {"history": [["a"], ["b", "c"]], "k": 3}),
             r"'inputs' input 'history': a list of 2 at depth 1 does not fit shape \[2, 1\]")
    _refused(lambda: json_inputs(SCORE, False, {"history": [["a"]], "k": 2.5}), "'k'.* is not an integer")
    _refused(lambda: json_inputs(SCORE, False, {"history": [["a"]], "k": 1 << 40}), "out of the range of int32")
    _refused(lambda: json_inputs(SCORE, False, [["a"]]), "takes 2 inputs")


def test_outputs_come_back_in_the_request_format():
    outputs = {"scores": tf.make_tensor_proto([[0.5, 0.25]]), "item_ids": tf.make_tensor_proto([[b"x", b"y"]])}
    assert outputs_json(outputs, row=True) == {"predictions": [{"item_ids": ["x", "y"], "scores": [0.5, 0.25]}]}
    assert outputs_json(outputs, row=False) == {"outputs": {"item_ids": [["x", "y"]], "scores": [[0.5, 0.25]]}}
    binary = {"text_bytes": tf.make_tensor_proto([b"ab"])}
    assert outputs_json(binary, row=False) == {"outputs": [{"b64": "YWI="}]}


def test_hostile_bodies_are_refused_naming_the_field():
    _refused(lambda: parse_predict_body(b'{"inputs": ' + b"[" * 1000 + b"]" * 1000 + b"}"),
             "nested 1001 deep; at most 258")
    _refused(lambda: parse_predict_body(b'{"inputs": {"history": [["a", "\\ud800"]]}}'),
             r"'inputs'\['history'\]\[0\]\[1\]: the value .* holds a lone surrogate")
    assert parse_predict_body('{"inputs": ["\\ud83d\\ude00 ]]]"]}'.encode())[2] == ["\U0001F600 ]]]"]  # a pair is fine
    _, row, data = parse_predict_body(b'{"inputs": {"history": [["a"]], "k": ' + b"9" * 100000 + b"}}")
    _refused(lambda: json_inputs(SCORE, row, data), "'inputs' input 'k': a 100000-digit integer is out of the range")


@pytest.mark.parametrize("body", [
    b'{"inputs": {"history": [' + b",".join([b'""'] * (1 << 20)) + b'], "k": 1}}',
    b'{"instances": [' + b",".join([b'{"history": [""], "k": 1}'] * (1 << 18)) + b"]}",
])
def test_an_input_of_too_many_values_is_refused_before_conversion(body):
    _refused(lambda: json_inputs(SCORE, *parse_predict_body(body)[1:]), "at most 262144 are accepted per input")
