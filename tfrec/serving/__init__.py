"""Serving: the embedded TF Serving-compatible gRPC server and the client library.

* `tfrec.serving.client`: `RecommenderClient`, `BatchingClient`, `ServingError`
  (plain NumPy answers from TF Serving's gRPC API).
* `tfrec.serving.server`: `Server`, `ServerOptions` (run it with `python -m tfrec.serve`).
* `tfrec.serving.model_manager`: version policy, polling, hot reload.
* `tfrec.serving.servable`: one loaded version, input checks, warm-up replay.
* `tfrec.serving.batching`: server-side request batching (`--enable_batching`).
* `tfrec.serving.config`, `tfrec.serving.protos`: readers of TF Serving's model/batching/monitoring files.

Importing this package imports nothing heavy; import the submodule you need.
"""
