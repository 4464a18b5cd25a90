"""The ML lifecycle: what may be served, what a version carries, what watches a served model, where predictions live.

The served model is the service project's `ServedModel` dynamic resource; its `package`
input holds what the SageMaker registry says about the package it serves, read at deploy
time by `RegisteredPackage` (`infra.providers.package_facts` names the facts). A model
version the training project registers is a `ModelVersion` dynamic resource. Both share
the dynamic type, so the rules tell them apart by their `kind` input.

The margin a served version may trail its champion by is the registry's own setting
(`ml.settings.GateSettings.max_regression`, env RETAIL_GATE_MAX_REGRESSION), and the
comparison is `ml.registry.decide`, so the pack and `retail pipeline run` cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from infra.providers.kinds import DYNAMIC_TYPE, MODEL_VERSION, SERVED_MODEL
from infra.providers.package_facts import LINEAGE, NO_CHAMPION
from ml.registry import decide
from ml.settings import GateSettings
from policies.model import Enforcement, Resource, ResourceRule, StackRule, as_json, as_list
from policies.rules.s3 import BUCKETS, SSE_TYPES, sse_uses_kms

CRON_JOB = "kubernetes:batch/v1:CronJob"
MONITORING_SCHEDULE = "aws:sagemaker/monitoringSchedule:MonitoringSchedule"
ENDPOINT_CONFIGURATION = "aws:sagemaker/endpointConfiguration:EndpointConfiguration"
POLICY_TYPES = frozenset({"aws:iam/rolePolicy:RolePolicy", "aws:iam/policy:Policy"})
MONITOR_COMMANDS = frozenset({"monitor", "cli.monitor"})
"""A container runs the monitoring job when one of its command or args tokens is one of these (`retail monitor`)."""
PREDICTIONS = "/predictions/"
WRITE_ACTIONS = frozenset({"s3:putobject", "s3:put*", "s3:*", "*"})
KEY_ACTIONS = frozenset({"kms:generatedatakey", "kms:generatedatakey*", "kms:*", "*"})
MISSING_LINEAGE = {"", "unknown"}
"""Lineage values that name nothing (`ml.lineage.git_commit` answers `unknown` outside git)."""


def is_kind(resource: Resource, kind: str) -> bool:
    return resource.type == DYNAMIC_TYPE and resource.get("kind") == kind


def _of_kind(kind: str, check: Callable[[Resource], list[str]]) -> Callable[[Resource], list[str]]:
    """Apply `check` only to the dynamic resources of `kind` (every dynamic resource shares one type)."""

    def guarded(resource: Resource) -> list[str]:
        return check(resource) if is_kind(resource, kind) else []

    guarded.__doc__ = check.__doc__
    return guarded


def _package(resource: Resource) -> Mapping[str, Any]:
    package = resource.get("package")
    return package if isinstance(package, Mapping) else {}


# --- what may be served -----------------------------------------------------------------------------------------
def served_version_approved(resource: Resource) -> list[str]:
    package = _package(resource)
    if not package:
        return ["serves a model package whose registry record was not read (no `package` input)"]
    status = package.get("approval_status") or "of unknown approval"
    return [] if status == "Approved" else [f"serves {package.get('arn') or 'a package'}, which is {status}"]


def served_version_gated(resource: Resource) -> list[str]:
    package = _package(resource)
    if not package:
        return ["serves a model package whose gate and champion comparison were not read (no `package` input)"]
    problems = []
    if package.get("gate_passed") is not True:
        verdict = "records no gate verdict" if package.get("gate_passed") is None else "failed the promotion gate"
        problems.append(f"serves a version that {verdict}")
    problems += _champion_problems(package)
    return problems


def _champion_problems(package: Mapping[str, Any]) -> list[str]:
    """Why the version is not shown to beat its champion on the same held-out weeks by the configured margin."""
    champion = package.get("champion")
    if not isinstance(champion, Mapping) or not champion.get("arn"):
        return ["records no comparison with the champion it was registered against"]
    if champion["arn"] == NO_CHAMPION:
        return []
    ours, theirs = package.get("holdout_run"), champion.get("holdout_run")
    if not ours or ours != theirs:
        return [
            f"was not compared with champion {champion['arn']} on the same held-out weeks "
            f"(its lake run {ours or 'unknown'}, the champion's {theirs or 'unknown'})"
        ]
    new, old = package.get("macro_f1"), champion.get("macro_f1")
    if new is None or old is None:
        return [f"records no holdout macro-F1 for {'itself' if new is None else 'its champion'}"]
    gate = GateSettings()
    decision = decide(True, float(new), float(old), gate)
    if decision.promote:
        return []
    return [f"is {decision.reason}, beyond the configured margin of {gate.max_regression} (RETAIL_GATE_MAX_REGRESSION)"]


# --- what a version carries -------------------------------------------------------------------------------------
def version_lineage(resource: Resource) -> list[str]:
    if is_kind(resource, MODEL_VERSION):
        lineage, where = resource.get("lineage"), "its lineage"
    elif is_kind(resource, SERVED_MODEL):
        lineage, where = _package(resource).get("lineage"), "the served package's lineage"
    else:
        return []
    lineage = lineage if isinstance(lineage, Mapping) else {}
    missing = [name for name in LINEAGE if str(lineage.get(name) or "") in MISSING_LINEAGE]
    return [f"{where} lacks {', '.join(missing)}"] if missing else []


# --- what watches a served model --------------------------------------------------------------------------------
def rollback_alarms(resource: Resource) -> list[str]:
    alarms = [name for name in as_list(resource.get("rollback_alarms")) if isinstance(name, str) and name]
    return [] if alarms else ["names no alarm whose firing means this release should be rolled back"]


def runs_monitor(resource: Resource) -> bool:
    """A CronJob that is not suspended and whose pods run the monitoring command."""
    if resource.type != CRON_JOB or resource.get("spec", "suspend") is True:
        return False
    pod = resource.get("spec", "jobTemplate", "spec", "template", "spec", default={})
    containers = as_list(pod.get("containers"))
    tokens = {str(t) for c in containers for t in (*as_list(c.get("command")), *as_list(c.get("args")))}
    return bool(tokens & MONITOR_COMMANDS)


def monitoring_schedules(resources: Sequence[Resource]) -> list[Resource]:
    """Schedules that monitor what the project serves: `retail monitor` CronJobs, SageMaker monitoring schedules."""
    return [r for r in resources if r.type == MONITORING_SCHEDULE or runs_monitor(r)]


def has_monitoring_schedule(resources: Sequence[Resource]) -> list[tuple[str, str]]:
    """Each served model needs a monitoring schedule in its own project (one service per project)."""
    if monitoring_schedules(resources):
        return []
    return [
        (served.name, "has no monitoring schedule in its project (a CronJob running `retail monitor`)")
        for served in resources
        if is_kind(served, SERVED_MODEL)
    ]


# --- where predictions and captured data live ---------------------------------------------------------------------
def _allowed(document: Mapping[str, Any], actions: frozenset[str]) -> list[str]:
    """The resources of the document's Allow statements that grant one of `actions` (lower-case)."""
    return [
        str(arn)
        for statement in as_list(document.get("Statement"))
        if isinstance(statement, Mapping) and statement.get("Effect") == "Allow"
        and any(str(a).lower() in actions for a in as_list(statement.get("Action")))
        for arn in as_list(statement.get("Resource"))
    ]


def prediction_writes(resource: Resource) -> list[str]:
    """The S3 ARNs under a predictions/ prefix an IAM policy lets its holder write."""
    document = as_json(resource.get("policy")) if resource.type in POLICY_TYPES else None
    if not isinstance(document, Mapping):
        return []  # not a policy, or not known until deploy
    return [arn for arn in _allowed(document, WRITE_ACTIONS) if PREDICTIONS in f"{arn}/"]


def _bucket_of(arn: str) -> str:
    return arn.removeprefix("arn:aws:s3:::").split("/", 1)[0]


def captures_data(resource: Resource) -> bool:
    return resource.type == ENDPOINT_CONFIGURATION and bool(resource.get("dataCaptureConfig"))


def prediction_stores(resources: Sequence[Resource]) -> list[Resource]:
    """What the rule judges: policies that write predictions, and endpoint configurations that capture data."""
    return [r for r in resources if prediction_writes(r) or captures_data(r)]


def _writer_problems(policy: Resource) -> list[str]:
    keys = [arn for arn in _allowed(as_json(policy.get("policy")), KEY_ACTIONS) if arn.startswith("arn:aws:kms:")]
    if keys:
        return []
    return ["lets its holder write predictions without a customer-managed KMS key (kms:GenerateDataKey on the "
            "data key), so they cannot be stored SSE-KMS"]


def predictions_encrypted(resources: Sequence[Resource]) -> list[tuple[str, str]]:
    problems: dict[tuple[str, str], None] = {}
    encrypted = [r for r in resources if r.type in SSE_TYPES and not sse_uses_kms(r)]
    stores = prediction_stores(resources)
    for store in stores:
        if captures_data(store):
            if not store.get("dataCaptureConfig", "kmsKeyId"):
                problems[(store.name, "captures endpoint requests and predictions without a KMS key")] = None
            continue
        problems |= dict.fromkeys((store.name, message) for message in _writer_problems(store))
    written = {_bucket_of(arn) for store in stores for arn in prediction_writes(store)}
    for bucket in resources:
        held = bucket.type in BUCKETS and {bucket.get("bucket"), bucket.name} & written
        if held and not any(s.depends_on("bucket", bucket) for s in encrypted):
            problems[(bucket.name, "holds predictions/ without SSE-KMS default encryption")] = None
    return list(problems)


SERVED = frozenset({DYNAMIC_TYPE})
RULES = [
    ResourceRule(
        "served-version-approved",
        "Serve only a model package version whose approval status is Approved (retail:modelPackageArn).",
        SERVED,
        _of_kind(SERVED_MODEL, served_version_approved),
    ),
    ResourceRule(
        "served-version-gated",
        "Serve a version that passed the gate and matches its champion's macro-F1 on the same held-out weeks "
        "within the configured margin (RETAIL_GATE_MAX_REGRESSION).",
        SERVED,
        _of_kind(SERVED_MODEL, served_version_gated),
    ),
    ResourceRule(
        "model-version-lineage",
        "Register every model version with its data_hash, code_version and validation_report lineage.",
        SERVED,
        version_lineage,
    ),
    ResourceRule(
        "served-model-rollback-alarms",
        "Give the ServedModel the alarms that call for a rollback (rollback_alarms=platform rollbackAlarmNames).",
        SERVED,
        _of_kind(SERVED_MODEL, rollback_alarms),
    ),
    StackRule(
        "served-model-monitoring-schedule",
        "Schedule monitoring of the served model: a CronJob running `retail monitor` beside the ServedModel.",
        has_monitoring_schedule,
        enforcement=Enforcement.advisory,
    ),
    StackRule(
        "predictions-encrypted",
        "Store predictions and captured data under KMS: writers get kms:GenerateDataKey on the data key, "
        "buckets SSE-KMS, data capture a kms_key_id.",
        predictions_encrypted,
    ),
]
