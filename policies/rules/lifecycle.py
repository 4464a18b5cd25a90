"""The ML lifecycle: what may be served, what a version carries, what watches a served model, where predictions live.

The served model is the service project's `ServedModel` dynamic resource; its `package`
input holds what the SageMaker registry says about the package it serves, read at deploy
time by `RegisteredPackage` (`infra.providers.package_facts` names the facts). A model
version the training project registers is a `ModelVersion` dynamic resource. Both share
the dynamic type, so the rules tell them apart by their `kind` input.

A newly served version must beat the version the stack served until then
(`RegisteredPackage`'s `served`) on the same held-out weeks by `margin`, a setting of
served-version-gated in the stack's policy config file
(`{"served-version-gated": {"enforcementLevel": ..., "margin": 0.02}}`), by default
`DEFAULT_MARGIN`. A rollback is exempt.

The gate verdict, held-out run and macro-F1 of both are the validation reports' (their
URI and sha256 recorded at registration in ModelMetrics, which no later call changes, and
each the report of its package's own model), not the package metadata's, which
UpdateModelPackage can rewrite; served-version-report-verified fails on each disagreement between the two.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from infra.providers.kinds import DYNAMIC_TYPE, MODEL_VERSION, SERVED_MODEL
from infra.providers.package_facts import LINEAGE, NO_CHAMPION, SERVED
from policies.model import Enforcement, Resource, ResourceRule, StackRule, as_json, as_list
from policies.rules.s3 import BUCKETS, SSE_TYPES, sse_uses_kms

CRON_JOB = "kubernetes:batch/v1:CronJob"
NAMESPACE = "kubernetes:core/v1:Namespace"
ENDPOINT_CONFIGURATION = "aws:sagemaker/endpointConfiguration:EndpointConfiguration"
POLICY_TYPES = frozenset({"aws:iam/rolePolicy:RolePolicy", "aws:iam/policy:Policy"})
PYTHON = re.compile(r"^python(3(\.[0-9]+)?)?$")
"""An interpreter's file name (`python`, `python3`, `python3.11`), by itself or at the end of a path."""
MONITOR_MODULE = "cli.monitor"
PREDICTIONS = "/predictions/"
WRITE_ACTIONS = frozenset({"s3:putobject", "s3:put*", "s3:*", "*"})
KEY_ACTIONS = frozenset({"kms:generatedatakey", "kms:generatedatakey*", "kms:*", "*"})
DEFAULT_MARGIN = 0.02
"""How much macro-F1 a newly served version must gain over the served one (ml's challenger_margin default)."""
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


def _configured_of_kind(
    kind: str, check: Callable[[Resource, Mapping[str, Any]], list[str]]
) -> Callable[[Resource, Mapping[str, Any]], list[str]]:
    """`_of_kind` for a check that takes the rule's settings."""

    def guarded(resource: Resource, settings: Mapping[str, Any]) -> list[str]:
        return check(resource, settings) if is_kind(resource, kind) else []

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


def served_version_gated(resource: Resource, settings: Mapping[str, Any]) -> list[str]:
    package = _package(resource)
    if not package:
        return ["serves a model package whose gate and comparison with the served version were not read "
                "(no `package` input)"]
    problems = []
    if package.get("gate_passed") is not True:
        verdict = ("has no gate verdict from a verified validation report" if package.get("gate_passed") is None
                   else "failed the promotion gate")
        problems.append(f"serves a version that {verdict}")
    problems += _promotion_problems(package, float(settings["margin"]))
    return problems


def _promotion_problems(package: Mapping[str, Any], margin: float) -> list[str]:
    """Why the version is not shown to beat the version served until now by `margin` on the same held-out weeks.

    Nothing to beat on the stack's first deploy, on a redeploy of the version served now,
    on a rollback (a version this stack served before), and away from a served version
    registered before registrations recorded its report (`unanchored`: its figures cannot be
    verified, and no later call can add the record; the new version must still pass its gate
    on its own verified report).
    """
    served = package.get(SERVED)
    if not isinstance(served, Mapping) or not served.get("arn"):
        return ["records no comparison with the version the stack served before it"]
    if served["arn"] in {NO_CHAMPION, package.get("arn")} or served.get("rollback") is True:
        return []
    if served.get("unanchored") is True:
        return []
    if served.get("report_problems"):
        return [f"cannot be compared with the served version {served['arn']}, whose validation report does not "
                f"check out: {'; '.join(map(str, as_list(served['report_problems'])))}"]
    ours, theirs = package.get("holdout_run"), served.get("holdout_run")
    if not ours or ours != theirs:
        return [
            f"was not compared with the served version {served['arn']} on the same held-out weeks "
            f"(its lake run {ours or 'unknown'}, the served version's {theirs or 'unknown'})"
        ]
    new, old = package.get("macro_f1"), served.get("macro_f1")
    if new is None or old is None:
        return [f"records no holdout macro-F1 for {'itself' if new is None else 'the served version'}"]
    if float(new) >= float(old) + margin:
        return []
    return [f"does not beat the served version {served['arn']} by the configured margin on the same held-out weeks "
            f"(macro-F1 {float(new):.4f} < {float(old):.4f} + {margin})"]


def served_version_report_verified(resource: Resource) -> list[str]:
    """Each way the served package's registration and its validation report disagree (`package.report.problems`)."""
    package = _package(resource)
    if not package:
        return ["serves a model package whose validation report was not checked (no `package` input)"]
    report = package.get("report")
    if not isinstance(report, Mapping):
        return [f"serves {package.get('arn') or 'a package'} without a check of its validation report"]
    problems = [str(p) for p in as_list(report.get("problems"))]
    return [f"serves {package.get('arn') or 'a package'}, whose registration and validation report disagree: {p}"
            for p in problems]


# --- what a version carries -------------------------------------------------------------------------------------
def version_lineage(resource: Resource) -> list[str]:
    if is_kind(resource, MODEL_VERSION):
        lineage, where = resource.get("lineage"), "its lineage"
        required = (*LINEAGE, "git_commit")  # the package's CommitId; code_version is the sources' hash
    elif is_kind(resource, SERVED_MODEL):
        lineage, where, required = _package(resource).get("lineage"), "the served package's lineage", LINEAGE
    else:
        return []
    lineage = lineage if isinstance(lineage, Mapping) else {}
    missing = [name for name in required if str(lineage.get(name) or "") in MISSING_LINEAGE]
    return [f"{where} lacks {', '.join(missing)}"] if missing else []


# --- what watches a served model --------------------------------------------------------------------------------
def rollback_alarms(resource: Resource) -> list[str]:
    alarms = [name for name in as_list(resource.get("rollback_alarms")) if isinstance(name, str) and name]
    return [] if alarms else ["names no alarm whose firing means this release should be rolled back"]


def runs_monitor_command(argv: Sequence[Any]) -> bool:
    """True for `python -m cli.monitor ...` (infra/monitoring_schedule.py) and `retail monitor ...`: a
    container's command followed by its args, as the container runtime joins them."""
    words = [str(word) for word in argv]
    program = posixpath.basename(words[0]) if words else ""
    if PYTHON.match(program):
        return words[1:3] == ["-m", MONITOR_MODULE]
    return program == "retail" and words[1:2] == ["monitor"]


def _runs_monitor(cron_job: Resource) -> bool:
    pod = cron_job.get("spec", "jobTemplate", "spec", "template", "spec", default={})
    return any(runs_monitor_command([*as_list(c.get("command")), *as_list(c.get("args"))])
               for c in as_list(pod.get("containers")) if isinstance(c, Mapping))


def monitoring_schedules(resources: Sequence[Resource]) -> list[Resource]:
    """The CronJobs that monitor what the project serves: a container runs `retail monitor`, and the CronJob is in
    a namespace the stack itself declares (the service's batch namespace), suspended or not."""
    namespaces = {r.get("metadata", "name") for r in resources if r.type == NAMESPACE}
    return [r for r in resources
            if r.type == CRON_JOB and r.get("metadata", "namespace") in namespaces and _runs_monitor(r)]


def _served_models(resources: Sequence[Resource]) -> list[Resource]:
    return [r for r in resources if is_kind(r, SERVED_MODEL)]


def has_monitoring_schedule(resources: Sequence[Resource]) -> list[tuple[str, str]]:
    """Each served model needs a monitoring schedule in its own project (one service per project)."""
    if monitoring_schedules(resources):
        return []
    return [(served.name, "has no monitoring schedule in its project (a CronJob running `python -m cli.monitor` or "
                          "`retail monitor` in a namespace the stack declares)")
            for served in _served_models(resources)]


def monitoring_is_active(resources: Sequence[Resource]) -> list[tuple[str, str]]:
    """The served model's monitoring schedule starts its runs: at least one of them is not suspended."""
    schedules = monitoring_schedules(resources)
    if not schedules or any(r.get("spec", "suspend") is not True for r in schedules):
        return []  # no schedule at all is served-model-monitoring-schedule's finding
    names = ", ".join(r.name for r in schedules)
    return [(served.name, f"is monitored by a suspended CronJob only ({names}): no week is measured")
            for served in _served_models(resources)]


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


SERVED_TYPES = frozenset({DYNAMIC_TYPE})
RULES = [
    ResourceRule(
        "served-version-approved",
        "Serve only a model package version whose approval status is Approved (retail:modelPackageArn).",
        SERVED_TYPES,
        _of_kind(SERVED_MODEL, served_version_approved),
    ),
    ResourceRule(
        "served-version-gated",
        "Serve a version that passed the gate and beats the version served now by the configured margin "
        "(policy config setting `margin`) on the same held-out weeks; a rollback is exempt.",
        SERVED_TYPES,
        _configured_of_kind(SERVED_MODEL, served_version_gated),
        config_schema={"margin": {"type": "number", "minimum": 0, "maximum": 1, "default": DEFAULT_MARGIN}},
    ),
    ResourceRule(
        "served-version-report-verified",
        "Serve a version whose validation report is the one registered with its model (ModelMetrics) and agrees with "
        "its metadata: gate verdict, held-out run, macro-F1, family.",
        SERVED_TYPES,
        _of_kind(SERVED_MODEL, served_version_report_verified),
    ),
    ResourceRule(
        "model-version-lineage",
        "Register every model version with its data_hash, code_version and validation_report lineage "
        "(and a ModelVersion with the git_commit it was trained from).",
        SERVED_TYPES,
        version_lineage,
    ),
    ResourceRule(
        "served-model-rollback-alarms",
        "Give the ServedModel the alarms that call for a rollback (rollback_alarms=platform rollbackAlarmNames).",
        SERVED_TYPES,
        _of_kind(SERVED_MODEL, rollback_alarms),
    ),
    StackRule(
        "served-model-monitoring-schedule",
        "Schedule monitoring of the served model: a CronJob running `python -m cli.monitor` (or `retail monitor`) "
        "in a namespace of the ServedModel's own stack.",
        has_monitoring_schedule,
        enforcement=Enforcement.advisory,
    ),
    StackRule(
        "served-model-monitoring-active",
        "Leave the served model's monitoring CronJob unsuspended (retail:monitoring.suspend false); only stacks "
        "that score nothing (ephemeral) disable this rule.",
        monitoring_is_active,
        enforcement=Enforcement.advisory,
    ),
    StackRule(
        "predictions-encrypted",
        "Store predictions and captured data under KMS: writers get kms:GenerateDataKey on the data key, "
        "buckets SSE-KMS, data capture a kms_key_id.",
        predictions_encrypted,
    ),
]
