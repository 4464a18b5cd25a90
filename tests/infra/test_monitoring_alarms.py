"""The monitoring alarms and dashboard row: the monitored week's figures alarmed at the thresholds `retail monitor`
judges them by (`retail:thresholds`, defaulting to ml/settings.py's, never the deployer's environment), a failed or
missing monitoring run, all notifying the alert topic.

The figure alarms read the figure as the monitor sends it (only for a week with its minimum of labelled baskets: the
minimum is applied there, once) and keep their state through the days without a figure; the missed-run alarm is the
scoring one's wall clock week, on the stacks where missing data breaches; the weekly widgets open on twelve weeks.
"""

import json

import pytest

from infra.config import ThresholdsConfig, parse_section
from infra.mocks import ACCOUNT_ID
from infra.observability import WEEKLY_RANGE, Observability, ObservabilityArgs
from ml import metric_names as m
from ml.settings import GateSettings, MonitorSettings

from .helpers import build

LOGS_KEY = "arn:aws:kms:ap-southeast-1:123456789012:key/logs"
FIGURES = {
    "monitored-macro-f1": (m.MONITORED_MACRO_F1, "Minimum", "LessThanThreshold"),
    "monitored-accuracy": (m.MONITORED_ACCURACY, "Minimum", "LessThanThreshold"),
    "monitored-class-precision": (m.MONITORED_MIN_CLASS_PRECISION, "Minimum", "LessThanThreshold"),
    "monitored-drift": (m.MONITORED_DRIFT_PSI, "Maximum", "GreaterThanThreshold"),
}


def observability(**args):
    settings = dict(environment="test", region="ap-southeast-1", account_id=ACCOUNT_ID, logs_kms_key_arn=LOGS_KEY,
                    batch_time_zone="Asia/Singapore")
    return build(lambda: Observability("obs", ObservabilityArgs(**(settings | args))))


@pytest.fixture(scope="module")
def run():
    return observability()


def alarm(run, suffix):
    return run.named(f"obs-{suffix}").inputs


def test_the_thresholds_are_the_gates_and_the_monitors():
    gate, settings = GateSettings(), MonitorSettings()
    run = observability()
    assert alarm(run, "monitored-macro-f1")["threshold"] == gate.min_macro_f1
    assert alarm(run, "monitored-accuracy")["threshold"] == gate.min_accuracy
    assert alarm(run, "monitored-class-precision")["threshold"] == gate.min_class_precision
    assert alarm(run, "monitored-drift")["threshold"] == settings.drift_psi


def test_a_threshold_changed_in_the_stack_config_changes_the_alarm():
    thresholds = parse_section(ThresholdsConfig, {"gate": {"minMacroF1": 0.62}, "monitor": {"driftPsi": 0.4}}, "t")
    run = observability(thresholds=thresholds)
    assert alarm(run, "monitored-macro-f1")["threshold"] == 0.62
    assert alarm(run, "monitored-drift")["threshold"] == 0.4
    assert alarm(run, "monitored-accuracy")["threshold"] == GateSettings().min_accuracy


def test_the_deploying_environment_does_not_change_the_alarms(monkeypatch):
    monkeypatch.setenv("RETAIL_GATE_MIN_MACRO_F1", "0.1")
    monkeypatch.setenv("RETAIL_MONITOR_DRIFT_PSI", "9")
    run = observability()
    assert alarm(run, "monitored-macro-f1")["threshold"] == 0.70
    assert alarm(run, "monitored-drift")["threshold"] == 0.25


@pytest.mark.parametrize("suffix", sorted(FIGURES))
def test_a_figure_alarm_reads_the_weeks_figure_in_the_environment_and_breaches_past_its_threshold(run, suffix):
    name, statistic, comparison = FIGURES[suffix]
    settings = alarm(run, suffix)
    assert (settings["namespace"], settings["metricName"], settings["statistic"], settings["period"]) == (
        m.NAMESPACE, name, statistic, 86_400)
    assert settings["dimensions"] == {m.DIMENSION_ENVIRONMENT: "test"}
    assert settings["comparisonOperator"] == comparison and settings["evaluationPeriods"] == 1


@pytest.mark.parametrize("suffix", sorted(FIGURES))
def test_the_minimum_of_judged_baskets_is_applied_once_by_the_monitor_not_again_by_the_alarm(run, suffix):
    """`retail monitor` sends no figure for a week with fewer labelled baskets (cli/monitor.py `figures`, with the
    CronJob's RETAIL_MONITOR_MIN_BASKETS): the alarm takes the figure as sent, and names the minimum."""
    settings = alarm(run, suffix)
    assert "metricQueries" not in settings
    assert f"at least {MonitorSettings().min_baskets} labelled baskets" in settings["alarmDescription"]


@pytest.mark.parametrize("suffix", sorted(FIGURES))
def test_a_figure_alarm_keeps_its_state_until_the_next_judged_week(run, suffix):
    assert alarm(run, suffix)["treatMissingData"] == "ignore"


def test_a_failed_monitoring_run_raises_an_alarm_for_a_day(run):
    failed = alarm(run, "monitor-failed")
    assert (failed["metricName"], failed["statistic"], failed["period"]) == (m.MONITOR_RUN_FAILED, "Maximum", 86_400)
    assert (failed["comparisonOperator"], failed["threshold"]) == ("GreaterThanOrEqualToThreshold", 1)
    assert failed["treatMissingData"] == "notBreaching" and failed["dimensions"] == {m.DIMENSION_ENVIRONMENT: "test"}


def test_a_calendar_week_without_a_monitoring_run_raises_an_alarm_in_the_batch_time_zone(run):
    missed = alarm(run, "monitor-missed")
    assert (missed["metricName"], missed["statistic"]) == (m.MONITOR_RUN_FAILED, "SampleCount")
    assert (missed["comparisonOperator"], missed["threshold"], missed["treatMissingData"]) == (
        "LessThanThreshold", 1, "breaching",
    )  # fmt: skip
    assert (missed["period"], missed["evaluationPeriods"]) == (604_800, 1)
    assert missed["evaluationWindow"] == {"wallClockWindow": {"timezone": "Asia/Singapore"}}


def test_where_silence_is_expected_there_is_no_missed_monitoring_week_alarm():
    names = {a.name for a in observability(heartbeat_missing_breaches=False).of_type(
        "aws:cloudwatch/metricAlarm:MetricAlarm")}
    assert "obs-monitor-failed" in names and "obs-monitored-drift" in names
    assert "obs-monitor-missed" not in names


def test_every_monitoring_alarm_notifies_the_alert_topic_when_it_fires_and_clears(run):
    (topic,) = run.of_type("aws:sns/topic:Topic")
    for suffix in [*FIGURES, "monitor-failed", "monitor-missed"]:
        settings = alarm(run, suffix)
        assert settings["alarmActions"] == settings["okActions"] == [topic.id], suffix


def dashboard_body(run) -> dict:
    (dashboard,) = run.of_type("aws:cloudwatch/dashboard:Dashboard")
    return json.loads(dashboard.inputs["dashboardBody"])


def test_the_dashboard_shows_the_monitored_week_against_the_gate_and_the_drift_threshold(run):
    widgets = {w["properties"]["title"]: w for w in dashboard_body(run)["widgets"]}
    performance = widgets["Monitored week: champion vs the gate"]
    drift = widgets["Monitored week: drift, retraining, runs"]
    assert performance["y"] == drift["y"] == 18 and (performance["x"], drift["x"]) == (0, 12)
    assert {line[1] for line in performance["properties"]["metrics"]} == {
        m.MONITORED_ACCURACY, m.MONITORED_MACRO_F1, m.MONITORED_MIN_CLASS_PRECISION, m.CHALLENGER_MARGIN,
        m.MONITORED_BASKETS}
    gate = GateSettings()
    assert {a["value"] for a in performance["properties"]["annotations"]["horizontal"]} == {
        gate.min_accuracy, gate.min_macro_f1, gate.min_class_precision}
    assert {line[1] for line in drift["properties"]["metrics"]} == {
        m.MONITORED_DRIFT_PSI, m.RETRAIN_NEEDED, m.MONITOR_RUN_FAILED}
    assert [line[-1]["stat"] for line in drift["properties"]["metrics"] if line[1] == m.MONITOR_RUN_FAILED] == [
        "SampleCount", "Sum"]  # finished runs beside failed ones: no run is not a failed run
    assert [a["value"] for a in drift["properties"]["annotations"]["horizontal"]] == [MonitorSettings().drift_psi]


def test_the_weekly_widgets_open_on_twelve_weeks_with_their_daily_period(run):
    """A dashboard without `start` opens on a few hours, and the default periodOverride (auto) refits each period."""
    body = dashboard_body(run)
    weekly = {w["properties"]["title"]: w["properties"] for w in body["widgets"] if w["y"] >= 12}
    assert len(weekly) == 4
    assert all(p["start"] == WEEKLY_RANGE == "-P12W" and p["period"] == 86_400 for p in weekly.values()), weekly
    assert body["periodOverride"] == "inherit"
    assert all("start" not in w["properties"] for w in body["widgets"] if w["y"] < 12)  # the API's: the default
