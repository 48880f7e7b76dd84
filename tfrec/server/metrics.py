"""Prometheus metrics of the embedded server: TF Serving's series under TF Serving's names, and a few of ours.

Each `Server` owns one `ServingMetrics`, with its own `CollectorRegistry`
(never the process-global one, so several servers in one process keep
separate counts). The REST server exposes them at the path of
`--monitoring_config_file`'s `prometheus_config` (TF Serving's default
`/monitoring/prometheus/metrics`). TF Serving's Prometheus exporter turns
its `/tensorflow/serving/...` metrics into names starting with ':' (which
Prometheus allows), and so do we, so dashboards written for
`tensorflow_model_server` work unchanged:

* `:tensorflow:serving:request_count{model_name, status}`: Predict calls by
  canonical status name ("OK", "INVALID_ARGUMENT"...). Exported untyped and
  without the `_total` suffix, exactly as TF Serving's exporter writes it.
* `:tensorflow:serving:request_latency{model_name, API, entrypoint}`:
  histogram (`_bucket`, `_sum`, `_count`) of the wall time of successful
  calls in microseconds, `API` "Predict" or "GetModelMetadata",
  `entrypoint` "GRPC" or "REST"; TF Serving's buckets (10 µs growing by 1.8).
* `:tensorflow:cc:saved_model:load_attempt_count{model_path, status}`:
  version loads (warm-up included), `status` "success" or "fail". Untyped,
  no `_total`. `model_path` is "NAME/VERSION", not the server's directory
  (TF Serving gives the export directory).

Ours, under `tfrec_` names:

* `tfrec_request_count_total{model_name, version, signature_name, api, method, status}`:
  Predict and GetModelMetadata calls (`api` "grpc" or "rest", `method`
  "predict" or "metadata"; `signature_name` "" for metadata).
* `tfrec_model_event_count_total{model_name, version, event, outcome}`:
  version loads and unloads, `outcome` "success" or "failure".
* `process_*`: CPU seconds, resident memory, open file descriptors, start
  time (prometheus_client's `ProcessCollector`).

A model name the server does not serve, a version that was not resolved and
a signature that was not found are all labelled "unknown", so requests
naming made-up models or signatures cannot grow the page. Requests refused
before they name a model (unparsable JSON, an unknown route, a missing
token, an oversized body) are not counted, as in TF Serving; model status
calls are not counted either (health checkers poll them).

Example:

>>> metrics = ServingMetrics(model_names=lambda: ["tiny"])
>>> with metrics.track("rest", "predict", "tiny", "serving_default") as call:
...     call.version, call.signature_name = 3, "serving_default"
>>> b':tensorflow:serving:request_count{model_name="tiny",status="OK"} 1.0' in metrics.exposition("")[0]
True
"""

import collections
import contextlib
import dataclasses
import threading
import time
from typing import Callable, Iterable, Iterator, Optional, Tuple

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

from tfrec.serving_errors import ServingError

DEFAULT_PATH = "/monitoring/prometheus/metrics"  # TF Serving's PrometheusExporter::kPrometheusPath
REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
LOAD_ATTEMPT_COUNT = ":tensorflow:cc:saved_model:load_attempt_count"
UNKNOWN = "unknown"
# TF Serving's monitoring::Buckets::Exponential(10, 1.8, 33), in microseconds (10 µs to about 20 minutes).
LATENCY_BUCKETS_MICROSECONDS = tuple(10 * 1.8 ** i for i in range(33))
_API = {"predict": "Predict", "metadata": "GetModelMetadata"}


class TfServingCounter:
    """A counter exported as TF Serving's exporter writes one: its exact name, no `_total`, untyped.

    Example:

    >>> registry = CollectorRegistry()
    >>> count = TfServingCounter(REQUEST_COUNT, "Requests.", ["model_name", "status"], registry)
    >>> count.inc("tiny", "OK")
    """

    def __init__(self, name: str, documentation: str, labelnames: Iterable[str], registry: CollectorRegistry):
        self._name, self._documentation, self._labelnames = name, documentation, tuple(labelnames)
        self._values = collections.Counter()
        self._lock = threading.Lock()
        registry.register(self)

    def inc(self, *labels: str) -> None:
        with self._lock:
            self._values[labels] += 1

    def describe(self):
        return [Metric(self._name, self._documentation, "unknown")]

    def collect(self):
        family = Metric(self._name, self._documentation, "unknown")
        with self._lock:
            values = sorted(self._values.items())
        for labels, value in values:
            family.add_sample(self._name, dict(zip(self._labelnames, labels)), value)
        yield family


@dataclasses.dataclass
class Call:
    """What `ServingMetrics.track` records about one call: the caller sets `version` and `signature_name`
    once they are resolved (both stay "unknown" otherwise)."""

    version: object = UNKNOWN
    signature_name: str = UNKNOWN
    status: str = "INTERNAL"


class ServingMetrics:
    """Request, model-lifecycle and process metrics of one server (see the module docstring for the names).

    Args:
        model_names: returns the names the server serves (others are labelled
            "unknown").

    Attributes:
        registry: the `CollectorRegistry` holding them.
    """

    def __init__(self, model_names: Callable[[], Iterable[str]] = tuple):
        self._model_names = model_names
        self.registry = CollectorRegistry()
        self._request_count = TfServingCounter(REQUEST_COUNT, "The total number of requests.",
                                               ["model_name", "status"], self.registry)
        self._latency = Histogram(
            REQUEST_LATENCY, "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            ["model_name", "API", "entrypoint"], buckets=LATENCY_BUCKETS_MICROSECONDS, registry=self.registry)
        self._load_attempts = TfServingCounter(LOAD_ATTEMPT_COUNT, "The number of times a SavedModel was loaded.",
                                               ["model_path", "status"], self.registry)
        self._requests = Counter(
            "tfrec_request_count", "Predict and GetModelMetadata calls, by outcome.",
            ["model_name", "version", "signature_name", "api", "method", "status"], registry=self.registry)
        self._model_events = Counter(
            "tfrec_model_event_count", "Model version loads and unloads, by outcome.",
            ["model_name", "version", "event", "outcome"], registry=self.registry)
        ProcessCollector(registry=self.registry)

    @contextlib.contextmanager
    def track(self, api: str, method: str, model_name: str, signature_name: Optional[str] = None) -> Iterator[Call]:
        """Counts and times the block as one call; a `ServingError` escaping it sets the status.

        Args:
            api: "grpc" or "rest".
            method: "predict" or "metadata".
            model_name: as the request names it.
            signature_name: None for a call naming no signature (metadata).

        Yields:
            A `Call`: set its `version` and `signature_name` once resolved.
        """
        call = Call(signature_name=UNKNOWN if signature_name is not None else "")
        start = time.perf_counter()
        try:
            yield call
            call.status = "OK"
        except ServingError as e:
            call.status = e.code.name
            raise
        finally:
            model = model_name if model_name in self._model_names() else UNKNOWN
            if call.status == "OK":
                self._latency.labels(model, _API[method], api.upper()).observe(
                    (time.perf_counter() - start) * 1e6)
            if method == "predict":
                self._request_count.inc(model, call.status)
            self._requests.labels(model, str(call.version), call.signature_name, api, method, call.status).inc()

    def model_event(self, model_name: str, version: int, event: str, success: bool) -> None:
        """Counts one `event` ("load" or "unload") of a model version (the `ModelManager` observer)."""
        if event == "load":
            self._load_attempts.inc(f"{model_name}/{version}", "success" if success else "fail")
        self._model_events.labels(model_name, str(version), event, "success" if success else "failure").inc()

    def exposition(self, accept: str) -> Tuple[bytes, str]:
        """The scrape page and its content type, in the format the `Accept` header asks for."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type
