"""What a registered model package version says about itself: the facts a deploy may serve it on.

Both ways a version enters the SageMaker registry write these facts as the package's
customer metadata: `ModelVersion` (`retail train --cloud`) and
`infra.model_packages.register_bundle` (a local champion on a first deploy). At deploy
time `RegisteredPackage` reads them back with `package_facts` into the `ServedModel`'s
`package` input, where the lifecycle policies judge them (policies/rules/lifecycle.py).
No boto3 or Pulumi here (clients are passed in), so the providers, the offline mocks and
the policy pack can all import it.

The customer metadata (SageMaker takes string values only):

- `gate_passed`: `true` or `false`, the promotion gate's verdict on the version's held-out weeks;
- `holdout:run`: the lake run (`retail pipeline run`) whose split gave those held-out weeks; two
  versions scored on the same run were scored on the same weeks and baskets;
- `metric:holdout_macro_f1` (local) or `metric:<family>_holdout_macro_f1` (cloud): its macro-F1 there;
- `champion:arn`: the group's newest approved version when this one was registered (what a deploy
  served by default then), or `none` when the group had no approved version;
- `champion:holdout_run`, `champion:macro_f1`: that champion's own held-out run and macro-F1, so a
  reader can tell whether the two figures are on the same weeks before comparing them;
- `lineage:data_hash`, `lineage:code_version`, `lineage:validation_report`: the training data's hash,
  the code that trained it (git commit locally; the training sources' hash in the cloud, where the
  git commit is `lineage:git_commit` and the package's `MetadataProperties.CommitId`) and where its
  evaluation report is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

GATE_PASSED = "gate_passed"
HOLDOUT_RUN = "holdout:run"
CHAMPION_ARN = "champion:arn"
CHAMPION_HOLDOUT_RUN = "champion:holdout_run"
CHAMPION_MACRO_F1 = "champion:macro_f1"
NO_CHAMPION = "none"
"""`champion:arn` of a version registered while its group had no approved version."""
SERVED = "served"
"""The key `RegisteredPackage` adds to a served package's facts: the version the stack served before it."""
LINEAGE = ("data_hash", "code_version", "validation_report")
"""The lineage every registered version carries (`lineage:<name>`)."""
REPORT_ARCHIVE = "output.tar.gz"
"""What SageMaker uploads SM_OUTPUT_DATA_DIR as, beside the job's `model.tar.gz`."""


def holdout_run_of(train_uri: str) -> str:
    """The lake run of a gold training channel `s3://<lake>/gold/<run id>/` (`cli.train.read_manifest`)."""
    return train_uri.rstrip("/").rsplit("/", 1)[-1]


def job_report_uri(model_artifact_uri: str | None) -> str:
    """The training job's reports (leaderboard, model card, summary with the gate): its output data archive."""
    if not model_artifact_uri:
        return ""
    return f"{model_artifact_uri.rsplit('/', 1)[0]}/{REPORT_ARCHIVE}"


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def holdout_macro_f1(metadata: Mapping[str, str]) -> float | None:
    """The version's macro-F1 on its held-out weeks, from either registration path's metric key."""
    family = metadata.get("family", "")
    return _number(metadata.get("metric:holdout_macro_f1") or metadata.get(f"metric:{family}_holdout_macro_f1"))


def package_facts(description: Mapping[str, Any]) -> dict[str, Any]:
    """A DescribeModelPackage answer as the facts `ServedModel` carries (see the module docstring)."""
    metadata = description.get("CustomerMetadataProperties") or {}
    gate = metadata.get(GATE_PASSED)
    champion: dict[str, Any] = {}
    if metadata.get(CHAMPION_ARN):
        champion = {"arn": metadata[CHAMPION_ARN]}
        if metadata[CHAMPION_ARN] != NO_CHAMPION:
            champion |= {
                "holdout_run": metadata.get(CHAMPION_HOLDOUT_RUN, ""),
                "macro_f1": _number(metadata.get(CHAMPION_MACRO_F1)),
            }
    return {
        "arn": description.get("ModelPackageArn", ""),
        "version": int(description.get("ModelPackageVersion", 0)),
        "approval_status": description.get("ModelApprovalStatus", ""),
        "gate_passed": None if gate is None else gate == "true",
        "holdout_run": metadata.get(HOLDOUT_RUN, ""),
        "macro_f1": holdout_macro_f1(metadata),
        "champion": champion,
        "lineage": {name: metadata.get(f"lineage:{name}", "") for name in LINEAGE},
    }


def newest_approved(client: Any, group: str) -> str | None:
    """The ARN of the group's newest approved version, or None."""
    pages = client.get_paginator("list_model_packages").paginate(
        ModelPackageGroupName=group,
        ModelApprovalStatus="Approved",
        ModelPackageType="Versioned",
        SortBy="CreationTime",
        SortOrder="Descending",
    )
    for page in pages:
        for summary in page["ModelPackageSummaryList"]:
            return str(summary["ModelPackageArn"])
    return None


def champion_metadata(client: Any, group: str) -> dict[str, str]:
    """The `champion:*` metadata of a version about to be registered in `group` (call it before registering)."""
    arn = newest_approved(client, group)
    if arn is None:
        return {CHAMPION_ARN: NO_CHAMPION}
    champion = package_facts(client.describe_model_package(ModelPackageName=arn))
    values = {CHAMPION_ARN: arn, CHAMPION_HOLDOUT_RUN: champion["holdout_run"]}
    if champion["macro_f1"] is not None:
        values[CHAMPION_MACRO_F1] = f"{champion['macro_f1']:.6g}"
    return {key: value for key, value in values.items() if value}
