"""The monitor role allows every S3 request `retail monitor` makes, as the monitoring CronJob runs it.

The CronJob's command (`python -m cli.monitor`, as the inference image ships it) runs in a child process
against moto's S3 with the CronJob's arguments (`--week pending`) and environment, the served bundle's hash as
RETAIL_MODEL_SHA256. The lake holds what a week of the platform holds:
the last two weeks of the shared small pipeline run's silver lines, their predictions by the champion
bundle published under the serving prefix (scored as the batch-scoring CronJob scores them), and the
previous week's report. The run's EMF line holds every metric the platform's monitoring alarms read. Every
request the server receives is turned into the IAM request S3 authorises it
as (tests/infra/test_batch_scoring_contract.py `iam_request`) and evaluated against the policy the
MonitoringSchedule component renders (policies.documents.allows). KMS is not exercised (moto's buckets
here are not SSE-KMS); the data-key statement is checked by `retail infra check` (batch-job-s3-access).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from infra.batch_scoring import BatchScoring, BatchScoringArgs
from infra.config import BatchScoringConfig, ThresholdsConfig, parse_section
from infra.monitoring_schedule import COMMAND, PENDING_WEEKS, MonitoringSchedule, MonitoringScheduleArgs
from infra.observability import Observability, ObservabilityArgs
from ml.lake import SILVER_LINES
from policies.documents import Need, allows
from policies.producers import MONITOR_METRICS

from .conftest import PROJECT_DIR
from .helpers import build, statements
from .test_batch_scoring_contract import REGION, iam_request
from .test_batch_scoring_contract import s3 as s3  # the recording moto server, a fixture of this module too

LAKE, ARTIFACTS = "monitoring-contract-lake", "monitoring-contract-artifacts"  # unique on the shared moto server
BUNDLE_PREFIX = "models/price-sensitivity/serving/test"
RUN = "20240101T000000Z-contract"
THRESHOLDS = parse_section(ThresholdsConfig, {"monitor": {"minBaskets": 20}}, "retail:thresholds")
"""The platform's thresholds here: the small week holds 50 labelled baskets, so it is judged and has figures."""


@pytest.fixture(scope="module")
def served_bundle(small_run):
    """The champion's bundle, as the ServedModel publishes it (in a folder named by its manifest SHA-256)."""
    from api.model_source import RegistrySource

    source = RegistrySource(small_run.settings)
    return source.fetch(source.fingerprint())


@pytest.fixture(scope="module")
def cron_job(served_bundle):
    """The CronJob's container and its role's statements, as the component renders them for these buckets and the
    served bundle."""

    def program() -> None:
        scoring = BatchScoring("batch", BatchScoringArgs(
            environment="test", region=REGION, image="registry/inference@sha256:" + "0" * 64,
            lake_bucket=LAKE, lake_bucket_arn=f"arn:aws:s3:::{LAKE}",
            bundle_uri=f"s3://{ARTIFACTS}/{BUNDLE_PREFIX}/{served_bundle.sha256}/",
            bundle_bucket_arn=f"arn:aws:s3:::{ARTIFACTS}", bundle_prefix=BUNDLE_PREFIX,
            bundle_sha256=served_bundle.sha256, data_kms_key_arn=f"arn:aws:kms:{REGION}:123456789012:key/data",
            oidc_provider_arn="arn:aws:iam::123456789012:oidc-provider/oidc.eks.example/id/X",
            oidc_issuer="oidc.eks.example/id/X", node_labels={}, node_taints=[], vpc_cidr="10.0.0.0/16",
            s3_cidrs=[], sizing=BatchScoringConfig(),
        ))  # fmt: skip
        MonitoringSchedule("monitoring", MonitoringScheduleArgs(beside=scoring, thresholds=THRESHOLDS))

    run = build(program)
    (job,) = [r for r in run.of_type("kubernetes:batch/v1:CronJob") if r.name == "monitoring-cron-job"]
    (policy,) = [r for r in run.of_type("aws:iam/rolePolicy:RolePolicy") if r.name == "monitoring-monitor-access"]
    (container,) = job.inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    return container, statements(policy)


@pytest.fixture(scope="module")
def lake_of_a_week(s3, small_run, served_bundle, tmp_path_factory):
    """The moto lake after a week's scoring run and the week before's monitoring run; returns the week."""
    import boto3

    from cli.monitor import bundles_from, run_monitor
    from cli.score import choose_model
    from ml.score import input_at, score
    from ml.settings import GateSettings, MonitorSettings
    from tests.conftest import settings_under

    client = boto3.client("s3")
    for bucket in (LAKE, ARTIFACTS):
        client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    bundle = served_bundle
    for file in sorted(p for p in bundle.folder.rglob("*") if p.is_file()):
        key = f"{BUNDLE_PREFIX}/{bundle.sha256}/{file.relative_to(bundle.folder).as_posix()}"
        client.upload_file(str(file), ARTIFACTS, key)
    lines = pl.read_parquet(Path(small_run.settings.lake_root) / "silver" / small_run.result.run_id / SILVER_LINES)
    week = int(lines["SHOP_WEEK"].max())
    scratch = tmp_path_factory.mktemp("monitoring-contract")
    two_weeks = scratch / "lines.parquet"
    lines.filter(pl.col("SHOP_WEEK") >= week - 1).write_parquet(two_weeks)
    client.upload_file(str(two_weeks), LAKE, f"lake/silver/{RUN}/{SILVER_LINES}")
    settings = settings_under(scratch, lake_root=f"s3://{LAKE}/lake")
    model = choose_model(settings, bundle=f"s3://{ARTIFACTS}/{BUNDLE_PREFIX}/{bundle.sha256}/")
    score(input_at(str(two_weeks)), model, settings)
    run_monitor(week - 1, settings, GateSettings(), MonitorSettings(), f"s3://{LAKE}/lake/monitoring",
                bundles_from(settings, [f"s3://{ARTIFACTS}/{BUNDLE_PREFIX}/{bundle.sha256}/"], registry=False))
    return week


@pytest.fixture(scope="module")
def monitoring_run(s3, cron_job, lake_of_a_week, tmp_path_factory):
    """`retail monitor` as the CronJob runs it (`--week pending`: the week, whose week before has its report
    already), pinned to the served bundle's hash; returns (exit code, output, the requests it made)."""
    container, _ = cron_job
    scratch = tmp_path_factory.mktemp("monitoring-job")
    env = {**os.environ, **{e["name"]: e["value"] for e in container["env"]},
           "RETAIL_WORK_DIR": str(scratch / "work"), "HOME": str(scratch)}  # the pod's /tmp, here
    arguments = [str(a) for a in container["args"]]
    assert PENDING_WEEKS in arguments
    python, *module = COMMAND
    assert python == "python" and container["command"] == list(COMMAND)
    s3.requests.clear()
    done = subprocess.run(
        [sys.executable, *module, *arguments], env=env, cwd=PROJECT_DIR, capture_output=True, text=True, timeout=600
    )
    return done.returncode, done.stdout + done.stderr, list(s3.requests)


def monitoring_alarm_metrics() -> set[str]:
    """The monitor's metrics the platform's alarms read (infra/observability.py)."""
    args = ObservabilityArgs(environment="test", region=REGION, account_id="123456789012", logs_kms_key_arn="key",
                             thresholds=THRESHOLDS)
    alarms = build(lambda: Observability("obs", args)).of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    names: set[str] = set()
    for alarm in alarms:
        specs = [q["metric"] for q in alarm.inputs.get("metricQueries") or [] if "metric" in q] or [alarm.inputs]
        names |= {spec.get("metricName") for spec in specs}
    return names & MONITOR_METRICS


def test_the_command_succeeds_as_the_cron_job_runs_it_and_publishes_what_the_alarms_read(monitoring_run):
    exit_code, output, _ = monitoring_run
    assert exit_code == 0, output
    (line,) = [json.loads(x) for x in output.splitlines() if x.startswith('{"_aws"')]
    assert line["MonitorRunFailed"] == 0 and line["Environment"] == "test"
    read = monitoring_alarm_metrics()
    # The run's status and the four figures, PSI too: the served bundle gave the champion's reference.
    assert len(read) == 5 and read <= set(line)


def test_it_reads_predictions_silver_reports_and_the_bundle_and_writes_the_weeks_report(monitoring_run,
                                                                                      lake_of_a_week):
    _, _, requests = monitoring_run
    asked = {(action, "/".join(arn.split(":::", 1)[1].split("/")[:3]))
             for action, arn, _ in (iam_request(*r) for r in requests)}  # fmt: skip
    for zone in ("predictions", "silver", "monitoring"):
        assert ("s3:GetObject", f"{LAKE}/lake/{zone}") in asked, zone
    assert ("s3:GetObject", f"{ARTIFACTS}/models/price-sensitivity") in asked
    written = {arn.split(":::", 1)[1] for action, arn, _ in (iam_request(*r) for r in requests)
               if action == "s3:PutObject"}  # fmt: skip
    assert written == {f"{LAKE}/lake/monitoring/week={lake_of_a_week}/{name}"
                       for name in ("report.json", "report.html", "trends.png", "week.png")}


def test_the_monitor_role_allows_every_request_it_makes(monitoring_run, cron_job):
    _, _, requests = monitoring_run
    _, role = cron_job
    denied = sorted(
        {
            f"{action} on {arn} {json.dumps(context) if context else ''}".strip()
            for action, arn, context in (iam_request(*r) for r in requests)
            if allows(role, Need((action,), resources=(arn,), context=context))
        }
    )
    assert denied == [], "AccessDenied on AWS:\n" + "\n".join(denied)
