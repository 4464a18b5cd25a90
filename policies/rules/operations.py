"""Logs, SageMaker training jobs and the stack as a whole: retention, cost, isolation, budget, alarms.

The budget and alarm rules judge only the platform project (`StackRule.projects`).
"""

from __future__ import annotations

from collections.abc import Sequence

from infra.config import PLATFORM_PROJECT
from infra.providers.kinds import DYNAMIC_TYPE, TRAINING_JOB
from policies.model import Resource, ResourceRule, StackRule

LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
BUDGET = "aws:budgets/budget:Budget"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"


def log_retention(resource: Resource) -> list[str]:
    days = resource.get("retentionInDays", default=0)
    return [] if days and days > 0 else ["keeps its logs forever (no retention period)"]


def log_kms(resource: Resource) -> list[str]:
    return [] if resource.get("kmsKeyId") else ["does not encrypt its logs with the platform's logs key"]


def _training_job(check):
    """Apply `check` only to TrainingJob dynamic resources (other dynamic resources share the type)."""

    def guarded(resource: Resource) -> list[str]:
        return check(resource) if resource.get("kind") == TRAINING_JOB else []

    guarded.__doc__ = check.__doc__
    return guarded


@_training_job
def training_spot(resource: Resource) -> list[str]:
    problems = []
    if resource.get("use_spot") is not True:
        problems.append("runs on on-demand capacity")
    elif not resource.get("checkpoint_uri"):
        problems.append("uses spot capacity without a checkpoint location, so an interruption restarts it")
    return problems


@_training_job
def training_kms_volume(resource: Resource) -> list[str]:
    missing = [p for p in ("volume_kms_key_id", "output_kms_key_id") if not resource.get(p)]
    return [f"does not set {', '.join(missing)}"] if missing else []


@_training_job
def training_network(resource: Resource) -> list[str]:
    in_vpc = resource.get("subnet_ids") and resource.get("security_group_ids")
    return [] if in_vpc or resource.get("enable_network_isolation") is True else ["runs outside the VPC"]


@_training_job
def training_inter_container_encryption(resource: Resource) -> list[str]:
    instances = resource.get("instance_count", default=1) or 1
    if instances > 1 and resource.get("inter_container_encryption") is not True:
        return [f"runs on {instances} instances whose traffic (histograms of the training data) is not encrypted"]
    return []


def has_budget(resources: Sequence[Resource]) -> list[tuple[str, str]]:
    budgets = [r for r in resources if r.type == BUDGET and r.get("notifications")]
    return [] if budgets else [("", "the stack has no budget with notifications")]


def has_alarms(resources: Sequence[Resource]) -> list[tuple[str, str]]:
    alarms = [r for r in resources if r.type == ALARM and r.get("alarmActions")]
    return [] if alarms else [("", "the stack has no CloudWatch alarm that notifies anyone")]


TRAINING = frozenset({DYNAMIC_TYPE})
PLATFORM = frozenset({PLATFORM_PROJECT})
"""The budget and the alarms are the platform's: the service and training projects have neither by design."""
RULES = [
    ResourceRule(
        "log-group-retention",
        "Set a retention period on the log group (retention_in_days, e.g. retail:observability.logRetentionDays).",
        frozenset({LOG_GROUP}),
        log_retention,
    ),
    ResourceRule(
        "log-group-kms",
        "Encrypt the log group with the platform's logs KMS key (kms_key_id=...).",
        frozenset({LOG_GROUP}),
        log_kms,
    ),
    ResourceRule(
        "sagemaker-training-spot",
        "Train on managed spot capacity with a checkpoint location (use_spot=True, checkpoint_uri=s3://...).",
        TRAINING,
        training_spot,
    ),
    ResourceRule(
        "sagemaker-training-kms",
        "Encrypt the training volume and output with the data KMS key (volume_kms_key_id, output_kms_key_id).",
        TRAINING,
        training_kms_volume,
    ),
    ResourceRule(
        "sagemaker-training-network",
        "Run training in the VPC's private subnets (subnet_ids, security_group_ids) or with network isolation.",
        TRAINING,
        training_network,
    ),
    ResourceRule(
        "sagemaker-training-inter-container-encryption",
        "Encrypt the traffic between a multi-instance training job's instances (EnableInterContainerTrafficEncryption;"
        " TrainingJob sets it when instance_count > 1).",
        TRAINING,
        training_inter_container_encryption,
    ),
    StackRule(
        "stack-has-budget",
        "Create an AWS Budget with notifications for the stack (retail:observability.monthlyBudgetUsd).",
        has_budget,
        projects=PLATFORM,
    ),
    StackRule(
        "stack-has-alarms",
        "Create CloudWatch alarms that notify the alert topic (infra.observability).",
        has_alarms,
        projects=PLATFORM,
    ),
]
