"""Serving: the embedded TF Serving-compatible gRPC server and the client library.

* `tfrec.serving.client`: `RecommenderClient`, `BatchingClient`, `ServingError`
  (plain NumPy answers from TF Serving's gRPC API).
* `tfrec.serving.server`: `Server`, `ServerOptions` (run it with `python -m tfrec.serve`).
* `tfrec.serving.model_manager`: version policy, polling, hot reload.
* `tfrec.serving.config`: readers of TF Serving's model/batching/monitoring files.

Importing this package imports nothing heavy; import the submodule you need.
"""
