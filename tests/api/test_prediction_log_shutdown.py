"""The service's shutdown keeps to its budget: the champion's rows are written first, the challenger gets a deadline.

After SIGTERM uvicorn cancels requests still running after RETAIL_GRACEFUL_SHUTDOWN_SECONDS; the
lifespan then writes the prediction log's rows before the challenger scores its backlog, which
stops at RETAIL_SHADOW_SHUTDOWN_SECONDS (what still waits is counted as `shutdown`); a log whose
writes hang lets the process stop after RETAIL_PREDICTION_LOG_SHUTDOWN_SECONDS. (That the sum
fits the pod's grace period is tests/infra/test_prediction_log.py's.)
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
from prometheus_client import REGISTRY

import api.server
from api.prediction_log import LoggedBaskets, PredictionLog, ServiceLogFiles
from api.shadow import ShadowScorer
from api.shutdown import drain
from ml.compiled import BasketColumns
from ml.prediction_log import CHAMPION
from ml.schema import BASKET_KEY
from tests.api.conftest import api_settings, wait_until

SCORING_SECONDS = 0.4


def counted(outcome: str) -> float:
    return REGISTRY.get_sample_value("retail_shadow_baskets_total", {"outcome": outcome}) or 0.0


def one_line() -> BasketColumns:
    return BasketColumns(header={}, lines={}, offsets=[0, 1])


def slow_challenger(model):
    """The champion's model as a challenger whose every scoring call takes SCORING_SECONDS."""
    def score_columns(columns):
        time.sleep(SCORING_SECONDS)
        return None, np.full((columns.baskets, len(model.bundle.classes)), 1 / len(model.bundle.classes))

    bundle = SimpleNamespace(classes=model.bundle.classes, score_columns=score_columns)
    slow = SimpleNamespace(version="9", family=model.family, sha256=model.sha256, bundle=bundle)
    return SimpleNamespace(current=slow)


def test_the_champions_rows_are_written_before_the_challengers_backlog_which_stops_at_its_deadline(client, tmp_path):
    model = client.app.state.store.current
    settings = api_settings(prediction_log_enabled=True, shadow_shutdown_seconds=1.0)
    predictions = PredictionLog(ServiceLogFiles(str(tmp_path)), 1000, 3600, 1000)
    shadow = ShadowScorer(slow_challenger(model), predictions, interval=3600, max_lines=1000, max_batch_baskets=1)
    written_before_the_shadow = []
    close = shadow.close
    shadow.close = lambda seconds: written_before_the_shadow.extend(written(tmp_path)) or close(seconds)
    predictions.start()
    shadow.start()
    before = {outcome: counted(outcome) for outcome in ("scored", "shutdown")}
    for key in range(6):
        predictions.record(CHAMPION, model, LoggedBaskets([f"b{key}"], [200601]), np.full((1, 3), 1 / 3))
        shadow.submit(LoggedBaskets([f"b{key}"], [200601]), one_line())
    started = time.monotonic()
    drain(predictions, shadow, settings)
    assert time.monotonic() - started < 1.0 + 1.0  # the shadow's deadline, then the last write
    assert written_before_the_shadow == [f"b{key}" for key in range(6)]
    # calls of SCORING_SECONDS start until the deadline (1 s): at most three; the one running then ends after it
    wait_until(lambda: sum(counted(o) - before[o] for o in before) == 6, timeout=5)
    scored, stopped = (counted(outcome) - before[outcome] for outcome in ("scored", "shutdown"))
    assert 1 <= scored <= 3 and stopped >= 3
    challenger = pl.read_parquet(tmp_path / "**" / "*.parquet", hive_partitioning=False).filter(
        pl.col("role") == "challenger")
    assert 1 <= challenger.height <= scored  # scored before the last write, written by it


def written(root) -> list[str]:
    files = sorted(root.glob("week=*/*.parquet"))
    return sorted(pl.read_parquet(files)[BASKET_KEY].to_list()) if files else []


class HangingFiles(ServiceLogFiles):
    """A lake that does not answer."""

    def write(self, week: int, rows: pl.DataFrame) -> str:
        time.sleep(5)
        raise OSError("timed out")


def test_a_log_whose_writes_hang_lets_the_service_stop_after_its_allowance(client, tmp_path, caplog):
    predictions = PredictionLog(HangingFiles(str(tmp_path)), 1000, 3600, 1000)
    predictions.start()
    predictions.record(CHAMPION, client.app.state.store.current, LoggedBaskets(["b"], [200601]), np.full((1, 3), 0.3))
    started = time.monotonic()
    drain(predictions, None, api_settings(prediction_log_enabled=True, prediction_log_shutdown_seconds=0.5))
    assert time.monotonic() - started < 2
    assert "prediction log not written at shutdown in time" in caplog.text


def test_uvicorn_cancels_the_requests_still_running_after_the_graceful_shutdown_setting(monkeypatch):
    given = {}
    monkeypatch.setattr(api.server.uvicorn, "run", lambda *args, **options: given.update(options))
    monkeypatch.setenv("RETAIL_GRACEFUL_SHUTDOWN_SECONDS", "7")
    api.server.run("127.0.0.1", 0)
    assert given["timeout_graceful_shutdown"] == 7


@pytest.mark.parametrize("name", ["graceful_shutdown_seconds", "prediction_log_shutdown_seconds"])
def test_a_shutdown_allowance_must_be_positive(name):
    with pytest.raises(ValueError, match=name):
        api_settings(**{name: 0})
