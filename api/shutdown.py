"""The service's shutdown, in a budget that fits the pod's grace period.

Kubernetes counts the grace period (terminationGracePeriodSeconds) from the moment it runs the
preStop hook, and kills the container when it ends (https://kubernetes.io/docs/concepts/workloads/
pods/pod-lifecycle/#pod-termination). After the preStop sleep and SIGTERM, the service spends at most:

1. `graceful_shutdown_seconds` on requests still running (uvicorn's timeout_graceful_shutdown,
   api/server.py, cancels them after that), then the lifespan's shutdown runs (`drain`);
2. writing the prediction log's held rows, the champion's among them, before anything else;
3. `shadow_shutdown_seconds` scoring the challenger's backlog (the rest is counted as `shutdown`);
4. writing those challenger rows; steps 2 and 4 share `prediction_log_shutdown_seconds`.

`budget_seconds` is that sum; tests/infra/test_prediction_log.py checks that the preStop sleep
plus the budget fits the grace period the inference Deployment declares.
"""

from __future__ import annotations

import time

from api.prediction_log import PredictionLog
from api.settings import ApiSettings
from api.shadow import ShadowScorer


def budget_seconds(settings: ApiSettings) -> float:
    """The most the service spends between SIGTERM and its exit, with the log and a challenger on (see the module
    docstring)."""
    return (settings.graceful_shutdown_seconds + settings.prediction_log_shutdown_seconds
            + settings.shadow_shutdown_seconds)


def drain(predictions: PredictionLog, shadow: ShadowScorer | None, settings: ApiSettings) -> None:
    """Write the log's rows, then give the challenger its deadline, then write its rows (steps 2-4 above)."""
    log_seconds = settings.prediction_log_shutdown_seconds
    if shadow is not None:
        started = time.monotonic()
        predictions.flush(log_seconds)
        log_seconds = max(0.0, log_seconds - (time.monotonic() - started))
        shadow.close(settings.shadow_shutdown_seconds)
    predictions.close(log_seconds)
