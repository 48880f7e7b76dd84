"""The embedded server's Prometheus metrics (`tfrec.server.metrics`) alone: TF Serving's names, bounded series."""

import contextlib
import time

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tfrec.server.metrics import LOAD_ATTEMPT_COUNT, REQUEST_COUNT, REQUEST_LATENCY, ServingMetrics
from tfrec.serving_errors import ServingError


def _samples(metrics):
    page = metrics.exposition("")[0].decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(page) for s in family.samples}


def _call(metrics, model, signature, *, found=True, api="rest", seconds=0.0):
    with pytest.raises(ServingError) if not found else contextlib.nullcontext():
        with metrics.track(api, "predict", model, signature) as call:
            if not found:
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"no {model!r} / {signature!r}")
            call.version, call.signature_name = 1, signature
            time.sleep(seconds)


def test_tf_serving_names_labels_and_units():
    metrics = ServingMetrics(model_names=lambda: ["tiny"])
    _call(metrics, "tiny", "serving_default", seconds=0.02)
    _call(metrics, "tiny", "serving_default", api="grpc")
    metrics.model_event("tiny", 3, "load", True)
    metrics.model_event("tiny", 4, "load", False)
    page = metrics.exposition("")[0].decode()
    assert f'{REQUEST_COUNT}{{model_name="tiny",status="OK"}} 2.0' in page.splitlines()  # no _total, as TF Serving
    assert f'{LOAD_ATTEMPT_COUNT}{{model_path="tiny/4",status="fail"}} 1.0' in page.splitlines()
    samples = _samples(metrics)
    rest = (("API", "Predict"), ("entrypoint", "REST"), ("model_name", "tiny"))
    assert samples[(f"{REQUEST_LATENCY}_count", rest)] == 1
    assert samples[(f"{REQUEST_LATENCY}_sum", rest)] >= 20000  # microseconds: the call slept 20 ms
    first = tuple(sorted(rest + (("le", "10.0"),)))  # TF Serving's first bucket: 10 µs
    assert samples[(f"{REQUEST_LATENCY}_bucket", first)] == 0
    assert samples[("tfrec_request_count_total", (("api", "grpc"), ("method", "predict"), ("model_name", "tiny"),
                                                  ("signature_name", "serving_default"), ("status", "OK"),
                                                  ("version", "1")))] == 1
    assert samples[("process_resident_memory_bytes", ())] > 0


@pytest.mark.parametrize("unknown, count", [("model", 3000), ("signature", 1000)])
def test_made_up_names_add_at_most_ten_series(unknown, count):
    metrics = ServingMetrics(model_names=lambda: ["tiny"])
    _call(metrics, "tiny", "serving_default")
    _call(metrics, "tiny", "nope", found=False)  # every series an unknown name can open, opened once
    _call(metrics, "nope", "serving_default", found=False)
    before = {key for key in _samples(metrics) if not key[0].startswith("process_")}
    for i in range(count):
        if unknown == "model":
            _call(metrics, f"model-{i}", "serving_default", found=False)
        else:
            _call(metrics, "tiny", f"signature-{i}", found=False)
    after = {key for key in _samples(metrics) if not key[0].startswith("process_")}
    assert len(after - before) <= 10 and not any(f"-{count - 1}" in str(key) for key in after)
    assert _samples(metrics)[(REQUEST_COUNT, (("model_name", "unknown" if unknown == "model" else "tiny"),
                                              ("status", "NOT_FOUND")))] == count + 1
