"""The stack's SageMaker model registry seen from a deploy: approved versions, and local bundles registered there.

The service serves only approved model package versions (`ServedModel`). CI registers
them through `retail train --cloud` (the gate approves or rejects each version); a first
deploy from a laptop registers the local registry's champion with `register_bundle`,
so every served model, wherever it was trained, has a registry version with its metrics
and lineage, and a rollback is always "serve the previous approved version".
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path
from typing import Any

from infra.providers.package_facts import (
    GATE_PASSED,
    HOLDOUT_RUN,
    LOCAL_REPORT,
    REPORT_SHA256,
    champion_metadata,
    report_metrics,
    sha256_hex,
)
from ml.bundle import MANIFEST, bundle_digest, verify_bundle

LOCAL_PREFIX = "registry/local"
"""Where in the artifacts bucket locally trained bundles are uploaded as `model.tar.gz`."""
METADATA_LIMIT = 50
"""SageMaker's CustomerMetadataProperties holds at most 50 entries."""
SEPARATORS = " \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
"""Unicode's separators (\\p{Z}: Zs, Zl, Zp), where `\\s` would also let tabs and newlines through."""
METADATA_VALUE = re.compile(rf"[^\w{SEPARATORS}.:/=+\-@]")
r"""Characters SageMaker refuses in a metadata value (its pattern is [\p{L}\p{Z}\p{N}_.:/=+\-@]*, 1-256 long)."""
VALIDATION_REPORT = LOCAL_REPORT
"""The bundle's evaluation (family, holdout metrics, gate, data split, lineage), uploaded beside its model.tar.gz."""
REPORTED = ("family", "metrics", "gate", "data", "lineage")


def approved_versions(client: Any, group: str) -> list[str]:
    """ARNs of the group's approved versions, newest first."""
    arns: list[str] = []
    paginator = client.get_paginator("list_model_packages")
    for page in paginator.paginate(
        ModelPackageGroupName=group,
        ModelApprovalStatus="Approved",
        ModelPackageType="Versioned",
        SortBy="CreationTime",
        SortOrder="Descending",
    ):
        arns += [summary["ModelPackageArn"] for summary in page["ModelPackageSummaryList"]]
    return arns


def previous_approved(client: Any, group: str, current_arn: str) -> str | None:
    """The approved version registered before `current_arn`: what a rollback serves."""
    versions = approved_versions(client, group)
    if current_arn not in versions:
        return versions[0] if versions else None
    older = versions[versions.index(current_arn) + 1 :]
    return older[0] if older else None


def pack_bundle(bundle: Path) -> bytes:
    """A verified bundle as SageMaker packs SM_MODEL_DIR: a gzip'd tar with the bundle's files at its root."""
    meta = verify_bundle(bundle)
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w:gz") as tar:
        for relative in [*sorted(meta["files"]), MANIFEST]:
            tar.add(bundle / relative, arcname=relative)
    return packed.getvalue()


def register_bundle(
    sagemaker: Any, s3: Any, bundle: Path, *, group: str, artifacts_bucket: str, image: str, source: str
) -> str:
    """Upload `bundle` to the artifacts bucket and register it in `group`; the new version's ARN.

    Approved when the bundle passed the promotion gate at training time, Rejected (and so
    never served) otherwise. Its metrics, gate, held-out run, lineage (with its evaluation
    uploaded as `validation.json`, and that file's sha256) and the group's champion at
    registration become the version's customer metadata (`infra.providers.package_facts`);
    the report's URI and sha256 are also its ModelMetrics, which a deploy trusts because no
    later call can change them. `source` says where it was trained.
    """
    meta = verify_bundle(bundle)
    digest = bundle_digest(bundle)
    folder = f"{LOCAL_PREFIX}/{digest[:16]}"
    key = f"{folder}/model.tar.gz"
    s3.put_object(Bucket=artifacts_bucket, Key=key, Body=pack_bundle(bundle))
    report = f"{folder}/{VALIDATION_REPORT}"
    evaluation = json.dumps({name: meta.get(name) for name in REPORTED} | {"bundle_sha256": digest}, indent=2).encode()
    s3.put_object(Bucket=artifacts_bucket, Key=report, Body=evaluation, ContentType="application/json")
    registry = champion_metadata(sagemaker, group) | {
        "lineage:validation_report": f"s3://{artifacts_bucket}/{report}",
        REPORT_SHA256: sha256_hex(evaluation),
    }
    passed = bool((meta.get("gate") or {}).get("passed"))
    response = sagemaker.create_model_package(
        ModelPackageGroupName=group,
        ModelPackageDescription=f"{meta.get('family', 'model')} trained by {source}, bundle sha256:{digest[:12]}",
        InferenceSpecification={
            "Containers": [{"Image": image, "ModelDataUrl": f"s3://{artifacts_bucket}/{key}"}],
            "SupportedContentTypes": ["application/json"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
        ModelApprovalStatus="Approved" if passed else "Rejected",
        MetadataProperties={"CommitId": str((meta.get("lineage") or {}).get("git_commit", ""))},
        CustomerMetadataProperties=customer_metadata(meta, digest, source, registry),
        ModelMetrics=report_metrics(f"s3://{artifacts_bucket}/{report}", evaluation),
    )
    return response["ModelPackageArn"]


def customer_metadata(
    meta: dict[str, Any], digest: str, source: str, registry: dict[str, str] | None = None
) -> dict[str, str]:
    """Family, gate, held-out run, holdout metrics and lineage of a bundle, as SageMaker's string metadata.

    `registry` adds what only the registration knows (the champion, the report's location).
    The facts `infra.providers.package_facts` reads come first, so the 50-entry cap never
    drops them: `lineage:data_hash` is the training input's hash, `lineage:code_version`
    the git commit, `holdout:run` the lake run that made the split.
    """
    lineage = meta.get("lineage") or {}
    values = {
        "family": str(meta.get("family", "")),
        GATE_PASSED: json.dumps(bool((meta.get("gate") or {}).get("passed"))),
        HOLDOUT_RUN: str(lineage.get("run_id", "")),
        "lineage:data_hash": str(lineage.get("input_sha256", "")),
        "lineage:code_version": str(lineage.get("git_commit", "")),
        **(registry or {}),
        "bundle_sha256": digest,
        "source": source,
    }
    metrics = meta.get("metrics") or {}
    values |= {f"metric:holdout_{name}": f"{value:.6g}" for name, value in metrics.items() if isinstance(value, float)}
    values |= {
        f"lineage:{name}": str(value)[:256]
        for name, value in lineage.items()
        if isinstance(value, str | int) and f"lineage:{name}" not in values
    }
    cleaned = {key: METADATA_VALUE.sub("_", value)[:256] for key, value in values.items()}
    return dict(list({k: v for k, v in cleaned.items() if v}.items())[:METADATA_LIMIT])
