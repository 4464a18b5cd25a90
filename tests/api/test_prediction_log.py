"""The prediction log and the shadow challenger: every scored basket's row in the shared schema, off the request path.

The service logs each answered basket (id, week, class, probabilities, model) as Parquet under
the lake's predictions zone, a folder per week, in the schema batch scoring writes
(`ml.prediction_log`); a challenger scores the same baskets in shadow and is logged beside the
champion; rows over a role's memory limit, failed writes, errors of the writer and requests the
challenger cannot take (bounded by lines) are counted, never waited for; readiness does not wait
for the challenger; a week of steady traffic is a file per flush; a file is written whole or not
at all (locally synced, then renamed; on S3 one PutObject, nothing when the write fails).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
from types import SimpleNamespace

import boto3
import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from pydantic import ValidationError

from api.app import create_app
from api.body import JSON_CONTENT_TYPE as JSON
from api.body import parse_batch, parse_single
from api.model_source import BundleLocationSource, RegistrySource
from api.prediction_log import STALE_PARTIAL_SECONDS, LoggedBaskets, PredictionLog, ServiceLogFiles
from api.settings import ApiSettings
from api.shadow import REQUEST_LINES, ShadowScorer
from infra.config import InferenceConfig
from ml.bundle import bundle_digest, load_bundle
from ml.calendar import week_code_of
from ml.prediction_log import CHALLENGER, CHAMPION, SCHEMA, prediction_rows
from ml.registry import Registry
from ml.schema import BASKET_KEY
from ml.score import ScoringModel, predictions_frame
from tests.api.conftest import AUTH, api_settings, basket, wait_until
from tests.infra.test_batch_scoring_contract import recording_s3_server

IDENTITY = {"model_version": "7", "model_family": "xgboost", "bundle_sha256": "a" * 64}
BUCKET = "prediction-log-lake"  # unique among the tests' moto servers, which share their state


@pytest.fixture(scope="module")
def champion_folder(small_run):
    return Registry(small_run.settings).download()


def logging_app(champion_folder, tmp_path, challenger=None, **settings):
    """The service on the champion bundle, logging to tmp_path/log (written at shutdown, or as the settings say)."""
    settings = {"prediction_log_enabled": True, "prediction_log_uri": str(tmp_path / "log"), **settings}
    return create_app(api_settings(**settings), source=BundleLocationSource(str(champion_folder), tmp_path / "cache"),
                      challenger=challenger)


def logged(tmp_path) -> pl.DataFrame:
    return pl.read_parquet(tmp_path / "log" / "**" / "*.parquet", hive_partitioning=False)


def counted(metric: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(f"{metric}_total", labels) or 0.0


def test_rows_follow_the_shared_schema_whatever_the_models_class_order():
    probabilities = np.array([[0.2, 0.8], [0.9, 0.1]])
    rows = prediction_rows(["b1", None], [200807, 200808], probabilities, ["MM", "LA"], IDENTITY, "service",
                           CHALLENGER, dt.datetime(2025, 1, 2, tzinfo=dt.UTC))
    assert dict(rows.schema) == SCHEMA
    assert rows["prediction"].to_list() == ["LA", "MM"]
    assert rows["probability_LA"].to_list() == [0.8, 0.1] and rows["probability_MM"].to_list() == [0.2, 0.9]
    assert rows["probability_UM"].to_list() == [None, None]  # a class the model does not predict
    assert rows[BASKET_KEY].to_list() == ["b1", None] and set(rows["role"]) == {"challenger"}
    with pytest.raises(ValueError, match=r"\['XX'\] have no probability column"):
        prediction_rows(["b"], [1], np.array([[1.0]]), ["XX"], IDENTITY, "batch", CHAMPION, dt.datetime.now(dt.UTC))


def test_batch_scoring_rows_are_in_the_same_schema(small_run, champion_folder):
    lines = pl.read_parquet(small_run.settings.work_dir / small_run.result.run_id / "train" / "holdout_lines.parquet")
    model = ScoringModel(load_bundle(champion_folder), "1", bundle_digest(champion_folder), "test")
    rows = predictions_frame(model, lines.head(500))
    assert dict(rows.schema) == SCHEMA
    assert set(rows["source"]) == {"batch"} and set(rows["role"]) == {"champion"}
    assert set(rows["SHOP_WEEK"]) <= set(lines["SHOP_WEEK"])


def test_a_baskets_week_is_the_shop_week_sent_else_that_of_its_date():
    dated, weekly = basket(SHOP_DATE="20080412"), basket(SHOP_WEEK=200601)
    assert parse_single(json.dumps(dated).encode(), JSON).weeks == [week_code_of(dt.date(2008, 4, 12))]
    batch = {"baskets": [dated, weekly, basket(SHOP_DATE="2008-04-20"), basket(SHOP_WEEK=200602)]}
    assert parse_batch(json.dumps(batch).encode(), JSON).weeks == [200807, 200601, 200808, 200602]
    # the models' path (here for UTF-16 JSON, which msgspec does not read and the service does) agrees
    assert parse_batch(json.dumps(batch).encode("utf-16"), JSON).weeks == [200807, 200601, 200808, 200602]


def test_every_answered_basket_is_logged_with_its_id_week_class_probabilities_and_model(champion_folder, tmp_path):
    single, batch = basket(BASKET_ID="one", SHOP_WEEK=200601), [basket(BASKET_ID=f"b{i}") for i in range(3)]
    batch.append(basket(BASKET_ID=None, SHOP_DATE="20080101"))
    cpu = counted("retail_background_cpu_seconds", thread="prediction_log")
    with TestClient(logging_app(champion_folder, tmp_path)) as client:
        answers = [client.post("/v1/predict", json=single, headers=AUTH).json()]
        answered = client.post("/v1/predict/batch", json={"baskets": batch}, headers=AUTH).json()
        answers += answered["predictions"]
        assert client.get("/health/ready").status_code == 200
    rows = logged(tmp_path)
    assert dict(rows.schema) == SCHEMA
    # Keyed by basket, not sorted by scored_at: the two requests may be logged in the same millisecond.
    by_basket = {row[BASKET_KEY]: row for row in rows.iter_rows(named=True)}
    ids = ["one", "b0", "b1", "b2", None]
    assert len(rows) == len(by_basket) == len(ids) and set(by_basket) == set(ids)
    assert [by_basket[i]["SHOP_WEEK"] for i in ids] == [200601, 200807, 200807, 200807,
                                                         week_code_of(dt.date(2008, 1, 1))]
    for row, answer in zip((by_basket[i] for i in ids), answers, strict=True):
        assert row["prediction"] == answer["prediction"]
        assert {c: row[f"probability_{c}"] for c in answer["probabilities"]} == answer["probabilities"]
    assert set(rows["model_version"]) == {answered["model_version"]}
    assert set(rows["bundle_sha256"]) == {bundle_digest(champion_folder)}
    assert set(rows["source"]) == {"service"} and set(rows["role"]) == {"champion"}
    folders = {p.relative_to(tmp_path / "log").parent.as_posix() for p in (tmp_path / "log").rglob("*.parquet")}
    assert folders == {f"week={week}" for week in (200601, 200807, 200745)}  # 2008-01-01: fiscal 2007
    assert counted("retail_background_cpu_seconds", thread="prediction_log") > cpu  # its cost is on /metrics


def test_rows_are_written_once_enough_wait_without_waiting_for_shutdown(champion_folder, tmp_path):
    with TestClient(logging_app(champion_folder, tmp_path, prediction_log_flush_rows=3)) as client:
        client.post("/v1/predict/batch", json={"baskets": [basket()] * 3}, headers=AUTH)
        wait_until(lambda: list((tmp_path / "log").rglob("*.parquet")), timeout=10)
        assert logged(tmp_path).height == 3


def test_the_log_is_off_unless_enabled(champion_folder, tmp_path):
    app = create_app(api_settings(), source=BundleLocationSource(str(champion_folder), tmp_path / "cache"))
    with TestClient(app) as client:
        assert client.post("/v1/predict", json=basket(), headers=AUTH).status_code == 200
        assert app.state.prediction_log is None and app.state.shadow is None


def test_rows_over_the_memory_limit_are_counted_and_dropped_at_once(client, tmp_path):
    model = client.app.state.store.current
    predictions = PredictionLog(ServiceLogFiles(str(tmp_path)), flush_rows=10, flush_seconds=60,
                                max_rows=3)  # not started: nothing is ever written
    before = counted("retail_prediction_log_rows", role="champion", outcome="over_limit")
    two = LoggedBaskets(["a", "b"], [200601, 200601])
    predictions.record(CHAMPION, model, two, np.full((2, 3), 1 / 3))
    predictions.record(CHAMPION, model, two, np.full((2, 3), 1 / 3))  # 4 rows > 3
    predictions.record(CHAMPION, model, LoggedBaskets(["c"], [200601]), np.full((1, 3), 1 / 3))  # 3 held: fits
    assert counted("retail_prediction_log_rows", role="champion", outcome="over_limit") - before == 2


class FailingFirst(ServiceLogFiles):
    """The lake refuses the first write (a full disk, S3 unreachable), then takes writes again."""

    def __init__(self, root: str):
        super().__init__(root)
        self.failed = threading.Event()

    def write(self, week: int, rows: pl.DataFrame) -> str:
        if not self.failed.is_set():
            self.failed.set()
            raise OSError("no space left on device")
        return super().write(week, rows)


def test_a_failed_write_is_counted_and_the_next_rows_are_written(client, tmp_path):
    model = client.app.state.store.current
    files = FailingFirst(str(tmp_path / "log"))
    predictions = PredictionLog(files, flush_rows=1, flush_seconds=60, max_rows=100)
    before = counted("retail_prediction_log_rows", role="champion", outcome="failed")
    predictions.start()
    predictions.record(CHAMPION, model, LoggedBaskets(["lost"], [200601]), np.full((1, 3), 1 / 3))
    assert files.failed.wait(10)
    predictions.record(CHAMPION, model, LoggedBaskets(["kept"], [200601]), np.full((1, 3), 1 / 3))
    predictions.close()
    assert counted("retail_prediction_log_rows", role="champion", outcome="failed") - before == 1
    assert logged(tmp_path)[BASKET_KEY].to_list() == ["kept"]


def test_the_challenger_scores_the_same_baskets_in_shadow_and_is_logged_as_challenger(small_run, tmp_path):
    registry = Registry(small_run.settings)
    version = registry.champion_version()
    registry.client.set_registered_model_alias(registry.name, "challenger", version)
    cpu = counted("retail_background_cpu_seconds", thread="shadow")
    try:
        app = create_app(api_settings(prediction_log_enabled=True, prediction_log_uri=str(tmp_path / "log")),
                         source=RegistrySource(small_run.settings),
                         challenger=RegistrySource(small_run.settings, "challenger"))
        with TestClient(app) as client:
            wait_until(lambda: app.state.challengers.current, timeout=30)
            baskets = [basket(BASKET_ID=f"s{i}", SHOP_HOUR=i) for i in range(5)]
            client.post("/v1/predict/batch", json={"baskets": baskets[:3]}, headers=AUTH)
            for one in baskets[3:]:
                client.post("/v1/predict", json=one, headers=AUTH)
    finally:
        registry.client.delete_registered_model_alias(registry.name, "challenger")
    rows = logged(tmp_path).sort(BASKET_KEY)
    champion, challenger = rows.filter(pl.col("role") == "champion"), rows.filter(pl.col("role") == "challenger")
    assert challenger[BASKET_KEY].to_list() == champion[BASKET_KEY].to_list() == [f"s{i}" for i in range(5)]
    assert challenger["SHOP_WEEK"].to_list() == champion["SHOP_WEEK"].to_list()
    # the same registered version in both roles: the same probabilities, scored once by each
    probabilities = [f"probability_{c}" for c in ("LA", "MM", "UM")]
    np.testing.assert_allclose(challenger.select(probabilities).to_numpy(), champion.select(probabilities).to_numpy())
    assert set(challenger["model_version"]) == {version}
    assert counted("retail_background_cpu_seconds", thread="shadow") > cpu


def test_readiness_and_the_champions_log_do_not_wait_for_a_challenger_that_cannot_load(champion_folder, tmp_path):
    missing = BundleLocationSource(str(tmp_path / "no-bundle"), tmp_path / "cache")
    before = counted("retail_shadow_baskets", outcome="not_loaded")
    with TestClient(logging_app(champion_folder, tmp_path, challenger=missing)) as client:
        assert client.get("/health/ready").status_code == 200
        assert client.post("/v1/predict", json=basket(BASKET_ID="c1"), headers=AUTH).status_code == 200
    rows = logged(tmp_path)
    assert rows[BASKET_KEY].to_list() == ["c1"] and rows["role"].to_list() == ["champion"]
    assert counted("retail_shadow_baskets", outcome="not_loaded") - before == 1


def test_requests_the_challenger_cannot_take_are_counted_and_dropped_at_once_by_their_lines(client, tmp_path):
    predictions = PredictionLog(ServiceLogFiles(str(tmp_path)), 10, 60, 100)
    small = parse_single(json.dumps(basket()).encode(), JSON).columns
    big = parse_single(json.dumps(basket(lines=basket()["lines"] * 40)).encode(), JSON).columns
    room = 2 * (small.offsets[-1] + REQUEST_LINES)  # two small requests fit, a forty times longer one does not
    shadow = ShadowScorer(client.app.state.store, predictions, interval=60, max_lines=room, max_batch_baskets=10)
    before = counted("retail_shadow_baskets", outcome="over_limit")
    shadow.submit(LoggedBaskets(["big"], [200601]), big)  # never scored: not started
    shadow.submit(LoggedBaskets(["a"], [200601]), small)
    shadow.submit(LoggedBaskets(["b"], [200601]), small)
    assert counted("retail_shadow_baskets", outcome="over_limit") - before == 1
    shadow.submit(LoggedBaskets(["c"], [200601]), small)
    assert counted("retail_shadow_baskets", outcome="over_limit") - before == 2


def test_a_challenger_needs_the_log_and_one_source(champion_folder, tmp_path):
    with pytest.raises(ValidationError, match="RETAIL_PREDICTION_LOG_ENABLED=true"):
        ApiSettings(challenger="challenger")
    with pytest.raises(ValueError, match="RETAIL_PREDICTION_LOG_ENABLED=true"):
        create_app(api_settings(), challenger=BundleLocationSource(str(champion_folder), tmp_path))
    with pytest.raises(ValidationError, match="not both"):
        ApiSettings(prediction_log_enabled=True, challenger="challenger", challenger_uri="s3://bucket/bundle/")


@pytest.fixture(scope="module")
def recording_s3():
    """A moto server that records each request, with its credentials and endpoint in the environment."""
    with recording_s3_server() as recording:
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "ap-southeast-1"})
        yield recording, s3


def test_on_s3_each_file_is_one_put_object_under_its_week(recording_s3, client):
    recording, s3 = recording_s3
    model = client.app.state.store.current
    predictions = PredictionLog(ServiceLogFiles(f"s3://{BUCKET}/lake/predictions/service"), 100, 60, 100)
    predictions.start()
    weeks = parse_batch(json.dumps({"baskets": [basket(), basket(SHOP_WEEK=200601)]}).encode(), JSON).weeks
    recording.requests.clear()
    predictions.record(CHAMPION, model, LoggedBaskets(["x", "y"], weeks), np.full((2, 3), 1 / 3))
    predictions.close()
    made = sorted(recording.requests)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="lake/predictions/service/")["Contents"]]
    assert sorted(k.rsplit("/", 1)[0] for k in keys) == ["lake/predictions/service/week=200601",
                                                         "lake/predictions/service/week=200807"]
    # one PutObject a file: no multipart upload, no directory marker, no listing (the pods' role may only put)
    assert made == sorted(("PUT", f"/{BUCKET}/{key}", "", 200) for key in keys)


def test_on_s3_a_write_that_fails_midway_publishes_nothing(recording_s3, client, monkeypatch):
    recording, s3 = recording_s3

    def cut_short(table, sink, **options):  # serialising fails after some bytes (a bug, memory running out)
        sink.write(b"PAR1 and then nothing")
        raise OSError("serialisation failed midway")

    monkeypatch.setattr("ml.prediction_log.pq.write_table", cut_short)
    predictions = PredictionLog(ServiceLogFiles(f"s3://{BUCKET}/lake/failing/service"), 100, 60, 100)
    before = counted("retail_prediction_log_rows", role="champion", outcome="failed")
    predictions.start()
    recording.requests.clear()
    predictions.record(CHAMPION, client.app.state.store.current, LoggedBaskets(["x"], [200601]), np.full((1, 3), 0.3))
    predictions.close()
    made = list(recording.requests)
    assert counted("retail_prediction_log_rows", role="champion", outcome="failed") - before == 1
    assert made == [] and "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="lake/failing/")


def test_locally_a_file_is_synced_under_a_hidden_name_before_it_takes_its_own(client, tmp_path, monkeypatch):
    calls = []
    fsync, replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append("fsync") or fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: calls.append(("replace", a, b)) or replace(a, b))
    path = ServiceLogFiles(str(tmp_path)).write(200601, pl.DataFrame({"role": ["champion"]}))
    assert calls == ["fsync", ("replace", f"{tmp_path}/.partial/.{path.rsplit('/', 1)[1]}.partial", path), "fsync"]
    assert path.startswith(f"{tmp_path}/week=200601/part-") and os.path.isfile(path)


def test_partial_files_a_killed_process_left_are_removed_at_start(tmp_path):
    (tmp_path / ".partial").mkdir()
    stale, writing = tmp_path / ".partial" / ".stale.partial", tmp_path / ".partial" / ".writing.partial"
    stale.write_bytes(b"PAR1"), writing.write_bytes(b"PAR1")
    old = time.time() - STALE_PARTIAL_SECONDS - 60
    os.utime(stale, (old, old))
    predictions = PredictionLog(ServiceLogFiles(str(tmp_path)), 10, 60, 100)
    predictions.start()
    predictions.close()
    assert not stale.exists() and writing.exists()  # another process may be writing the recent one


def test_challenger_rows_never_take_the_champions_room(client, tmp_path):
    model = client.app.state.store.current
    predictions = PredictionLog(ServiceLogFiles(str(tmp_path)), flush_rows=2, flush_seconds=60, max_rows=2)
    over = {role: counted("retail_prediction_log_rows", role=role, outcome="over_limit") for role in ("champion",
                                                                                                      "challenger")}
    two = LoggedBaskets(["a", "b"], [200601, 200601])
    predictions.record(CHALLENGER, model, two, np.full((2, 3), 1 / 3))  # the challenger's room is full
    predictions.record(CHAMPION, model, two, np.full((2, 3), 1 / 3))  # the champion's is not
    predictions.record(CHALLENGER, model, two, np.full((2, 3), 1 / 3))
    assert counted("retail_prediction_log_rows", role="champion", outcome="over_limit") == over["champion"]
    assert counted("retail_prediction_log_rows", role="challenger", outcome="over_limit") - over["challenger"] == 2


def test_an_error_of_the_writer_is_logged_and_counted_and_the_writer_goes_on(client, tmp_path, caplog):
    model = client.app.state.store.current
    predictions = PredictionLog(ServiceLogFiles(str(tmp_path / "log")), flush_rows=1, flush_seconds=60, max_rows=10)
    write, failed = predictions._write, threading.Event()

    def fails_once():
        if not failed.is_set():
            failed.set()
            raise RuntimeError("a bug in the writer")
        write()

    predictions._write = fails_once
    before = counted("retail_prediction_log_rows", role="champion", outcome="failed")
    predictions.start()
    predictions.record(CHAMPION, model, LoggedBaskets(["lost"], [200601]), np.full((1, 3), 1 / 3))
    assert failed.wait(10)
    predictions.record(CHAMPION, model, LoggedBaskets(["kept"], [200601]), np.full((1, 3), 1 / 3))
    assert predictions.flush(10)
    assert logged(tmp_path)[BASKET_KEY].to_list() == ["kept"]
    assert counted("retail_prediction_log_rows", role="champion", outcome="failed") - before == 1
    assert REGISTRY.get_sample_value("retail_prediction_log_held_rows", {"role": "champion"}) == 0
    assert "prediction log writer failed" in caplog.text
    predictions.close()


class TimedFiles(ServiceLogFiles):
    """Notes when the log would write a file (on the clock `now`), writing none."""

    def __init__(self, now: list[float]) -> None:
        super().__init__("unused")
        self.now, self.times = now, list[float]()

    def write(self, week: int, rows: pl.DataFrame) -> str:
        self.times.append(self.now[0])
        return "unused"


def test_at_steady_traffic_a_replica_writes_a_file_per_flush_2016_a_week_at_the_default_settings(client, monkeypatch):
    """A request a second for half an hour on a clock the test moves, a writer turn after each: a file every
    flush_seconds (and the second until the next row); so at most a week / flush_seconds files a week per replica,
    the number ml/monitor.py and infra/prediction_log.py give, for the inference service's most replicas too."""
    import api.prediction_log

    now = [1_200_000_000.0]
    monkeypatch.setattr(api.prediction_log, "time", SimpleNamespace(time=lambda: now[0], monotonic=lambda: now[0]))
    settings, files = ApiSettings(), TimedFiles(now)
    predictions = PredictionLog(files, settings.prediction_log_flush_rows, settings.prediction_log_flush_seconds,
                                settings.prediction_log_max_rows)
    model = client.app.state.store.current
    for _ in range(30 * 60):
        predictions.record(CHAMPION, model, LoggedBaskets(["a"], [200601]), np.full((1, 3), 1 / 3))
        predictions._turn(stopping=False)
        now[0] += 1
    assert set(np.diff(files.times)) == {settings.prediction_log_flush_seconds + 1} and len(files.times) == 5
    per_week = 7 * 24 * 3600 // settings.prediction_log_flush_seconds
    assert per_week == 2016 and per_week * InferenceConfig().max_replicas == 12_096


def test_flushing_on_more_rows_than_are_held_is_refused():
    with pytest.raises(ValidationError, match=r"RETAIL_PREDICTION_LOG_FLUSH_ROWS \(300\) exceeds"):
        ApiSettings(prediction_log_flush_rows=300, prediction_log_max_rows=200)
