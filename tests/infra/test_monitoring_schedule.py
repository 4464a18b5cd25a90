"""MonitoringSchedule: `retail monitor --week pending` weekly beside batch scoring, after its run, bounded and hardened
like it, with an IRSA role that reads predictions, silver, the reports and the served bundle and writes reports only.

Also `retail:monitoring` (infra/config.py): a weekly schedule that starts after the week's scoring run has surely
ended (start grace included) and ends within the week, declared on every service stack and running on every one but
ephemeral; and in the service stack, the platform's `batchTimeZone` and `thresholds` as the job's zone and thresholds.
"""

import json

import pulumi
import pytest

import cli.monitor as monitor_command
from infra.batch_job import INPUT_ERROR_EXIT_CODE
from infra.batch_scoring import BatchScoring, BatchScoringArgs
from infra.config import (
    BatchScoringConfig,
    MonitoringConfig,
    ServiceConfig,
    ThresholdsConfig,
    parse_section,
    read_stack_file,
    weekly_minute,
)
from infra.monitoring_schedule import APP, DATA_FAULT_EXIT_CODE, MonitoringSchedule, MonitoringScheduleArgs
from infra.offline import OfflineRun, _run_program, preview_service
from infra.providers.kinds import SERVED_MODEL
from ml.settings import GateSettings, MonitorSettings

from .conftest import PROJECT_DIR
from .helpers import build, policy_of, statements
from .test_batch_scoring import (
    ARTIFACTS,
    BATCH_LABELS,
    BATCH_TAINTS,
    BUNDLE_PREFIX,
    BUNDLE_SHA,
    DATA_KEY,
    IMAGE,
    ISSUER,
    LAKE,
    Autoscaler,
    env_of,
)
from .test_batch_scoring import container as container  # fixtures over this module's `cron`
from .test_batch_scoring import job as job
from .test_batch_scoring import pod as pod


def monitoring(scoring: BatchScoringConfig | None = None, time_zone: str = "Etc/UTC", **args) -> OfflineRun:
    def program() -> None:
        batch = BatchScoring("batch", BatchScoringArgs(
            environment="test", region="ap-southeast-1", image=IMAGE, lake_bucket="lake-raw", lake_bucket_arn=LAKE,
            bundle_uri=f"s3://lake-artifacts/{BUNDLE_PREFIX}/{BUNDLE_SHA}/", bundle_bucket_arn=ARTIFACTS,
            bundle_prefix=BUNDLE_PREFIX,
            bundle_sha256=BUNDLE_SHA, data_kms_key_arn=DATA_KEY,
            oidc_provider_arn=f"arn:aws:iam::123456789012:oidc-provider/{ISSUER}", oidc_issuer=ISSUER,
            node_labels=BATCH_LABELS, node_taints=BATCH_TAINTS, vpc_cidr="10.40.0.0/16", s3_cidrs=["52.219.0.0/20"],
            autoscaler=Autoscaler("autoscaler"), time_zone=time_zone, sizing=scoring or BatchScoringConfig(),
        ))  # fmt: skip
        MonitoringSchedule("monitoring", MonitoringScheduleArgs(beside=batch, **args))

    return build(program)


@pytest.fixture(scope="module")
def run() -> OfflineRun:
    return monitoring()


def ours(run, kind):
    (resource,) = [r for r in run.resources if r.type.endswith(f":{kind}") and r.name.startswith("monitoring-")]
    return resource


def scorers(run, kind):
    (resource,) = [r for r in run.resources if r.type.endswith(f":{kind}") and r.name.startswith("batch-")]
    return resource


@pytest.fixture(scope="module")
def cron(run):
    return ours(run, "CronJob").inputs["spec"]


# --- what it runs -------------------------------------------------------------------------------------------------
def test_the_container_runs_retail_monitor_on_pending_weeks_with_the_served_bundle_pinned_and_no_registry(container):
    assert container["image"] == IMAGE
    assert container["command"] == ["python", "-m", "cli.monitor"]  # `retail monitor` as the image ships it
    assert container["args"] == [
        "--week", "pending", "--bundle", f"s3://lake-artifacts/{BUNDLE_PREFIX}/{BUNDLE_SHA}/", "--no-registry",
    ]  # fmt: skip

def test_the_served_bundle_is_pinned_to_the_hash_the_scorer_pins(run, container):
    scoring_env = env_of(scorers(run, "CronJob").inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]
                         ["containers"][0])
    assert env_of(container)["RETAIL_MODEL_SHA256"] == scoring_env["RETAIL_MODEL_SHA256"]
    assert len(scoring_env["RETAIL_MODEL_SHA256"]) == 64


def test_it_reads_batch_scorings_lake_and_publishes_its_figures_as_emf(run, container):
    env = env_of(container)
    scoring_env = env_of(scorers(run, "CronJob").inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]
                         ["containers"][0])
    assert env["RETAIL_LAKE_ROOT"] == scoring_env["RETAIL_LAKE_ROOT"] == "s3://lake-raw/lake"
    assert (env["RETAIL_EMF_ENABLED"], env["RETAIL_ENVIRONMENT"]) == ("true", "test")
    assert env["RETAIL_WORK_DIR"].startswith("/tmp/") and env["HOME"] == "/tmp"


def test_last_week_is_read_in_the_cron_jobs_time_zone():
    run = monitoring(time_zone="Asia/Singapore")
    spec = ours(run, "CronJob").inputs["spec"]
    assert spec["timeZone"] == "Asia/Singapore"
    assert env_of(spec["jobTemplate"]["spec"]["template"]["spec"]["containers"][0])["TZ"] == "Asia/Singapore"


def test_by_default_the_run_judges_the_week_by_ml_settings_defaults_every_one_set(container):
    env = env_of(container)
    gate, settings = GateSettings(), MonitorSettings()
    assert float(env["RETAIL_GATE_MIN_MACRO_F1"]) == gate.min_macro_f1
    assert float(env["RETAIL_GATE_MIN_ACCURACY"]) == gate.min_accuracy
    assert float(env["RETAIL_MONITOR_DRIFT_PSI"]) == settings.drift_psi
    assert int(env["RETAIL_MONITOR_MIN_BASKETS"]) == settings.min_baskets
    assert {name for name in env if name.startswith(("RETAIL_GATE_", "RETAIL_MONITOR_"))} == {
        f"RETAIL_GATE_{name.upper()}" for name in GateSettings.model_fields} | {
        f"RETAIL_MONITOR_{name.upper()}" for name in MonitorSettings.model_fields}


def test_the_run_judges_by_the_thresholds_it_is_given_not_by_the_deploying_environment(monkeypatch):
    monkeypatch.setenv("RETAIL_GATE_MIN_MACRO_F1", "0.1")
    monkeypatch.setenv("RETAIL_MONITOR_MIN_BASKETS", "5")
    given = parse_section(ThresholdsConfig, {"gate": {"minAccuracy": 0.8}}, "t")
    spec = ours(monitoring(thresholds=given), "CronJob").inputs["spec"]
    env = env_of(spec["jobTemplate"]["spec"]["template"]["spec"]["containers"][0])
    assert (env["RETAIL_GATE_MIN_ACCURACY"], env["RETAIL_GATE_MIN_MACRO_F1"]) == ("0.8", "0.7")
    assert env["RETAIL_MONITOR_MIN_BASKETS"] == "100"


# --- when and how long ----------------------------------------------------------------------------------------------
def test_the_cron_job_runs_weekly_after_scoring_in_scorings_time_zone_without_overlap(cron):
    assert (cron["schedule"], cron["timeZone"], cron["suspend"]) == ("0 6 * * 1", "Etc/UTC", False)
    assert cron["concurrencyPolicy"] == "Forbid" and cron["startingDeadlineSeconds"] == 3600


def test_a_run_is_stopped_after_an_hour_and_an_input_or_data_fault_fails_at_once(cron, pod):
    job = cron["jobTemplate"]["spec"]
    assert (job["activeDeadlineSeconds"], job["backoffLimit"], job["ttlSecondsAfterFinished"]) == (3600, 2, 345600)
    ignore, fail = job["podFailurePolicy"]["rules"]
    assert ignore["onPodConditions"] == [{"type": "DisruptionTarget", "status": "True"}]
    assert fail["onExitCodes"] == {"containerName": "monitor", "operator": "In", "values": [2, 3]}
    # the codes the command exits with on a week it cannot read and on keys that do not join (cli/monitor.py)
    assert (monitor_command.INPUT_EXIT_CODE, monitor_command.DATA_FAULT_EXIT_CODE) == (2, 3) == (
        INPUT_ERROR_EXIT_CODE, DATA_FAULT_EXIT_CODE)
    assert pod["restartPolicy"] == "Never"


def test_requests_limits_and_scratch_come_from_retail_monitoring(container, pod):
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "1536Mi"},
                                      "limits": {"cpu": "1", "memory": "1536Mi"}}
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}]
    sized = monitoring(sizing=MonitoringConfig(cpu_limit="2", memory_request="1Gi", memory_limit="3Gi"))
    resources = ours(sized, "CronJob").inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert resources["resources"]["limits"] == {"cpu": "2", "memory": "3Gi"}


# --- where it runs, as batch scoring does ---------------------------------------------------------------------------
def test_it_runs_in_batch_scorings_namespace_on_the_batch_nodes_after_the_autoscaler(run, pod):
    (namespace,) = run.of_type("kubernetes:core/v1:Namespace")
    (autoscaler,) = run.of_type("test:index:Autoscaler")
    cron_job = ours(run, "CronJob")
    assert cron_job.inputs["metadata"]["namespace"] == namespace.inputs["metadata"]["name"] == "retail-batch"
    assert {namespace.urn, autoscaler.urn, ours(run, "NetworkPolicy").urn} <= set(cron_job.dependencies)
    assert pod["nodeSelector"] == BATCH_LABELS
    assert [t["key"] for t in pod["tolerations"]] == ["retail.io/workload"]
    annotations = cron_job.inputs["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}


def test_its_pods_are_hardened_like_the_scorers(run, pod, container):
    scoring_pod = scorers(run, "CronJob").inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["securityContext"] == scoring_pod["securityContext"]
    assert container["securityContext"] == scoring_pod["containers"][0]["securityContext"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["automountServiceAccountToken"] is False


def test_its_own_network_policy_admits_nothing_and_lets_it_reach_dns_the_vpc_and_s3(run):
    policy = ours(run, "NetworkPolicy").inputs["spec"]
    assert policy["podSelector"] == {"matchLabels": {"app": APP}}
    assert policy["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in policy
    assert policy["egress"] == scorers(run, "NetworkPolicy").inputs["spec"]["egress"]


# --- identity and permissions -----------------------------------------------------------------------------------------
def test_its_own_service_account_has_the_monitor_role_which_trusts_only_it(run, pod):
    role = ours(run, "Role")
    account = ours(run, "ServiceAccount").inputs
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": role.outputs["arn"]}
    assert pod["serviceAccountName"] == account["metadata"]["name"] == APP
    (trust,) = policy_of(role, "assumeRolePolicy")["Statement"]
    assert trust["Condition"]["StringEquals"][f"{ISSUER}:sub"] == f"system:serviceaccount:retail-batch:{APP}"


def test_the_role_reads_predictions_silver_reports_and_the_bundle_and_writes_reports_only(run):
    access = ours(run, "RolePolicy")
    assert {s["Sid"]: (s["Action"], s["Resource"], s.get("Condition")) for s in statements(access)} == {
        "ListPredictionsZone": ("s3:ListBucket", LAKE, {"StringLike": {"s3:prefix": "lake/predictions/*"}}),
        "ReadPredictionsZone": ("s3:GetObject", f"{LAKE}/lake/predictions/*", None),
        "ListSilverZone": ("s3:ListBucket", LAKE, {"StringLike": {"s3:prefix": "lake/silver/*"}}),
        "ReadSilverZone": ("s3:GetObject", f"{LAKE}/lake/silver/*", None),
        "ListMonitoringZone": ("s3:ListBucket", LAKE, {"StringLike": {"s3:prefix": "lake/monitoring/*"}}),
        "ReadMonitoringZone": ("s3:GetObject", f"{LAKE}/lake/monitoring/*", None),
        "ListServedBundle": ("s3:ListBucket", ARTIFACTS, {"StringLike": {"s3:prefix": f"{BUNDLE_PREFIX}/*"}}),
        "ReadServedBundle": ("s3:GetObject", f"{ARTIFACTS}/{BUNDLE_PREFIX}/*", None),
        "WriteMonitoringZone": ("s3:PutObject", f"{LAKE}/lake/monitoring/*", None),
        "UseDataKeyThroughS3": (
            ["kms:Decrypt", "kms:GenerateDataKey"],
            DATA_KEY,
            {"StringEquals": {"kms:ViaService": "s3.ap-southeast-1.amazonaws.com"}},
        ),
    }
    text = json.dumps(statements(access))
    assert "Delete" not in text and '"*"' not in text


def test_the_scorers_role_is_unchanged_by_the_monitor_beside_it(run):
    assert {s["Sid"] for s in statements(scorers(run, "RolePolicy"))} == {
        "ListSilverZone", "ReadSilverZone", "ListServedBundle", "ReadServedBundle", "WritePredictions",
        "UseDataKeyThroughS3",
    }  # fmt: skip


# --- retail:monitoring ------------------------------------------------------------------------------------------
def service_config(**sections) -> ServiceConfig:
    return ServiceConfig(
        project="retail-mlops-service", environment="dev", region="ap-southeast-1", owner="o", cost_center="c",
        platform_stack="org/retail-mlops/dev", image=IMAGE,
        model_package_arn="arn:aws:sagemaker:ap-southeast-1:123456789012:model-package/g/1", **sections,
    )  # fmt: skip


@pytest.mark.parametrize(("schedule", "minute"), [("0 6 * * 1", 360), ("30 23 * * 0", 10_050), ("0 0 * * 7", 8_640),
                                                  ("0 6 * * 1-5", None), ("*/5 * * * *", None), ("0 24 * * 1", None)])
def test_the_minute_of_the_week_of_a_weekly_schedule(schedule, minute):
    assert weekly_minute(schedule) == minute


def test_retail_monitoring_reads_camel_case_keys_and_defaults_to_mondays_after_scoring():
    config = parse_section(MonitoringConfig, {"schedule": "15 7 * * 2", "memoryLimit": "3Gi"}, "m")
    assert (config.schedule, config.memory_limit) == ("15 7 * * 2", "3Gi")
    defaults = service_config()
    assert defaults.monitoring.schedule == "0 6 * * 1" and defaults.monitoring.suspend is False


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"schedule": "0 6 * * 1-5"}, "once a week"),
        ({"schedule": "@weekly"}, "five cron fields"),
        ({"memoryLimit": "512Mi", "memoryRequest": "512Mi"}, "peaks near 600 MiB"),
        ({"memoryRequest": "4Gi"}, "exceeds memoryLimit"),
        ({"timeZone": "Etc/UTC"}, "Extra inputs"),  # batch scoring's time zone is the monitor's
    ],
)
def test_retail_monitoring_refuses_what_cannot_run(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_section(MonitoringConfig, raw, "retail:monitoring")


def test_the_monitor_must_start_after_the_scoring_run_has_surely_ended():
    with pytest.raises(ValueError, match="starts before the week's batch scoring run"):
        service_config(monitoring=MonitoringConfig(schedule="0 4 * * 1"))  # scoring: 03:00 + 1 hour + 2 hours
    with pytest.raises(ValueError, match="starts before"):
        service_config(batch_scoring=BatchScoringConfig(schedule="0 4 * * 1"))  # 04:00 + 3 hours: after 06:00
    shorter = BatchScoringConfig(schedule="0 4 * * 1", active_deadline_seconds=3600)
    assert service_config(batch_scoring=shorter).monitoring.schedule == "0 6 * * 1"  # ends at 06:00 at the latest


def test_the_scoring_runs_start_grace_counts_towards_when_it_ends():
    """A Job may be created up to startingDeadlineSeconds late, and its active deadline counts from then."""
    with pytest.raises(ValueError, match="starting up to 21600 s late"):
        service_config(batch_scoring=BatchScoringConfig(starting_deadline_seconds=21600))  # 03:00 + 6 h + 2 h
    brief = BatchScoringConfig(starting_deadline_seconds=1800)  # 03:00 + 30 min + 2 h = 05:30
    assert service_config(batch_scoring=brief, monitoring=MonitoringConfig(schedule="30 5 * * 1"))
    with pytest.raises(ValueError, match="starts before"):
        service_config(batch_scoring=brief, monitoring=MonitoringConfig(schedule="29 5 * * 1"))


def test_the_monitor_must_end_in_the_week_it_starts_start_grace_included():
    with pytest.raises(ValueError, match="may end after Sunday midnight"):
        service_config(monitoring=MonitoringConfig(schedule="30 23 * * 0"))
    with pytest.raises(ValueError, match="3600 s start grace"):
        service_config(monitoring=MonitoringConfig(schedule="30 22 * * 0"))  # 22:30 + 1 h + 1 h
    assert service_config(monitoring=MonitoringConfig(schedule="0 22 * * 0"))  # ends at 24:00 at the latest


def test_the_batch_jobs_time_zone_is_not_service_config():
    """It is the platform's `retail:observability.batchTimeZone`, the zone its missed-run alarms count weeks in."""
    with pytest.raises(ValueError, match="retail:observability.batchTimeZone"):
        parse_section(BatchScoringConfig, {"timeZone": "Etc/UTC"}, "retail:batchScoring")


def test_every_service_stack_declares_weekly_monitoring_and_only_ephemeral_suspends_it_with_scoring():
    """Ephemeral scores nothing (batch scoring suspended), so it has nothing to monitor: policy
    served-model-monitoring-active is disabled there only."""
    for stack in ("dev", "prod", "ephemeral"):
        config = read_stack_file(PROJECT_DIR / "service", stack).config
        monitor = parse_section(MonitoringConfig, json.loads(config["retail:monitoring"]), f"{stack} monitoring")
        scoring = parse_section(BatchScoringConfig, json.loads(config["retail:batchScoring"]), f"{stack} scoring")
        assert weekly_minute(monitor.schedule) is not None
        assert monitor.suspend is scoring.suspend is (stack == "ephemeral"), stack


# --- in the service stack -------------------------------------------------------------------------------------------
def test_the_service_monitors_with_the_served_bundle_and_the_image_it_serves(dev_service):
    (served,) = [r for r in dev_service.resources if r.inputs.get("kind") == SERVED_MODEL]
    (job,) = [r for r in dev_service.of_type("kubernetes:batch/v1:CronJob") if r.name.endswith("-monitoring-cron-job")]
    (container,) = job.inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == dev_service.stack_outputs["image"]
    assert container["args"][container["args"].index("--bundle") + 1] == served.outputs["model_uri"]


def monitor_env(service: OfflineRun) -> dict[str, str]:
    (job,) = [r for r in service.of_type("kubernetes:batch/v1:CronJob") if r.name.endswith("-monitoring-cron-job")]
    return env_of(job.inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0])


def test_the_platforms_thresholds_and_time_zone_set_its_alarms_and_the_services_cron_jobs(monkeypatch):
    """One `retail:thresholds` and one `batchTimeZone`, in the platform's stack file; the deployer's environment
    changes neither side."""
    monkeypatch.setenv("RETAIL_GATE_MIN_MACRO_F1", "0.1")
    monkeypatch.setenv("RETAIL_MONITOR_DRIFT_PSI", "9")
    observability = json.loads(read_stack_file(PROJECT_DIR, "dev").config["retail:observability"])
    platform = _run_program(PROJECT_DIR, "dev", extra_config={
        "retail:thresholds": json.dumps({"gate": {"minMacroF1": 0.62},
                                         "monitor": {"driftPsi": 0.4, "minBaskets": 250}}),
        "retail:observability": json.dumps({**observability, "batchTimeZone": "Asia/Singapore",
                                            "heartbeatMissingBreaches": True}),
    })  # fmt: skip
    service = preview_service("dev", PROJECT_DIR, platform)
    pulumi.runtime.reset_options()
    alarms = {r.name: r.inputs for r in platform.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    assert alarms["retail-dev-obs-monitored-macro-f1"]["threshold"] == 0.62
    assert alarms["retail-dev-obs-monitored-drift"]["threshold"] == 0.4
    for missed in ("monitor-missed", "batch-scoring-missed"):
        assert alarms[f"retail-dev-obs-{missed}"]["evaluationWindow"] == {
            "wallClockWindow": {"timezone": "Asia/Singapore"}}
    env = monitor_env(service)
    assert (env["RETAIL_GATE_MIN_MACRO_F1"], env["RETAIL_MONITOR_DRIFT_PSI"]) == ("0.62", "0.4")
    assert (env["RETAIL_MONITOR_MIN_BASKETS"], env["RETAIL_GATE_MIN_ACCURACY"]) == ("250", "0.75")
    cron_jobs = service.of_type("kubernetes:batch/v1:CronJob")
    assert {job.inputs["spec"]["timeZone"] for job in cron_jobs} == {"Asia/Singapore"} and len(cron_jobs) == 2
    assert env["TZ"] == "Asia/Singapore"
    assert service.stack_outputs["monitoringSchedule"] == "0 6 * * 1 (Asia/Singapore)"


def test_the_service_exports_the_schedule_and_where_the_reports_go(dev, dev_service):
    raw = dev.stack_outputs["lakeBuckets"]["raw"]
    assert dev_service.stack_outputs["monitoringSchedule"] == "0 6 * * 1 (Etc/UTC)"
    assert dev_service.stack_outputs["monitoringReportsUri"] == f"s3://{raw}/lake/monitoring/"
