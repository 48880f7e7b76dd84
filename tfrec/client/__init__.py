"""Client library for the recommender's TF Serving API (plain NumPy answers).

The request flow: `requests` checks and encodes the inputs, `RecommenderClient`
sends them over one reused gRPC channel (deadline, retries with backoff) to
`tensorflow_model_server` or the embedded `tfrec.server`, and `results` holds
what comes back; `BatchingClient` merges concurrent small `recommend` calls
into one Predict first. Failures raise `ServingError` (gRPC code + message).

* `tfrec.client.recommender_client`: `RecommenderClient`.
* `tfrec.client.batching_client`: `BatchingClient` (from `RecommenderClient.batching()`).
* `tfrec.client.requests`: `pad_histories`, `context_inputs` and the TensorProto encoders.
* `tfrec.client.results`: `Recommendations`, `Scores`, `Explanation`, `Embeddings`, `Prediction`,
  `VersionStatus`, `TensorInfo`, `ModelMetadata`.
* `ServingError`: re-exported from `tfrec.serving_errors` (the embedded server raises it too).

It does not import the server.

Example:

>>> from tfrec.client import RecommenderClient
>>> with RecommenderClient("localhost:8500", "retrieval") as client:        # doctest: +SKIP
...     recs = client.recommend([["50", "172"], ["1"]], k=5)
...     recs.item_ids[0], recs.scores[0], recs.version
...     with client.batching(max_batch_size=32, max_delay_ms=2) as batched:
...         batched.recommend([["50", "172"]], k=5)
"""

from tfrec.client.batching_client import BatchingClient
from tfrec.client.recommender_client import RecommenderClient
from tfrec.client.results import (
    Embeddings,
    Explanation,
    ModelMetadata,
    Prediction,
    Recommendations,
    Scores,
    TensorInfo,
    VersionStatus,
)
from tfrec.serving_errors import ServingError

__all__ = [
    "BatchingClient",
    "Embeddings",
    "Explanation",
    "ModelMetadata",
    "Prediction",
    "RecommenderClient",
    "Recommendations",
    "Scores",
    "ServingError",
    "TensorInfo",
    "VersionStatus",
]
