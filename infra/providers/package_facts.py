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
  evaluation report is;
- `report:sha256`: the sha256 of that report's bytes when the version was registered.

The metadata can be rewritten after registration (UpdateModelPackage), so a deploy does
not take the gate verdict, held-out run or macro-F1 from it: `verified_facts` reads the
report `lineage:validation_report` names, checks its sha256 against `report:sha256` and
takes those three from the report (`report_claims`: a local `validation.json`, or the
training job's `output.tar.gz` with `summary.json`). Its `report.problems` name each way
the two disagree (report missing or changed, metadata saying otherwise); with a problem of
the report itself the three figures are left unknown.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
REPORT_SUMMARY = "summary.json"
"""The file of the job's report archive that holds its gate, winner's metrics and lineage (ml/train.py)."""
REPORT_SHA256 = "report:sha256"
"""The sha256 of the validation report's bytes, recorded at registration."""
METRIC_TOLERANCE = 1e-5
"""How far a macro-F1 in the metadata may be from the report's: the metadata keeps 6 significant digits of a
value the job printed to 6 decimals."""


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
    """A DescribeModelPackage answer's facts as its metadata states them (`verified_facts` checks them against
    the validation report)."""
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


class ReportUnavailable(Exception):
    """The validation report cannot be read (no such object, access denied); the message says why."""


@dataclass(frozen=True)
class ReportClaims:
    """What a validation report says of the version: the gate's verdict, the winner's holdout macro-F1, the lake
    run that gave the held-out weeks and the family."""

    gate_passed: bool | None
    macro_f1: float | None
    holdout_run: str
    family: str


def sha256_hex(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _summary_of_archive(body: bytes) -> Any:
    """`summary.json` of a training job's report archive (its files at the archive's root)."""
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        for member in archive.getmembers():
            if member.isfile() and member.name.removeprefix("./") == REPORT_SUMMARY:
                extracted = archive.extractfile(member)
                if extracted is not None:
                    return json.loads(extracted.read())
    raise ValueError(f"the archive holds no {REPORT_SUMMARY}")


def _section(report: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = report.get(key)
    return value if isinstance(value, Mapping) else {}


def report_claims(body: bytes) -> ReportClaims:
    """The claims of a local `validation.json` or of a training job's `output.tar.gz` (its `summary.json`).

    Both hold `gate.passed`, `metrics.macro_f1` and `lineage.run_id`; the family is
    `family` in the one, `winner` in the other. ValueError when it is neither.
    """
    try:
        report = _summary_of_archive(body) if body[:2] == b"\x1f\x8b" else json.loads(body)
    except (tarfile.TarError, OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"not a validation report ({error})") from error
    if not isinstance(report, Mapping):
        raise ValueError("not a validation report (not a JSON object)")
    gate, metrics, lineage = (_section(report, key) for key in ("gate", "metrics", "lineage"))
    passed = gate.get("passed")
    return ReportClaims(
        gate_passed=passed if isinstance(passed, bool) else None,
        macro_f1=_number(metrics.get("macro_f1")),
        holdout_run=str(lineage.get("run_id") or ""),
        family=str(report.get("family") or report.get("winner") or ""),
    )


def _disagreements(metadata: Mapping[str, str], claims: ReportClaims) -> list[str]:
    """Where the metadata states something other than the report (a fact the metadata lacks is not compared)."""
    problems = []
    gate = metadata.get(GATE_PASSED)
    if gate is not None and claims.gate_passed is not None and (gate == "true") != claims.gate_passed:
        problems.append(f"the metadata says {GATE_PASSED}={gate}, the report says the gate "
                        f"{'passed' if claims.gate_passed else 'failed'}")
    run = metadata.get(HOLDOUT_RUN)
    if run and run != claims.holdout_run:
        problems.append(f"the metadata's {HOLDOUT_RUN} is {run}, the report's held-out run is "
                        f"{claims.holdout_run or 'not stated'}")
    recorded = holdout_macro_f1(metadata)
    if recorded is not None and (claims.macro_f1 is None or abs(recorded - claims.macro_f1) > METRIC_TOLERANCE):
        stated = "not stated" if claims.macro_f1 is None else f"{claims.macro_f1:.6g}"
        problems.append(f"the metadata's holdout macro-F1 is {recorded:.6g}, the report's {stated}")
    family = metadata.get("family")
    if family and claims.family and family != claims.family:
        problems.append(f"the metadata's family is {family}, the report's {claims.family}")
    return problems


def verified_report(
    metadata: Mapping[str, str], read: Callable[[str], bytes]
) -> tuple[ReportClaims | None, dict[str, Any]]:
    """The report's claims when its bytes are those registered (else None), and the facts' `report` entry:
    its `uri`, the `sha256` recorded at registration and the `problems` found (empty: verified)."""
    uri, recorded = metadata.get("lineage:validation_report", ""), metadata.get(REPORT_SHA256, "")
    entry: dict[str, Any] = {"uri": uri, "sha256": recorded, "problems": []}
    if not uri:
        entry["problems"] = ["the package names no validation report (lineage:validation_report)"]
        return None, entry
    if not recorded:
        entry["problems"] = [f"no sha256 of the validation report {uri} was recorded at registration "
                             f"({REPORT_SHA256})"]
        return None, entry
    try:
        body = read(uri)
    except ReportUnavailable as error:
        entry["problems"] = [f"its validation report {uri} cannot be read: {error}"]
        return None, entry
    found = sha256_hex(body)
    if found != recorded:
        entry["problems"] = [f"its validation report {uri} has sha256 {found[:12]}..., not the {recorded[:12]}... "
                             "recorded at registration: the report was changed after it"]
        return None, entry
    try:
        claims = report_claims(body)
    except ValueError as error:
        entry["problems"] = [f"its validation report {uri} is unreadable: {error}"]
        return None, entry
    entry["problems"] = _disagreements(metadata, claims)
    return claims, entry


def verified_facts(description: Mapping[str, Any], read: Callable[[str], bytes]) -> dict[str, Any]:
    """The facts a deploy judges: `package_facts`, with the gate verdict, held-out run and macro-F1 taken from the
    validation report when its sha256 is the one registered (unknown otherwise), and `report` (see
    `verified_report`). `read` returns the bytes at an S3 URI or raises ReportUnavailable."""
    facts = package_facts(description)
    claims, entry = verified_report(description.get("CustomerMetadataProperties") or {}, read)
    return facts | {
        "gate_passed": None if claims is None else claims.gate_passed,
        "holdout_run": "" if claims is None else claims.holdout_run,
        "macro_f1": None if claims is None else claims.macro_f1,
        "report": entry,
    }
