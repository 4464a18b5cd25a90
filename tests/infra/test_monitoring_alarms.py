"""The monitoring alarms and dashboard row: the monitored week's figures alarmed at the thresholds `retail monitor`
judges them by (ml/settings.py, not restated), a failed or missing monitoring run, all notifying the alert topic.

The figure alarms are judged only on a week with the monitor's minimum of labelled baskets, and keep their state
through the days (and the weeks not judged) without a figure; the missed-run alarm is the scoring one's wall clock
week, on the stacks where missing data breaches.
"""

import json

import pytest

from infra.mocks import ACCOUNT_ID
from infra.observability import Observability, ObservabilityArgs
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
                    scoring_time_zone="Asia/Singapore")
    return build(lambda: Observability("obs", ObservabilityArgs(**(settings | args))))


@pytest.fixture(scope="module")
def run():
    return observability()


def alarm(run, suffix):
    return run.named(f"obs-{suffix}").inputs


def queries(alarm_inputs) -> dict:
    return {q["id"]: q for q in alarm_inputs["metricQueries"]}


def test_the_thresholds_are_the_gates_and_the_monitors():
    gate, settings = GateSettings(), MonitorSettings()
    run = observability()
    assert alarm(run, "monitored-macro-f1")["threshold"] == gate.min_macro_f1
    assert alarm(run, "monitored-accuracy")["threshold"] == gate.min_accuracy
    assert alarm(run, "monitored-class-precision")["threshold"] == gate.min_class_precision
    assert alarm(run, "monitored-drift")["threshold"] == settings.drift_psi


def test_a_threshold_changed_in_the_settings_changes_the_alarm(monkeypatch):
    monkeypatch.setenv("RETAIL_GATE_MIN_MACRO_F1", "0.62")
    monkeypatch.setenv("RETAIL_MONITOR_DRIFT_PSI", "0.4")
    run = observability()
    assert alarm(run, "monitored-macro-f1")["threshold"] == 0.62
    assert alarm(run, "monitored-drift")["threshold"] == 0.4


@pytest.mark.parametrize("suffix", sorted(FIGURES))
def test_a_figure_alarm_reads_the_weeks_figure_in_the_environment_and_breaches_past_its_threshold(run, suffix):
    name, statistic, comparison = FIGURES[suffix]
    settings = alarm(run, suffix)
    figure = queries(settings)["figure"]
    assert figure["metric"] == {"namespace": m.NAMESPACE, "metricName": name, "stat": statistic, "period": 86_400,
                                "dimensions": {m.DIMENSION_ENVIRONMENT: "test"}}
    assert settings["comparisonOperator"] == comparison and settings["evaluationPeriods"] == 1


@pytest.mark.parametrize("suffix", sorted(FIGURES))
def test_a_figure_counts_only_for_a_week_the_monitor_judges(run, suffix):
    """IF without a false value drops the figure of a week with fewer labelled baskets than the monitor judges."""
    settings = alarm(run, suffix)
    by_id = queries(settings)
    assert by_id["baskets"]["metric"]["metricName"] == m.MONITORED_BASKETS
    assert by_id["judged"] == {"id": "judged", "expression": f"IF(baskets >= {MonitorSettings().min_baskets}, figure)",
                               "label": f"{FIGURES[suffix][0]} of a judged week", "returnData": True}
    assert [q["id"] for q in settings["metricQueries"] if q["returnData"]] == ["judged"]


def test_the_minimum_of_judged_baskets_is_the_monitors(monkeypatch):
    monkeypatch.setenv("RETAIL_MONITOR_MIN_BASKETS", "250")
    expression = queries(alarm(observability(), "monitored-accuracy"))["judged"]["expression"]
    assert expression == "IF(baskets >= 250, figure)"


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


def test_the_dashboard_shows_the_monitored_week_against_the_gate_and_the_drift_threshold(run):
    (dashboard,) = run.of_type("aws:cloudwatch/dashboard:Dashboard")
    widgets = {w["properties"]["title"]: w for w in json.loads(dashboard.inputs["dashboardBody"])["widgets"]}
    performance = widgets["Monitored week: champion vs the gate"]
    drift = widgets["Monitored week: drift, retraining, runs"]
    assert performance["y"] == drift["y"] == 18 and (performance["x"], drift["x"]) == (0, 12)
    assert {line[1] for line in performance["properties"]["metrics"]} == {
        m.MONITORED_ACCURACY, m.MONITORED_MACRO_F1, m.MONITORED_MIN_CLASS_PRECISION, m.CHALLENGER_MARGIN}
    gate = GateSettings()
    assert {a["value"] for a in performance["properties"]["annotations"]["horizontal"]} == {
        gate.min_accuracy, gate.min_macro_f1, gate.min_class_precision}
    assert {line[1] for line in drift["properties"]["metrics"]} == {
        m.MONITORED_DRIFT_PSI, m.RETRAIN_NEEDED, m.MONITOR_RUN_FAILED}
    assert [a["value"] for a in drift["properties"]["annotations"]["horizontal"]] == [MonitorSettings().drift_psi]
