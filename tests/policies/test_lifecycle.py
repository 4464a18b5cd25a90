"""The ML-lifecycle rules: what each judges beyond its pass/fail pair, and that each judges real dev-stack resources.

The pairs themselves are in tests/policies/cases.py (test_rules.py runs them). Here: the
comparison with the served version (same held-out weeks, the policy config's margin,
rollbacks exempt), lineage of served and registered versions, which CronJobs count as
monitoring (the real command, in a namespace of the stack; suspended only where
served-model-monitoring-active is disabled, ephemeral), what counts as a predictions store,
and, on the offline dev deployment, that every lifecycle rule found resources to judge, that
none is broken there, that its monitoring CronJob is what keeps the served model monitored,
and that the served model's rollback alarms are platform alarms that notify someone.
"""

from __future__ import annotations

import json

import pytest

from infra.providers.kinds import DYNAMIC_TYPE, MODEL_VERSION, SERVED_MODEL, TRAINING_JOB
from policies.catalog import BY_NAME
from policies.enforcement import load_levels, load_settings
from policies.evaluate import evaluate
from policies.model import Enforcement, ResourceRule
from policies.offline import resources_of
from policies.pack import to_policy
from policies.rules import lifecycle
from tests.policies.cases import (
    BATCH_NAMESPACE,
    DATA_KEY_USE,
    KEY,
    MONITOR_CRON_JOB,
    PREDICTIONS_WRITE,
    SCORER_POLICY,
    SERVED_MODEL_RESOURCE,
    changed,
    res,
)
from tests.policies.conftest import PROJECT_DIR

LIFECYCLE = [rule.name for rule in lifecycle.RULES]


def run(rule_name: str, subject) -> list:
    return evaluate([BY_NAME[rule_name]], subject if isinstance(subject, list) else [subject], {})


def with_served(**served) -> object:
    return changed(SERVED_MODEL_RESOURCE, "package", "served", value=served)


# --- served-version-gated ---------------------------------------------------------------------------------------
def test_the_stacks_first_served_version_has_nothing_to_beat():
    assert run("served-version-gated", with_served(arn="none")) == []


def test_a_comparison_on_another_lake_runs_held_out_weeks_does_not_count():
    other_weeks = with_served(arn="arn:served", holdout_run="20240101T000000Z-ffffffff", macro_f1=0.5)
    (violation,) = run("served-version-gated", other_weeks)
    assert "not compared with the served version arn:served on the same held-out weeks" in violation.message


def test_a_version_without_a_recorded_comparison_with_the_served_one_fails():
    (violation,) = run("served-version-gated", changed(SERVED_MODEL_RESOURCE, "package", "served", value=None))
    assert "records no comparison with the version the stack served before it" in violation.message


def test_the_champion_frozen_at_registration_is_not_what_a_promotion_is_judged_against():
    """v2 registered when nothing was approved (champion none) is still judged against what is served now."""
    registered_first = changed(SERVED_MODEL_RESOURCE, "package", "champion", value={"arn": "none"})
    worse_than_served = changed(registered_first, "package", "served", "macro_f1", value=0.9)
    (violation,) = run("served-version-gated", worse_than_served)
    assert "does not beat the served version" in violation.message


@pytest.mark.parametrize(("gate_passed", "says"), [(False, "failed the promotion gate"), (None, "no gate verdict")])
def test_a_version_that_failed_or_never_met_the_gate_fails(gate_passed, says):
    verdict = changed(SERVED_MODEL_RESOURCE, "package", "gate_passed", value=gate_passed)
    (violation,) = run("served-version-gated", verdict)
    assert says in violation.message


def test_a_tie_and_a_gain_below_the_default_margin_are_refused():
    for served_f1 in (0.81, 0.80):
        (violation,) = run("served-version-gated", changed(SERVED_MODEL_RESOURCE, "package", "served", "macro_f1",
                                                           value=served_f1))
        assert f"0.8100 < {served_f1:.4f} + {lifecycle.DEFAULT_MARGIN}" in violation.message


def test_the_margin_is_the_policy_configs_setting(tmp_path):
    """0.81 against a served 0.80: refused by the default margin, passed by a config of 0.005, and the file
    that says so keeps pulumi-policy's format (the level still read from the same object)."""
    gains_a_little = changed(SERVED_MODEL_RESOURCE, "package", "served", "macro_f1", value=0.80)
    rule = BY_NAME["served-version-gated"]
    (tmp_path / "qa.json").write_text(json.dumps({"served-version-gated": {"enforcementLevel": "mandatory",
                                                                           "margin": 0.005}}))
    settings, levels = load_settings([rule], "qa", tmp_path), load_levels([rule], "qa", tmp_path)
    assert settings == {"served-version-gated": {"margin": 0.005}}
    assert levels == {"served-version-gated": Enforcement.mandatory}
    assert evaluate([rule], [gains_a_little], levels, settings) == []
    assert evaluate([rule], [gains_a_little], levels) != []
    (tmp_path / "qa.json").write_text(json.dumps({"served-version-gated": {"margin": "small"}}))
    with pytest.raises(ValueError, match="margin must be a number"):
        load_settings([rule], "qa", tmp_path)


def test_the_pack_declares_the_margin_in_its_config_schema():
    policy = to_policy(BY_NAME["served-version-gated"])
    assert policy.config_schema.properties["margin"]["default"] == lifecycle.DEFAULT_MARGIN


@pytest.mark.parametrize("exempt", [{"rollback": True}, {"arn": "PACKAGE"}])
def test_a_rollback_and_a_redeploy_of_the_served_version_are_exempt(exempt):
    arn = SERVED_MODEL_RESOURCE.props["package"]["arn"]
    worse = changed(SERVED_MODEL_RESOURCE, "package", "served", "macro_f1", value=0.95)
    for key, value in exempt.items():
        worse = changed(worse, "package", "served", key, value=arn if value == "PACKAGE" else value)
    assert run("served-version-gated", worse) == []


def test_a_comparison_missing_a_figure_fails():
    (violation,) = run("served-version-gated", changed(SERVED_MODEL_RESOURCE, "package", "macro_f1", value=None))
    assert "no holdout macro-F1 for itself" in violation.message


# --- served-version-approved ------------------------------------------------------------------------------------
def test_a_served_model_whose_package_was_never_read_fails_approval_and_gate():
    unread = changed(SERVED_MODEL_RESOURCE, "package", value=None)
    assert run("served-version-approved", unread) and run("served-version-gated", unread)


def test_the_approval_message_names_the_package_and_its_status():
    rejected = changed(SERVED_MODEL_RESOURCE, "package", "approval_status", value="Rejected")
    (violation,) = run("served-version-approved", rejected)
    assert violation.message.endswith("model-package/retail-dev-price-sensitivity/2, which is Rejected")


def test_served_model_rules_ignore_other_dynamic_resources():
    job = res(DYNAMIC_TYPE, "train", kind=TRAINING_JOB)
    for rule in lifecycle.RULES:
        if isinstance(rule, ResourceRule):
            assert run(rule.name, job) == [], rule.name


# --- model-version-lineage --------------------------------------------------------------------------------------
def test_the_served_packages_lineage_is_judged_too():
    no_data_hash = changed(SERVED_MODEL_RESOURCE, "package", "lineage", "data_hash", value="")
    (violation,) = run("model-version-lineage", no_data_hash)
    assert violation.message == "the served package's lineage lacks data_hash"


def test_a_code_version_of_unknown_is_no_lineage():
    unknown = changed(SERVED_MODEL_RESOURCE, "package", "lineage", "code_version", value="unknown")
    assert run("model-version-lineage", unknown)


# --- served-model-monitoring-schedule and -active ---------------------------------------------------------------
CONTAINERS = ("spec", "jobTemplate", "spec", "template", "spec", "containers")


def monitored_by(command: list[str], args: list[str] | None = None) -> list:
    container = {"name": "c", "command": command, "args": args or []}
    return [SERVED_MODEL_RESOURCE, BATCH_NAMESPACE, changed(MONITOR_CRON_JOB, *CONTAINERS, value=[container])]


def test_a_batch_scoring_cron_job_is_not_monitoring():
    assert run("served-model-monitoring-schedule", monitored_by(["python", "-m", "cli.score"]))


@pytest.mark.parametrize(("command", "args"), [
    (["python", "-m", "cli.monitor"], ["--week", "last"]),  # infra/monitoring_schedule.py
    (["/usr/local/bin/python3.11", "-m", "cli.monitor"], []),
    (["retail", "monitor"], ["--week", "last"]),
    (["retail"], ["monitor", "--week", "last"]),  # the runtime runs command then args
])
def test_retail_monitor_run_as_the_module_or_the_cli_subcommand_counts(command, args):
    assert run("served-model-monitoring-schedule", monitored_by(command, args)) == []


@pytest.mark.parametrize(("command", "args"), [
    (["python", "-m", "cli.score"], ["--mode", "monitor"]),  # a `monitor` token is not the command
    (["sh", "-c", "echo cli.monitor"], []),
    (["python", "-m", "cli.monitor_old"], []),
    (["retail", "score"], ["monitor"]),
])
def test_a_command_that_merely_mentions_monitor_does_not_count(command, args):
    assert run("served-model-monitoring-schedule", monitored_by(command, args))


def test_a_monitoring_cron_job_outside_the_stacks_own_namespaces_does_not_count():
    elsewhere = changed(MONITOR_CRON_JOB, "metadata", "namespace", value="default")
    assert run("served-model-monitoring-schedule", [SERVED_MODEL_RESOURCE, BATCH_NAMESPACE, elsewhere])
    assert run("served-model-monitoring-schedule", [SERVED_MODEL_RESOURCE, MONITOR_CRON_JOB])  # no Namespace


def test_a_sagemaker_monitoring_schedule_is_not_this_projects_monitoring():
    """It would publish none of the figures the platform's alarms read, and nothing is served on SageMaker here."""
    sagemaker = res("aws:sagemaker/monitoringSchedule:MonitoringSchedule", "data-quality")
    assert run("served-model-monitoring-schedule", [SERVED_MODEL_RESOURCE, sagemaker])


def test_a_suspended_monitoring_cron_job_is_declared_but_not_active():
    suspended = changed(MONITOR_CRON_JOB, "spec", "suspend", value=True)
    resources = [SERVED_MODEL_RESOURCE, BATCH_NAMESPACE, suspended]
    assert run("served-model-monitoring-schedule", resources) == []
    (violation,) = run("served-model-monitoring-active", resources)
    assert violation.resource == "retail-dev-served-model" and "suspended" in violation.message


def test_without_any_monitoring_cron_job_only_the_schedule_rule_fires():
    assert run("served-model-monitoring-active", [SERVED_MODEL_RESOURCE]) == []
    assert run("served-model-monitoring-schedule", [SERVED_MODEL_RESOURCE])


def test_a_project_that_serves_nothing_needs_no_monitoring():
    assert run("served-model-monitoring-schedule", [SCORER_POLICY]) == []
    assert run("served-model-monitoring-active", [BATCH_NAMESPACE, changed(MONITOR_CRON_JOB, "spec", "suspend",
                                                                             value=True)]) == []


def test_the_dev_services_monitoring_cron_job_is_what_keeps_its_served_model_monitored(deployment):
    _, service, *_ = deployment("dev")
    resources = resources_of(service)
    assert run("served-model-monitoring-schedule", resources) == run("served-model-monitoring-active", resources) == []
    unscheduled = [r for r in resources if r.name != "retail-dev-monitoring-cron-job"]
    suspended = [changed(r, "spec", "suspend", value=True) if r.name == "retail-dev-monitoring-cron-job" else r
                 for r in resources]
    assert [v.resource for v in run("served-model-monitoring-schedule", unscheduled)] == ["retail-dev-served-model"]
    assert [v.resource for v in run("served-model-monitoring-active", suspended)] == ["retail-dev-served-model"]


def test_the_ephemeral_service_declares_a_suspended_schedule_which_only_its_levels_accept(deployment):
    _, service, *_ = deployment("ephemeral")
    resources = resources_of(service)
    assert run("served-model-monitoring-schedule", resources) == []
    assert run("served-model-monitoring-active", resources)
    rules = [BY_NAME["served-model-monitoring-schedule"], BY_NAME["served-model-monitoring-active"]]

    def levels(stack: str) -> dict:
        return load_levels(list(BY_NAME.values()), stack)

    assert evaluate(rules, resources, levels("ephemeral")) == []
    assert [v.rule for v in evaluate(rules, resources, levels("dev"))] == ["served-model-monitoring-active"]


# --- predictions-encrypted --------------------------------------------------------------------------------------
def policy(*statements) -> object:
    return changed(SCORER_POLICY, "policy", value=json.dumps({"Statement": list(statements)}))


def test_a_key_granted_on_every_resource_is_not_a_customer_managed_key():
    assert run("predictions-encrypted", policy(PREDICTIONS_WRITE, {**DATA_KEY_USE, "Resource": "*"}))


def test_writes_outside_predictions_are_not_this_rules_business():
    elsewhere = {**PREDICTIONS_WRITE, "Resource": "arn:aws:s3:::lake-raw/lake/silver/*"}
    assert run("predictions-encrypted", policy(elsewhere)) == []


def test_a_bucket_of_the_project_holding_predictions_needs_sse_kms():
    bucket = res("aws:s3/bucket:Bucket", "lake-raw", urn="urn:lake-raw", bucket="lake-raw")
    sse = res(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        deps={"bucket": ["urn:lake-raw"]},
        rules=[{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": KEY}}],
    )
    (violation,) = run("predictions-encrypted", [SCORER_POLICY, bucket])
    assert violation.resource == "lake-raw"
    assert violation.message == "holds predictions/ without SSE-KMS default encryption"
    assert run("predictions-encrypted", [SCORER_POLICY, bucket, sse]) == []


def test_endpoint_data_capture_needs_a_kms_key():
    capture = {"enableCapture": True, "destinationS3Uri": "s3://capture/", "initialSamplingPercentage": 100}
    endpoint = res(lifecycle.ENDPOINT_CONFIGURATION, "endpoint", dataCaptureConfig=capture)
    assert run("predictions-encrypted", endpoint)
    assert run("predictions-encrypted", changed(endpoint, "dataCaptureConfig", "kmsKeyId", value=KEY)) == []


# --- the dev stack ----------------------------------------------------------------------------------------------
SUBJECT_KINDS = {"model-version-lineage": {SERVED_MODEL, MODEL_VERSION}}
"""The dynamic resources each lifecycle resource rule judges (the others judge only served models)."""


def judged(rule, resources) -> list:
    """The resources of one project a lifecycle rule looks at."""
    if isinstance(rule, ResourceRule):
        kinds = SUBJECT_KINDS.get(rule.name, {SERVED_MODEL})
        return [r for r in resources if rule.applies_to(r) and r.get("kind") in kinds]
    if rule.name == "predictions-encrypted":
        return lifecycle.prediction_stores(resources)
    return [r for r in resources if lifecycle.is_kind(r, SERVED_MODEL)]


def test_every_lifecycle_rule_judges_real_resources_of_the_dev_stack(deployment):
    seen: dict[str, list[str]] = {name: [] for name in LIFECYCLE}
    for project in deployment("dev"):
        resources = resources_of(project)
        for rule in lifecycle.RULES:
            seen[rule.name] += [r.name for r in judged(rule, resources)]
    assert seen["model-version-lineage"] == ["retail-dev-served-model", "retail-dev-model"]
    assert "retail-dev-batch-scoring-scorer-access" in seen["predictions-encrypted"]
    assert all(names == ["retail-dev-served-model"] for rule, names in seen.items()
               if rule not in ("model-version-lineage", "predictions-encrypted")), seen


BREAKS = {
    "served-version-approved": ("retail-dev-served-model", ("package", "approval_status"), "PendingManualApproval"),
    "served-version-gated": ("retail-dev-served-model", ("package", "gate_passed"), False),
    "served-version-report-verified": ("retail-dev-served-model", ("package", "report"), None),
    "model-version-lineage": ("retail-dev-model", ("lineage", "validation_report"), None),
    "served-model-rollback-alarms": ("retail-dev-served-model", ("rollback_alarms",), []),
    "predictions-encrypted": ("retail-dev-batch-scoring-scorer-access", ("policy",), json.dumps({"Statement": [
        {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::lake/lake/predictions/*"}]})),
}
"""Per rule: the dev resource it judges, the input to break and the broken value (None: removed)."""


@pytest.mark.parametrize("rule_name", sorted(BREAKS))
def test_breaking_the_dev_resource_a_rule_judges_makes_it_fire_on_that_resource(deployment, rule_name):
    name, path, value = BREAKS[rule_name]
    resources = [r for project in deployment("dev") for r in resources_of(project)]
    assert run(rule_name, resources) == []
    broken = [changed(r, *path, value=value) if r.name == name else r for r in resources]
    assert {v.resource for v in run(rule_name, broken)} == {name}


def test_the_dev_stack_breaks_no_lifecycle_rule(deployment):
    levels = load_levels(list(BY_NAME.values()), "dev")
    rules = [BY_NAME[name] for name in LIFECYCLE]
    assert [v for run_ in deployment("dev") for v in evaluate(rules, resources_of(run_), levels)] == []


def test_the_served_models_rollback_alarms_are_platform_alarms_that_notify(deployment):
    platform, service, *_ = deployment("dev")
    (served,) = [r for r in service.resources if r.inputs.get("kind") == SERVED_MODEL]
    alarms = {r.inputs["name"]: r.inputs for r in platform.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    names = served.inputs["rollback_alarms"]
    assert names and set(names) <= set(alarms)
    assert all(alarms[name]["alarmActions"] for name in names)


def test_the_offline_report_says_the_registry_rules_judged_a_placeholder(deployment):
    """Offline the served package is the mocks' placeholder: the report must not present its pass as a real one."""
    from policies.report import PLACEHOLDER_NOTE, check_runs, report_lines

    runs = deployment("dev")
    report = check_runs("dev", runs, PROJECT_DIR)
    serving = [p for p in report.projects if p.deploy_time_only]
    assert [p.project for p in serving] == ["retail-mlops-service"]
    assert serving[0].deploy_time_only == ["served-version-approved", "served-version-gated",
                                           "served-version-report-verified"]
    assert any(line.startswith(f"[{PLACEHOLDER_NOTE}] served-version-approved, served-version-gated, "
                               "served-version-report-verified")
               for line in report_lines(report))
