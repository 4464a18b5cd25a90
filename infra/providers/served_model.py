"""`ServedModel`: an approved SageMaker model package version, published where the service reads its model.

This resource is the service stack's model: creating or updating it copies the package's
`model.tar.gz` (the training job's SM_MODEL_DIR) into a folder of its own below
`target_uri`, named by the bundle's manifest SHA-256 (`model_uri`), verified and manifest
last (`ml.publish`); its output `manifest_sha256` pins the Deployment to exactly that
bundle. So the pods are awaited only after their model exists, a new package rolls the
pods, and a rollback is the previous package's ARN in `retail:modelPackageArn`.

A new package never writes over the bundle the running pods were given: the pods of the
previous ReplicaSet keep starting (a restart, a drained node, a scale-out, a rollout that
failed) from their own folder, which holds the manifest they are pinned to. Publishing a
bundle whose folder already holds its manifest copies nothing.

Only packages whose approval status is `Approved` are published (the promotion gate
approves or rejects each trained version). `pulumi refresh` reads the manifest that is
at `model_uri` now: if it is gone or is not the one published, the next `pulumi up`
publishes the package again. Deleting the resource leaves the published files where
they are: the artifacts bucket's lifecycle and versioning own them.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult

from infra.providers import clients
from infra.providers.kinds import SERVED_MODEL

OUTPUTS = ("model_uri", "manifest_sha256", "package_version", "model_data_url", "found_sha256")
REPUBLISH_ON = ("model_package_arn", "target_uri")
MANIFEST = "bundle.json"


class ModelNotApproved(Exception):
    """The package is not approved (or has no model data), so it must not be served."""


def approved_model_data(client: Any, package_arn: str) -> tuple[str, int]:
    """The package's model data URL and version, or ModelNotApproved saying why."""
    description = client.describe_model_package(ModelPackageName=package_arn)
    status = description.get("ModelApprovalStatus", "PendingManualApproval")
    if status != "Approved":
        raise ModelNotApproved(
            f"model package {package_arn} is {status}: only approved versions are served "
            "(pick an approved version with `retail models history`, or approve this one)"
        )
    containers = (description.get("InferenceSpecification") or {}).get("Containers") or []
    url = next((c.get("ModelDataUrl") for c in containers if c.get("ModelDataUrl")), "")
    if not url:
        raise ModelNotApproved(f"model package {package_arn} names no ModelDataUrl to serve")
    return url, int(description.get("ModelPackageVersion", 0))


def bundle_folder(target_uri: str, manifest_sha256: str) -> str:
    """The folder below `target_uri` that holds the bundle of this manifest digest."""
    return f"{target_uri.rstrip('/')}/{manifest_sha256}/"


def publish_package(props: dict[str, Any]) -> dict[str, Any]:
    """Copy the approved package's bundle into its own folder below `target_uri` (unless that folder already holds
    its manifest); the outputs this resource exposes."""
    from ml.bundle import bundle_digest, verify_bundle
    from ml.publish import fetch_model_data, publish_bundle

    url, version = approved_model_data(clients.sagemaker(props["region"]), props["model_package_arn"])
    with tempfile.TemporaryDirectory(prefix="retail-served-model-") as scratch:
        bundle = fetch_model_data(url, Path(scratch))
        digest = bundle_digest(bundle)
        folder = bundle_folder(props["target_uri"], digest)
        if published_manifest_sha256(props["region"], folder) == digest:
            verify_bundle(bundle)  # not copied, and still refused if its files fail their manifest
        else:
            publish_bundle(bundle, folder)  # verifies, then copies
    return {"model_uri": folder, "manifest_sha256": digest, "package_version": version, "model_data_url": url,
            "found_sha256": digest}


def published_manifest_sha256(region: str, folder_uri: str) -> str:
    """SHA-256 of the manifest in the folder at `folder_uri` now, or "" when there is none."""
    bucket, _, prefix = folder_uri.removeprefix("s3://").partition("/")
    s3 = clients.s3(region)
    try:
        body = s3.get_object(Bucket=bucket, Key=f"{prefix.rstrip('/')}/{MANIFEST}".lstrip("/"))["Body"].read()
    except s3.exceptions.NoSuchKey:
        return ""
    return hashlib.sha256(body).hexdigest()


class ServedModelProvider(ResourceProvider):
    """Publishes approved model packages; holds no client (it is pickled)."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(props["target_uri"], {**props, **publish_package(props)})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changes = [key for key in REPUBLISH_ON + ("region",) if olds.get(key) != news.get(key)]
        replaces = ["target_uri"] if "target_uri" in changes else []
        drifted = olds.get("found_sha256") != olds.get("manifest_sha256")
        in_place = not olds.get("model_uri")  # published into `target_uri` itself, before bundles had folders
        return DiffResult(changes=bool(changes) or drifted or in_place, replaces=replaces, stables=[],
                          delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult({**news, **publish_package(news)})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """What is published now; a missing or foreign manifest makes the next `up` publish again."""
        found = published_manifest_sha256(props["region"], props.get("model_uri") or props["target_uri"])
        return ReadResult(id_, {**props, "found_sha256": found})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Leave the published bundle: the bucket's versioning and lifecycle own it."""


class ServedModel(pulumi.dynamic.Resource):
    """The approved model package version the service serves, published in `model_uri` below `target_uri`."""

    target_uri: pulumi.Output[str]
    model_uri: pulumi.Output[str]
    """The bundle's own folder (`target_uri` + its manifest SHA-256 + "/"): what the pods and jobs read."""
    manifest_sha256: pulumi.Output[str]
    package_version: pulumi.Output[int]
    model_data_url: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        region: pulumi.Input[str],
        model_package_arn: pulumi.Input[str],
        target_uri: pulumi.Input[str],
        package: pulumi.Input[dict] | None = None,
        rollback_alarms: pulumi.Input[list] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`package`: the package's registry facts (`RegisteredPackage.package`); `rollback_alarms`: the names of
        the CloudWatch alarms that say this release should be rolled back. Both are for the policy pack."""
        props = {
            "kind": SERVED_MODEL,
            "region": region,
            "model_package_arn": model_package_arn,
            "target_uri": target_uri,
            "package": package,
            "rollback_alarms": rollback_alarms,
            **{key: None for key in OUTPUTS},
        }
        super().__init__(ServedModelProvider(), name, props, opts)
