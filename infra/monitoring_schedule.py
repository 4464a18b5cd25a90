"""The monitoring schedule on EKS: `retail monitor --week pending` as a weekly CronJob beside batch scoring.

What runs: once a week (`retail:monitoring.schedule`, in the batch jobs' time zone, after that week's
scoring run has ended) a Job runs, in the inference image the service deploys (the same digest, which
ships `python -m cli.monitor` and matplotlib for the report's figures):

    python -m cli.monitor --week pending --bundle s3://<artifacts>/<serving>/<sha256>/ --no-registry

with RETAIL_LAKE_ROOT=s3://<lake>/<prefix>, batch scoring's lake root, and RETAIL_MODEL_SHA256 the served
manifest's hash, as the scorer pins it. `--week pending` takes its weeks from the data, not the clock (the
lake's weeks are the data's, and labels land late): each week with predictions and labels but no report yet,
oldest first, at most RETAIL_MONITOR_PENDING_WEEKS a run; with none it exits 0. TZ is the platform's
`batchTimeZone` (the zone its missed-run alarms count weeks in; the image's python slim base installs Debian's
tzdata), which `--week last` would read the date in. The command (cli/monitor.py) joins the week's predictions under
`<lake root>/predictions/` (batch runs and the service's log) with its labels from `<lake root>/silver/`,
reads the earlier weeks' reports and writes the week's report under `<lake root>/monitoring/week=W/`.
The served bundle gives the champion's training reference for the PSI (`--bundle`: the versions the
service and the scorer log are `sha256:...` ones); the MLflow registry is not on AWS (`--no-registry`),
so the challenger is never promoted from here (no `--promote`): promotion goes through the SageMaker
model registry and a deploy.

The thresholds the run judges the week by (RETAIL_GATE_* and RETAIL_MONITOR_*, ml/settings.py) are the
platform stack's `retail:thresholds`, read from its `thresholds` output: the values the platform's monitoring
alarms compare the published figures with (infra/observability.py), so the report and the alarms agree, and
no deployer's shell environment enters either.

How it runs (the bounds, the batch nodes, pod security, the NetworkPolicy, EMF shipping) is what every
batch job shares: infra/batch_job.py. It runs in batch scoring's namespace, under its own
ServiceAccount and NetworkPolicy, after the autoscaler; exit codes 2 (an input fault: a bundle that cannot be
had) and 3 (a data fault: no predicted basket's key joins the week's silver lines) fail the Job at once (its
pod failure policy) and are published as `MonitorRunFailed` 1.

What it may do: its ServiceAccount's IRSA role allows only
- s3:ListBucket (with an `s3:prefix` condition) and s3:GetObject under `<lake prefix>/predictions/`,
  `<lake prefix>/silver/` and `<lake prefix>/monitoring/` (the earlier weeks' reports), and under the
  serving bundle's prefix;
- s3:PutObject under `<lake prefix>/monitoring/`: the report store puts each file with one PutObject
  (ml/monitor_report.py `ReportStore`, no directory markers, no HeadBucket);
- kms:Decrypt and kms:GenerateDataKey on the data key, only through S3 (`kms:ViaService`).
tests/infra/test_monitoring_contract.py runs the CronJob's command against moto's S3 and checks every
request it makes against this role.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from infra.batch_job import INPUT_ERROR_EXIT_CODE, BatchJob, BatchJobSpec
from infra.batch_scoring import BatchScoring
from infra.config import MonitoringConfig, ThresholdsConfig
from infra.iam import policy_document
from infra.s3_access import data_key_through_s3, join, read_prefix, write_prefix

APP = "retail-monitoring"
CONTAINER = "monitor"
COMMAND = ("python", "-m", "cli.monitor")
"""`retail monitor`, as the inference image ships it (Dockerfile: cli/monitor.py run as a module)."""
PENDING_WEEKS = "pending"
"""`--week pending`: the weeks with predictions and labels but no report yet (cli/monitor.py)."""
DATA_FAULT_EXIT_CODE = 3
"""cli/monitor.py's exit code when no predicted basket's key joins the week's silver lines."""
REPORTS = "monitoring"
"""The folder under the lake root the reports go to (cli/monitor.py's default `--out`)."""


@dataclass
class MonitoringScheduleArgs:
    beside: BatchScoring
    """The batch scoring it follows: its image, lake, served bundle, nodes, namespace and time zone."""
    sizing: MonitoringConfig = field(default_factory=MonitoringConfig)
    thresholds: pulumi.Input[ThresholdsConfig] = field(default_factory=ThresholdsConfig)
    """What the run judges the week by: the platform's `retail:thresholds` (its `thresholds` output, parsed), the
    values its monitoring alarms are set at."""


class MonitoringSchedule(pulumi.ComponentResource):
    """The weekly `retail monitor` CronJob, its ServiceAccount, IRSA role and NetworkPolicy."""

    role_arn: pulumi.Output[str]
    reports_uri: pulumi.Output[str]
    cron_job_name: pulumi.Output[str]

    def __init__(self, name: str, args: MonitoringScheduleArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("retail:infra:MonitoringSchedule", name, None, opts)
        scoring = args.beside.args
        job = BatchJob(
            self,
            name,
            scoring,
            BatchJobSpec(
                app=APP,
                container=CONTAINER,
                command=COMMAND,
                args=["--week", PENDING_WEEKS, "--bundle", args.beside.bundle_uri, "--no-registry"],
                lake_root=args.beside.lake_root,
                env={"TZ": scoring.time_zone, "RETAIL_MODEL_SHA256": scoring.bundle_sha256,
                     **threshold_variables(args.thresholds)},
                role="monitor",
                role_description="Monitoring pods: read predictions, silver and reports and the served bundle, "
                "write reports",
                role_policy=monitor_policy(args),
                namespace=scoring.sizing.namespace,
                time_zone=scoring.time_zone,
                sizing=args.sizing,
                fail_job_exit_codes=(INPUT_ERROR_EXIT_CODE, DATA_FAULT_EXIT_CODE),
            ),
            after=[args.beside.namespace_object],
        )
        self.role_arn = job.role.arn
        self.reports_uri = args.beside.lake_root.apply(lambda root: f"{root}/{REPORTS}/")
        self.cron_job_name = job.cron_job.metadata.name
        self.register_outputs(
            {"role_arn": self.role_arn, "reports_uri": self.reports_uri, "cron_job_name": self.cron_job_name}
        )


def threshold_variables(thresholds: pulumi.Input[ThresholdsConfig]) -> dict[str, pulumi.Output[str]]:
    """RETAIL_GATE_* and RETAIL_MONITOR_*, one per threshold (the names are known before the values)."""
    known = pulumi.Output.from_input(thresholds)
    return {name: known.apply(lambda t, name=name: t.environment()[name]) for name in ThresholdsConfig().environment()}


def monitor_policy(args: MonitoringScheduleArgs) -> pulumi.Output[str]:
    """Read predictions, silver, the reports and the served bundle, write reports, use the data key through S3."""
    scoring = args.beside.args
    lake, lake_prefix = scoring.lake_bucket_arn, scoring.sizing.lake_prefix
    return policy_document(
        [
            *read_prefix("PredictionsZone", lake, join(lake_prefix, "predictions")),
            *read_prefix("SilverZone", lake, join(lake_prefix, "silver")),
            *read_prefix("MonitoringZone", lake, join(lake_prefix, REPORTS)),
            *read_prefix("ServedBundle", scoring.bundle_bucket_arn, scoring.bundle_prefix),
            write_prefix("WriteMonitoringZone", lake, join(lake_prefix, REPORTS)),
            data_key_through_s3(scoring.data_kms_key_arn, scoring.region),
        ]
    )
