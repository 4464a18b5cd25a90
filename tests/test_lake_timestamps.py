"""Every timestamp column the Glue tables declare is stored in Parquet as TIMESTAMP(MILLIS, UTC) by every writer of
its table (`retail score`'s run output and the service's prediction log for predictions.scored_at), as Athena engine
v3 reads millisecond timestamps only; finer times are truncated to the millisecond; prediction files written before
in microseconds are still read by `retail monitor` and by the local predictions view.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from api.prediction_log import LoggedBaskets, PredictionLog, ServiceLogFiles
from infra.lake_tables import TABLES, glue_type
from ml.lake import Lake
from ml.lake_sql import connect
from ml.monitor import read_predictions
from ml.prediction_log import BATCH, BATCH_BASKETS, CHAMPION, SCHEMA, SERVICE_LOG, prediction_rows, week_folder
from ml.schema import BASKET_KEY
from ml.score import RunOutput

WEEK = 200745
IDENTITY = {"model_version": "7", "model_family": "xgboost", "bundle_sha256": "a" * 64}
SCORED_AT = dt.datetime(2026, 1, 2, 3, 4, 5, 678_901, tzinfo=dt.UTC)
"""A time with microseconds, which the files keep to the millisecond."""
DECLARED = {table.name: [c["name"] for c in table.columns() if c["type"] == "timestamp"] for table in TABLES}
"""Each Glue table's timestamp columns."""


def rows(keys: list[str], scored_at: dt.datetime = SCORED_AT) -> pl.DataFrame:
    return prediction_rows(keys, [WEEK] * len(keys), np.full((len(keys), 3), 1 / 3), ["LA", "MM", "UM"], IDENTITY,
                           BATCH, CHAMPION, scored_at)


def score_run_file(root: Path) -> Path:
    """A predictions file as `retail score` writes one (ml.score.RunOutput, the rows of ml.score.predictions_frame)."""
    uri = RunOutput(Lake(str(root)), "score-1").parquet(rows(["1", "2"]), BATCH_BASKETS, week_folder(WEEK),
                                                        "part-0000.parquet")
    return Path(uri)


def service_log_file(root: Path) -> Path:
    """A predictions file as the service's prediction log writes one (api.prediction_log, at shutdown)."""
    model = SimpleNamespace(version="7", family="xgboost", sha256="a" * 64,
                            bundle=SimpleNamespace(classes=["LA", "MM", "UM"]))
    log = PredictionLog(ServiceLogFiles(str(root.joinpath(*SERVICE_LOG))), 100, 60.0, 1_000)
    log.start()
    log.record(CHAMPION, model, LoggedBaskets(["9"], [WEEK]), np.array([[0.2, 0.5, 0.3]]))  # type: ignore[arg-type]
    assert log.close(timeout=10.0)
    (path,) = root.joinpath(*SERVICE_LOG, week_folder(WEEK)).glob("*.parquet")
    return path


WRITERS: dict[str, dict[str, Callable[[Path], Path]]] = {
    "predictions": {"retail score": score_run_file, "service log": service_log_file},
}
"""Each table with a timestamp column, and the project's writers of its files."""


def stored_as(path: Path, column: str) -> dict[str, object]:
    """How the file at `path` stores `column` (its name matched as Athena does, ignoring case): the physical type and
    the logical type's name, UTC adjustment and unit."""
    schema = pq.ParquetFile(path).schema
    (stored,) = [schema.column(i) for i in range(len(schema)) if schema.column(i).name.lower() == column]
    logical = json.loads(stored.logical_type.to_json())
    return {"physical": stored.physical_type,
            **{key: logical.get(key) for key in ("Type", "isAdjustedToUTC", "timeUnit")}}


def test_every_table_with_a_timestamp_column_has_its_writers_checked():
    assert {name for name, columns in DECLARED.items() if columns} == set(WRITERS)


@pytest.mark.parametrize(("table", "writer"), [(t, w) for t, writers in WRITERS.items() for w in writers])
def test_every_declared_timestamp_is_written_as_utc_milliseconds(tmp_path, table, writer):
    path = WRITERS[table][writer](tmp_path)
    for column in DECLARED[table]:
        assert stored_as(path, column) == {"physical": "INT64", "Type": "Timestamp", "isAdjustedToUTC": True,
                                           "timeUnit": "milliseconds"}


def test_a_time_finer_than_a_millisecond_is_kept_to_the_millisecond(tmp_path):
    scored = pl.read_parquet(score_run_file(tmp_path))["scored_at"]
    assert scored.dtype == SCHEMA["scored_at"] == pl.Datetime("ms", "UTC")
    assert scored.to_list() == [SCORED_AT.replace(microsecond=678_000)] * 2


def test_glue_refuses_a_timestamp_athena_would_not_read():
    assert glue_type(pa.timestamp("ms", "UTC")) == "timestamp"
    with pytest.raises(ValueError, match="milliseconds only"):
        glue_type(pa.timestamp("us", "UTC"))


def test_prediction_files_written_in_microseconds_before_are_still_read(tmp_path):
    score_run_file(tmp_path)
    older = rows(["3"]).with_columns(pl.col("scored_at").cast(pl.Datetime("us", "UTC")))
    folder = tmp_path / "predictions" / "score-0" / BATCH_BASKETS / week_folder(WEEK)
    folder.mkdir(parents=True)
    pq.write_table(older.to_arrow(), folder / "part-0000.parquet")
    assert pq.read_schema(folder / "part-0000.parquet").field("scored_at").type == pa.timestamp("us", "UTC")
    week = read_predictions(Lake(str(tmp_path)), WEEK)
    assert sorted(week.rows[BASKET_KEY].to_list()) == ["1", "2", "3"]
    assert not week.unreadable
    with connect(str(tmp_path)) as connection:
        relation = connection.sql("SELECT run, BASKET_KEY FROM predictions ORDER BY BASKET_KEY")
        assert relation is not None
        assert relation.fetchall() == [("score-1", "1"), ("score-1", "2"), ("score-0", "3")]
