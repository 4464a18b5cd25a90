"""Observability: retained encrypted logs, alarms on the brief's KPIs, dashboard, budget."""

import json

import pytest

from infra.mocks import ACCOUNT_ID
from infra.observability import (
    MAX_EVALUATION_SECONDS,
    WALL_CLOCK_PERIODS,
    Observability,
    ObservabilityArgs,
    check_alarm_window,
)
from ml import metric_names as m

from .helpers import build, statements

LOGS_KEY = "arn:aws:kms:ap-southeast-1:123456789012:key/logs"


@pytest.fixture(scope="module")
def run():
    args = ObservabilityArgs(
        environment="test",
        region="ap-southeast-1",
        account_id=ACCOUNT_ID,
        logs_kms_key_arn=LOGS_KEY,
        log_retention_days=30,
        error_rate_threshold_percent=2,
        monthly_budget_usd=500,
        budget_alert_percents=(80, 100),
        alert_emails=("oncall@example.com",),
    )
    return build(lambda: Observability("obs", args))


def alarm(run, suffix):
    return run.named(f"obs-{suffix}").inputs


def test_inference_logs_are_encrypted_and_retained(run):
    (group,) = run.of_type("aws:cloudwatch/logGroup:LogGroup")
    assert group.inputs["name"] == "/retail/test/inference"
    assert (group.inputs["kmsKeyId"], group.inputs["retentionInDays"]) == (LOGS_KEY, 30)


def test_alert_topic_is_encrypted_and_emails_the_on_call(run):
    (topic,) = run.of_type("aws:sns/topic:Topic")
    (subscription,) = run.of_type("aws:sns/topicSubscription:TopicSubscription")
    assert topic.inputs["kmsMasterKeyId"] == LOGS_KEY
    assert (subscription.inputs["protocol"], subscription.inputs["endpoint"]) == (
        "email",
        "oncall@example.com",
    )


def test_only_this_accounts_alert_services_may_publish(run):
    (policy,) = run.of_type("aws:sns/topicPolicy:TopicPolicy")
    (statement,) = statements(policy)
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT_ID}}


def test_latency_alarm_fires_when_p95_exceeds_200_ms(run):
    latency = alarm(run, "api-latency-p95")
    assert (latency["namespace"], latency["metricName"]) == (m.NAMESPACE, m.REQUEST_LATENCY_MS)
    assert latency["extendedStatistic"] == "p95"
    assert (latency["comparisonOperator"], latency["threshold"]) == ("GreaterThanThreshold", 200)


def test_error_alarm_computes_the_5xx_rate_from_the_api_metrics(run):
    errors = alarm(run, "api-5xx-rate")
    queries = {q["id"]: q for q in errors["metricQueries"]}
    assert queries["requests"]["metric"]["metricName"] == m.REQUEST_COUNT
    assert queries["errors"]["metric"]["metricName"] == m.SERVER_ERROR_COUNT
    assert queries["error_rate"]["returnData"] is True
    assert errors["threshold"] == 2


def test_drift_alarm_watches_the_input_drift_score(run):
    drift = alarm(run, "input-drift")
    assert drift["metricName"] == m.INPUT_DRIFT_SCORE
    assert drift["threshold"] == 0.2


def test_a_service_that_stops_sending_heartbeats_breaches_while_request_alarms_read_silence_as_no_traffic(run):
    heartbeat = alarm(run, "api-heartbeat")
    assert (heartbeat["namespace"], heartbeat["metricName"]) == (m.NAMESPACE, m.HEARTBEAT)
    assert (heartbeat["comparisonOperator"], heartbeat["threshold"]) == ("LessThanThreshold", 1)
    assert heartbeat["treatMissingData"] == "breaching"
    assert alarm(run, "api-latency-p95")["treatMissingData"] == "notBreaching"


def test_the_heartbeat_alarm_can_be_told_that_silence_is_expected():
    args = ObservabilityArgs(
        environment="dev", region="ap-southeast-1", account_id=ACCOUNT_ID, logs_kms_key_arn=LOGS_KEY,
        heartbeat_missing_breaches=False,
    )
    quiet = build(lambda: Observability("obs", args))
    assert quiet.named("obs-api-heartbeat").inputs["treatMissingData"] == "notBreaching"


def test_failed_training_jobs_raise_an_alarm_and_a_notification(run):
    (rule,) = run.of_type("aws:cloudwatch/eventRule:EventRule")
    (target,) = run.of_type("aws:cloudwatch/eventTarget:EventTarget")
    (topic,) = run.of_type("aws:sns/topic:Topic")
    pattern = json.loads(rule.inputs["eventPattern"])
    training = alarm(run, "training-job-failed")
    assert pattern["detail"] == {"TrainingJobStatus": ["Failed"]}
    assert target.inputs["arn"] == topic.id
    assert training["dimensions"] == {"RuleName": rule.id}


def test_every_alarm_notifies_the_alert_topic(run):
    (topic,) = run.of_type("aws:sns/topic:Topic")
    alarms = run.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    assert len(alarms) == 13  # API 4, training 1, batch scoring 2, monitoring 6
    assert all(a.inputs["alarmActions"] == [topic.id] for a in alarms)


def test_api_alarms_use_the_environment_dimension_the_api_publishes(run):
    for suffix in ("api-latency-p95", "input-drift"):
        assert alarm(run, suffix)["dimensions"] == {m.DIMENSION_ENVIRONMENT: "test"}


def test_dashboard_shows_latency_errors_drift_and_training(run):
    (dashboard,) = run.of_type("aws:cloudwatch/dashboard:Dashboard")
    titles = [w["properties"]["title"] for w in json.loads(dashboard.inputs["dashboardBody"])["widgets"]]
    assert titles == [
        "API latency (ms)",
        "Requests and 5xx",
        "Input drift (max PSI)",
        "Failed training jobs",
        "Batch scoring runs (daily)",
        "Baskets scored per run",
        "Monitored week: champion vs the gate",
        "Monitored week: drift, retraining, runs",
    ]


def test_a_failed_scoring_run_raises_an_alarm_for_a_day_and_no_run_is_no_failure(run):
    failed = alarm(run, "batch-scoring-failed")
    assert (failed["namespace"], failed["metricName"]) == (m.NAMESPACE, m.SCORING_RUN_FAILED)
    assert failed["dimensions"] == {m.DIMENSION_ENVIRONMENT: "test"}
    assert (failed["statistic"], failed["period"], failed["evaluationPeriods"]) == ("Maximum", 86_400, 1)
    assert (failed["comparisonOperator"], failed["threshold"]) == ("GreaterThanOrEqualToThreshold", 1)
    assert failed["treatMissingData"] == "notBreaching"
    assert "evaluationWindow" not in failed  # sliding: it fires when the line arrives


def test_a_calendar_week_without_a_finished_scoring_run_raises_an_alarm(run):
    missed = alarm(run, "batch-scoring-missed")
    assert (missed["namespace"], missed["metricName"]) == (m.NAMESPACE, m.SCORING_RUN_FAILED)
    assert missed["dimensions"] == {m.DIMENSION_ENVIRONMENT: "test"}
    assert (missed["statistic"], missed["comparisonOperator"], missed["threshold"]) == (
        "SampleCount", "LessThanThreshold", 1,
    )  # fmt: skip
    assert missed["treatMissingData"] == "breaching"
    assert (missed["period"], missed["evaluationPeriods"]) == (604_800, 1)
    assert missed["evaluationWindow"] == {"wallClockWindow": {"timezone": "Etc/UTC"}}


def test_where_silence_is_expected_there_is_no_missed_scoring_week_alarm():
    """Without missing data breaching, a week without a run is missing data, which could never fire it."""
    args = ObservabilityArgs(
        environment="dev", region="ap-southeast-1", account_id=ACCOUNT_ID, logs_kms_key_arn=LOGS_KEY,
        heartbeat_missing_breaches=False, batch_time_zone="Asia/Singapore",
    )
    alarms = build(lambda: Observability("obs", args)).of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    names = {a.name for a in alarms}
    assert "obs-batch-scoring-failed" in names
    assert "obs-batch-scoring-missed" not in names


def test_every_alarm_window_is_one_cloudwatch_accepts(run):
    for a in run.of_type("aws:cloudwatch/metricAlarm:MetricAlarm"):
        period = a.inputs.get("period") or a.inputs["metricQueries"][0]["metric"]["period"]
        total = period * a.inputs["evaluationPeriods"]
        assert total <= (MAX_EVALUATION_SECONDS if period >= 3_600 else 86_400), a.name
        if "evaluationWindow" in a.inputs:
            assert period in WALL_CLOCK_PERIODS, a.name


@pytest.mark.parametrize(
    ("period", "evaluation_periods", "wall_clock"),
    [(86_400, 8, False), (60, 1_441, False), (3 * 86_400, 1, True)],
)
def test_a_window_cloudwatch_refuses_is_refused_before_deploying(period, evaluation_periods, wall_clock):
    with pytest.raises(ValueError, match="exceeds CloudWatch's|wall clock window needs"):
        check_alarm_window(period, evaluation_periods, wall_clock)


def test_monthly_budget_is_set_in_usd_for_this_environment(run):
    (budget,) = run.of_type("aws:budgets/budget:Budget")
    assert (budget.inputs["limitAmount"], budget.inputs["limitUnit"]) == ("500", "USD")
    assert budget.inputs["timeUnit"] == "MONTHLY"
    assert budget.inputs["costFilters"] == [{"name": "TagKeyValue", "values": ["user:environment$test"]}]


def test_budget_alerts_on_actual_spend_thresholds_and_on_forecast_overrun(run):
    (budget,) = run.of_type("aws:budgets/budget:Budget")
    alerts = {(n["notificationType"], n["threshold"]) for n in budget.inputs["notifications"]}
    assert alerts == {("ACTUAL", 80), ("ACTUAL", 100), ("FORECASTED", 100)}
