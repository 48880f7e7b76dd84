"""The embedded TF Serving-compatible server: gRPC, REST, metrics (run it with `python -m tfrec.serve`).

The request flow: `server` (gRPC) or `rest` (HTTP) receives a Predict, `model_manager` routes it to
the version its ModelSpec asks for, `servable` checks the inputs and calls the
signature, through `batching` (`--enable_batching`) when configured.

* `tfrec.server.server`: `Server`, `ServerOptions` (a `tfrec.config.Config`).
* `tfrec.server.prediction_service`, `tfrec.server.model_service`: the gRPC services.
* `tfrec.server.grpc_status`, `tfrec.server.grpc_interceptors`: failures as canonical codes; token and read timeout.
* `tfrec.server.rest`: TF Serving's REST API over the same services (`--rest_api_port`), on the
  `tfrec.server.http_server` transport, with the `tfrec.server.json_tensor` JSON codec.
* `tfrec.server.metrics`: Prometheus metrics of requests and model loads.
* `tfrec.server.model_manager`: version policy, polling, hot reload.
* `tfrec.server.servable`: one loaded version, input checks, warm-up replay.
* `tfrec.server.batching`: server-side request batching (`BatchScheduler`).
* `tfrec.server.config`, `tfrec.server.protos`: readers of TF Serving's model/batching/monitoring files.

Errors are `tfrec.serving_errors.ServingError`, the type clients receive; invalid options and
configuration files raise `tfrec.config.ConfigError`.
Importing this package imports nothing heavy; import the submodule you need.

Example:

>>> from tfrec.server import config                                              # doctest: +SKIP
>>> from tfrec.server.server import Server, ServerOptions                       # doctest: +SKIP
>>> Server(ServerOptions(config.single_model_config("tiny", "/tmp/tiny"))).start()  # doctest: +SKIP
"""
