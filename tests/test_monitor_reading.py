"""`retail monitor` reads a week's predictions by listing that week's folders only, and leaves out what it cannot read.

On S3 (moto, every request recorded) the monitor lists the predictions zone's top level, the
service log's week folder and each batch run's week folder, never the zone's whole history, and
reads each file with two GETs (footer, columns), none to find its size. A file cut short or not
Parquet is left out of the week and named, with the reason, in the report; hidden files (a local
write's `.partial`) are not the week's; batch scoring's rows and the service's are read alike.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from urllib.parse import parse_qs

import numpy as np
import polars as pl
import pytest

from ml.labels import week_lines
from ml.lake import SILVER_LINES, Lake
from ml.monitor import NAMED_UNREADABLE, measure_week, read_predictions
from ml.prediction_log import BATCH, CHAMPION, SERVICE, prediction_rows
from ml.schema import BASKET_KEY, LABEL
from ml.settings import GateSettings, MonitorSettings
from tests.infra.test_batch_scoring_contract import recording_s3_server

WEEK = 200620
CLASSES = ["LA", "MM", "UM"]
BUCKET = "monitor-reading-lake"  # unique among the tests' moto servers, which share their state


def rows(keys: list[str], source, week: int = WEEK) -> pl.DataFrame:
    identity = {"model_version": "1", "model_family": "decision_tree", "bundle_sha256": "0" * 64}
    return prediction_rows(keys, [week] * len(keys), np.tile([1.0, 0.0, 0.0], (len(keys), 1)), CLASSES, identity,
                           source, CHAMPION, dt.datetime(2006, 5, 1, tzinfo=dt.UTC))


def history(lake: Lake) -> None:
    """The week's files (two service files, two runs) among other weeks' files and a run without the week."""
    for week in (WEEK - 2, WEEK - 1, WEEK, WEEK + 1):
        for part in range(2):
            lake.write_parquet(rows([f"s{week}-{part}"], SERVICE, week), "predictions", "service", f"week={week}",
                               f"part-{part}.parquet")
    for run in ("run-a", "run-b"):
        lake.write_parquet(rows([f"{run}-1"], BATCH), "predictions", run, "baskets", f"week={WEEK}",
                           "part-0000.parquet")
    lake.write_parquet(rows(["c-1"], BATCH, WEEK - 1), "predictions", "run-c", "baskets", f"week={WEEK - 1}",
                       "part-0000.parquet")


@pytest.fixture(scope="module")
def s3():
    import boto3

    with recording_s3_server() as recording:
        boto3.client("s3").create_bucket(Bucket=BUCKET,
                                         CreateBucketConfiguration={"LocationConstraint": "ap-southeast-1"})
        yield recording


def test_on_s3_it_lists_only_the_weeks_folders_and_reads_each_file_with_two_requests(s3):
    lake = Lake(f"s3://{BUCKET}/lake")
    history(lake)
    s3.requests.clear()
    predictions = read_predictions(lake, WEEK)
    assert sorted(predictions.rows[BASKET_KEY]) == ["run-a-1", "run-b-1", f"s{WEEK}-0", f"s{WEEK}-1"]
    assert predictions.sources == ("run-a", "run-b", "service") and predictions.files == 4
    listed = sorted(parse_qs(query)["prefix"][0] for method, path, query, _ in s3.requests if path == f"/{BUCKET}")
    assert listed == ["lake/predictions/", *(f"lake/predictions/{run}/baskets/week={WEEK}/"
                                             for run in ("run-a", "run-b", "run-c")),
                      f"lake/predictions/service/week={WEEK}/"]
    reads = Counter(path for method, path, _, _ in s3.requests if path != f"/{BUCKET}")
    assert {method for method, path, _, _ in s3.requests if path != f"/{BUCKET}"} == {"GET"}  # no HEAD for a size
    assert len(reads) == 4 and set(reads.values()) == {2}


def test_a_file_s3_refuses_stops_the_run_instead_of_being_left_out(s3):
    """S3's error is not the file's: the run fails (exit 1, which the CronJob retries) rather than write the week's
    report without the file, which no later run would judge again."""
    lake = Lake(f"s3://{BUCKET}/refused")
    history(lake)
    s3.refused.add(f"/{BUCKET}/refused/predictions/run-a/baskets/week={WEEK}/part-0000.parquet")
    try:
        with pytest.raises(OSError, match="AWS Error ACCESS_DENIED"):
            read_predictions(lake, WEEK)
    finally:
        s3.refused.clear()
    assert sorted(read_predictions(lake, WEEK).rows[BASKET_KEY]) == ["run-a-1", "run-b-1", f"s{WEEK}-0", f"s{WEEK}-1"]


def test_a_file_that_cannot_be_read_is_left_out_and_named_with_the_reason(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    history(lake)
    week = tmp_path / "lake" / "predictions" / "service" / f"week={WEEK}"
    (week / "part-cut.parquet").write_bytes(b"PAR1 and then the writer died")
    (week / "part-empty.parquet").write_bytes(b"")
    (week / ".part-9.parquet.partial").write_bytes(b"PAR1")  # a write still under way: not the week's
    predictions = read_predictions(lake, WEEK)
    assert sorted(predictions.rows[BASKET_KEY]) == ["run-a-1", "run-b-1", f"s{WEEK}-0", f"s{WEEK}-1"]
    assert predictions.files == 4
    assert sorted(path.rsplit("/", 1)[1] for path in predictions.unreadable) == ["part-cut.parquet",
                                                                               "part-empty.parquet"]
    assert all("Parquet" in reason or "size" in reason for reason in predictions.unreadable.values())
    silver = pl.DataFrame({BASKET_KEY: ["run-a-1"], "SHOP_WEEK": [WEEK], LABEL: ["LA"]})
    lake.write_parquet(silver, "silver", "20240101T000000Z-aaaa", SILVER_LINES)
    report = measure_week(WEEK, predictions, week_lines(lake, WEEK), lambda version: None, GateSettings(),
                          MonitorSettings())
    assert report.unreadable_files == predictions.unreadable
    named = [n for n in report.notices if n.startswith("prediction file ")]
    assert len(named) == 2 and all("left out, unreadable: " in n for n in named)


def test_past_a_few_unreadable_files_the_report_counts_the_rest(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    history(lake)
    week = tmp_path / "lake" / "predictions" / "service" / f"week={WEEK}"
    for index in range(NAMED_UNREADABLE + 3):
        (week / f"part-bad-{index:02d}.parquet").write_bytes(b"not parquet")
    predictions = read_predictions(lake, WEEK)
    assert len(predictions.unreadable) == NAMED_UNREADABLE + 3 and predictions.rows.height == 4
    silver = pl.DataFrame({BASKET_KEY: ["run-a-1"], "SHOP_WEEK": [WEEK], LABEL: ["LA"]})
    lake.write_parquet(silver, "silver", "20240101T000000Z-aaaa", SILVER_LINES)
    report = measure_week(WEEK, predictions, week_lines(lake, WEEK), lambda version: None, GateSettings(),
                          MonitorSettings())
    assert sum(n.startswith("prediction file ") for n in report.notices) == NAMED_UNREADABLE
    assert "3 more unreadable prediction files left out" in report.notices[NAMED_UNREADABLE]
