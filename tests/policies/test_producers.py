"""Alarm producers: every alarm's metric has a producer somewhere in the deployment.

The dev deployment has every producer the check looks for (API Deployment, scoring and
monitoring CronJobs, log shipper, log group, event rule, every metric name in api/emf.py and
ml/emf.py). Each test below removes or breaks one producer.
"""

from __future__ import annotations

import pytest

from ml import metric_names as m
from policies.deployment import DeploymentView
from policies.producers import (
    API_METRICS,
    CONTRACT_METRICS,
    MONITOR_METRICS,
    SCORING_METRICS,
    monitor_published_metrics,
    producer_findings,
    published_metrics,
    scoring_published_metrics,
    watched_metrics,
)
from tests.policies.programs import edited, without

PUBLISHES_EVERYTHING = CONTRACT_METRICS
SHIPPER = "retail-dev-log-shipping-release"
API = "retail-dev-inference-deployment"
CRON_JOB = "retail-dev-batch-scoring-cron-job"
MONITOR_CRON_JOB = "retail-dev-monitoring-cron-job"
API_ALARMS = {f"retail-dev-obs-{a}" for a in ("api-latency-p95", "api-5xx-rate", "input-drift", "api-heartbeat")}
SCORING_ALARMS = {"retail-dev-obs-batch-scoring-failed"}
"""dev's scoring alarms: its missing data does not breach, so it has no missed-week alarm (prod has; the parametrized
test below finds its producer too)."""
MONITOR_ALARMS = {f"retail-dev-obs-{a}" for a in ("monitored-macro-f1", "monitored-accuracy",
                                                  "monitored-class-precision", "monitored-drift", "monitor-failed")}
"""dev's monitoring alarms (no missed-week alarm either)."""
BATCH_ALARMS = SCORING_ALARMS | MONITOR_ALARMS
"""The alarms on what the batch namespace's CronJobs publish."""
INFERENCE_ONLY = "/var/log/containers/*_retail-inference_*.log"
"""The shipper's tail path before batch scoring was shipped (one namespace)."""


def subjects(findings) -> set[str]:
    return {f.subject for f in findings}


def test_the_api_publishes_every_metric_an_alarm_reads():
    published = published_metrics()
    assert published is not None, "api/emf.py should be importable here"
    assert {m.REQUEST_COUNT, m.REQUEST_LATENCY_MS, m.SERVER_ERROR_COUNT, m.HEARTBEAT} <= published


def test_a_scoring_run_publishes_the_contracts_scoring_metrics():
    assert scoring_published_metrics() == SCORING_METRICS == {m.SCORING_RUN_FAILED, m.BASKETS_SCORED}
    assert API_METRICS | SCORING_METRICS | MONITOR_METRICS == CONTRACT_METRICS
    assert not API_METRICS & SCORING_METRICS and not (API_METRICS | SCORING_METRICS) & MONITOR_METRICS


def test_a_monitoring_run_may_publish_the_contracts_monitor_metrics():
    from cli.monitor import PUBLISHED_METRICS

    assert monitor_published_metrics() == MONITOR_METRICS == PUBLISHED_METRICS
    assert {m.MONITOR_RUN_FAILED, m.MONITORED_MACRO_F1, m.MONITORED_DRIFT_PSI} <= MONITOR_METRICS


@pytest.mark.parametrize("stack", ["dev", "prod", "ephemeral"])
def test_every_alarm_of_the_real_deployment_has_a_producer(deployment, stack):
    assert producer_findings(deployment(stack)) == []


def test_an_alarm_on_a_metric_the_api_does_not_publish_is_reported(deployment):
    findings = producer_findings(deployment("dev"), published=CONTRACT_METRICS - {m.HEARTBEAT})
    assert subjects(findings) == {"retail-dev-obs-api-heartbeat"}
    assert all("api/emf.py does not publish 'Heartbeat'" in f.message for f in findings)


def test_with_every_contract_metric_published_every_alarm_has_a_producer(deployment):
    assert producer_findings(deployment("dev"), published=PUBLISHES_EVERYTHING) == []


def test_every_alarm_of_the_platform_is_judged(deployment):
    view = DeploymentView(deployment("dev"))
    alarms = view.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    assert len(alarms) == 11  # API 4, training, batch scoring failed, monitoring 5 (no missed-week alarms in dev)
    assert all(watched_metrics(a) for a in alarms)
    error_rate = next(a for a in alarms if a.name.endswith("api-5xx-rate"))
    assert {w.name for w in watched_metrics(error_rate)} == {m.REQUEST_COUNT, m.SERVER_ERROR_COUNT}


def test_without_the_service_no_inference_alarm_has_a_producer(deployment):
    platform, *_ = deployment("dev")
    findings = producer_findings([platform], published=PUBLISHES_EVERYTHING)
    deployments = {f.subject for f in findings if "no Deployment runs a container with RETAIL_EMF_ENABLED" in f.message}
    cron_jobs = {f.subject for f in findings if "no CronJob runs a container with RETAIL_EMF_ENABLED" in f.message}
    assert (deployments, cron_jobs) == (API_ALARMS, BATCH_ALARMS)
    assert "retail-dev-obs-training-job-failed" not in subjects(findings)


def test_without_the_log_shipper_the_api_metrics_never_reach_cloudwatch(deployment):
    platform, service, *_ = deployment("dev")
    no_shipper = without(service, lambda r: r.name != SHIPPER)
    findings = producer_findings([platform, no_shipper], published=PUBLISHES_EVERYTHING)
    assert len(findings) == 11  # latency, drift, heartbeat, both 5xx rate metrics, failed scoring runs, failed
    # monitoring runs, and the figure of each of the 4 monitored-week alarms
    assert all("no aws-for-fluent-bit release" in f.message for f in findings)


@pytest.mark.parametrize(
    ("path", "value", "reported"),
    [
        (("values", "cloudWatchLogs", "logKey"), None, "sends the whole record"),
        (("values", "cloudWatchLogs", "logFormat"), "json", "logFormat 'json'"),
        (("values", "cloudWatchLogs", "logGroupName"), "/retail/other", "ships to '/retail/other'"),
        (("values", "cloudWatchLogs", "enabled"), False, "cloudWatchLogs is disabled"),
        (("values", "input", "path"), "/var/log/containers/*_kube-system_*.log", "no log shipper tails namespace"),
    ],
)
def test_a_log_shipper_that_does_not_ship_emf_lines_unchanged_is_no_producer(deployment, path, value, reported):
    platform, service, *_ = deployment("dev")
    findings = producer_findings([platform, edited(service, SHIPPER, path, value)], published=PUBLISHES_EVERYTHING)
    assert findings and all(reported in f.message for f in findings)


def test_an_api_without_emf_is_no_producer(deployment):
    platform, service, *_ = deployment("dev")
    container = ("spec", "template", "spec", "containers", 0, "env")
    env = next(r for r in service.resources if r.name == API).inputs["spec"]["template"]["spec"]["containers"][0]["env"]
    no_emf = [e for e in env if e["name"] != "RETAIL_EMF_ENABLED"]
    findings = producer_findings([platform, edited(service, API, container, no_emf)], published=PUBLISHES_EVERYTHING)
    assert findings and all("RETAIL_EMF_ENABLED=true and RETAIL_ENVIRONMENT=dev" in f.message for f in findings)


def test_an_api_of_another_environment_is_no_producer(deployment):
    platform, service, *_ = deployment("dev")
    env = next(r for r in service.resources if r.name == API).inputs["spec"]["template"]["spec"]["containers"][0]["env"]
    prod_env = [{**e, "value": "prod"} if e["name"] == "RETAIL_ENVIRONMENT" else e for e in env]
    container_env = ("spec", "template", "spec", "containers", 0, "env")
    findings = producer_findings(
        [platform, edited(service, API, container_env, prod_env)], published=PUBLISHES_EVERYTHING
    )
    assert len(findings) == 5
    assert subjects(findings) == API_ALARMS  # the scoring CronJob still produces the dev scoring metrics


def test_an_alarm_with_a_dimension_the_api_does_not_publish_matches_nothing(deployment):
    platform, *rest = deployment("dev")
    alarm = "retail-dev-obs-input-drift"
    broken = edited(platform, alarm, ("dimensions",), {"Environment": "dev", "Host": "a"})
    (finding,) = producer_findings([broken, *rest], published=PUBLISHES_EVERYTHING)
    assert finding.subject == alarm and "matches dimension sets exactly" in finding.message


def test_the_training_failure_alarm_needs_its_event_rule(deployment):
    platform, *rest = deployment("dev")
    no_rule = without(platform, lambda r: r.type != "aws:cloudwatch/eventRule:EventRule")
    (finding,) = producer_findings([no_rule, *rest], published=PUBLISHES_EVERYTHING)
    assert finding.subject == "retail-dev-obs-training-job-failed"
    assert "no EventRule in the deployment is named" in finding.message


def test_a_disabled_event_rule_produces_nothing(deployment):
    platform, *rest = deployment("dev")
    disabled = edited(platform, "retail-dev-obs-training-failed", ("state",), "DISABLED")
    (finding,) = producer_findings([disabled, *rest], published=PUBLISHES_EVERYTHING)
    assert "is disabled" in finding.message


def test_the_log_group_the_platform_exports_must_exist(deployment):
    platform, *rest = deployment("dev")
    no_group = without(platform, lambda r: r.name != "retail-dev-obs-inference-logs")
    findings = producer_findings([no_group, *rest], published=PUBLISHES_EVERYTHING)
    assert findings and all("'/retail/dev/inference' is created by no project" in f.message for f in findings)


def test_an_alarm_in_an_unknown_namespace_has_no_known_producer(deployment):
    platform, *rest = deployment("dev")
    alarm = "retail-dev-obs-input-drift"
    elsewhere = edited(platform, alarm, ("namespace",), "AWS/ApplicationELB")
    (finding,) = producer_findings([elsewhere, *rest], published=PUBLISHES_EVERYTHING)
    assert "knows no producer for namespace 'AWS/ApplicationELB'" in finding.message


def test_a_metric_outside_the_contract_is_reported(deployment):
    platform, *rest = deployment("dev")
    alarm = "retail-dev-obs-input-drift"
    renamed = edited(platform, alarm, ("metricName",), "InputDrift")
    (finding,) = producer_findings([renamed, *rest], published=PUBLISHES_EVERYTHING)
    assert "not a metric of ml/metric_names.py" in finding.message


# --- batch scoring: a CronJob on tainted nodes ---------------------------------------------------------------------
CRON_ENV = ("spec", "jobTemplate", "spec", "template", "spec", "containers", 0, "env")


def cron_env(service, name: str = CRON_JOB) -> list[dict]:
    (job,) = [r for r in service.resources if r.name == name]
    return job.inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]


def test_the_scoring_alarms_are_produced_by_the_cron_job_not_by_the_api(deployment):
    platform, service, *_ = deployment("dev")
    no_emf = [e for e in cron_env(service) if e["name"] != "RETAIL_EMF_ENABLED"]
    findings = producer_findings([platform, edited(service, CRON_JOB, CRON_ENV, no_emf)])
    assert subjects(findings) == SCORING_ALARMS
    assert all("no CronJob runs a container with RETAIL_EMF_ENABLED=true and RETAIL_ENVIRONMENT=dev" in f.message
               for f in findings)


def test_a_scoring_metric_the_scorer_does_not_declare_is_reported(deployment):
    findings = producer_findings(deployment("dev"), scoring_published=frozenset({m.BASKETS_SCORED}))
    assert subjects(findings) == SCORING_ALARMS
    assert all("ml/emf.py does not publish 'ScoringRunFailed'" in f.message for f in findings)


def test_a_shipper_that_does_not_tail_the_scoring_namespace_leaves_its_alarms_without_a_producer(deployment):
    platform, service, *_ = deployment("dev")
    inference_only = edited(service, SHIPPER, ("values", "input", "path"), INFERENCE_ONLY)
    findings = producer_findings([platform, inference_only])
    assert subjects(findings) == BATCH_ALARMS
    assert all("no log shipper tails namespace retail-batch" in f.message for f in findings)


def test_a_shipper_that_does_not_tolerate_the_batch_taint_never_ships_the_scoring_lines(deployment):
    platform, service, *_ = deployment("dev")
    untolerant = edited(service, SHIPPER, ("values", "tolerations"), None)
    findings = producer_findings([platform, untolerant])
    assert subjects(findings) == BATCH_ALARMS  # the API's pods run on untainted nodes: still shipped
    for finding in findings:
        assert "does not tolerate retail.io/workload=batch:NoSchedule" in finding.message
        assert "its DaemonSet never runs there" in finding.message and "tolerations" in finding.fix


def test_a_toleration_of_another_taint_or_effect_does_not_count(deployment):
    platform, service, *_ = deployment("dev")
    for toleration in (
        {"key": "retail.io/workload", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},
        {"key": "retail.io/workload", "operator": "Exists", "effect": "NoExecute"},
    ):
        other = edited(service, SHIPPER, ("values", "tolerations"), [toleration])
        assert subjects(producer_findings([platform, other])) == BATCH_ALARMS, toleration
    tolerates_all = edited(service, SHIPPER, ("values", "tolerations"), [{"operator": "Exists"}])
    assert producer_findings([platform, tolerates_all]) == []


def test_the_shipping_configuration_before_batch_scoring_is_reported(deployment):
    """Issue 11: one tailed namespace and no toleration; the check names both gaps' consequence for each alarm."""
    platform, service, *_ = deployment("dev")
    old = edited(edited(service, SHIPPER, ("values", "tolerations"), None), SHIPPER, ("values", "input", "path"),
                 INFERENCE_ONLY)
    findings = producer_findings([platform, old])
    assert subjects(findings) == BATCH_ALARMS
    assert all("no log shipper tails namespace retail-batch" in f.message for f in findings)
    with_namespace = edited(service, SHIPPER, ("values", "tolerations"), None)
    assert all("does not tolerate" in f.message for f in producer_findings([platform, with_namespace]))


def test_a_shipper_that_reads_files_found_at_start_from_their_end_is_reported(deployment):
    """A batch node starts with its job: the job's only metric line can be written before Fluent Bit runs there."""
    platform, service, *_ = deployment("dev")
    findings = producer_findings([platform, edited(service, SHIPPER, ("values", "input", "extraInputs"), None)])
    assert subjects(findings) == API_ALARMS | BATCH_ALARMS
    assert all("Read_from_Head off" in f.message for f in findings)


@pytest.mark.parametrize(("toleration", "tolerated"), [
    ({"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"}, True),
    ({"key": "k", "value": "v"}, True),  # Equal is the default operator; no effect tolerates every effect
    ({"key": "k", "operator": "Exists"}, True),
    ({"operator": "Exists"}, True),  # an empty key with Exists tolerates every taint
    ({"key": "k", "operator": "Equal", "value": "w"}, False),
    ({"key": "k", "operator": "Exists", "effect": "NoExecute"}, False),
    ({"key": "other", "operator": "Exists"}, False),
])
def test_tolerations_match_taints_as_kubernetes_matches_them(toleration, tolerated):
    from policies.deployment import tolerates

    assert tolerates(toleration, "k", "v", "NoSchedule") is tolerated


def test_an_equal_toleration_with_a_null_valuetolerates_a_taint_with_an_empty_value():
    from policies.deployment import tolerates

    assert tolerates({"key": "k", "operator": "Equal", "value": None, "effect": "NoSchedule"}, "k", "", "NoSchedule")


# --- monitoring: a second CronJob in the batch namespace ----------------------------------------------------------
def test_an_alarm_on_a_figure_the_monitor_no_longer_publishes_is_reported(deployment):
    findings = producer_findings(deployment("dev"), monitor_published=MONITOR_METRICS - {m.MONITORED_MACRO_F1})
    assert subjects(findings) == {"retail-dev-obs-monitored-macro-f1"}
    (finding,) = findings
    assert "ml/emf.py does not publish 'MonitoredMacroF1'" in finding.message
    assert "retail monitor" in finding.fix


def test_the_producers_check_reads_what_ml_emf_declares_for_the_monitor(deployment, monkeypatch):
    from ml import emf

    monkeypatch.setattr(emf, "MONITOR_RUN_METRICS", emf.MONITOR_RUN_METRICS - {m.MONITORED_DRIFT_PSI})
    assert subjects(producer_findings(deployment("dev"))) == {"retail-dev-obs-monitored-drift"}


def test_the_monitoring_alarms_are_produced_by_the_monitor_cron_job_not_by_the_scorer(deployment):
    """Both CronJobs publish EMF in the same namespace; only one running `cli.monitor` produces the monitor's
    metrics."""
    platform, service, *_ = deployment("dev")
    no_emf = [e for e in cron_env(service, MONITOR_CRON_JOB) if e["name"] != "RETAIL_EMF_ENABLED"]
    findings = producer_findings([platform, edited(service, MONITOR_CRON_JOB, CRON_ENV, no_emf)])
    assert subjects(findings) == MONITOR_ALARMS
    assert all("no CronJob runs a container with RETAIL_EMF_ENABLED=true and RETAIL_ENVIRONMENT=dev that runs "
               "cli.monitor" in f.message for f in findings)


def test_a_scoring_cron_job_is_no_producer_of_the_monitors_metrics(deployment):
    platform, service, *_ = deployment("dev")
    command = ("spec", "jobTemplate", "spec", "template", "spec", "containers", 0, "command")
    scoring = edited(service, MONITOR_CRON_JOB, command, ["python", "-m", "cli.score"])
    assert subjects(producer_findings([platform, scoring])) == MONITOR_ALARMS
