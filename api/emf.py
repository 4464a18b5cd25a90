"""CloudWatch embedded metric format (EMF): one JSON line per prediction request, and a heartbeat, on stdout.

On EKS, Fluent Bit ships the container's stdout lines unchanged to CloudWatch Logs,
which turns these lines into metrics in the namespace and with the names the alarms use
(`ml.metric_names`). Raw latencies are sent, so CloudWatch computes the p95 itself.
The heartbeat (every `HEARTBEAT_SECONDS` while a model is loaded) is what tells a
quiet service from a dead one: its alarm treats no data as an incident. The line itself is
formatted by ml/emf.py, which `retail score` uses for its per-run metrics too.
"""

from __future__ import annotations

import sys
from typing import TextIO

from ml import emf
from ml import metric_names as names

PUBLISHED_METRICS = frozenset(
    {
        names.REQUEST_LATENCY_MS,
        names.REQUEST_COUNT,
        names.SERVER_ERROR_COUNT,
        names.PREDICTION_COUNT,
        names.INPUT_DRIFT_SCORE,
        names.HEARTBEAT,
    }
)
"""Every metric this module writes (the policy check that every alarm has a producer reads it)."""


class EmfPublisher:
    def __init__(self, environment: str, stream: TextIO | None = None):
        self.environment = environment
        self.stream = stream or sys.stdout

    def heartbeat(self) -> None:
        """One heartbeat datapoint: this process is serving a model."""
        self._write([(names.HEARTBEAT, "Count", 1)])

    def publish(self, latency_ms: float, status: int, predictions: int, drift_score: float | None) -> None:
        metrics = [
            (names.REQUEST_LATENCY_MS, "Milliseconds", latency_ms),
            (names.REQUEST_COUNT, "Count", 1),
            (names.SERVER_ERROR_COUNT, "Count", int(status >= 500)),
            (names.PREDICTION_COUNT, "Count", predictions),
        ]
        if drift_score is not None:
            metrics.append((names.INPUT_DRIFT_SCORE, "None", drift_score))
        self._write(metrics)

    def _write(self, metrics: list[tuple[str, str, float]]) -> None:
        emf.write(self.environment, metrics, self.stream)
