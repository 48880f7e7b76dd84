"""One loaded version of a SavedModel and the Predict logic over its signatures.

`ServableVersion.load` imports the TF Text ops (exported graphs tokenise
inside), checks the version's files (`tfrec.version_files.check_version`:
its manifest, its catalogue's line counts), loads `base_path/VERSION/` with the `serve` tag, reads its
SignatureDefs for `GetModelMetadata`, and replays
`assets.extra/tf_serving_warmup_requests` (TFRecord of `PredictionLog`, as TF
Serving does) so the first real request does not pay for tracing. `run` checks
every input against the signature (name, dtype, rank, shape, non-empty batch)
before calling it, and turns TensorFlow errors into `ServingError`s with the
same canonical code (an in-graph `InvalidArgumentError` naming an unknown item
id surfaces as INVALID_ARGUMENT with that message).

Example:

>>> version = ServableVersion.load("retrieval", 3, "/models/retrieval/3")  # doctest: +SKIP
>>> outputs = version.run("serving_default", request.inputs)               # doctest: +SKIP
"""

import math
import os
import re

import grpc
import numpy as np
import tensorflow as tf
from absl import logging
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import prediction_log_pb2

from tfrec import version_files
from tfrec.request_format import nfc
from tfrec.server.batching import call_unbatched
from tfrec.serving_errors import ServingError, status_code_from_number
from tfrec.tensor_protos import ALL_VALUE_FIELDS, VALUE_FIELDS, dtype_name, to_ndarray, to_tensor_proto

try:  # Registers the TF Text ops that exported tokenisers use.
    import tensorflow_text  # noqa: F401
except ImportError:  # pragma: no cover - tensorflow-text is a declared dependency
    logging.warning("tensorflow_text is not importable: SavedModels with TF Text ops will fail to load")

DEFAULT_SIGNATURE = "serving_default"
MAX_INPUT_ELEMENTS = 1 << 22  # per input: 4M ids is far beyond any history batch, far below a memory blow-up
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")

_TF_NOISE = re.compile(
    r"Graph execution error:\s*|Detected at node .*?\n|<stack traces unavailable>\n?"
    r"|\s*\[\[\{\{node [^}]*\}\}\]\]|\s*\[Op:[^\]]*\]"
)


def clean_tf_message(message: str) -> str:
    """Drops TensorFlow's node/op trace decorations, keeping the error itself."""
    return _TF_NOISE.sub("", message).strip()


class Signature:
    """A callable signature and its input specs.

    Args:
        name: signature key, e.g. "serving_default".
        function: the loaded concrete function (`loaded.signatures[name]`).
    """

    def __init__(self, name, function):
        self.name = name
        self.function = function
        self.inputs = dict(function.structured_input_signature[1])
        self.outputs = sorted(function.structured_outputs)

    def to_tensors(self, inputs):
        """Checks `inputs` (name -> TensorProto) against the signature.

        Returns:
            dict name -> tf.Tensor ready to feed.

        Raises:
            ServingError: INVALID_ARGUMENT naming the input for an unknown or
                missing input, a wrong dtype, rank or dimension, an undecodable
                TensorProto, or an empty batch.
        """
        unknown = sorted(set(inputs) - set(self.inputs))
        if unknown:
            raise _invalid(f"signature {self.name!r} has no input {unknown[0]!r}; inputs are {sorted(self.inputs)}")
        missing = sorted(set(self.inputs) - set(inputs))
        if missing:
            raise _invalid(f"signature {self.name!r} needs input {missing[0]!r}; got {sorted(inputs)}")
        inputs = broadcast_scalars(self.inputs, inputs)
        return {name: self._to_tensor(name, proto) for name, proto in inputs.items()}

    def _to_tensor(self, name, proto):
        spec = self.inputs[name]
        where = f"input {name!r} of signature {self.name!r}"
        if proto.dtype != spec.dtype.as_datatype_enum:
            raise _invalid(f"{where} has dtype {dtype_name(proto.dtype)}; expected {spec.dtype.name}")
        _check_declared(where, proto, spec)
        try:
            array = to_ndarray(proto)
        except (ValueError, TypeError) as e:
            raise _invalid(f"{where}: malformed TensorProto ({e})") from e
        if array.dtype == object:
            array = _utf8_in_nfc(where, array)
        expected = spec.shape
        if expected.rank is not None:
            if array.ndim != expected.rank:
                raise _invalid(
                    f"{where} has shape {list(array.shape)} (rank {array.ndim}); expected rank {expected.rank} "
                    f"{_shape_text(expected)}"
                )
            for axis, (got, want) in enumerate(zip(array.shape, expected.as_list())):
                if want is not None and got != want:
                    raise _invalid(
                        f"{where} has shape {list(array.shape)}; expected {_shape_text(expected)} "
                        f"(dimension {axis} must be {want})"
                    )
        if array.ndim >= 1 and array.shape[0] == 0:
            raise _invalid(f"{where} has an empty batch (shape {list(array.shape)})")
        return tf.constant(array, dtype=spec.dtype)


def _utf8_in_nfc(where: str, array: np.ndarray) -> np.ndarray:
    """The strings of `array` (bytes) in Unicode NFC, the form ids are compared in (`request_format.nfc`);
    INVALID_ARGUMENT naming the first that is not UTF-8 text. One scan of the joined values decides: ASCII
    needs nothing, and joined by an ASCII byte, which no multi-byte sequence can hold, the whole decodes
    exactly when every value does."""
    values = array.ravel().tolist()
    joined = b"\n".join(values)
    if joined.isascii():
        return array
    try:
        joined.decode("utf-8")
    except UnicodeDecodeError:
        for value in values:
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                raise _invalid(f"{where} holds {value[:40]!r}, which is not UTF-8 text") from None
    return np.array([nfc(value) for value in values], dtype=object).reshape(array.shape)


def broadcast_scalars(specs: dict, inputs: dict) -> dict:
    """`inputs` with each numeric scalar given for a `[None]` input (e.g. `k` as one int) repeated to the
    batch size of the other inputs, as older clients and REST callers send it (only a well-formed one of
    the input's dtype: what is repeated costs no more than one int per declared row); the rest as they are, every
    input in name order (so the first bad one named is always the same).

    Example:

    >>> specs = {"history": tf.TensorSpec([None, None], tf.string), "k": tf.TensorSpec([None], tf.int32)}
    >>> inputs = {"history": tf.make_tensor_proto([["a"], ["b"]]), "k": tf.make_tensor_proto(3)}
    >>> tf.make_ndarray(broadcast_scalars(specs, inputs)["k"]).tolist()
    [3, 3]
    """
    broadcast = {name: inputs[name] for name in sorted(inputs)}
    batch = {proto.tensor_shape.dim[0].size for proto in inputs.values() if proto.tensor_shape.dim}
    if len(batch) != 1 or not 0 <= min(batch) <= MAX_INPUT_ELEMENTS:  # else the batch input's check names it
        return broadcast
    (rows,) = batch
    for name, proto in inputs.items():
        spec = specs[name]
        if (proto.tensor_shape.dim or spec.shape.rank != 1 or spec.shape[0] is not None
                or proto.dtype != spec.dtype.as_datatype_enum or spec.dtype == tf.string):
            continue  # only a numeric scalar of the input's own dtype is repeated; `_to_tensor` names the rest
        try:
            _check_declared(name, proto, tf.TensorSpec([], spec.dtype))  # one value, in its own field
        except ServingError:
            continue
        broadcast[name] = to_tensor_proto(np.full([rows], to_ndarray(proto).item(), spec.dtype.as_numpy_dtype))
    return broadcast


def _check_declared(where, proto, spec):
    """Refuses, before anything is allocated, a TensorProto whose declared shape is not what it carries.

    TensorFlow fills a declared shape from a single value, so an 80-byte
    request could otherwise declare [20000, 20000] and cost gigabytes.
    """
    dims = [d.size for d in proto.tensor_shape.dim]
    if any(d < 0 for d in dims):
        raise _invalid(f"{where} declares shape {dims}: dimensions must not be negative")
    if spec.shape.rank is not None and len(dims) != spec.shape.rank:
        raise _invalid(f"{where} has shape {dims} (rank {len(dims)}); expected rank {spec.shape.rank} "
                       f"{_shape_text(spec.shape)}")
    if len(dims) >= 2 and 0 in dims[1:]:
        raise _invalid(f"{where} has shape {dims}: only the batch dimension may be empty (an empty history is "
                       "one \"\" entry)")
    count = math.prod(dims)  # exact: a NumPy product of huge dimensions would wrap around
    if count > MAX_INPUT_ELEMENTS:
        raise _invalid(f"{where} declares {count} elements (shape {dims}); at most {MAX_INPUT_ELEMENTS} are accepted")
    own = VALUE_FIELDS.get(proto.dtype)
    others = [field for field in ALL_VALUE_FIELDS if field != own and len(getattr(proto, field))]
    if others:
        raise _invalid(f"{where} has dtype {spec.dtype.name} but carries {others[0]}")
    if proto.tensor_content:
        carried = len(proto.tensor_content) // max(spec.dtype.size, 1)
    else:
        carried = len(getattr(proto, own)) if own else 0
    if carried != count:
        raise _invalid(f"{where} declares shape {dims} ({count} elements) but carries {carried} values")


def _shape_text(shape):
    return "[" + ", ".join("?" if d is None else str(d) for d in shape.as_list()) + "]"


def _invalid(message):
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


class ServableVersion:
    """One loaded, warmed version of a model.

    Use `ServableVersion.load`; attributes: `model_name`, `version`, `path`,
    `signatures` (dict name -> `Signature`), `signature_defs` (the SavedModel's
    `serve` SignatureDef map, as `GetModelMetadata` reports it),
    `warmup_requests` (how many warm-up records `load` replayed).
    """

    def __init__(self, model_name, version, path, loaded, signature_defs, scheduler=None):
        self.model_name = model_name
        self._scheduler = scheduler
        self.version = version
        self.path = path
        self._loaded = loaded
        self.signatures = {name: Signature(name, fn) for name, fn in loaded.signatures.items()}
        self.signature_defs = signature_defs
        self.warmup_requests = 0

    @classmethod
    def load(cls, model_name: str, version: int, path: str, scheduler=None) -> "ServableVersion":
        """Loads and warms `path` (a `base_path/VERSION` directory).

        Args:
            model_name, version: what it serves as.
            path: the version directory.
            scheduler: optional `batching.BatchScheduler` merging concurrent calls.

        Raises:
            ServingError: FAILED_PRECONDITION for files that differ from the
                version's manifest or from its item count; the SavedModel cannot be
                loaded, has no `serve` MetaGraph, or a warm-up request fails (code
                of the failure).
        """
        try:
            version_files.check_version(path)
        except (version_files.IncompleteVersionError, OSError) as e:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION, f"refused {path}: {e}") from e
        try:
            loaded = tf.saved_model.load(path, tags=["serve"])
            signature_defs = _read_signature_defs(path)
        except (OSError, ValueError, RuntimeError, tf.errors.OpError) as e:
            message, code = str(e), grpc.StatusCode.INTERNAL
            if isinstance(e, tf.errors.OpError):
                message, code = e.message, status_code_from_number(e.error_code)
            raise ServingError(code, f"cannot load {path}: {clean_tf_message(message)}") from e
        servable = cls(model_name, version, path, loaded, signature_defs, scheduler)
        servable.warmup_requests = servable.warm_up()
        return servable

    def warm_up(self) -> int:
        """Replays `assets.extra/tf_serving_warmup_requests`; returns how many records ran."""
        path = os.path.join(self.path, WARMUP_FILE)
        if not os.path.exists(path):
            return 0
        count = 0
        for count, record in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator(), start=1):
            log = prediction_log_pb2.PredictionLog.FromString(record)
            kind = log.WhichOneof("log_type")
            if kind != "predict_log":
                raise ServingError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"{path}: warm-up record {count} is a {kind}; this server replays predict_log records only",
                )
            request = log.predict_log.request
            try:
                self.run(request.model_spec.signature_name, request.inputs, request.output_filter)
            except ServingError as e:
                raise ServingError(e.code, f"{path}: warm-up record {count} failed: {e.message}") from e
        return count

    def run(self, signature_name, inputs, output_filter=()):
        """Runs one Predict.

        Args:
            signature_name: signature key ("" means "serving_default").
            inputs: mapping input name -> `TensorProto`.
            output_filter: output names to return (empty: all).

        Returns:
            dict output name -> `TensorProto`.

        Raises:
            ServingError: NOT_FOUND for an unknown signature, INVALID_ARGUMENT
                for bad inputs or an unknown output name, and the graph's own
                code (INVALID_ARGUMENT for its assertions) when it fails.
        """
        signature = self.signature(signature_name or DEFAULT_SIGNATURE)
        unknown = sorted(set(output_filter) - set(signature.outputs))
        if unknown:
            raise _invalid(
                f"signature {signature.name!r} has no output {unknown[0]!r}; outputs are {signature.outputs}"
            )
        tensors = signature.to_tensors(inputs)
        try:
            if self._scheduler is None:
                outputs = call_unbatched(signature.function, tensors)
            else:
                outputs = self._scheduler.run(signature.function, tensors)
        except tf.errors.OpError as e:
            raise ServingError(
                status_code_from_number(e.error_code),
                f"model {self.model_name!r} version {self.version} signature {signature.name!r}: "
                f"{clean_tf_message(e.message)}",
            ) from e
        wanted = output_filter or outputs.keys()
        return {name: to_tensor_proto(outputs[name]) for name in wanted}

    def signature(self, name):
        """The `Signature` called `name`; NOT_FOUND listing the known ones otherwise."""
        try:
            return self.signatures[name]
        except KeyError:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND,
                f"model {self.model_name!r} version {self.version} has no signature {name!r}; "
                f"signatures are {sorted(self.signatures)}",
            ) from None


def _read_signature_defs(path):
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        saved_model = saved_model_pb2.SavedModel.FromString(f.read())
    for meta_graph in saved_model.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return meta_graph.signature_def
    raise ValueError(f"{path}/saved_model.pb has no MetaGraph tagged 'serve'")
