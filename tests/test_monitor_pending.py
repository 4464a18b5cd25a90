"""`retail monitor --week pending`: the weeks taken from the data, as the weekly CronJob asks, not from the clock.

On tests/test_monitor.py's hand-built lake (predictions for three weeks, labels for the first two): a run judges
each week with predictions, labels and no report, oldest first, at most RETAIL_MONITOR_PENDING_WEEKS, and
publishes one EMF line with the newest judged week's figures; a week whose labels land late is judged by the
first run after they land; a run with nothing new exits 0 and says so. The served bundle's version is recorded
in the report, with a notice when the week's champion was another version.
"""

from __future__ import annotations

import json

import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from cli.monitor import BundleFor, monitor, pending_weeks, run_monitor
from ml import metric_names as names
from ml.lake import SILVER_LINES, Lake
from ml.monitor import predicted_weeks
from ml.schema import BASKET_KEY, LABEL
from ml.settings import GateSettings, MonitorSettings, Settings

from .test_monitor import WEEK, filled

runner = CliRunner()


@pytest.fixture
def lake(tmp_path) -> Lake:
    return filled(Lake(str(tmp_path / "lake")))


@pytest.fixture
def command():
    app = typer.Typer()
    app.command()(monitor)
    return app


def invoke(command, lake: Lake, out, **env: str):
    environment = {"RETAIL_LAKE_ROOT": lake.root, "RETAIL_MONITOR_MIN_BASKETS": "1", "RETAIL_EMF_ENABLED": "true",
                   "RETAIL_ENVIRONMENT": "test", "COLUMNS": "200", **env}
    result = runner.invoke(command, ["--week", "pending", "--out", str(out), "--no-registry"], env=environment)
    lines = [json.loads(x) for x in result.stdout.splitlines() if x.startswith('{"_aws"')]
    return result, lines


def reported(out) -> list[int]:
    return sorted(int(p.name[5:]) for p in out.glob("week=*") if (p / "report.json").exists())


def test_the_predicted_weeks_are_the_week_folders_of_the_service_log_and_every_batch_run(lake):
    assert predicted_weeks(lake) == [WEEK - 1, WEEK, WEEK + 1]
    assert predicted_weeks(Lake(lake.root + "-none")) == []


def test_pending_judges_each_labelled_week_without_a_report_oldest_first_and_publishes_the_newest(
        lake, tmp_path, command):
    out = tmp_path / "r"
    result, [line] = invoke(command, lake, out)
    assert result.exit_code == 0, result.output
    assert reported(out) == [WEEK - 1, WEEK]  # WEEK + 1 has predictions but no labels yet
    assert f"week {WEEK + 1}: predictions but no labels in silver yet" in result.stderr
    newest = json.loads((out / f"week={WEEK}" / "report.json").read_text())["report"]
    assert newest["week"] == WEEK
    champion = max((m for m in newest["models"] if m["role"] == "champion"), key=lambda m: m["labelled"])
    assert line[names.MONITOR_RUN_FAILED] == 0 and line[names.MONITORED_BASKETS] == champion["labelled"] == 10
    earlier = json.loads((out / f"week={WEEK - 1}" / "report.json").read_text())["report"]
    assert earlier["models"][0]["labelled"] == 1  # not the figure published


def test_a_run_with_nothing_new_to_judge_exits_0_and_publishes_only_that_it_did_not_fail(lake, tmp_path, command):
    out = tmp_path / "r"
    invoke(command, lake, out)
    result, [line] = invoke(command, lake, out)
    assert result.exit_code == 0, result.output
    assert "nothing new to judge" in result.stderr
    assert set(line) - {"_aws", "Environment"} == {names.MONITOR_RUN_FAILED} and line[names.MONITOR_RUN_FAILED] == 0


def test_at_most_the_setting_s_weeks_a_run_the_rest_the_next(lake, tmp_path, command):
    out = tmp_path / "r"
    first, _ = invoke(command, lake, out, RETAIL_MONITOR_PENDING_WEEKS="1")
    assert first.exit_code == 0 and reported(out) == [WEEK - 1]
    second, _ = invoke(command, lake, out, RETAIL_MONITOR_PENDING_WEEKS="1")
    assert second.exit_code == 0 and reported(out) == [WEEK - 1, WEEK]


def test_a_week_whose_labels_land_late_is_judged_by_the_next_run(lake, tmp_path, command):
    out = tmp_path / "r"
    invoke(command, lake, out)
    late = pl.DataFrame({BASKET_KEY: ["b01"], "SHOP_WEEK": [WEEK + 1], LABEL: ["LA"]})
    lake.write_parquet(late, "silver", "20240201T000000Z-late", SILVER_LINES)
    result, [line] = invoke(command, lake, out)
    assert result.exit_code == 0, result.output
    assert reported(out) == [WEEK - 1, WEEK, WEEK + 1] and line[names.MONITORED_BASKETS] == 1


def test_pending_leaves_out_reported_weeks_and_counts_only_labelled_ones_against_the_cap(lake, tmp_path):
    settings = Settings(lake_root=lake.root)
    assert pending_weeks(settings, str(tmp_path / "r"), 5) == ([WEEK - 1, WEEK], [WEEK + 1])
    (tmp_path / "r" / f"week={WEEK - 1}").mkdir(parents=True)
    (tmp_path / "r" / f"week={WEEK - 1}" / "report.json").write_text("{}")
    assert pending_weeks(settings, str(tmp_path / "r"), 1) == ([WEEK], [])


def test_the_report_names_the_served_version_and_says_when_the_week_s_champion_was_another(lake, tmp_path):
    settings = Settings(lake_root=lake.root)
    served = BundleFor(settings, [], registry=False)
    served.located["sha256:0123456789ab"] = None  # type: ignore[assignment]  # what a --bundle location held
    run = run_monitor(WEEK, settings, GateSettings(), MonitorSettings(), str(tmp_path / "r"), served)
    report = run.outcome.report
    assert report.served_versions == ["sha256:0123456789ab"]
    assert any("the served model (sha256:0123456789ab) is not the week's champion 1" in n for n in report.notices)
    saved = json.loads((tmp_path / "r" / f"week={WEEK}" / "report.json").read_text())["report"]
    assert saved["served_versions"] == ["sha256:0123456789ab"]


def test_a_pending_week_whose_keys_do_not_join_is_reported_and_fails_the_run_as_a_data_fault(lake, tmp_path,
                                                                                           command):
    relabelled = pl.read_parquet(f"{lake.root}/silver/20240101T000000Z-aaaa/{SILVER_LINES}").with_columns(
        (pl.lit("other-") + pl.col(BASKET_KEY)).alias(BASKET_KEY))
    lake.write_parquet(relabelled, "silver", "20250101T000000Z-bbbb", SILVER_LINES)  # newer: read first
    out = tmp_path / "r"
    result, [line] = invoke(command, lake, out)
    assert result.exit_code == 3, result.output
    assert reported(out) == [WEEK - 1, WEEK]  # written, so the next run does not judge them again
    assert line[names.MONITOR_RUN_FAILED] == 1


def test_a_pending_week_with_only_unreadable_prediction_files_waits_rather_than_fails(lake, tmp_path, command):
    folder = tmp_path / "lake" / "predictions" / "run-3" / "baskets" / f"week={WEEK - 2}"
    folder.mkdir(parents=True)
    (folder / "part-0000.parquet").write_bytes(b"not parquet")
    late = pl.DataFrame({BASKET_KEY: ["b01"], "SHOP_WEEK": [WEEK - 2], LABEL: ["LA"]})
    lake.write_parquet(late, "silver", "20240201T000000Z-late", SILVER_LINES)
    result, [line] = invoke(command, lake, tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert f"week {WEEK - 2}: no prediction" in result.stderr and reported(tmp_path / "r") == [WEEK - 1, WEEK]
