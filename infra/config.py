"""The stacks' configuration as typed objects, and the only place config is read.

Two Pulumi projects read config here:

- the platform (`Pulumi.yaml` at the repository root, `Pulumi.<stack>.yaml`): network,
  keys, audit, lake, registries, observability, the EKS cluster and SageMaker, and what the
  service's weekly jobs share with the platform's alarms (the batch time zone, the thresholds);
- the service (`service/Pulumi.yaml`, `service/Pulumi.<stack>.yaml`): what runs on the
  cluster (load balancer controller, log shipping, the inference API), joined to the
  platform through a StackReference.

`load_platform_config()` and `load_service_config()` read the running stack's config
through `pulumi.Config`, so the same code serves `pulumi up` and the offline preview.
Structured values (`retail:network`, `retail:cluster`, ...) use camelCase keys in YAML
and are validated by pydantic models: an unknown key, a value of the wrong type or a
combination that cannot deploy is an error naming the key. Every field has a secure,
cost-aware default, so a stack only states what differs.

`read_stack_file()` turns a `Pulumi.<stack>.yaml` file into the flat
`namespace:key -> string` map the Pulumi CLI hands a program, so an offline run can
install it with `pulumi.runtime.set_all_config`.
"""

from __future__ import annotations

import copy
import difflib
import ipaddress
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import pulumi
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_settings import BaseSettings

from ml.settings import GateSettings, MonitorSettings

NAMESPACE = "retail"
PLATFORM_PROJECT = "retail-mlops"
SERVICE_PROJECT = "retail-mlops-service"
SERVICE_DIR = "service"
"""The service project's folder, relative to the platform project's."""

IMAGE_DIGEST = re.compile(r"^[a-z0-9][a-z0-9.\-]*(:[0-9]+)?(/[a-z0-9._\-]+)+@sha256:[0-9a-f]{64}$")
MODEL_PACKAGE_ARN = re.compile(r"^arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]+:\d{12}:model-package/[A-Za-z0-9\-]+/\d+$")
DEPLOY_TIME_KEYS = {
    f"{NAMESPACE}:image": "the inference image as <repository>@sha256:<digest>, as CI (or `retail infra up`) pushed it",
    f"{NAMESPACE}:modelPackageArn": "the approved SageMaker model package version the service serves",
}
"""Service config set at deploy time, not in the stack file: `retail infra up` and CI pass them."""


class Section(BaseModel):
    """A config section: camelCase keys in YAML, unknown keys refused, immutable once read."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class NetworkConfig(Section):
    cidr: str = "10.40.0.0/16"
    az_count: int = Field(2, ge=2, le=3)
    nat_per_az: bool = False
    """False: one NAT gateway shared by all AZs (cheap); True: one per AZ (survives an AZ loss)."""

    @field_validator("cidr")
    @classmethod
    def _is_network(cls, value: str) -> str:
        ipaddress.ip_network(value)
        return value


class EncryptionConfig(Section):
    key_deletion_window_days: int = Field(30, ge=7, le=30)


class DataLakeConfig(Section):
    intelligent_tiering_after_days: int = Field(0, ge=0)
    noncurrent_version_expiry_days: int = Field(90, ge=1)
    force_destroy: bool = False
    """True lets `pulumi destroy` empty the buckets; keep False wherever data matters."""


LAKE_ZONES = ("raw", "silver", "gold", "artifacts")
"""The platform's lake buckets (infra/data_lake.py `ZONES`, the platform output lakeBuckets)."""


def _lake_zone(value: str) -> str:
    if value not in LAKE_ZONES:
        raise ValueError(f"lakeZone must be one of the platform's lake buckets {', '.join(LAKE_ZONES)}, got {value!r}")
    return value


def _relative_path(value: str) -> str:
    if value.startswith("/") or "://" in value or ".." in value.split("/"):
        raise ValueError(f"expected a path relative to the bucket or zone, got {value!r}")
    return value.strip("/")


LakeZone = Annotated[str, AfterValidator(_lake_zone)]
"""One of the platform's lake buckets (`LAKE_ZONES`)."""
RelativePath = Annotated[str, AfterValidator(_relative_path)]
"""A path below a bucket or zone, without surrounding slashes; no `..`, no scheme."""

MIN_SCAN_CUTOFF_BYTES = 10_000_000
"""The smallest per-query scan limit Athena accepts: 10,000,000 bytes, the minimum of CreateWorkGroup's
BytesScannedCutoffPerQuery (BytesScannedCutoffValue in botocore's Athena model), not 10 MiB."""


class LakeCatalogConfig(Section):
    """The lake's Glue catalog, Athena workgroup and saved queries: the platform stack's `retail:lakeCatalog`
    (infra/lake_catalog.py). The lake root is where batch scoring reads and writes (the service stack's
    `retail:batchScoring.lakeZone` and `lakePrefix`, tested to agree in every stack file)."""

    enabled: bool = True
    """False: the stack declares no catalog, workgroup or query role (e.g. an account without Athena)."""
    lake_zone: LakeZone = "raw"
    """The lake bucket holding the lake root, as datasets/README.md documents."""
    lake_prefix: RelativePath = "lake"
    """The lake root's prefix in that bucket: the tables read s3://<bucket>/<prefix>/{silver,gold,predictions}/."""
    bytes_scanned_cutoff_per_query: int = 10 * 1024**3
    """Athena cancels a query of the workgroup once it has scanned this many bytes (billed at $5 per TB); at least
    `MIN_SCAN_CUTOFF_BYTES`."""
    results_expiry_days: int = Field(30, ge=1)
    """Query results (and their versions) are deleted from the results bucket this many days after they are written."""
    force_destroy: bool = False
    """True lets `pulumi destroy` empty the results bucket, and delete the workgroup while it holds queries saved
    outside Pulumi."""

    @field_validator("bytes_scanned_cutoff_per_query")
    @classmethod
    def _athena_accepts(cls, value: int) -> int:
        if value < MIN_SCAN_CUTOFF_BYTES:
            raise ValueError(f"bytesScannedCutoffPerQuery must be at least {MIN_SCAN_CUTOFF_BYTES:,} bytes, Athena's "
                             f"minimum, got {value:,}")
        return value


WORKER_MEMORY_GB = {1: (2, 8, 1), 2: (4, 16, 1), 4: (8, 30, 1), 8: (16, 60, 4), 16: (32, 120, 8)}
"""The memory an EMR Serverless worker may have per vCPU count: (least, most, step) in GB (the EMR Serverless User
Guide's worker configurations, app-behavior.html#worker-configs: 8 vCPU workers take 16-60 GB in 4 GB steps, 16 vCPU
ones 32-120 GB in 8 GB steps); a worker's memory is its JVM heap plus its memoryOverhead."""
JVM_OFF_HEAP_GB = 2
"""What the driver's JVM uses outside its heap (metaspace, threads, Arrow buffers to Python): the part of the memory
overhead not given to the job's Python."""
EMR_RELEASE = re.compile(r"^emr-7\.\d+\.\d+$")
"""EMR 7.x releases: Spark 3.5, the line ml/spark_lake.py is written for (Dockerfile.lake's base image matches)."""


class LakeEngineConfig(Section):
    """The lake job's engine: the platform stack's `retail:lakeEngine` (infra/lake_engine.py). The platform declares
    what the job runs as (role, security group, logs); `retail lake build --cloud` declares the EMR Serverless
    application on the image it builds, with these settings, read from the same stack file."""

    enabled: bool = True
    """False: no lake job role, security group or log group (and `retail lake build --cloud` refuses to run)."""
    release_label: str = "emr-7.9.0"
    """The EMR Serverless release; `retail lake build --cloud` builds Dockerfile.lake FROM the same release's base
    image (build arg EMR_RELEASE; the image tag names the release)."""
    base_image_tag: str = Field("20250425", pattern=r"^\d{8}$")
    """The dated tag of the release's base image (public.ecr.aws/emr-serverless/spark/<release>:<tag>, build arg
    EMR_BASE_TAG): pinned, not `latest`, so a rebuild gets the same base; change it with releaseLabel."""
    architecture: Literal["X86_64"] = "X86_64"
    """X86_64 only: infra/images.py builds every image for linux/amd64 (PLATFORM), and an application runs only an
    image of its own architecture; ARM64 would need a second build platform, which nothing here provides."""
    max_cpu: str = Field("16 vCPU", pattern=r"^[1-9]\d* vCPU$")
    max_memory: str = Field("64 GB", pattern=r"^[1-9]\d* GB$")
    max_disk: str = Field("400 GB", pattern=r"^[1-9]\d* GB$")
    """The application's ceiling over all its workers at once: a runaway job stops growing there."""
    idle_timeout_minutes: int = Field(15, ge=1, le=10080)
    """The application stops this long after its last job (no pre-initialized capacity is kept)."""
    job_timeout_minutes: int = Field(120, ge=5, le=1440)
    """EMR Serverless cancels a run still going after this long (StartJobRun executionTimeoutMinutes)."""
    driver_cores: Literal[1, 2, 4, 8, 16] = 4
    driver_memory_gb: int = Field(4, ge=1)
    """The driver's JVM heap: Spark's planning only, the job's work on the driver is Polars in Python."""
    driver_python_memory_gb: int = Field(12, ge=4)
    """The driver's memoryOverhead, where its Python (Polars, pyarrow) lives; the job's `--max-memory-gb` is this less
    `JVM_OFF_HEAP_GB`."""
    executor_cores: Literal[1, 2, 4, 8, 16] = 4
    executor_memory_gb: int = Field(8, ge=1)
    executor_python_memory_gb: int = Field(8, ge=4)
    """Each executor's memoryOverhead, shared by its Python workers (one per core, each running Polars on a piece)."""

    @property
    def job_memory_gb(self) -> int:
        """What the job may hold in the driver's Python (`ml/spark_lake.py --max-memory-gb`)."""
        return self.driver_python_memory_gb - JVM_OFF_HEAP_GB

    @model_validator(mode="after")
    def _workers_fit(self) -> LakeEngineConfig:
        for role, cores, heap, python in (("driver", self.driver_cores, self.driver_memory_gb,
                                           self.driver_python_memory_gb),
                                          ("executor", self.executor_cores, self.executor_memory_gb,
                                           self.executor_python_memory_gb)):
            low, high, step = WORKER_MEMORY_GB[cores]
            if not low <= heap + python <= high or (heap + python - low) % step:
                raise ValueError(f"{role}MemoryGb + {role}PythonMemoryGb must be {low}-{high} GB in {step} GB steps "
                                 f"for {cores} vCPU (an EMR Serverless worker's memory), got {heap + python}")
        return self

    @field_validator("release_label")
    @classmethod
    def _spark_35(cls, value: str) -> str:
        if not EMR_RELEASE.match(value):
            raise ValueError(f"releaseLabel must be an EMR 7.x release (emr-7.<minor>.<patch>: Spark 3.5), got "
                             f"{value!r}")
        return value


class AuditConfig(Section):
    trail: bool = True
    """False: the stack relies on an existing multi-region trail of the account (ephemeral stacks)."""
    retention_days: int = Field(365, ge=1)
    object_lock_days: int | None = Field(90, ge=1)
    """Days each log file is write-once (GOVERNANCE); None: no object lock."""


class RegistryConfig(Section):
    repositories: tuple[str, ...] = ("inference", "training", "lake")
    keep_tagged_images: int = Field(30, ge=1)
    untagged_expiry_days: int = Field(7, ge=1)
    force_delete: bool = False
    """True lets `pulumi destroy` delete repositories that still hold images."""


SPOT_INSTANCE_TYPES_AT_LEAST = 2


class NodeGroupConfig(Section):
    instance_types: tuple[str, ...] = ("m6i.large", "m5.large", "m6a.large", "m7i.large")
    """Of the same vCPUs and memory (and, for Cluster Autoscaler's sake, alike otherwise: burstable t3 types with
    t3, others together; their pods per node differ): on demand EKS takes them in this order, on Spot whichever has
    capacity; the cost estimate prices the first."""
    min_size: int = Field(1, ge=0)
    desired_size: int = Field(2, ge=0)
    max_size: int = Field(4, ge=1)
    spot: bool = False
    disk_size_gb: int = Field(50, ge=20)

    @model_validator(mode="after")
    def _sizes_are_ordered(self) -> NodeGroupConfig:
        if not self.min_size <= self.desired_size <= self.max_size:
            raise ValueError(f"need minSize <= desiredSize <= maxSize, got {self.min_size}, "
                             f"{self.desired_size}, {self.max_size}")
        return self

    @model_validator(mode="after")
    def _spot_is_diversified(self) -> NodeGroupConfig:
        """Spot capacity runs out per instance type and zone: a Spot group of one type cannot start or scale out
        whenever that type has none in the group's zones (the EKS User Guide's Spot managed node groups: several
        types). Cluster Autoscaler models a group by one instance, so the types should have the same vCPUs and
        memory."""
        if self.spot and len(set(self.instance_types)) < SPOT_INSTANCE_TYPES_AT_LEAST:
            raise ValueError(f"spot: true with instanceTypes {list(self.instance_types)}: list at least "
                             f"{SPOT_INSTANCE_TYPES_AT_LEAST} types of the same vCPUs and memory (e.g. m6i.large, "
                             "m5.large, m6a.large, m7i.large), so that one type without Spot capacity does not stop "
                             "the group")
        return self


class ClusterConfig(Section):
    version: str = "1.35"
    public_access_cidrs: tuple[str, ...] = ()
    """Where the public API endpoint answers from; empty: no public endpoint."""
    private_access_cidrs: tuple[str, ...] = ()
    """Networks (inside the VPC or connected to it) from which deployers reach the private endpoint."""
    admin_principal_arns: tuple[str, ...] = ()
    """IAM roles/users (e.g. the CI deploy role) given cluster-admin through EKS access entries."""
    service_nodes: NodeGroupConfig = NodeGroupConfig()
    batch_nodes: NodeGroupConfig = NodeGroupConfig(min_size=0, desired_size=0, spot=True)

    @field_validator("public_access_cidrs", "private_access_cidrs")
    @classmethod
    def _are_networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in value:
            ipaddress.ip_network(cidr)
        return value

    @model_validator(mode="after")
    def _api_is_reachable(self) -> ClusterConfig:
        if not self.public_access_cidrs and not self.private_access_cidrs:
            raise ValueError(
                "the Kubernetes API would be reachable from nowhere the deploy runs: list the deployer's "
                "networks in publicAccessCidrs (public endpoint) or privateAccessCidrs (private endpoint)"
            )
        return self


LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
                      3288, 3653)
"""The retention periods CloudWatch Logs accepts (PutRetentionPolicy)."""
MAX_BUDGET_NOTIFICATIONS = 5
"""AWS Budgets takes at most five notifications per budget; one is the forecast alert."""


def _iana_time_zone(key: str, value: str) -> str:
    from zoneinfo import available_timezones

    if value not in available_timezones():
        raise ValueError(f"{key} must be an IANA time zone name such as Etc/UTC or Asia/Singapore, got {value!r}")
    return value


class ObservabilityConfig(Section):
    log_retention_days: int = Field(30, ge=1)
    latency_p95_threshold_ms: int = Field(200, ge=1)
    error_rate_threshold_percent: float = Field(1.0, gt=0)
    drift_threshold: float = Field(0.2, gt=0)
    heartbeat_missing_breaches: bool = True
    """True: the heartbeat alarm fires when the service sends nothing (a dead service is not green), and so do
    the missed-run alarms of the weekly batch jobs when a week passes without a finished run."""
    batch_time_zone: str = "Etc/UTC"
    """The one time zone of the weekly batch jobs (an IANA name): the service stack's batch scoring and monitoring
    CronJobs read it from the platform's `batchTimeZone` output (their `spec.timeZone` and TZ), and the missed-run
    alarms' calendar weeks run from Monday 00:00 to Monday 00:00 there."""
    monthly_budget_usd: int = Field(500, ge=1)
    budget_alert_percents: tuple[int, ...] = (80, 100)
    alert_emails: tuple[str, ...] = ()

    @field_validator("log_retention_days")
    @classmethod
    def _retention_cloudwatch_accepts(cls, value: int) -> int:
        if value not in LOG_RETENTION_DAYS:
            raise ValueError(f"CloudWatch Logs keeps logs for one of {', '.join(map(str, LOG_RETENTION_DAYS))} "
                             f"days, not {value}")
        return value

    @field_validator("batch_time_zone")
    @classmethod
    def _is_time_zone(cls, value: str) -> str:
        return _iana_time_zone("batchTimeZone", value)

    @field_validator("budget_alert_percents")
    @classmethod
    def _budget_takes_five_notifications(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if len(value) > MAX_BUDGET_NOTIFICATIONS - 1:
            raise ValueError(f"at most {MAX_BUDGET_NOTIFICATIONS - 1} alert percents (AWS Budgets takes "
                             f"{MAX_BUDGET_NOTIFICATIONS} notifications and one is the forecast)")
        return value


def _mirror(settings: type[BaseSettings], name: str, doc: str) -> Any:
    """A config section holding `settings`' fields with their defaults and bounds (ml/settings.py), read from stack
    config rather than from the environment of whoever deploys. Each field is copied: the section's camelCase
    aliases must not reach the settings class, which reads its variables by field name."""
    fields: dict[str, Any] = {key: (info.annotation, copy.deepcopy(info))
                              for key, info in settings.model_fields.items()}
    return create_model(name, __base__=Section, __doc__=doc, __module__=__name__, **fields)


GateThresholds = _mirror(GateSettings, "GateThresholds", "The promotion gate (GateSettings): `retail:thresholds.gate`.")
MonitorThresholds = _mirror(MonitorSettings, "MonitorThresholds",
                            "What `retail monitor` judges a week by (MonitorSettings): `retail:thresholds.monitor`.")


class ThresholdsConfig(Section):
    """What a model is judged by on AWS: the platform stack's `retail:thresholds`, exported as `thresholds`.

    The platform's monitoring alarms compare the published figures with these values, and the service stack's
    monitoring CronJob gets them as RETAIL_GATE_* and RETAIL_MONITOR_* (from that output), so the week's report
    and the alarms judge by the same numbers whatever the deploying shell's environment holds. Every key
    defaults to ml/settings.py's default; a stack states only what differs.
    """

    gate: GateThresholds = GateThresholds()
    monitor: MonitorThresholds = MonitorThresholds()

    def gate_settings(self) -> GateSettings:
        """The gate as ml/ reads it; every field given, so no RETAIL_GATE_* variable can change it."""
        return GateSettings(**self.gate.model_dump())

    def monitor_settings(self) -> MonitorSettings:
        return MonitorSettings(**self.monitor.model_dump())

    def environment(self) -> dict[str, str]:
        """Every threshold as the variable ml/settings.py reads it from (`RETAIL_GATE_MIN_ACCURACY=0.75`, ...)."""
        return {**_variables(self.gate_settings()), **_variables(self.monitor_settings())}


def _variables(settings: BaseSettings) -> dict[str, str]:
    prefix = str(settings.model_config.get("env_prefix", ""))
    return {f"{prefix}{name}".upper(): str(value) for name, value in settings.model_dump().items()}


class InferenceConfig(Section):
    """How the inference API runs on the cluster: the service stack's `retail:inference`."""

    namespace: str = "retail-inference"
    min_replicas: int = Field(2, ge=1)
    max_replicas: int = Field(6, ge=1)
    cpu_request: str = "500m"
    cpu_limit: str = "1"
    memory_request: str = "512Mi"
    memory_limit: str = "1Gi"
    target_cpu_percent: int = Field(70, ge=1, le=100)
    target_memory_percent: int = Field(80, ge=1, le=100)
    hostname: str = ""
    """Custom domain of the API; empty: the load balancer's own DNS name over HTTP (dev, ephemeral)."""
    certificate_arn: str = ""
    """ACM certificate for `hostname`, when the domain's DNS is managed elsewhere."""
    hosted_zone_id: str = ""
    """Route 53 zone of `hostname`: the stack creates and validates the certificate and the alias record."""
    allowed_cidrs: tuple[str, ...] = ("0.0.0.0/0",)
    """Who may reach the load balancer (its security group's inbound CIDRs)."""
    prediction_log: bool = True
    """Whether the pods log every answered basket to the lake's predictions/service/ (infra/prediction_log.py)."""

    @model_validator(mode="after")
    def _tls_needs_a_certificate(self) -> InferenceConfig:
        if self.hostname and not (self.certificate_arn or self.hosted_zone_id):
            raise ValueError(f"hostname {self.hostname!r} needs a certificate: set certificateArn (ACM) or "
                             "hostedZoneId (the stack then issues one), or leave hostname empty")
        if not self.min_replicas <= self.max_replicas:
            raise ValueError(f"minReplicas {self.min_replicas} exceeds maxReplicas {self.max_replicas}")
        return self


class AddonsConfig(Section):
    """Cluster add-ons the service stack installs with Helm (versions pinned; see infra/addons.py)."""

    load_balancer_controller_chart: str = "3.5.0"
    fluent_bit_chart: str = "0.2.0"
    cluster_autoscaler_chart: str = "9.59.0"
    """kubernetes/autoscaler's chart (9.59.0's default image is Cluster Autoscaler v1.35.0)."""
    cluster_autoscaler_version: str = Field("1.35.0", pattern=r"^\d+\.\d+\.\d+$")
    """The Cluster Autoscaler the chart runs (its image tag, `v<version>`): released per Kubernetes minor, its minor
    must be retail:cluster.version's, which the policy pack's graph check holds across the two stacks."""


CRON_FIELDS = 5
MIN_BATCH_MEMORY_MIB = 2048
"""`retail score` targets less than 2 GB resident: a smaller memory limit would OOM-kill it."""
MIN_MONITOR_MEMORY_MIB = 1024
"""`retail monitor` peaked at 594 MiB resident on a full-size silver run (2.7 million lines) and a week of 3,472
labelled baskets with the bundle's PSI and the report's figures (measured with /usr/bin/time on this machine)."""
_MEMORY = re.compile(r"^(?P<number>[0-9]+)(?P<unit>Mi|Gi)$")
_WEEKLY = re.compile(r"^(?P<minute>[0-9]{1,2}) (?P<hour>[0-9]{1,2}) \* \* (?P<weekday>[0-7])$")
MINUTES_PER_WEEK = 7 * 24 * 60


class ScheduledJobConfig(Section):
    """What every CronJob on the batch nodes states (infra/batch_job.py): when it runs, its size and its bounds."""

    schedule: str
    """Cron format (minute hour day-of-month month day-of-week), in the batch jobs' time zone."""
    suspend: bool = False
    """True: the CronJob exists but starts no job (pausing without a destroy)."""
    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str
    scratch_size: str
    """Size limit of the writable /tmp (the bundle cache and the command's scratch files)."""
    active_deadline_seconds: int = Field(7200, ge=600)
    """A run (node start-up and retries included) is stopped after this long."""
    backoff_limit: int = Field(2, ge=0, le=6)
    """Retries after a failed pod (spot interruptions do not count: podFailurePolicy ignores them)."""
    starting_deadline_seconds: int = Field(3600, ge=60)
    """A run whose Job could not be created this long after its time (controller down, ...) is skipped and counted
    as missed; within it, the Job starts late. An hour: a weekly run gains little from a longer grace, and the
    next job's schedule must leave room for it (ServiceConfig's check adds it to this job's deadline)."""
    ttl_seconds_after_finished: int = Field(345600, ge=3600)
    """Finished jobs (and their pods' status) are kept this long for inspection, then deleted."""

    @field_validator("schedule")
    @classmethod
    def _is_cron(cls, value: str) -> str:
        if len(value.split()) != CRON_FIELDS or value.startswith("@") or "TZ" in value:
            raise ValueError(f"schedule must be five cron fields (minute hour day month weekday), got {value!r}; "
                             "set the time zone in timeZone, not in the schedule")
        return value

    def _memory_at_least(self, mebibytes: int, why: str) -> None:
        limit = _mebibytes(self.memory_limit, "memoryLimit")
        if limit < mebibytes:
            raise ValueError(f"memoryLimit {self.memory_limit} is below {mebibytes}Mi; {why}")
        if _mebibytes(self.memory_request, "memoryRequest") > limit:
            raise ValueError(f"memoryRequest {self.memory_request} exceeds memoryLimit {self.memory_limit}")


class BatchScoringConfig(ScheduledJobConfig):
    """The weekly `retail score` CronJob: the service stack's `retail:batchScoring` (infra/batch_scoring.py).

    Its namespace and lake are those of every batch job (the monitoring schedule's too). Their time zone is the
    platform's (`retail:observability.batchTimeZone`, read through the platform output `batchTimeZone`), so the
    CronJobs and the platform's missed-run alarms count the same weeks."""

    namespace: str = "retail-batch"
    schedule: str = "0 3 * * 1"
    """Mondays 03:00 in the batch time zone, after the week (Monday to Sunday) has landed in the silver zone."""
    lake_zone: LakeZone = "raw"
    """The lake bucket (platform output lakeBuckets) holding the lake root, as datasets/README.md documents."""
    lake_prefix: RelativePath = "lake"
    """The lake root's prefix in that bucket: RETAIL_LAKE_ROOT = s3://<bucket>/<prefix>."""
    input_path: RelativePath = "latest"
    """The silver run folder `--input` names, relative to `<lake root>/silver/`: `retail score` reads its
    lines/part-0.parquet. The default, `latest`, is the newest pipeline run holding lines (all the weeks that run
    validated); set a pipeline run id to score that run."""
    cpu_request: str = "1"
    cpu_limit: str = "2"
    memory_request: str = "3Gi"
    memory_limit: str = "3Gi"
    scratch_size: str = "4Gi"

    @model_validator(mode="before")
    @classmethod
    def _time_zone_is_the_platforms(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and {"timeZone", "time_zone"} & set(raw):
            raise ValueError("timeZone is not set here: the batch jobs run in the platform stack's "
                             "retail:observability.batchTimeZone, the zone its missed-run alarms count weeks in")
        return raw

    @field_validator("input_path")
    @classmethod
    def _names_a_run(cls, value: str) -> str:
        if not value:
            raise ValueError("inputPath must name a silver run folder (e.g. latest, or a pipeline run id): "
                             "`retail score` reads <folder>/lines/part-0.parquet, not the whole silver zone")
        return value

    @model_validator(mode="after")
    def _memory_fits_the_command(self) -> BatchScoringConfig:
        self._memory_at_least(MIN_BATCH_MEMORY_MIB, "`retail score` needs up to 2 GB resident")
        return self


class MonitoringConfig(ScheduledJobConfig):
    """The weekly `retail monitor --week pending` CronJob: the service stack's `retail:monitoring`
    (infra/monitoring_schedule.py), in batch scoring's namespace, time zone and lake."""

    schedule: str = "0 6 * * 1"
    """Once a week (minute hour * * weekday), after batch scoring's run of the same week has ended: Mondays
    06:00, when the default scoring run has ended at the latest (03:00 + 1 hour's start grace + 2 hours)."""
    cpu_request: str = "500m"
    cpu_limit: str = "1"
    memory_request: str = "1536Mi"
    memory_limit: str = "1536Mi"
    """About 2.5 times the measured peak (MIN_MONITOR_MEMORY_MIB): room for a busy week's service log."""
    scratch_size: str = "1Gi"
    """The bundle copy and matplotlib's font cache: the reports go straight to S3."""
    active_deadline_seconds: int = Field(3600, ge=600)

    @field_validator("schedule")
    @classmethod
    def _is_weekly(cls, value: str) -> str:
        if weekly_minute(value) is None:
            raise ValueError(f"schedule must run once a week, as `minute hour * * weekday` (e.g. 0 6 * * 1), got "
                             f"{value!r}: the missed-run alarm counts calendar weeks, one run in each")
        return value

    @model_validator(mode="after")
    def _memory_fits_the_command(self) -> MonitoringConfig:
        self._memory_at_least(MIN_MONITOR_MEMORY_MIB, "`retail monitor` peaks near 600 MiB resident")
        return self


def weekly_minute(schedule: str) -> int | None:
    """The minute of the week (from Monday 00:00) a `minute hour * * weekday` schedule fires at; None for any
    other schedule (lists, ranges, steps, several days)."""
    match = _WEEKLY.match(schedule.strip())
    if not match:
        return None
    minute, hour, weekday = int(match["minute"]), int(match["hour"]), int(match["weekday"])
    if minute > 59 or hour > 23:
        return None
    return ((weekday - 1) % 7) * 24 * 60 + hour * 60 + minute


def latest_end_minutes(job: ScheduledJobConfig) -> int:
    """How long after its schedule time a run may still be running: its Job's start grace plus its deadline."""
    return math.ceil((job.starting_deadline_seconds + job.active_deadline_seconds) / 60)


def _mebibytes(quantity: str, key: str) -> int:
    match = _MEMORY.match(quantity)
    if not match:
        raise ValueError(f"{key} must be a whole number of Mi or Gi (e.g. 3Gi), got {quantity!r}")
    return int(match["number"]) * (1024 if match["unit"] == "Gi" else 1)


def name_prefix(environment: str) -> str:
    """The prefix of every logical name of a stack's resources, e.g. `retail-dev` (the environment is the stack's
    name): Pulumi's auto-names start with it, and `retail infra doctor` probes a deploy role's grants with it."""
    return f"retail-{environment}"


class StackIdentity(BaseModel):
    """What every stack is: its project and stack name, region and owners (for names and tags)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    project: str
    environment: str
    region: str
    owner: str
    cost_center: str

    @property
    def name_prefix(self) -> str:
        """Short prefix for every logical name, e.g. `retail-dev`."""
        return name_prefix(self.environment)

    @property
    def default_tags(self) -> dict[str, str]:
        return {
            "project": self.project,
            "environment": self.environment,
            "owner": self.owner,
            "cost-center": self.cost_center,
            "managed-by": "pulumi",
        }


class PlatformConfig(StackIdentity):
    """Everything the platform stack decides; components receive slices of it through their Args."""

    network: NetworkConfig = NetworkConfig()
    encryption: EncryptionConfig = EncryptionConfig()
    data_lake: DataLakeConfig = DataLakeConfig()
    lake_catalog: LakeCatalogConfig = LakeCatalogConfig()
    lake_engine: LakeEngineConfig = LakeEngineConfig()
    audit: AuditConfig = AuditConfig()
    registry: RegistryConfig = RegistryConfig()
    cluster: ClusterConfig
    """No default: every stack decides from where its Kubernetes API is reached."""
    observability: ObservabilityConfig = ObservabilityConfig()
    thresholds: ThresholdsConfig = ThresholdsConfig()

    @property
    def cluster_name(self) -> str:
        return f"{self.name_prefix}-eks"


class ServiceConfig(StackIdentity):
    """Everything the service stack decides, plus the release it deploys (image digest, model package)."""

    platform_stack: str
    """The platform stack's fully qualified name, `<organization>/retail-mlops/<stack>`."""
    image: str
    model_package_arn: str
    api_keys: Any = None
    """Extra client keys (a secret Output, comma-separated), beside the stack's generated deploy key."""
    inference: InferenceConfig = InferenceConfig()
    addons: AddonsConfig = AddonsConfig()
    batch_scoring: BatchScoringConfig = BatchScoringConfig()
    monitoring: MonitoringConfig = MonitoringConfig()

    @field_validator("image")
    @classmethod
    def _image_is_a_digest(cls, value: str) -> str:
        if not IMAGE_DIGEST.match(value):
            raise ValueError(f"retail:image must be <repository>@sha256:<64 hex digits> (the digest CI pushed), "
                             f"got {value!r}")
        return value

    @field_validator("model_package_arn")
    @classmethod
    def _package_is_an_arn(cls, value: str) -> str:
        if not MODEL_PACKAGE_ARN.match(value):
            raise ValueError("retail:modelPackageArn must be a versioned SageMaker model package ARN "
                             f"(arn:aws:sagemaker:<region>:<account>:model-package/<group>/<version>), got {value!r}")
        return value

    @model_validator(mode="after")
    def _monitoring_follows_scoring(self) -> ServiceConfig:
        """The monitor reads what the week's scoring run wrote: it starts once that run has ended at the latest,
        and ends within the same calendar week (the missed-run alarms count runs per Monday-to-Monday week).

        A run ends at the latest `startingDeadlineSeconds` + `activeDeadlineSeconds` after its schedule time: the
        CronJob controller may create its Job up to the start grace late (after a controller restart or a control
        plane upgrade), and the active deadline counts from the Job's start
        (https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/#job-creation,
        https://kubernetes.io/docs/concepts/workloads/controllers/job/#job-termination-and-cleanup)."""
        scoring, monitoring = self.batch_scoring, self.monitoring
        start = weekly_minute(monitoring.schedule)
        assert start is not None  # MonitoringConfig accepts weekly schedules only
        if start + latest_end_minutes(monitoring) > MINUTES_PER_WEEK:
            raise ValueError(f"retail:monitoring.schedule {monitoring.schedule!r} with its "
                             f"{monitoring.starting_deadline_seconds} s start grace and "
                             f"{monitoring.active_deadline_seconds} s deadline may end after Sunday midnight: a run "
                             "must end in the week it started")
        scored = weekly_minute(scoring.schedule)
        if scored is not None and start < scored + latest_end_minutes(scoring):
            raise ValueError(f"retail:monitoring.schedule {monitoring.schedule!r} starts before the week's batch "
                             f"scoring run ({scoring.schedule!r}, starting up to {scoring.starting_deadline_seconds} s "
                             f"late and running up to {scoring.active_deadline_seconds} s) has surely ended: "
                             "schedule it after that, in the same week, or shorten batchScoring's "
                             "startingDeadlineSeconds or activeDeadlineSeconds")
        return self


_PLATFORM_SECTIONS: dict[str, type[Section]] = {
    "network": NetworkConfig,
    "encryption": EncryptionConfig,
    "dataLake": DataLakeConfig,
    "lakeCatalog": LakeCatalogConfig,
    "lakeEngine": LakeEngineConfig,
    "audit": AuditConfig,
    "registry": RegistryConfig,
    "cluster": ClusterConfig,
    "observability": ObservabilityConfig,
    "thresholds": ThresholdsConfig,
}
_SERVICE_SECTIONS: dict[str, type[Section]] = {
    "inference": InferenceConfig,
    "addons": AddonsConfig,
    "batchScoring": BatchScoringConfig,
    "monitoring": MonitoringConfig,
}


_IDENTITY_KEYS = ("owner", "costCenter")
READ_ELSEWHERE = {"cost": "infra/cost.py, `retail infra cost`", "training": "infra/training_config.py, `retail train`"}
"""Keys of the platform's stack file that its program does not read: other commands read them from the file."""
PLATFORM_KEYS = frozenset({*_IDENTITY_KEYS, *_PLATFORM_SECTIONS, *READ_ELSEWHERE})
SERVICE_KEYS = frozenset({*_IDENTITY_KEYS, "platformStack", "apiKeys", *(k.split(":", 1)[1] for k in DEPLOY_TIME_KEYS),
                          *_SERVICE_SECTIONS})


def load_platform_config() -> PlatformConfig:
    """Read the running platform stack's config (real engine or mock runtime)."""
    _refuse_unknown_keys(PLATFORM_KEYS)
    retail = pulumi.Config(NAMESPACE)
    return PlatformConfig(**_identity(retail), **_sections(retail, _PLATFORM_SECTIONS))


def load_service_config() -> ServiceConfig:
    """Read the running service stack's config; the platform stack defaults to the same stack name."""
    _refuse_unknown_keys(SERVICE_KEYS)
    retail = pulumi.Config(NAMESPACE)
    stack = pulumi.get_stack()
    platform_stack = retail.get("platformStack") or f"{pulumi.get_organization()}/{PLATFORM_PROJECT}/{stack}"
    try:
        return ServiceConfig(
            **_identity(retail),
            platform_stack=platform_stack,
            image=_deploy_time(retail, "image"),
            model_package_arn=_deploy_time(retail, "modelPackageArn"),
            api_keys=retail.get_secret("apiKeys"),
            **_sections(retail, _SERVICE_SECTIONS),
        )
    except ValidationError as error:
        raise ValueError(_describe(error, NAMESPACE)) from None


def _refuse_unknown_keys(known: frozenset[str]) -> None:
    """A ValueError naming each key of the retail namespace that this project does not read: a misspelt section
    (`retail:netwrok`) would otherwise be ignored and the section's defaults deployed. The keys are those the engine
    handed the program: through `set_all_config` (inline programs and the mock runtime) or, for a program the CLI
    runs, the PULUMI_CONFIG environment variable (pulumi-language-python); `pulumi.Config` reads a key from either
    but cannot list them."""
    handed = {*pulumi.runtime.config.CONFIG.get(), *pulumi.runtime.config.get_config_env()}
    unknown = sorted(key for key in (k.partition(":")[2] for k in handed if k.startswith(f"{NAMESPACE}:"))
                     if key not in known)
    if unknown:
        problems = []
        for key in unknown:
            close = difflib.get_close_matches(key, known, n=1)
            problems.append(f"{NAMESPACE}:{key}" + (f" (did you mean {NAMESPACE}:{close[0]}?)" if close else ""))
        raise ValueError(f"unknown config key{'s' if len(unknown) > 1 else ''} in the {pulumi.get_project()} stack "
                         f"{pulumi.get_stack()}: {', '.join(problems)}. This project reads "
                         f"{', '.join(f'{NAMESPACE}:{k}' for k in sorted(known))}")


def _identity(retail: pulumi.Config) -> dict[str, str]:
    return {
        "project": pulumi.get_project(),
        "environment": pulumi.get_stack(),
        "region": pulumi.Config("aws").require("region"),
        "owner": retail.require("owner"),
        "cost_center": retail.require("costCenter"),
    }


def _deploy_time(retail: pulumi.Config, key: str) -> str:
    value = retail.get(key)
    if not value:
        raise ValueError(
            f"{NAMESPACE}:{key} is not set: {DEPLOY_TIME_KEYS[f'{NAMESPACE}:{key}']}. "
            f"`retail infra up --stack {pulumi.get_stack()}` sets it, or `pulumi config set {NAMESPACE}:{key} ...`"
        )
    return value


def _sections(config: pulumi.Config, sections: dict[str, type[Section]]) -> dict[str, Section]:
    return {
        _snake(key): parse_section(cls, config.get_object(key) or {}, f"{NAMESPACE}:{key}")
        for key, cls in sections.items()
    }


def parse_section(cls: type[Section], raw: Any, where: str) -> Any:
    """Build `cls` from a camelCase mapping; a bad key, type or value is a ValueError naming it."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be a mapping, got {type(raw).__name__}: {raw!r}")
    try:
        return cls.model_validate(raw)
    except ValidationError as error:
        raise ValueError(_describe(error, where)) from None


def _describe(error: ValidationError, where: str) -> str:
    problems = []
    for item in error.errors():
        path = ".".join(str(part) for part in item["loc"])
        location = f"{where}.{path}" if path else where
        value = f" (got {item['input']!r})" if item["type"] not in {"missing", "value_error"} else ""
        problems.append(f"{location}: {item['msg']}{value}")
    return "; ".join(problems)


@dataclass(frozen=True)
class StackFile:
    """A `Pulumi.<stack>.yaml` file as the Pulumi CLI would pass it to the program."""

    project: str
    stack: str
    config: dict[str, str]
    secret_keys: tuple[str, ...]


def read_stack_file(project_dir: Path, stack: str) -> StackFile:
    """Read `Pulumi.yaml` and `Pulumi.<stack>.yaml` from `project_dir`.

    Keys without a namespace get the project's, structured values become JSON strings
    and scalars strings, as the CLI does. Encrypted (`secure:`) values cannot be read
    offline and are left out (listed in `secret_keys`).
    """
    project_file = project_dir / "Pulumi.yaml"
    stack_file = project_dir / f"Pulumi.{stack}.yaml"
    for path in (project_file, stack_file):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; is {project_dir} the Pulumi project?")
    project = yaml.safe_load(project_file.read_text())["name"]
    raw = yaml.safe_load(stack_file.read_text()) or {}
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in (raw.get("config") or {}).items():
        full_key = key if ":" in key else f"{project}:{key}"
        if isinstance(value, dict) and set(value) == {"secure"}:
            secret_keys.append(full_key)
            continue
        config[full_key] = _config_string(value)
    return StackFile(project, stack, config, tuple(secret_keys))


def stack_file_section(cls: type[Section], project_dir: Path, stack: str, key: str) -> Any:
    """`key` of the stack file `Pulumi.<stack>.yaml` in `project_dir`, validated as `cls`; `cls`'s defaults without
    the file or the key (for programs of their own, e.g. training's and the lake's, that read the platform's file)."""
    try:
        config = read_stack_file(project_dir, stack).config
    except FileNotFoundError:
        return cls()
    return parse_section(cls, json.loads(config[key]) if key in config else {}, key)


def _config_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value)


def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", camel).lower()

