"""Prometheus metrics of the embedded server, in TF Serving's spirit.

Each `Server` owns one `ServingMetrics`, with its own `CollectorRegistry`
(never the process-global one, so several servers in one process keep
separate counts). The REST server exposes them at the path of
`--monitoring_config_file`'s `prometheus_config` (TF Serving's default
`/monitoring/prometheus/metrics`). Prometheus names cannot start with ':', so
TF Serving's `:tensorflow:serving:...` names become `tfrec_serving_...`:

* `tfrec_serving_request_count_total{model_name, version, signature_name, api, method, status}`:
  Predict and GetModelMetadata calls (`api` "grpc" or "rest", `method`
  "predict" or "metadata", `status` the canonical code name such as "OK" or
  "INVALID_ARGUMENT"; `version` "" when no version was resolved). TF
  Serving's equivalent: `:tensorflow:serving:request_count{model_name, status}`.
* `tfrec_serving_request_latency_seconds{model_name, signature_name, api, method}`:
  histogram of the same calls' wall time. TF Serving's equivalent:
  `:tensorflow:serving:request_latency{model_name, API, entrypoint}` (in µs).
* `tfrec_serving_model_event_count_total{model_name, version, event, outcome}`:
  version loads (warm-up included) and unloads, `outcome` "success" or
  "failure". TF Serving's equivalent:
  `:tensorflow:cc:saved_model:load_attempt_count{model_path, status}`.

Requests refused before they name a model's signature (unparsable JSON, an
unknown route, a missing token, an oversized body) are not counted, as in TF
Serving. Model status calls are not counted either (health checkers poll them).

Example:

>>> metrics = ServingMetrics()
>>> with metrics.track("rest", "predict", "tiny", "serving_default") as call:
...     call.version = 3
>>> b'status="OK"' in metrics.exposition("")[0]
True
"""

import contextlib
import dataclasses
import time
from typing import Iterator, Tuple

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder

from tfrec.serving_errors import ServingError

DEFAULT_PATH = "/monitoring/prometheus/metrics"  # TF Serving's PrometheusExporter::kPrometheusPath
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclasses.dataclass
class Call:
    """What `ServingMetrics.track` records about one call; the caller sets `version` once resolved."""

    version: object = ""
    status: str = "INTERNAL"


class ServingMetrics:
    """Request and model-lifecycle metrics of one server (see the module docstring for the names).

    Attributes:
        registry: the `CollectorRegistry` holding them.
    """

    def __init__(self):
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "tfrec_serving_request_count", "Predict and GetModelMetadata calls, by outcome.",
            ["model_name", "version", "signature_name", "api", "method", "status"], registry=self.registry)
        self._latency = Histogram(
            "tfrec_serving_request_latency_seconds", "Wall time of Predict and GetModelMetadata calls.",
            ["model_name", "signature_name", "api", "method"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self._model_events = Counter(
            "tfrec_serving_model_event_count", "Model version loads and unloads, by outcome.",
            ["model_name", "version", "event", "outcome"], registry=self.registry)

    @contextlib.contextmanager
    def track(self, api: str, method: str, model_name: str, signature_name: str = "") -> Iterator[Call]:
        """Counts and times the block as one call; a `ServingError` escaping it sets the status.

        Args:
            api: "grpc" or "rest".
            method: "predict" or "metadata".
            model_name, signature_name: as the request names them.

        Yields:
            A `Call`: set its `version` once the version is known.
        """
        call = Call()
        start = time.perf_counter()
        try:
            yield call
            call.status = "OK"
        except ServingError as e:
            call.status = e.code.name
            raise
        finally:
            self._latency.labels(model_name, signature_name, api, method).observe(time.perf_counter() - start)
            self._requests.labels(model_name, str(call.version), signature_name, api, method, call.status).inc()

    def model_event(self, model_name: str, version: int, event: str, success: bool) -> None:
        """Counts one `event` ("load" or "unload") of a model version (the `ModelManager` observer)."""
        self._model_events.labels(model_name, str(version), event, "success" if success else "failure").inc()

    def exposition(self, accept: str) -> Tuple[bytes, str]:
        """The scrape page and its content type, in the format the `Accept` header asks for."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type
