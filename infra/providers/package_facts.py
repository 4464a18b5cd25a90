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
not take the gate verdict, held-out run or macro-F1 from it, nor the report's address or
hash. Registration records the report's S3 URI and sha256 in the package's
`ModelMetrics.ModelQuality.Statistics` (`report_anchor`), which only CreateModelPackage
sets: UpdateModelPackage takes no ModelMetrics (botocore's UpdateModelPackageInput).
`verified_facts` reads the report named there, checks its sha256 and that it belongs to
the package's own model (`ModelDataUrl`): in the cloud it is the training job's
`output.tar.gz` beside the job's `model.tar.gz`; locally the `validation.json` beside the
bundle's `model.tar.gz`, whose `bundle_sha256` is the digest of that bundle's manifest.
It then takes those three figures from the report (`report_claims`). Its
`report.problems` name each way they disagree (no anchor, report missing, changed or of
another model, metadata saying otherwise); with a problem of the report itself the three
figures are left unknown. `report:sha256` in the metadata is for display only.
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
"""The sha256 of the validation report's bytes, recorded at registration; shown, never trusted (`report_anchor`)."""
LOCAL_REPORT = "validation.json"
"""A local bundle's evaluation, uploaded beside its model.tar.gz (`infra.model_packages.register_bundle`)."""
BUNDLE_MANIFEST = "bundle.json"
"""The bundle's manifest (ml.bundle.MANIFEST); its sha256 is the bundle's digest, `bundle_sha256` in the report."""
REPORT_CONTENT_TYPES = {REPORT_ARCHIVE: "application/gzip", LOCAL_REPORT: "application/json"}
UNANCHORED = (
    "it was registered before deploys verified reports, so its registration records no validation report that "
    "cannot be rewritten (ModelMetrics.ModelQuality.Statistics): register a new version (every training run of "
    "the pipeline, `retail train --cloud`, registers one; a local champion is registered by its first deploy)"
)
"""The problem of a version registered without a report anchor; a rollback to it stays exempt from comparisons."""
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


def report_metrics(uri: str, body: bytes) -> dict[str, Any]:
    """CreateModelPackage's ModelMetrics naming the validation report at `uri` (bytes `body`) and its sha256."""
    content_type = REPORT_CONTENT_TYPES.get(uri.rsplit("/", 1)[-1], "application/octet-stream")
    statistics = {"S3Uri": uri, "ContentType": content_type, "ContentDigest": f"sha256:{sha256_hex(body)}"}
    return {"ModelQuality": {"Statistics": statistics}}


def report_anchor(description: Mapping[str, Any]) -> tuple[str, str]:
    """The report URI and sha256 (lowercase hex) `report_metrics` recorded at registration, ('', '') when none."""
    statistics = ((description.get("ModelMetrics") or {}).get("ModelQuality") or {}).get("Statistics") or {}
    digest = str(statistics.get("ContentDigest") or "")
    algorithm, _, hex_digest = digest.partition(":")
    if algorithm.lower() != "sha256":
        hex_digest = ""
    return str(statistics.get("S3Uri") or ""), hex_digest.lower()


def model_data_url(description: Mapping[str, Any]) -> str:
    """The S3 URI of the model the package serves (its first container's ModelDataUrl)."""
    containers = (description.get("InferenceSpecification") or {}).get("Containers") or [{}]
    return str(containers[0].get("ModelDataUrl") or "")


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
    bundle_sha256: str = ""
    """A local report's digest of the bundle it evaluated ('' in a training job's summary)."""


def sha256_hex(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _archive_member(body: bytes, name: str) -> bytes:
    """The bytes of file `name` at a gzip'd tar's root; ValueError when it holds none."""
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        for member in archive.getmembers():
            if member.isfile() and member.name.removeprefix("./") == name:
                extracted = archive.extractfile(member)
                if extracted is not None:
                    return extracted.read()
    raise ValueError(f"the archive holds no {name}")


def _summary_of_archive(body: bytes) -> Any:
    """`summary.json` of a training job's report archive (its files at the archive's root)."""
    return json.loads(_archive_member(body, REPORT_SUMMARY))


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
        bundle_sha256=str(report.get("bundle_sha256") or ""),
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


def _beside_the_model(uri: str, model_url: str) -> str:
    """Why the report at `uri` is not the one of the model at `model_url` ('' when it is: a job's `output.tar.gz`
    or a bundle's `validation.json` in the folder of the package's `model.tar.gz`)."""
    folder, _, name = uri.rpartition("/")
    if not model_url:
        return "the package names no model (ModelDataUrl)"
    if name not in REPORT_CONTENT_TYPES or folder != model_url.rpartition("/")[0]:
        return (f"it is not the report of the package's model {model_url}: that model's report is its folder's "
                f"{REPORT_ARCHIVE} (training job) or {LOCAL_REPORT} (local bundle)")
    return ""


def _bundle_problem(claims: ReportClaims, uri: str, model_url: str, read: Callable[[str], bytes]) -> str:
    """Why a local report's `bundle_sha256` is not the digest of the bundle the package serves ('' when it is)."""
    if not uri.endswith(f"/{LOCAL_REPORT}"):
        return ""
    if not claims.bundle_sha256:
        return f"its validation report {uri} names no bundle_sha256"
    try:
        served = sha256_hex(_archive_member(read(model_url), BUNDLE_MANIFEST))
    except ReportUnavailable as error:
        return f"its model {model_url} cannot be read to check the report's bundle_sha256: {error}"
    except (ValueError, tarfile.TarError, OSError) as error:
        return f"its model {model_url} is not a bundle archive ({error})"
    if served != claims.bundle_sha256:
        return (f"its validation report {uri} evaluated bundle {claims.bundle_sha256[:12]}..., the package serves "
                f"bundle {served[:12]}...")
    return ""


def verified_report(
    description: Mapping[str, Any], read: Callable[[str], bytes]
) -> tuple[ReportClaims | None, dict[str, Any]]:
    """The report's claims when it is the one registered with the package's own model (else None), and the facts'
    `report` entry: its `uri` and the `sha256` recorded at registration (`report_anchor`), and the `problems`
    found (empty: verified)."""
    metadata = description.get("CustomerMetadataProperties") or {}
    uri, recorded = report_anchor(description)
    entry: dict[str, Any] = {"uri": uri, "sha256": recorded, "problems": []}
    if not uri or not recorded:
        entry["problems"] = [UNANCHORED]
        return None, entry
    model_url = model_data_url(description)
    elsewhere = _beside_the_model(uri, model_url)
    if elsewhere:
        entry["problems"] = [f"its validation report {uri}: {elsewhere}"]
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
    other_bundle = _bundle_problem(claims, uri, model_url, read)
    if other_bundle:
        entry["problems"] = [other_bundle]
        return None, entry
    entry["problems"] = _disagreements(metadata, claims)
    return claims, entry


def verified_facts(description: Mapping[str, Any], read: Callable[[str], bytes]) -> dict[str, Any]:
    """The facts a deploy judges: `package_facts`, with the gate verdict, held-out run and macro-F1 taken from the
    validation report when it is the one registered with the package's model (unknown otherwise), and `report`
    (see `verified_report`). `read` returns the bytes at an S3 URI or raises ReportUnavailable."""
    facts = package_facts(description)
    claims, entry = verified_report(description, read)
    return facts | {
        "gate_passed": None if claims is None else claims.gate_passed,
        "holdout_run": "" if claims is None else claims.holdout_run,
        "macro_f1": None if claims is None else claims.macro_f1,
        "report": entry,
    }
