"""Prometheus metrics of the service.

With several worker processes (`PROMETHEUS_MULTIPROC_DIR` set, as `retail serve
--workers N` does), each process writes its values to that folder and `/metrics`
aggregates them; gauges then report the largest value of the live processes.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0)

REQUEST_LATENCY = Histogram(
    "retail_http_request_duration_seconds", "Wall time of a request, by route.", ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
REQUESTS = Counter("retail_http_requests", "Requests by route and status.", ["method", "route", "status"])
PREDICTIONS = Counter("retail_predictions", "Baskets scored, by predicted class.", ["predicted_class"])
SCORING_BATCH = Histogram(
    "retail_scoring_batch_baskets",
    "Baskets per featurizer call (concurrent requests are scored together), by where the call ran: `thread`, the "
    "scoring thread that coalesces queued requests, or `loop`, a large request scored on the event loop.",
    ["path"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048),
)
SCORING_BATCH_ON = {path: SCORING_BATCH.labels(path) for path in ("loop", "thread")}
"""The histogram's series by path, made at import: a path never taken reads 0, not nothing, and a scoring call
observes its series without looking its label up."""
MODEL_INFO = Gauge(
    "retail_model_info", "1 for the loaded model version, 0 for versions served before.",
    ["version", "family", "source"], multiprocess_mode="livemax",
)
MODEL_RELOADS = Counter("retail_model_reloads", "Attempts to load a new model, by outcome.", ["outcome"])
CHALLENGER_INFO = Gauge(
    "retail_challenger_info", "1 for the loaded challenger version (scored in shadow), 0 for earlier ones.",
    ["version", "family", "source"], multiprocess_mode="livemax",
)
CHALLENGER_RELOADS = Counter("retail_challenger_reloads", "Attempts to load a new challenger, by outcome.",
                             ["outcome"])
PREDICTION_LOG_ROWS = Counter(
    "retail_prediction_log_rows", "Prediction log rows by role and outcome: written, over_limit (not held: the "
    "writer is behind), failed (a write or row error).", ["role", "outcome"],
)
PREDICTION_LOG_HELD = Gauge(
    "retail_prediction_log_held_rows", "Prediction log rows recorded and not yet written, by role: growing towards "
    "RETAIL_PREDICTION_LOG_MAX_ROWS, the writer is not writing.", ["role"], multiprocess_mode="livesum",
)
BACKGROUND_CPU = Counter(
    "retail_background_cpu_seconds", "CPU time of the service's background threads themselves (not counting work "
    "they hand to Polars' or Arrow's thread pools), by thread: prediction_log (turning what the routes recorded "
    "into rows and writing them), shadow (the challenger's scoring).", ["thread"],
)
SHADOW_BASKETS = Counter(
    "retail_shadow_baskets", "Baskets sent to the challenger in shadow, by outcome: scored, over_limit (not held: "
    "the challenger is behind), not_loaded (no challenger yet), failed (scoring raised), shutdown (still waiting "
    "when the shutdown's deadline came).", ["outcome"],
)
INPUT_DRIFT = Gauge(
    "retail_input_drift_psi", "Population stability index of a key feature: recent baskets against training.",
    ["feature"], multiprocess_mode="livemax",
)


def exposition() -> tuple[bytes, str]:
    """The metrics text and its content type, aggregated over worker processes if there are several."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        # prometheus_client ships py.typed but leaves MultiProcessCollector.__init__ unannotated
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
