"""`retail monitor`: a week's logged predictions joined with its labels, measured by model version and role.

A hand-built week (12 baskets, two prediction runs and a service log, a champion and a challenger) has known
answers: accuracy, macro-F1, per-class precision and recall, the champion/challenger comparison, the breaches of
the gate's thresholds, repeated and keyless rows. The PSI is the one definition the API uses (ml/reference.py):
checked by hand on a two-bin reference and against the API's DriftMonitor on a real bundle's baskets. The command
writes the report (JSON, HTML, PNG), reads earlier weeks back and publishes one EMF line.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math

import numpy as np
import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from api.drift import DriftMonitor
from cli.monitor import monitor
from ml import metric_names as names
from ml.labels import NoLabels, week_lines
from ml.lake import SILVER_LINES, SILVER_LINES_FOLDER, Lake
from ml.monitor import ModelWeek, measure_week, read_predictions, week_index
from ml.prediction_log import BATCH, CHALLENGER, CHAMPION, SERVICE, prediction_rows
from ml.reference import feature_psi, flat_features, missing_values, population_stability_index
from ml.schema import BASKET_KEY, LABEL
from ml.settings import GateSettings, MonitorSettings

WEEK = 200620
CLASSES = ["LA", "MM", "UM"]
LABELS = {"b01": "LA", "b02": "LA", "b03": "LA", "b04": "LA", "b05": "MM", "b06": "MM", "b07": "MM", "b08": "MM",
          "b09": "UM", "b10": "UM", "b11": "XX"}  # b12 is predicted but not in silver
CHAMPION_SAYS = {"b01": "LA", "b02": "LA", "b03": "MM", "b04": "LA", "b05": "MM", "b06": "MM", "b07": "LA",
                 "b08": "MM", "b09": "UM", "b10": "MM", "b11": "MM", "b12": "LA"}
CHALLENGER_SAYS = {**{k: v for k, v in LABELS.items() if v != "XX"}, "b10": "MM", "b11": "MM"}
runner = CliRunner()


def rows(says: dict[str, str | None], version: str, source, role) -> pl.DataFrame:
    keys = list(says)
    probabilities = np.array([[1.0 if c == says[k] else 0.0 for c in CLASSES] for k in keys]).reshape(-1, 3)
    identity = {"model_version": version, "model_family": "decision_tree", "bundle_sha256": "0" * 64}
    return prediction_rows(keys, [WEEK] * len(keys), probabilities, CLASSES, identity, source, role,
                           dt.datetime(2006, 5, 1, tzinfo=dt.UTC))


@pytest.fixture
def lake(tmp_path) -> Lake:
    return filled(Lake(str(tmp_path / "lake")))


def filled(lake: Lake) -> Lake:
    """Silver lines of the week (and of the week before), a batch run, a legacy run without role, a service log."""
    lines = pl.DataFrame({BASKET_KEY: [*LABELS, "b01"], "SHOP_WEEK": [WEEK] * len(LABELS) + [WEEK - 1],
                          LABEL: [*LABELS.values(), "UM"]})
    lake.write_parquet(pl.concat([lines, lines.head(3)]), "silver", "20240101T000000Z-aaaa", SILVER_LINES)
    batch = rows(CHAMPION_SAYS, "1", BATCH, CHAMPION)
    lake.write_parquet(batch, "predictions", "run-1", "baskets", f"week={WEEK}", "part-0000.parquet")
    legacy = batch.filter(pl.col(BASKET_KEY) == "b03").drop("role", "source")  # written before roles existed
    lake.write_parquet(legacy, "predictions", "old-run", "baskets", f"week={WEEK}", "part-0000.parquet")
    service = pl.concat([rows({"b01": "LA", "b02": "LA"}, "1", SERVICE, CHAMPION),
                         rows(CHALLENGER_SAYS, "2", SERVICE, CHALLENGER)])
    service = pl.concat([service, service.head(1).with_columns(pl.lit(None, pl.String).alias(BASKET_KEY))])
    lake.write_parquet(service, "predictions", "service", f"week={WEEK}", "part-x.parquet")
    for week in (WEEK - 1, WEEK + 1):  # the week before (labelled: b01 only), a week after (not in silver)
        lake.write_parquet(batch.head(1).with_columns(pl.lit(week).alias("SHOP_WEEK")), "predictions", "run-2",
                           "baskets", f"week={week}", "part-0000.parquet")
    return lake


@pytest.fixture
def report(lake):
    return measure_week(WEEK, read_predictions(lake, WEEK), week_lines(lake, WEEK), lambda version: None,
                        GateSettings(), MonitorSettings(min_baskets=5))


def model(report, role):
    return next(m for m in report.models if m.role == role)


def test_it_reads_every_source_of_the_week_once_per_basket_version_and_role(lake):
    predictions = read_predictions(lake, WEEK)
    assert predictions.sources == ("old-run", "run-1", "service")
    assert predictions.files == 3
    assert predictions.duplicates == 3  # b03 in two runs, b01 and b02 in a run and the service log
    assert predictions.unkeyed == 1
    assert predictions.rows.group_by("role", "model_version").len().sort("role").rows() == [
        (CHALLENGER, "2", 11), (CHAMPION, "1", 12)]


def test_of_a_basket_s_repeats_the_batch_run_s_row_is_kept_before_the_service_s(lake):
    said_by_service = rows({"b01": "UM"}, "1", SERVICE, CHAMPION)  # in a folder read before run-1/'s
    lake.write_parquet(said_by_service, "predictions", "aaa-copied", "baskets", f"week={WEEK}", "part-0.parquet")
    kept = read_predictions(lake, WEEK).rows.filter((pl.col(BASKET_KEY) == "b01") & (pl.col("role") == CHAMPION))
    assert kept["prediction"].to_list() == [CHAMPION_SAYS["b01"]]  # the batch run's, not the service's UM


def test_the_week_s_labels_come_from_the_silver_run_holding_most_of_its_baskets(lake):
    part = week_lines(lake, WEEK).lines.head(4)
    lake.write_parquet(part, "silver", "20250101T000000Z-part", SILVER_LINES)  # newer, part of the week
    lines = week_lines(lake, WEEK)
    assert lines.source.endswith(f"20240101T000000Z-aaaa/{SILVER_LINES_FOLDER}") and lines.labelled_baskets == 10
    assert lines.notices == (f"week {WEEK}: silver run 20250101T000000Z-part is newer but holds 4 of its baskets, "
                             "fewer than the 11 of 20240101T000000Z-aaaa, which was read",)


def test_labels_are_the_week_s_lines_in_silver(lake):
    lines = week_lines(lake, WEEK)
    assert lines.labelled_baskets == 10
    assert dict(lines.labels().iter_rows()) == LABELS
    with pytest.raises(NoLabels, match="200630"):
        week_lines(lake, 200630)


def test_the_champion_s_metrics_are_the_hand_counted_ones(report):
    champion = model(report, CHAMPION)
    assert (champion.version, champion.predicted, champion.labelled) == ("1", 12, 10)
    assert champion.accuracy == pytest.approx(0.7)
    per_class = champion.metrics["per_class"]
    assert [per_class[c]["precision"] for c in CLASSES] == pytest.approx([0.75, 0.6, 1.0])
    assert [per_class[c]["recall"] for c in CLASSES] == pytest.approx([0.75, 0.75, 0.5])
    assert champion.macro_f1 == pytest.approx((0.75 + 2 / 3 + 2 / 3) / 3)
    assert report.champion is champion


def test_the_challenger_is_compared_with_the_champion_on_the_same_labelled_baskets(report):
    assert model(report, CHALLENGER).accuracy == pytest.approx(0.9)
    [comparison] = report.comparisons
    assert (comparison.week, comparison.challenger, comparison.champions, comparison.baskets) == (WEEK, "2", ["1"], 10)
    assert comparison.champion_macro_f1 == pytest.approx((0.75 + 2 / 3 + 2 / 3) / 3)
    assert comparison.challenger_macro_f1 == pytest.approx((1 + 8 / 9 + 2 / 3) / 3)
    assert comparison.margin > 0.15


def test_the_champion_s_figures_below_the_gate_are_breaches(report):
    assert report.breaches == [
        "week 200620: champion version 1 accuracy 0.7000 < 0.75 (gate)",
        "week 200620: champion version 1 macro-F1 0.6944 < 0.7 (gate)",
        "week 200620: champion version 1 precision MM 0.6000 < 0.65 (gate)",
    ]
    assert [n for n in report.notices if "drift was not measured" in n] == [
        "version 1: no bundle available, so its input drift was not measured",
        "version 2: no bundle available, so its input drift was not measured"]


def test_the_share_of_predicted_baskets_found_in_silver_is_reported_and_a_low_one_is_a_notice(lake):
    predictions, lines = read_predictions(lake, WEEK), week_lines(lake, WEEK)
    report = measure_week(WEEK, predictions, lines, lambda version: None, GateSettings(), MonitorSettings())
    assert (report.predicted_baskets, report.joined_baskets) == (12, 11)
    assert report.join_coverage == pytest.approx(11 / 12)
    assert not [n for n in report.notices if "predicted baskets" in n]
    strict = measure_week(WEEK, predictions, lines, lambda version: None, GateSettings(),
                          MonitorSettings(min_join_coverage=0.95))
    assert [n for n in strict.notices if "only 11 of 12 predicted baskets (91.7%)" in n]


def test_a_week_whose_prediction_keys_match_no_label_fails_after_writing_the_report(lake, tmp_path, command):
    relabelled = week_lines(lake, WEEK).lines.with_columns((pl.lit("other-") + pl.col(BASKET_KEY)).alias(BASKET_KEY))
    lake.write_parquet(relabelled, "silver", "20250101T000000Z-bbbb", SILVER_LINES)  # newer: read first
    env = {"RETAIL_LAKE_ROOT": lake.root, "RETAIL_EMF_ENABLED": "true", "RETAIL_ENVIRONMENT": "test"}
    result = runner.invoke(command, ["--week", str(WEEK), "--out", str(tmp_path / "r"), "--no-registry"], env=env)
    assert result.exit_code == 3  # a data fault: the CronJob fails at once rather than retry
    assert "none of the 12 predicted baskets is in the week's silver lines" in result.stderr
    [line] = [json.loads(x) for x in result.stdout.splitlines() if x.startswith('{"_aws"')]
    assert line[names.MONITOR_RUN_FAILED] == 1 and line[names.MONITORED_JOIN_COVERAGE] == 0
    saved = json.loads((tmp_path / "r" / f"week={WEEK}" / "report.json").read_text())
    assert saved["report"]["joined_baskets"] == 0 and "only 0 of 12" in saved["report"]["notices"][0]


def test_a_class_absent_from_the_week_neither_lowers_macro_f1_nor_breaches_precision(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    labels = {f"b{i:02d}": ("LA", "MM")[i % 2] for i in range(20)}  # no UM basket this week
    lake.write_parquet(pl.DataFrame({BASKET_KEY: list(labels), "SHOP_WEEK": [WEEK] * 20, LABEL: list(labels.values())}),
                       "silver", "run", SILVER_LINES)
    lake.write_parquet(rows(labels, "1", BATCH, CHAMPION), "predictions", "run", "baskets", f"week={WEEK}",
                       "part-0000.parquet")  # every basket right
    report = measure_week(WEEK, read_predictions(lake, WEEK), week_lines(lake, WEEK), lambda version: None,
                          GateSettings(), MonitorSettings(min_baskets=5))
    champion = report.champion
    assert (champion.macro_f1, champion.min_class_precision) == (1.0, 1.0)
    assert champion.metrics["per_class"]["UM"]["precision"] is None  # never predicted: not applicable
    assert report.breaches == []


def test_a_week_with_too_few_labelled_baskets_is_not_judged(lake):
    report = measure_week(WEEK, read_predictions(lake, WEEK), week_lines(lake, WEEK), lambda version: None,
                          GateSettings(), MonitorSettings(min_baskets=11))
    assert report.breaches == []


def test_the_largest_psi_leaves_out_the_share_of_unseen_products_which_rises_with_the_model_s_age():
    week = ModelWeek(CHAMPION, "1", "decision_tree", 10, 10, None,
                     {"share_unseen_products": 0.9, "n_lines": 0.1, "mean_p_LA": 0.3}, 5)
    assert week.max_psi == ("mean_p_LA", 0.3)
    assert dataclasses.replace(week, psi={"share_unseen_products": 0.9}).max_psi is None


def test_psi_is_the_population_stability_index_over_the_reference_s_bins():
    reference = {"n_lines": {"edges": [2.0], "shares": [0.5, 0.5]}}
    matrix = np.array([[1.0, 9.0], [1.5, 9.0], [2.0, 9.0], [0.5, 9.0]])  # 3 below the edge, 1 on it (bin 2)
    expected = (0.75 - 0.5) * math.log(0.75 / 0.5) + (0.25 - 0.5) * math.log(0.25 / 0.5)
    assert feature_psi(reference, ["n_lines", "other"], matrix) == {"n_lines": pytest.approx(expected)}
    assert population_stability_index(np.array([0.5, 0.5]), np.array([0.75, 0.25])) == pytest.approx(expected)
    assert feature_psi(reference, ["n_lines"], np.zeros((0, 1))) == {}


def test_missing_values_are_left_out_of_the_psi_and_counted_rather_than_binned_at_the_top():
    reference = {"n_lines": {"edges": [2.0], "shares": [0.5, 0.5]}}
    with_gaps = np.array([[1.0], [np.nan], [3.0], [np.nan]])
    assert feature_psi(reference, ["n_lines"], with_gaps) == {"n_lines": pytest.approx(0.0)}  # one a side
    assert missing_values(["n_lines"], with_gaps) == {"n_lines": 2}
    assert feature_psi(reference, ["n_lines"], np.full((3, 1), np.nan)) == {}


def test_a_reference_feature_with_fewer_than_two_populated_bins_is_named():
    reference = {"n_lines": {"edges": [2.0], "shares": [0.0, 1.0]}, "mean_p_LA": {"edges": [], "shares": [1.0]},
                 "mean_p_UM": {"edges": [0.5], "shares": [0.4, 0.6]}}
    assert sorted(flat_features(reference)) == ["mean_p_LA", "n_lines"]


@pytest.fixture(scope="module")
def real_week(small_run, tmp_path_factory):
    """The small run's busiest week in a fresh lake: its silver lines, and the champion's predictions of them."""
    from ml.bundle import bundle_digest, load_bundle
    from ml.registry import Registry
    from ml.score import ScoringModel, predictions_frame

    folder = Registry(small_run.settings).download()
    bundle = load_bundle(folder)
    silver = pl.read_parquet(small_run.result.training["lineage"]["silver_lines"])
    week = silver.group_by("SHOP_WEEK").agg(pl.col(BASKET_KEY).n_unique()).sort(BASKET_KEY)["SHOP_WEEK"][-1]
    lake = Lake(str(tmp_path_factory.mktemp("real-week") / "lake"))
    lines = silver.filter(pl.col("SHOP_WEEK") == week)
    lake.write_parquet(lines, "silver", "run", SILVER_LINES)
    scoring = ScoringModel(bundle, "1", bundle_digest(folder), "test")
    lake.write_parquet(predictions_frame(scoring, lines), "predictions", "run", "baskets", f"week={week}",
                       "part-0000.parquet")
    return lake, int(week), bundle, lines


def test_the_monitor_s_psi_is_the_api_s_over_the_same_baskets(real_week):
    lake, week, bundle, lines = real_week
    report = measure_week(week, read_predictions(lake, week), week_lines(lake, week), lambda version: bundle,
                          GateSettings(), MonitorSettings(min_baskets=1))
    [champion] = report.models
    batch, keys = bundle.compiled.encode_frame(lines)
    matrix = bundle.compiled.transform(batch)
    api = DriftMonitor(bundle.meta["drift_reference"], bundle.featurizer.feature_names_, window=len(matrix),
                       min_baskets=1).observe(matrix)
    assert champion.psi and champion.psi == pytest.approx(api)
    assert champion.predicted == keys.height
    assert champion.weeks_after_data == week_index(week) - week_index(bundle.meta["data"]["holdout_weeks"][1])


@pytest.fixture
def command():
    app = typer.Typer()
    app.command()(monitor)
    return app


def test_the_command_writes_the_report_and_publishes_one_emf_line(lake, tmp_path, command):
    env = {"RETAIL_LAKE_ROOT": lake.root, "RETAIL_MONITOR_MIN_BASKETS": "5", "RETAIL_EMF_ENABLED": "true",
           "RETAIL_ENVIRONMENT": "test", "COLUMNS": "200"}
    out = tmp_path / "reports"
    first = runner.invoke(command, ["--week", str(WEEK - 1), "--out", str(out), "--no-registry"], env=env)
    result = runner.invoke(command, ["--week", str(WEEK), "--out", str(out), "--no-registry"], env=env)
    assert (first.exit_code, result.exit_code) == (0, 0), result.output
    folder = out / f"week={WEEK}"
    assert sorted(p.name for p in folder.iterdir()) == ["report.html", "report.json", "trends.png", "week.png"]
    assert all((folder / n).read_bytes().startswith(b"\x89PNG") for n in ("trends.png", "week.png"))
    saved = json.loads((folder / "report.json").read_text())
    assert saved["retraining"]["retrain"] is True
    assert [r["kind"] for r in saved["retraining"]["reasons"]] == ["performance"]
    assert saved["verdict"]["challenger"] == "2" and saved["verdict"]["promote"] is False
    page = (folder / "report.html").read_text()
    assert "Monitoring, week 200620" in page and "data:image/png;base64," in page
    [line] = [json.loads(x) for x in result.stdout.splitlines() if x.startswith('{"_aws"')]
    assert line["Environment"] == "test"
    assert line[names.MONITOR_RUN_FAILED] == 0 and line[names.RETRAIN_NEEDED] == 1
    assert line[names.MONITORED_MACRO_F1] == pytest.approx((0.75 + 2 / 3 + 2 / 3) / 3)
    assert line[names.MONITORED_BASKETS] == 10
    assert line[names.CHALLENGER_MARGIN] > 0.15
    assert names.MONITORED_DRIFT_PSI not in line  # not measured without the bundle: no datapoint rather than 0
    assert line[names.MONITORED_JOIN_COVERAGE] == pytest.approx(11 / 12)  # b12 is not in silver


def test_a_week_with_too_few_labelled_baskets_publishes_its_count_but_none_of_its_figures(lake, tmp_path, command):
    env = {"RETAIL_LAKE_ROOT": lake.root, "RETAIL_MONITOR_MIN_BASKETS": "11", "RETAIL_EMF_ENABLED": "true",
           "RETAIL_ENVIRONMENT": "test"}
    result = runner.invoke(command, ["--week", str(WEEK), "--out", str(tmp_path / "r"), "--no-registry"], env=env)
    assert result.exit_code == 0, result.output
    [line] = [json.loads(x) for x in result.stdout.splitlines() if x.startswith('{"_aws"')]
    assert line[names.MONITORED_BASKETS] == 10  # the champion's labelled baskets: fewer than 11
    assert not {names.MONITORED_ACCURACY, names.MONITORED_MACRO_F1, names.MONITORED_MIN_CLASS_PRECISION,
                names.CHALLENGER_MARGIN} & set(line)


def test_a_week_without_predictions_or_labels_exits_2_and_publishes_a_failure(lake, tmp_path, command):
    env = {"RETAIL_LAKE_ROOT": lake.root, "RETAIL_EMF_ENABLED": "true", "RETAIL_ENVIRONMENT": "test"}
    for week in (WEEK + 2, WEEK + 1):  # no prediction; predictions but no silver lines
        result = runner.invoke(command, ["--week", str(week), "--out", str(tmp_path / "r"), "--no-registry"], env=env)
        assert result.exit_code == 2
        assert f"week {week}" in result.stderr
        [line] = [json.loads(x) for x in result.stdout.splitlines() if x.startswith('{"_aws"')]
        assert line[names.MONITOR_RUN_FAILED] == 1
    assert not (tmp_path / "r").exists()


def test_lake_and_report_may_be_on_s3(moto_endpoint, command):
    import boto3

    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(
        Bucket="monitored", CreateBucketConfiguration={"LocationConstraint": "ap-southeast-1"})
    lake = filled(Lake("s3://monitored/lake"))
    env = {"RETAIL_LAKE_ROOT": lake.root, "RETAIL_MONITOR_MIN_BASKETS": "5"}
    for week in (WEEK - 1, WEEK):
        result = runner.invoke(command, ["--week", str(week), "--no-registry"], env=env)
        assert result.exit_code == 0, result.output
    listed = boto3.client("s3", endpoint_url=moto_endpoint).list_objects_v2(Bucket="monitored",
                                                                             Prefix="lake/monitoring/")
    keys = sorted(o["Key"] for o in listed["Contents"])
    assert keys == [f"lake/monitoring/week={w}/{name}" for w in (WEEK - 1, WEEK)
                    for name in ("report.html", "report.json", "trends.png", "week.png")]
    saved = json.loads(boto3.client("s3", endpoint_url=moto_endpoint).get_object(
        Bucket="monitored", Key=f"lake/monitoring/week={WEEK}/report.json")["Body"].read())
    assert saved["report"]["label_source"] == f"s3://monitored/lake/silver/20240101T000000Z-aaaa/{SILVER_LINES_FOLDER}"
    assert "s3://monitored/lake/monitoring/week=200620/report.html" in result.stderr
