"""Running the service under uvicorn, with the process settings serving needs.

Call this in a fresh interpreter (`python -m api`, which `retail serve` execs):
POLARS_MAX_THREADS must be set before Polars is first imported. One Polars thread
per worker process is the fastest setup for request-sized inputs; parallelism comes
from worker processes. With several workers, Prometheus values are shared through a
folder so that /metrics reports the whole server.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import uvicorn

from api.logs import logging_config
from api.settings import ApiSettings


def run(host: str, port: int, workers: int = 1, log_level: str = "INFO") -> None:
    os.environ.setdefault("POLARS_MAX_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    metrics_dir = None
    if workers > 1:
        metrics_dir = Path(tempfile.mkdtemp(prefix=f"retail-api-metrics-{port}-"))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    try:
        uvicorn.run(
            "api.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_config=logging_config(log_level),
            access_log=False,  # the service writes its own access log (api.middleware)
            server_header=False,
            # requests still running this long after SIGTERM are cancelled, so shutdown fits the pod's grace period
            timeout_graceful_shutdown=ApiSettings().graceful_shutdown_seconds,
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
