"""Prometheus metrics, input drift, CloudWatch EMF lines and structured logs with request ids."""

from __future__ import annotations

import io
import json
import logging
import sys
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from api.app import create_app
from api.drift import DriftMonitor
from api.emf import PUBLISHED_METRICS, EmfPublisher
from api.logs import JsonFormatter
from ml import metric_names
from ml.bundle import bundle_digest, load_bundle
from tests.api.conftest import API_KEY, AUTH, api_settings, basket, scoring_calls, tiny_source


def _column(values) -> np.ndarray:
    """Model-input rows of the one feature the reference knows."""
    return np.asarray(values, dtype=float).reshape(-1, 1)


REFERENCE = {"n_lines": {"edges": [2.0, 4.0, 8.0], "shares": [0.25, 0.25, 0.25, 0.25]}}


def test_metrics_expose_latency_requests_predictions_model_and_drift(client, bodies, tiny_bundle):
    client.post("/v1/predict/batch", json={"baskets": bodies}, headers=AUTH)
    text = client.get("/metrics").text
    assert 'retail_http_request_duration_seconds_bucket{le="0.005",method="POST",route="/v1/predict/batch"}' in text
    assert 'retail_http_requests_total{method="POST",route="/v1/predict/batch",status="200"}' in text
    assert 'retail_predictions_total{predicted_class="MM"}' in text
    family = load_bundle(tiny_bundle).meta["family"]  # a bundle folder's version is its manifest's digest
    version = f"sha256:{bundle_digest(tiny_bundle)[:12]}"
    assert f'retail_model_info{{family="{family}",source="{tiny_bundle}",version="{version}"}}' in text
    assert 'retail_input_drift_psi{feature="mean_p_LA"}' in text


def test_both_scoring_paths_are_exposed_before_any_call_takes_them():
    """A labelled series appears only once its label is used: both are created at import, so `rate()` over a path
    never taken reads 0 rather than nothing (Prometheus' "avoid missing metrics")."""
    for path in ("loop", "thread"):
        assert REGISTRY.get_sample_value("retail_scoring_batch_baskets_count", {"path": path}) is not None, path


def test_the_batch_size_histogram_says_which_path_scored_each_call(tiny_bundle, bodies):
    """A batch of at least RETAIL_INLINE_SCORING_MIN_BASKETS baskets finding the scorer idle is scored on the event
    loop; a single basket is queued for the scoring thread; the histogram counts each call under its path."""
    app = create_app(api_settings(inline_scoring_min_baskets=3), source=tiny_source(tiny_bundle))
    with TestClient(app) as client:
        before = {path: scoring_calls(path) for path in ("loop", "thread")}
        assert client.post("/v1/predict/batch", json={"baskets": bodies[:3]}, headers=AUTH).status_code == 200
        assert client.post("/v1/predict", json=bodies[3], headers=AUTH).status_code == 200
        after = {path: scoring_calls(path) for path in ("loop", "thread")}
        text = client.get("/metrics").text
    assert (after["loop"][0] - before["loop"][0], after["loop"][1] - before["loop"][1]) == (1, 3)
    assert (after["thread"][0] - before["thread"][0], after["thread"][1] - before["thread"][1]) == (1, 1)
    assert 'retail_scoring_batch_baskets_count{path="loop"}' in text


def test_unmatched_paths_share_one_route_label(client):
    client.get("/no/such/path/12345")
    assert 'route="unmatched",status="404"' in client.get("/metrics").text
    assert "/no/such/path/12345" not in client.get("/metrics").text


def test_drift_is_reported_only_once_the_window_has_enough_baskets():
    monitor = DriftMonitor(REFERENCE, ["n_lines"], window=100, min_baskets=20)
    assert monitor.observe(_column([1.0] * 19)) is None
    assert monitor.observe(_column([1.0])) is not None


def test_drift_is_near_zero_for_the_reference_mix_and_large_for_a_shifted_one():
    monitor = DriftMonitor(REFERENCE, ["n_lines"], window=400, min_baskets=20)
    same = monitor.observe(_column(np.repeat([1.0, 3.0, 5.0, 9.0], 100)))
    shifted = monitor.observe(_column([20.0] * 400))
    assert same["n_lines"] == pytest.approx(0.0, abs=1e-9)
    assert shifted["n_lines"] > 1.0


def test_the_drift_window_keeps_only_the_latest_baskets():
    monitor = DriftMonitor(REFERENCE, ["n_lines"], window=40, min_baskets=20)
    monitor.observe(_column([20.0] * 40))
    recovered = monitor.observe(_column(np.repeat([1.0, 3.0, 5.0, 9.0], 10)))
    assert recovered["n_lines"] == pytest.approx(0.0, abs=1e-9)


def test_an_emf_line_carries_the_alarm_metrics_in_the_infra_namespace():
    stream = io.StringIO()
    EmfPublisher("dev", stream).publish(latency_ms=4.2, status=200, predictions=3, drift_score=0.05)
    record = json.loads(stream.getvalue())
    directive = record["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == metric_names.NAMESPACE
    assert directive["Dimensions"] == [[metric_names.DIMENSION_ENVIRONMENT]]
    assert {m["Name"] for m in directive["Metrics"]} == {
        metric_names.REQUEST_LATENCY_MS, metric_names.REQUEST_COUNT, metric_names.SERVER_ERROR_COUNT,
        metric_names.PREDICTION_COUNT, metric_names.INPUT_DRIFT_SCORE,
    }
    assert record[metric_names.REQUEST_LATENCY_MS] == 4.2 and record[metric_names.PREDICTION_COUNT] == 3
    assert record[metric_names.DIMENSION_ENVIRONMENT] == "dev"


def test_the_declared_published_metrics_are_exactly_what_the_publisher_writes():
    stream = io.StringIO()
    publisher = EmfPublisher("dev", stream)
    publisher.publish(latency_ms=1.0, status=500, predictions=1, drift_score=0.1)
    publisher.heartbeat()
    written = {
        metric["Name"]
        for line in stream.getvalue().splitlines()
        for metric in json.loads(line)["_aws"]["CloudWatchMetrics"][0]["Metrics"]
    }
    assert written == PUBLISHED_METRICS


def test_the_service_writes_an_emf_line_per_prediction_request_when_asked(tiny_bundle, capsys):
    app = create_app(api_settings(emf_enabled=True, environment="test"), source=tiny_source(tiny_bundle))
    with TestClient(app) as client:
        capsys.readouterr()
        client.post("/v1/predict/batch", json={"baskets": [basket()] * 3}, headers=AUTH)
        client.get("/health/live")
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    lines = [line for line in lines if metric_names.REQUEST_COUNT in line]
    assert len(lines) == 1
    assert lines[0][metric_names.PREDICTION_COUNT] == 3
    assert lines[0][metric_names.SERVER_ERROR_COUNT] == 0


def _heartbeats(output: str) -> list[dict]:
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [r for r in records if metric_names.HEARTBEAT in r]


def test_a_serving_process_sends_heartbeats_without_any_request(tiny_bundle, capsys):
    settings = api_settings(emf_enabled=True, environment="test", heartbeat_seconds=0.05)
    with TestClient(create_app(settings, source=tiny_source(tiny_bundle))):
        deadline = time.monotonic() + 10
        beats: list[dict] = []
        while len(beats) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
            beats += _heartbeats(capsys.readouterr().out)
    assert len(beats) >= 2
    assert beats[0][metric_names.HEARTBEAT] == 1 and beats[0][metric_names.DIMENSION_ENVIRONMENT] == "test"
    assert beats[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"] == [{"Name": metric_names.HEARTBEAT, "Unit": "Count"}]


def test_a_process_without_a_model_sends_no_heartbeat(tmp_path, capsys):
    settings = api_settings(emf_enabled=True, heartbeat_seconds=0.05, model_uri=str(tmp_path / "no-bundle"))
    with TestClient(create_app(settings)) as client:
        assert client.get("/health/ready").status_code == 503
        time.sleep(0.3)
    assert _heartbeats(capsys.readouterr().out) == []


def test_the_caller_request_id_is_echoed_and_a_new_one_made_otherwise(client):
    given = client.get("/health/live", headers={"X-Request-ID": "trace-42"})
    assert given.headers["X-Request-ID"] == "trace-42"
    assert len(client.get("/health/live").headers["X-Request-ID"]) == 32
    unsafe = client.get("/health/live", headers={"X-Request-ID": "bad id\twith spaces"})
    assert unsafe.headers["X-Request-ID"] != "bad id\twith spaces"


def test_the_access_log_is_json_with_the_request_id_and_no_payload_or_key(client, caplog):
    with caplog.at_level(logging.INFO, logger="retail.api.access"):
        client.post("/v1/predict", json=basket(), headers={**AUTH, "X-Request-ID": "req-7"})
    records = [json.loads(JsonFormatter().format(r)) for r in caplog.records if r.name == "retail.api.access"]
    assert records[-1]["request_id"] == "req-7"
    assert records[-1]["route"] == "/v1/predict" and records[-1]["status"] == 200
    assert API_KEY not in caplog.text
    assert "PRD09" not in caplog.text and "STORE0" not in caplog.text


def test_the_service_applies_its_gil_garbage_collector_and_allocator_settings(tiny_bundle, monkeypatch):
    import gc

    import api.app

    allocator: list[tuple[int, int]] = []
    monkeypatch.setattr(api.app, "keep_freed_memory", lambda trim, mmap: allocator.append((trim, mmap)))
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    app = create_app(api_settings(gil_switch_interval_ms=0.5, gc_gen0_threshold=12_345,
                                  malloc_trim_threshold_bytes=3 * 2**20, malloc_mmap_threshold_bytes=2**20),
                     source=tiny_source(tiny_bundle))
    try:
        with TestClient(app):
            assert sys.getswitchinterval() == pytest.approx(0.0005)
            assert gc.get_threshold()[0] == 12_345
            assert allocator == [(3 * 2**20, 2**20)]
            assert gc.get_freeze_count() > frozen  # what start-up made, the first model among it, is frozen
    finally:
        gc.set_threshold(*before)
        if not frozen:  # gc.unfreeze would also unfreeze what the test session froze (tests/conftest.py)
            gc.unfreeze()


def test_a_young_generation_threshold_gc_cannot_take_is_refused_by_name():
    from pydantic import ValidationError

    from api.settings import ApiSettings

    with pytest.raises(ValidationError, match="gc_gen0_threshold"):
        ApiSettings(gc_gen0_threshold=2**31)
    assert ApiSettings(gc_gen0_threshold=2**31 - 1).gc_gen0_threshold == 2**31 - 1
