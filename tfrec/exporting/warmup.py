"""TF Serving warmup requests: `assets.extra/tf_serving_warmup_requests`.

TF Serving replays these `PredictionLog` records when it loads a version, so
the first real requests do not pay for graph initialisation. One
`PredictRequest` is written per signature.

Example:

>>> write(export_dir, "movies", [("recommend", {"history": [["i1"]], "k": [5]})])  # doctest: +SKIP
"""

import os

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def predict_request(model_name, signature_name, inputs):
    """A `PredictRequest` for `signature_name` with `inputs` (name -> array-like).

    NumPy arrays keep their dtype; other values become DT_STRING (strings),
    DT_INT32 (integers) or DT_FLOAT (floats) tensors.
    """
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    for name, value in inputs.items():
        array = np.asarray(value)
        if not isinstance(value, np.ndarray) and array.dtype.kind in "iuf":
            array = array.astype(np.float32 if array.dtype.kind == "f" else np.int32)
        request.inputs[name].CopyFrom(tf.make_tensor_proto(array))
    return request


def write(export_dir, model_name, requests):
    """Writes the warmup file of `export_dir`.

    Args:
        export_dir: the SavedModel directory.
        model_name: TF Serving model name the requests address.
        requests: list of (signature_name, inputs dict).

    Returns:
        path of the file written.
    """
    path = os.path.join(export_dir, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for signature_name, inputs in requests:
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(
                    request=predict_request(model_name, signature_name, inputs)
                )
            )
            writer.write(log.SerializeToString())
    return path


def read(export_dir):
    """Reads back the warmup `PredictionLog`s of `export_dir`."""
    path = os.path.join(export_dir, WARMUP_FILE)
    return [
        prediction_log_pb2.PredictionLog.FromString(record.numpy())
        for record in tf.data.TFRecordDataset(path)
    ]
