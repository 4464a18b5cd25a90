"""The prediction log and the shadow challenger: every scored basket's row in the shared schema, off the request path.

The service logs each answered basket (id, week, class, probabilities, model) as Parquet under
the lake's predictions zone, in the schema batch scoring writes (`ml.prediction_log`); a challenger
scores the same baskets in shadow and is logged beside the champion; rows over the memory limits,
failed writes and baskets the challenger cannot take are counted, never waited for; readiness does
not wait for the challenger; on S3 each file is one object under the log's prefix.
"""

from __future__ import annotations

import datetime as dt
import json
import threading

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
from api.prediction_log import LoggedBaskets, PredictionLog, ServiceLogFiles
from api.settings import ApiSettings
from api.shadow import ShadowScorer
from ml.bundle import bundle_digest, load_bundle
from ml.calendar import week_code_of
from ml.prediction_log import CHALLENGER, CHAMPION, SCHEMA, prediction_rows
from ml.registry import Registry
from ml.schema import BASKET_KEY
from ml.score import ScoringModel, predictions_frame
from tests.api.conftest import AUTH, api_settings, basket, wait_until

IDENTITY = {"model_version": "7", "model_family": "xgboost", "bundle_sha256": "a" * 64}


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
    rows = logged(tmp_path).sort("scored_at", BASKET_KEY, nulls_last=True)
    assert dict(rows.schema) == SCHEMA
    assert rows[BASKET_KEY].to_list() == ["one", "b0", "b1", "b2", None]
    assert rows["SHOP_WEEK"].to_list() == [200601, 200807, 200807, 200807, week_code_of(dt.date(2008, 1, 1))]
    for row, answer in zip(rows.iter_rows(named=True), answers, strict=True):
        assert row["prediction"] == answer["prediction"]
        assert {c: row[f"probability_{c}"] for c in answer["probabilities"]} == answer["probabilities"]
    assert set(rows["model_version"]) == {answered["model_version"]}
    assert set(rows["bundle_sha256"]) == {bundle_digest(champion_folder)}
    assert set(rows["source"]) == {"service"} and set(rows["role"]) == {"champion"}
    today = dt.datetime.now(dt.UTC).date()
    folders = {p.relative_to(tmp_path / "log").parent.as_posix() for p in (tmp_path / "log").rglob("*.parquet")}
    assert folders == {f"date={today}/week={week}" for week in (200601, 200807, 200745)}  # 2008-01-01: fiscal 2007
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


def test_rows_over_the_memory_limits_are_counted_and_dropped_at_once(client, tmp_path):
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

    def write(self, rows: pl.DataFrame) -> list[str]:
        if not self.failed.is_set():
            self.failed.set()
            raise OSError("no space left on device")
        return super().write(rows)


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


def test_baskets_the_challenger_cannot_take_are_counted_and_dropped_at_once(client, tmp_path):
    predictions = PredictionLog(ServiceLogFiles(str(tmp_path)), 10, 60, 100)
    shadow = ShadowScorer(client.app.state.store, predictions, interval=60, max_baskets=2, max_batch_baskets=10)
    columns = parse_single(json.dumps(basket()).encode(), "application/json").columns  # never scored: not started
    before = counted("retail_shadow_baskets", outcome="over_limit")
    shadow.submit(LoggedBaskets(["a", "b"], [200601, 200601]), columns)
    shadow.submit(LoggedBaskets(["c"], [200601]), columns)
    assert counted("retail_shadow_baskets", outcome="over_limit") - before == 1


def test_a_challenger_needs_the_log_and_one_source(champion_folder, tmp_path):
    with pytest.raises(ValidationError, match="RETAIL_PREDICTION_LOG_ENABLED=true"):
        ApiSettings(challenger="challenger")
    with pytest.raises(ValueError, match="RETAIL_PREDICTION_LOG_ENABLED=true"):
        create_app(api_settings(), challenger=BundleLocationSource(str(champion_folder), tmp_path))
    with pytest.raises(ValidationError, match="not both"):
        ApiSettings(prediction_log_enabled=True, challenger="challenger", challenger_uri="s3://bucket/bundle/")


def test_on_s3_each_file_is_one_object_under_the_log_prefix(moto_endpoint, client):
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    s3.create_bucket(Bucket="lake", CreateBucketConfiguration={"LocationConstraint": "ap-southeast-1"})
    model = client.app.state.store.current
    predictions = PredictionLog(ServiceLogFiles("s3://lake/lake/predictions/service"), 100, 60, 100)
    predictions.start()
    weeks = parse_batch(json.dumps({"baskets": [basket(), basket(SHOP_WEEK=200601)]}).encode(), JSON).weeks
    predictions.record(CHAMPION, model, LoggedBaskets(["x", "y"], weeks), np.full((2, 3), 1 / 3))
    predictions.close()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="lake")["Contents"]]
    today = dt.datetime.now(dt.UTC).date()
    assert sorted(k.rsplit("/", 1)[0] for k in keys) == [f"lake/predictions/service/date={today}/week=200601",
                                                         f"lake/predictions/service/date={today}/week=200807"]
    assert all(k.endswith(".parquet") for k in keys)  # no directory markers
