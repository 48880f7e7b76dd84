"""TF Serving configuration messages that tensorflow-serving-api does not ship.

The `tensorflow-serving-api` wheel carries `ModelServerConfig` but not the two
other files `tensorflow_model_server` reads: `--batching_parameters_file`
(text-format `tensorflow.serving.BatchingParameters`, from
`tensorflow_serving/servables/tensorflow/session_bundle_config.proto`) and
`--monitoring_config_file` (text-format `tensorflow.serving.MonitoringConfig`,
from `tensorflow_serving/config/monitoring_config.proto`). This module declares
those messages with the same package, names, field numbers and types, in a
private descriptor pool, so text-format files parse and validate exactly as the
model server would parse them (for the fields declared here: the stable
`BatchingParameters` fields 1-7 and the whole `MonitoringConfig`).

Example:

>>> from google.protobuf import text_format
>>> from tfrec.server import protos
>>> params = text_format.Parse("max_batch_size { value: 32 }", protos.BatchingParameters())
>>> params.max_batch_size.value
32
"""

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

_F = descriptor_pb2.FieldDescriptorProto
_PACKAGE = "tensorflow.serving"


def _field(name, number, field_type, type_name=None, repeated=False):
    field = _F(
        name=name,
        number=number,
        type=field_type,
        label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL,
    )
    if type_name:
        field.type_name = type_name
    return field


def _message(name, fields):
    return descriptor_pb2.DescriptorProto(name=name, field=fields)


def _build_pool():
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    int64_value = ".google.protobuf.Int64Value"
    batching = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/servables/tensorflow/session_bundle_config.proto",
        package=_PACKAGE,
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
        message_type=[
            _message(
                "BatchingParameters",
                [
                    _field("max_batch_size", 1, _F.TYPE_MESSAGE, int64_value),
                    _field("batch_timeout_micros", 2, _F.TYPE_MESSAGE, int64_value),
                    _field("max_enqueued_batches", 3, _F.TYPE_MESSAGE, int64_value),
                    _field("num_batch_threads", 4, _F.TYPE_MESSAGE, int64_value),
                    _field("thread_pool_name", 5, _F.TYPE_MESSAGE, ".google.protobuf.StringValue"),
                    _field("allowed_batch_sizes", 6, _F.TYPE_INT64, repeated=True),
                    _field("pad_variable_length_inputs", 7, _F.TYPE_BOOL),
                ],
            )
        ],
    )
    monitoring = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/monitoring_config.proto",
        package=_PACKAGE,
        syntax="proto3",
        message_type=[
            _message(
                "PrometheusConfig",
                [_field("enable", 1, _F.TYPE_BOOL), _field("path", 2, _F.TYPE_STRING)],
            ),
            _message(
                "MonitoringConfig",
                [_field("prometheus_config", 1, _F.TYPE_MESSAGE, f".{_PACKAGE}.PrometheusConfig")],
            ),
        ],
    )
    pool.Add(batching)
    pool.Add(monitoring)
    return pool


_POOL = _build_pool()
BatchingParameters = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName(f"{_PACKAGE}.BatchingParameters")
)
PrometheusConfig = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName(f"{_PACKAGE}.PrometheusConfig")
)
MonitoringConfig = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName(f"{_PACKAGE}.MonitoringConfig")
)
