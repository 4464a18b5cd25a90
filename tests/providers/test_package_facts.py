"""The registry facts the lifecycle policies judge, written by both registration paths and read back at deploy (moto).

`ModelVersion` (`retail train --cloud`) and `register_bundle` (a local champion) record the
gate, the held-out run, the champion of the moment and the lineage as customer metadata;
`RegisteredPackage` reads them into the facts a `ServedModel` carries, and the rules of
policies/rules/lifecycle.py pass or fail on them as the registry says.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import boto3
import pytest

from infra.model_packages import register_bundle
from infra.providers.kinds import DYNAMIC_TYPE, REGISTERED_PACKAGE, SERVED_MODEL
from infra.providers.model_version import ModelVersionProvider
from infra.providers.package_facts import job_report_uri
from infra.providers.registered_package import RegisteredPackageProvider
from policies.catalog import BY_NAME
from policies.evaluate import evaluate
from policies.model import Resource
from tests.providers.conftest import ARTIFACTS, REGION, job_report
from tests.providers.test_model_version import props

RUN = "20250101T000000Z-0a1b2c3d"


pytestmark = pytest.mark.usefixtures("artifacts")


def job_artifact(macro_f1: float | None, run: str = RUN, gate_passed: bool = True) -> str:
    """A finished training job's model.tar.gz URI, with its report (output.tar.gz) uploaded beside it."""
    artifact = f"s3://{ARTIFACTS}/training/job-{uuid.uuid4().hex[:8]}/output/model.tar.gz"
    report = job_report_uri(artifact).removeprefix(f"s3://{ARTIFACTS}/")
    body = job_report(run=run, macro_f1=macro_f1, gate_passed=gate_passed)
    boto3.client("s3", region_name=REGION).put_object(Bucket=ARTIFACTS, Key=report, Body=body)
    return artifact


def cloud_version(group: str, macro_f1: float, run: str = RUN, approval: str = "Approved") -> str:
    """A version as the training program registers it: gate verdict, held-out run, report, metrics."""
    artifact = job_artifact(macro_f1, run, gate_passed=approval == "Approved")
    version = props(
        group,
        approval_status=approval,
        gate_passed=approval == "Approved",
        holdout_run=run,
        model_artifact_uri=artifact,
        metrics={"xgboost_holdout_accuracy": 0.8, "xgboost_holdout_macro_f1": macro_f1},
        lineage={"data_hash": "d" * 64, "code_version": "c0de", "training_job_arn": "arn:job",
                 "validation_report": job_report_uri(artifact)},
    )
    return ModelVersionProvider().create(version).id


def facts(arn: str) -> dict:
    return RegisteredPackageProvider().create(
        {"kind": REGISTERED_PACKAGE, "region": REGION, "model_package_arn": arn}
    ).outs["package"]


def served(arn: str) -> Resource:
    package = facts(arn)
    return Resource(DYNAMIC_TYPE, "served", {"kind": SERVED_MODEL, "package": package, "rollback_alarms": ["a"]})


def broken(resource: Resource) -> dict[str, list[str]]:
    """Rule name -> messages, for every lifecycle rule the served model breaks."""
    found: dict[str, list[str]] = {}
    for name in ("served-version-approved", "served-version-gated", "served-version-report-verified",
                 "model-version-lineage"):
        for violation in evaluate([BY_NAME[name]], [resource], {}):
            found.setdefault(name, []).append(violation.message)
    return found


def test_the_first_version_of_a_group_records_that_there_was_no_champion_and_may_be_served(model_group):
    arn = cloud_version(model_group, 0.8)
    package = facts(arn)
    assert package["champion"] == {"arn": "none"}
    assert (package["gate_passed"], package["holdout_run"], package["macro_f1"]) == (True, RUN, 0.8)
    assert package["lineage"]["validation_report"].endswith("/output/output.tar.gz")
    assert package["report"]["problems"] == []
    assert broken(served(arn)) == {}


def deploys(*arns: str) -> dict:
    """The RegisteredPackage state after deploying `arns` one after another (create, then updates)."""
    provider = RegisteredPackageProvider()
    state = provider.create({"kind": REGISTERED_PACKAGE, "region": REGION, "model_package_arn": arns[0]}).outs
    for arn in arns[1:]:
        news = {"kind": REGISTERED_PACKAGE, "region": REGION, "model_package_arn": arn}
        assert provider.diff(state["model_package_arn"], state, news).changes
        state = provider.update(state["model_package_arn"], state, news).outs
    return state


def on_deploy(state: dict) -> Resource:
    return Resource(DYNAMIC_TYPE, "served", {"kind": SERVED_MODEL, "package": state["package"],
                                             "rollback_alarms": ["a"]})


def test_a_new_version_is_judged_against_the_one_served_now_not_the_champion_it_was_registered_against(
    model_group,
):
    """`worse` was the group's first version (champion none, which passed for ever before); serving it after
    `first` means replacing a better model."""
    worse = cloud_version(model_group, 0.79)
    first = cloud_version(model_group, 0.8)
    assert facts(worse)["champion"] == {"arn": "none"}
    state = deploys(first, worse)
    assert state["package"]["served"] == {"arn": first, "holdout_run": RUN, "macro_f1": 0.8, "rollback": False}
    (message,) = broken(on_deploy(state))["served-version-gated"]
    assert "does not beat the served version" in message and "0.7900 < 0.8000 + 0.02" in message
    better = cloud_version(model_group, 0.83)
    assert broken(on_deploy(deploys(first, better))) == {}


def test_a_rollback_to_a_version_served_before_is_exempt(model_group):
    first, second = cloud_version(model_group, 0.8), cloud_version(model_group, 0.85)
    state = deploys(first, second, first)
    assert state["package"]["served"]["rollback"] is True and state["served_history"] == [second]
    assert broken(on_deploy(state)) == {}


def test_a_version_trained_on_another_lake_run_cannot_show_it_beats_the_served_one(model_group):
    first = cloud_version(model_group, 0.8)
    newer = cloud_version(model_group, 0.9, run="20250301T000000Z-99999999")
    (message,) = broken(on_deploy(deploys(first, newer)))["served-version-gated"]
    assert "not compared with the served version" in message and "on the same held-out weeks" in message


def test_a_rejected_version_is_neither_approved_nor_gated(model_group):
    rejected = cloud_version(model_group, 0.5, approval="Rejected")
    assert set(broken(served(rejected))) == {"served-version-approved", "served-version-gated"}


def test_changing_the_approval_keeps_the_champion_and_report_hash_recorded_at_registration(model_group):
    cloud_version(model_group, 0.8)
    provider = ModelVersionProvider()
    artifact = job_artifact(0.77)
    version = props(model_group, holdout_run=RUN, gate_passed=True, model_artifact_uri=artifact,
                    lineage={"data_hash": "data-1", "validation_report": job_report_uri(artifact)})
    created = provider.create(version)
    provider.update(created.id, created.outs, {**version, "approval_status": "Approved"})
    package = facts(created.id)
    assert package["champion"]["holdout_run"] == RUN
    assert package["report"]["sha256"] == created.outs["report_sha256"] and package["report"]["problems"] == []


def test_a_version_rejected_after_its_deploy_fails_the_next_up_of_the_same_arn(model_group):
    """approve, deploy, reject: the next `up` (same ARN) sees a change, reads the rejection, and the rule fails."""
    arn = cloud_version(model_group, 0.8)
    provider = RegisteredPackageProvider()
    props = {"kind": REGISTERED_PACKAGE, "region": REGION, "model_package_arn": arn}
    state = provider.create(props).outs
    assert not provider.diff(arn, state, props).changes
    boto3.client("sagemaker", region_name=REGION).update_model_package(
        ModelPackageArn=arn, ModelApprovalStatus="Rejected"
    )
    diff = provider.diff(arn, state, props)
    assert diff.changes and not diff.replaces
    updated = provider.update(arn, state, props).outs
    assert updated["package"]["approval_status"] == "Rejected"
    assert updated["package"]["served"] == state["package"]["served"]
    assert "served-version-approved" in broken(on_deploy(updated))
    assert provider.read(arn, state).outs["package"]["approval_status"] == "Rejected"


def bundle(folder: Path) -> Path:
    """A bundle manifest as ml.train writes it (what register_bundle reads; no model files are needed for that)."""
    folder.mkdir()
    meta = {
        "family": "xgboost",
        "files": {},
        "metrics": {"accuracy": 0.8, "macro_f1": 0.76},
        "gate": {"passed": True, "failures": []},
        "data": {"holdout_weeks": [200725, 200752]},
        "lineage": {"run_id": RUN, "input_sha256": "a" * 64, "git_commit": "0123abcd"},
    }
    (folder / "bundle.json").write_text(json.dumps(meta))
    return folder


def test_a_local_champion_is_registered_with_its_evaluation_report_lineage_and_no_champion(
    model_group, artifacts, tmp_path
):
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    arn = register_bundle(sagemaker, artifacts, bundle(tmp_path / "b"), group=model_group,
                          artifacts_bucket=ARTIFACTS, image="inference@sha256:" + "e" * 64, source="test")
    package = facts(arn)
    assert package["lineage"]["data_hash"] == "a" * 64 and package["lineage"]["code_version"] == "0123abcd"
    assert (package["holdout_run"], package["champion"], package["macro_f1"]) == (RUN, {"arn": "none"}, 0.76)
    report = package["lineage"]["validation_report"].removeprefix(f"s3://{ARTIFACTS}/")
    evaluation = json.loads(artifacts.get_object(Bucket=ARTIFACTS, Key=report)["Body"].read())
    assert evaluation["gate"]["passed"] is True and evaluation["data"]["holdout_weeks"] == [200725, 200752]
    assert sagemaker.describe_model_package(ModelPackageName=arn)["MetadataProperties"]["CommitId"] == "0123abcd"
    assert broken(served(arn)) == {}


def test_metadata_values_keep_unicode_separators_but_not_tabs_or_newlines():
    from infra.model_packages import customer_metadata

    meta = {"family": "xgboost", "lineage": {"run_id": RUN, "note": "two\tlines\nhere\u2028and\u00a0there"}}
    assert customer_metadata(meta, "f" * 64, "test")["lineage:note"] == "two_lines_here\u2028and\u00a0there"


def test_another_held_out_run_replaces_the_version_instead_of_relabelling_its_metrics(model_group):
    version = props(model_group, holdout_run=RUN, gate_passed=True)
    diff = ModelVersionProvider().diff("arn", version, {**version, "holdout_run": "20250301T000000Z-99999999"})
    assert diff.replaces == ["holdout_run"]


def test_commit_id_is_the_git_commit_with_its_repository_and_the_sources_hash_stays_code_version(model_group):
    lineage = {"data_hash": "d" * 64, "code_version": "sources-hash", "git_commit": "0123abcd",
               "repository": "https://github.com/example/retail-mlops", "training_job_arn": "arn:job",
               "validation_report": job_report_uri(job_artifact(0.77))}
    arn = ModelVersionProvider().create(props(model_group, lineage=lineage)).id
    package = boto3.client("sagemaker", region_name=REGION).describe_model_package(ModelPackageName=arn)
    assert package["MetadataProperties"]["CommitId"] == "0123abcd"
    assert package["MetadataProperties"]["Repository"] == "https://github.com/example/retail-mlops"
    assert package["CustomerMetadataProperties"]["lineage:code_version"] == "sources-hash"


def test_a_model_version_without_a_git_commit_breaks_the_lineage_rule():
    from tests.policies.cases import MODEL_VERSION_WITH_LINEAGE, changed

    (violation,) = evaluate([BY_NAME["model-version-lineage"]],
                            [changed(MODEL_VERSION_WITH_LINEAGE, "lineage", "git_commit", value="unknown")], {})
    assert violation.message == "its lineage lacks git_commit"


def test_the_training_program_takes_the_commit_and_repository_from_github_actions(monkeypatch):
    from infra.providers.program import source_commit

    monkeypatch.setenv("GITHUB_SHA", "f" * 40)
    monkeypatch.setenv("GITHUB_REPOSITORY", "example/retail-mlops")
    monkeypatch.delenv("GITHUB_SERVER_URL", raising=False)
    assert source_commit() == {"git_commit": "f" * 40, "repository": "https://github.com/example/retail-mlops"}
