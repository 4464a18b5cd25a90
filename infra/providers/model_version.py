"""`ModelVersion`: a trained artifact registered in the SageMaker model package group.

The version carries its family, metrics and lineage (data hash, code version, training
job) as customer metadata and its approval status from the promotion gate. The training
job's report (`lineage.validation_report`, its `output.tar.gz`) is read at registration
and its URI and sha256 recorded in the package's ModelMetrics, which no later call can
change (also shown as `report:sha256`), so a deploy can tell whether the report or the
metadata changed since (`infra.providers.package_facts.verified_facts`). Approval and
its description are updated in place; anything else describes a different model and
replaces the version, except the lineage's git commit and repository: a new commit whose
training sources are unchanged trains no new job (the training job is replaced when their
hash, `lineage.code_version`, changes), so it registers nothing new either. Updates resend
the metadata, so changing the approval never drops it.
`list_versions` reads a group's versions back, for `retail models history`.

A version is registered PendingManualApproval and given its approval (and the gate's reason) by the one
UpdateModelPackage call after, so a create that fails midway leaves no version a deploy would serve
(`newest_approved` reads only Approved ones). CreateModelPackage's client token is derived from everything the request
sends, so a create retried promptly after such a failure gets the same version back instead of registering a
second (CreateModelPackage documents the token as making the call idempotent, without saying for how long; a twin
registered later stays pending).

Registered versions are permanent: `delete` leaves the package in the group. Each retrain
replaces this resource (a new artifact), and the replaced version is the registry's
history, which `retail models history` lists and a rollback needs. The choice sits in the
provider rather than in `retain_on_delete=True` on the program's resource, so it holds on
every path that deletes one (replacement, `pulumi destroy` of the training stack, a
program that stops declaring it) and for any program that uses the resource. To retire a
version, reject it (approval `Rejected`); deleting one is an operator's act in SageMaker.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import pulumi
from botocore.exceptions import ClientError
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult

from infra.providers import clients
from infra.providers.kinds import MODEL_VERSION
from infra.providers.package_facts import (
    GATE_PASSED,
    HOLDOUT_RUN,
    REPORT_SHA256,
    ReportUnavailable,
    champion_metadata,
    report_metrics,
    sha256_hex,
)
from infra.providers.registered_package import report_reader

APPROVAL_STATUSES = ("Approved", "Rejected", "PendingManualApproval")
UPDATABLE = ("approval_status", "approval_description", "gate_passed")
"""In place; anything else (the held-out run too: other weeks need other metrics) is another version."""
OUTPUTS = ("model_package_arn", "version", "champion", "report_sha256")
WHERE_THE_CODE_CAME_FROM = ("git_commit", "repository")
"""Lineage keys that say where the training code came from, not what was trained: not compared by `diff`."""
PENDING = "PendingManualApproval"


def metadata(props: dict[str, Any]) -> dict[str, str]:
    """Metrics, gate, held-out run, champion, report hash and lineage as SageMaker customer metadata (string
    values, at most 50 keys; `infra.providers.package_facts` names them)."""
    values = {"family": str(props["family"])} if props.get("family") else {}
    if props.get("gate_passed") is not None:
        values[GATE_PASSED] = "true" if props["gate_passed"] else "false"
    if props.get("holdout_run"):
        values[HOLDOUT_RUN] = str(props["holdout_run"])
    values |= props.get("champion") or {}
    if props.get("report_sha256"):
        values[REPORT_SHA256] = str(props["report_sha256"])
    values |= {f"metric:{name}": f"{value:.6g}" for name, value in (props.get("metrics") or {}).items()}
    values |= {f"lineage:{name}": str(value) for name, value in (props.get("lineage") or {}).items()}
    return values


def metadata_properties(lineage: dict[str, Any]) -> dict[str, str]:
    """SageMaker's MetadataProperties: CommitId the git commit (`lineage.git_commit`), Repository when known,
    GeneratedBy the training job. The training sources' hash stays `lineage:code_version` in the metadata."""
    values = {
        "CommitId": str(lineage.get("git_commit") or ""),
        "Repository": str(lineage.get("repository") or ""),
        "GeneratedBy": str(lineage.get("training_job_arn") or ""),
    }
    return {key: value for key, value in values.items() if value}


def _approval(props: dict[str, Any]) -> str:
    status = props["approval_status"]
    if status not in APPROVAL_STATUSES:
        raise ValueError(f"approval_status {status!r} is not one of {', '.join(APPROVAL_STATUSES)}")
    return status


def client_token(request: dict[str, Any]) -> str:
    """CreateModelPackage's idempotency token (at most 36 of [a-zA-Z0-9-]) over everything `request` sends."""
    return hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()[:36]


def _described(description: str | None) -> dict[str, str]:
    return {"ApprovalDescription": description} if description else {}


def _trained(lineage: dict[str, Any]) -> dict[str, Any]:
    """The lineage without WHERE_THE_CODE_CAME_FROM: what was trained."""
    return {k: v for k, v in lineage.items() if k not in WHERE_THE_CODE_CAME_FROM}


def _compared(props: dict[str, Any], key: str) -> Any:
    """`props[key]` as `diff` compares it: the lineage as `_trained`."""
    value = props.get(key)
    return _trained(value) if key == "lineage" and isinstance(value, dict) else value


def _deregistered(client: Any, group: str, arn: str, error: ClientError) -> bool:
    """Whether DescribeModelPackage's `error` means the version is gone: SageMaker answers a missing version with a
    ValidationException, as it does a malformed request, so the group's versions are listed to tell the two apart."""
    if error.response.get("Error", {}).get("Code") != "ValidationException":
        return False
    pages = client.get_paginator("list_model_packages").paginate(ModelPackageGroupName=group,
                                                                 ModelPackageType="Versioned")
    return all(summary["ModelPackageArn"] != arn for page in pages for summary in page["ModelPackageSummaryList"])


def _report(region: str, uri: str) -> bytes | None:
    """The bytes of the report at `uri` (None when the version names none)."""
    if not uri:
        return None
    try:
        return report_reader(region)(uri)
    except ReportUnavailable as error:
        raise ReportUnavailable(f"the validation report {uri} cannot be read ({error}): the version is not "
                                "registered; check that the training job wrote it and that this role may read "
                                "it (s3:GetObject, kms:Decrypt)") from error


class ModelVersionProvider(ResourceProvider):
    """Registers and updates model package versions, never deregisters them; holds no client (it is pickled)."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        """Register the version, recording the group's champion of the moment (looked up before registering) and
        the sha256 of its validation report; a report it names but cannot read is an error (nothing registered)."""
        client = clients.sagemaker(props["region"])
        lineage = props.get("lineage") or {}
        report_uri = str(lineage.get("validation_report") or "")
        report = _report(props["region"], report_uri)
        props = {**props, "champion": champion_metadata(client, props["group_name"]),
                 "report_sha256": "" if report is None else sha256_hex(report)}
        anchor = {} if report is None else {"ModelMetrics": report_metrics(report_uri, report)}
        approval = _approval(props)
        request = {
            "ModelPackageGroupName": props["group_name"],
            "ModelPackageDescription": props.get("description", ""),
            "InferenceSpecification": {
                "Containers": [{"Image": props["image_uri"], "ModelDataUrl": props["model_artifact_uri"]}],
                "SupportedContentTypes": ["application/json"],
                "SupportedResponseMIMETypes": ["application/json"],
            },
            "ModelApprovalStatus": PENDING,
            "MetadataProperties": metadata_properties(lineage),
            "CustomerMetadataProperties": metadata(props),
            **anchor,
        }
        arn = client.create_model_package(**request, ClientToken=client_token(request))["ModelPackageArn"]
        if approval != PENDING or props.get("approval_description"):
            # CreateModelPackage takes no ApprovalDescription: the approval and the gate's reason are set together,
            # the metadata resent as `update` resends it.
            client.update_model_package(ModelPackageArn=arn, ModelApprovalStatus=approval,
                                        CustomerMetadataProperties=request["CustomerMetadataProperties"],
                                        **_described(props.get("approval_description")))
        return CreateResult(arn, {**props, **self._outputs(client, arn)})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        inputs = (set(news) | set(olds)) - set(OUTPUTS) - {"__provider"}
        changes = sorted(k for k in inputs if _compared(olds, k) != _compared(news, k))
        replaces = [k for k in changes if k not in UPDATABLE]
        return DiffResult(changes=bool(changes), replaces=replaces, stables=["group_name"], delete_before_replace=False)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """New approval; the metadata is resent with the champion, report hash and git commit recorded at
        registration (`diff` ignores a new commit, and MetadataProperties' CommitId cannot be updated)."""
        client = clients.sagemaker(news["region"])
        registered = olds.get("lineage") or {}
        lineage = _trained(news.get("lineage") or {}) | {k: registered[k] for k in WHERE_THE_CODE_CAME_FROM
                                                          if k in registered}
        news = {**news, "champion": olds.get("champion") or {}, "report_sha256": olds.get("report_sha256"),
                "lineage": lineage}
        client.update_model_package(
            ModelPackageArn=id_,
            ModelApprovalStatus=_approval(news),
            ApprovalDescription=news.get("approval_description", ""),
            CustomerMetadataProperties=metadata(news),
        )
        return UpdateResult({**news, **self._outputs(client, id_)})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        """Forget the version in Pulumi's state only: it stays registered (see the module docstring)."""

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """The version's approval as SageMaker holds it; an empty id (Pulumi's "gone") when an operator deleted it."""
        client = clients.sagemaker(props["region"])
        try:
            description = client.describe_model_package(ModelPackageName=id_)
        except ClientError as error:
            if not _deregistered(client, props["group_name"], id_, error):
                raise
            return ReadResult("", {})
        return ReadResult(
            id_,
            {
                **props,
                **self._outputs(client, id_),
                "approval_status": description["ModelApprovalStatus"],
                "approval_description": description.get("ApprovalDescription", ""),
            },
        )

    @staticmethod
    def _outputs(client: Any, arn: str) -> dict[str, Any]:
        description = client.describe_model_package(ModelPackageName=arn)
        return {"model_package_arn": arn, "version": description.get("ModelPackageVersion", 0)}


class ModelVersion(pulumi.dynamic.Resource):
    """A model package version with family, metrics, lineage and the gate's approval status; never deregistered."""

    model_package_arn: pulumi.Output[str]
    version: pulumi.Output[int]
    approval_status: pulumi.Output[str]
    champion: pulumi.Output[dict]
    report_sha256: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        region: pulumi.Input[str],
        group_name: pulumi.Input[str],
        model_artifact_uri: pulumi.Input[str],
        image_uri: pulumi.Input[str],
        metrics: pulumi.Input[dict],
        lineage: pulumi.Input[dict],
        approval_status: pulumi.Input[str],
        gate_passed: pulumi.Input[bool] | None = None,
        holdout_run: pulumi.Input[str] = "",
        family: pulumi.Input[str] = "",
        approval_description: pulumi.Input[str] = "",
        description: str = "",
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            "kind": MODEL_VERSION,
            "region": region,
            "group_name": group_name,
            "model_artifact_uri": model_artifact_uri,
            "image_uri": image_uri,
            "metrics": metrics,
            "lineage": lineage,
            "family": family,
            "approval_status": approval_status,
            "gate_passed": gate_passed,
            "holdout_run": holdout_run,
            "approval_description": approval_description,
            "description": description,
            **{key: None for key in OUTPUTS},
        }
        super().__init__(ModelVersionProvider(), name, props, opts)


@dataclass(frozen=True)
class RegisteredVersion:
    """One version of a model package group, as `retail models history` shows it."""

    version: int
    approval: str
    family: str
    metrics: dict[str, str]
    """Customer metadata `metric:<name>` values, by name."""
    data_hash: str
    created: dt.datetime
    arn: str

    def metric(self, name: str) -> str:
        """The family's holdout metric `name` (e.g. `accuracy`), or '' when not recorded."""
        return self.metrics.get(f"{self.family}_holdout_{name}", "") if self.family else ""


def list_versions(group_name: str, region: str) -> list[RegisteredVersion]:
    """Every version of the group, newest first, with the metadata `ModelVersion` recorded."""
    client = clients.sagemaker(region)
    summaries = [
        summary
        for page in client.get_paginator("list_model_packages").paginate(
            ModelPackageGroupName=group_name,
            ModelPackageType="Versioned",
            SortBy="CreationTime",
            SortOrder="Descending",
        )
        for summary in page["ModelPackageSummaryList"]
    ]
    versions = []
    for summary in summaries:
        package = client.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
        metadata = package.get("CustomerMetadataProperties") or {}
        versions.append(
            RegisteredVersion(
                version=int(package.get("ModelPackageVersion", 0)),
                approval=package.get("ModelApprovalStatus", ""),
                family=metadata.get("family", ""),
                metrics={k.removeprefix("metric:"): v for k, v in metadata.items() if k.startswith("metric:")},
                data_hash=metadata.get("lineage:data_hash", ""),
                created=package["CreationTime"],
                arn=package["ModelPackageArn"],
            )
        )
    return versions
