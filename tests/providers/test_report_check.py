"""A deploy trusts a package's validation report over its rewritable metadata: rewrites, altered reports refused (moto).

The deploy role may call UpdateModelPackage, so a version's customer metadata can say
anything. Registration records the report's URI and sha256 in ModelMetrics, which
UpdateModelPackage cannot change; `RegisteredPackage` reads that report back, checks the
hash and that it is the report of the package's own model, takes the gate verdict,
held-out run and macro-F1 from it, and served-version-report-verified fails on each
disagreement. Here, against SageMaker and S3 served by moto on 127.0.0.1: an honest version
passes, a rewritten `gate_passed=true` is refused, a failed version whose metadata points
at another version's passing report and hash is refused (review 15c H1), a rewritten
ModelDataUrl or a local bundle swapped under its report is refused, a report altered (or
deleted, or denied) is refused with the reason, a served version whose report was altered
cannot be the yardstick of a promotion, a version registered before the anchor is refused
while a promotion away from one is not blocked in prod (15c M1), a change to the report
after a deploy is seen by the next `up`, and a report that cannot be read at registration
registers nothing.
"""

from __future__ import annotations

import io
import json
import tarfile

import boto3
import botocore.exceptions
import pytest
from botocore.stub import Stubber

from infra.mocks import PlatformMocks
from infra.model_packages import register_bundle
from infra.providers import clients
from infra.providers.kinds import DYNAMIC_TYPE, REGISTERED_PACKAGE
from infra.providers.model_version import ModelVersionProvider
from infra.providers.package_facts import (
    BUNDLE_MANIFEST,
    REPORT_SHA256,
    UNANCHORED,
    ReportUnavailable,
    job_report_uri,
    report_anchor,
    verified_facts,
)
from infra.providers.registered_package import RegisteredPackageProvider, report_reader
from policies.catalog import BY_NAME, RULES
from policies.enforcement import load_levels, load_settings
from policies.evaluate import evaluate
from tests.providers.conftest import ARTIFACTS, REGION, job_report
from tests.providers.test_model_version import props
from tests.providers.test_package_facts import (
    RUN,
    broken,
    bundle,
    cloud_version,
    deploys,
    facts,
    on_deploy,
    served,
)

pytestmark = pytest.mark.usefixtures("artifacts")


def sagemaker():
    return boto3.client("sagemaker", region_name=REGION)


def rewrite_metadata(arn: str, **changes: str) -> None:
    """What the deploy role can do: approve the version and rewrite its customer metadata."""
    metadata = sagemaker().describe_model_package(ModelPackageName=arn)["CustomerMetadataProperties"]
    sagemaker().update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved",
                                     CustomerMetadataProperties={**metadata, **changes})


def report_key(arn: str) -> str:
    metadata = sagemaker().describe_model_package(ModelPackageName=arn)["CustomerMetadataProperties"]
    return metadata["lineage:validation_report"].removeprefix(f"s3://{ARTIFACTS}/")


def replace_report(arn: str, body: bytes) -> None:
    boto3.client("s3", region_name=REGION).put_object(Bucket=ARTIFACTS, Key=report_key(arn), Body=body)


def test_an_honest_version_passes_with_its_figures_taken_from_its_report(model_group):
    arn = cloud_version(model_group, 0.8)
    package = facts(arn)
    assert package["report"]["problems"] == [] and len(package["report"]["sha256"]) == 64
    assert (package["gate_passed"], package["holdout_run"], package["macro_f1"]) == (True, RUN, 0.8)
    assert broken(served(arn)) == {}


def test_a_rejected_version_rewritten_to_gate_passed_true_is_refused_on_what_its_report_says(model_group):
    arn = cloud_version(model_group, 0.5, approval="Rejected")
    rewrite_metadata(arn, gate_passed="true")
    package = facts(arn)
    assert package["approval_status"] == "Approved" and package["gate_passed"] is False
    found = broken(served(arn))
    assert found["served-version-report-verified"] == [
        f"serves {arn}, whose registration and validation report disagree: the metadata says gate_passed=true, "
        "the report says the gate failed"]
    assert found["served-version-gated"] == ["serves a version that failed the promotion gate"]


def test_a_report_altered_after_registration_is_refused_and_its_claims_are_not_believed(model_group):
    arn = cloud_version(model_group, 0.5, approval="Rejected")
    replace_report(arn, job_report(run=RUN, macro_f1=0.95, gate_passed=True))
    rewrite_metadata(arn, gate_passed="true", **{"metric:xgboost_holdout_macro_f1": "0.95"})
    package = facts(arn)
    assert (package["gate_passed"], package["holdout_run"], package["macro_f1"]) == (None, "", None)
    (message,) = broken(served(arn))["served-version-report-verified"]
    assert "has sha256" in message and "recorded at registration: the report was changed after it" in message


def test_a_deleted_report_is_refused_naming_why_it_cannot_be_read(model_group):
    arn = cloud_version(model_group, 0.8)
    boto3.client("s3", region_name=REGION).delete_object(Bucket=ARTIFACTS, Key=report_key(arn))
    (message,) = broken(served(arn))["served-version-report-verified"]
    assert message.endswith("cannot be read: NoSuchKey")


def test_rewritten_held_out_run_and_macro_f1_are_named_and_the_reports_figures_are_judged(model_group):
    served_now = cloud_version(model_group, 0.8)
    worse = cloud_version(model_group, 0.79)
    rewrite_metadata(worse, **{"holdout:run": "20250301T000000Z-99999999", "metric:xgboost_holdout_macro_f1": "0.9"})
    found = broken(on_deploy(deploys(served_now, worse)))
    assert [m.split("disagree: ")[1] for m in found["served-version-report-verified"]] == [
        f"the metadata's holdout:run is 20250301T000000Z-99999999, the report's held-out run is {RUN}",
        "the metadata's holdout macro-F1 is 0.9, the report's 0.79",
    ]
    (message,) = found["served-version-gated"]
    assert "0.7900 < 0.8000 + 0.02" in message


def test_a_served_version_whose_report_was_altered_is_no_yardstick_for_a_promotion(model_group):
    served_now = cloud_version(model_group, 0.9)
    replace_report(served_now, job_report(run=RUN, macro_f1=0.5))
    state = deploys(served_now, cloud_version(model_group, 0.8))
    (message,) = broken(on_deploy(state))["served-version-gated"]
    assert message.startswith(f"cannot be compared with the served version {served_now}, whose validation report "
                              "does not check out: its validation report")
    assert "the report was changed after it" in message


def test_a_report_altered_after_the_deploy_is_seen_by_the_next_up_of_the_same_arn(model_group):
    arn = cloud_version(model_group, 0.8)
    provider = RegisteredPackageProvider()
    inputs = {"kind": REGISTERED_PACKAGE, "region": REGION, "model_package_arn": arn}
    state = provider.create(inputs).outs
    assert not provider.diff(arn, state, inputs).changes
    replace_report(arn, job_report(run=RUN, macro_f1=0.8, gate_passed=False))
    assert provider.diff(arn, state, inputs).changes
    assert "served-version-report-verified" in broken(on_deploy(provider.update(arn, state, inputs).outs))


def description(arn: str) -> dict:
    return sagemaker().describe_model_package(ModelPackageName=arn)


def test_update_model_package_cannot_change_the_report_recorded_in_model_metrics(model_group):
    """botocore's UpdateModelPackageInput has no ModelMetrics member, so the client refuses it before any call."""
    arn = cloud_version(model_group, 0.8)
    uri, digest = report_anchor(description(arn))
    assert uri.endswith("/output/output.tar.gz") and len(digest) == 64
    with pytest.raises(botocore.exceptions.ParamValidationError, match="ModelMetrics"):
        sagemaker().update_model_package(ModelPackageArn=arn, ModelMetrics={"ModelQuality": {"Statistics": {
            "S3Uri": uri, "ContentType": "application/gzip", "ContentDigest": f"sha256:{digest}"}}})


def test_a_failed_version_pointed_at_another_versions_passing_report_and_hash_is_refused(model_group):
    """Review 15c H1: the metadata names version A's report and its recorded hash; the deploy reads B's own."""
    passing = cloud_version(model_group, 0.81)
    failed = cloud_version(model_group, 0.5, approval="Rejected")
    other = sagemaker().describe_model_package(ModelPackageName=passing)["CustomerMetadataProperties"]
    rewrite_metadata(failed, gate_passed="true", family="xgboost", **{
        "holdout:run": RUN, "lineage:validation_report": other["lineage:validation_report"],
        REPORT_SHA256: other[REPORT_SHA256], "metric:xgboost_holdout_macro_f1": "0.81"})
    package = facts(failed)
    assert (package["gate_passed"], package["macro_f1"]) == (False, 0.5)
    assert package["report"]["uri"] != other["lineage:validation_report"]
    found = broken(served(failed))
    assert [m.split("disagree: ")[1] for m in found["served-version-report-verified"]] == [
        "the metadata says gate_passed=true, the report says the gate failed",
        "the metadata's holdout macro-F1 is 0.81, the report's 0.5"]
    assert found["served-version-gated"] == ["serves a version that failed the promotion gate"]


def test_a_model_data_url_rewritten_to_another_versions_model_is_refused(model_group):
    """UpdateModelPackage accepts InferenceSpecification (moto ignores it there), so the description is rewritten
    here as AWS would return it: the anchored report then no longer sits beside the served model."""
    passing, failed = cloud_version(model_group, 0.81), cloud_version(model_group, 0.5, approval="Rejected")
    rewritten = description(failed)
    rewritten["InferenceSpecification"] = description(passing)["InferenceSpecification"]
    package = verified_facts(rewritten, report_reader(REGION))
    (problem,) = package["report"]["problems"]
    assert "is not the report of the package's model" in problem and package["gate_passed"] is None


def local_version(model_group, artifacts, tmp_path) -> str:
    return register_bundle(sagemaker(), artifacts, bundle(tmp_path / "b"), group=model_group,
                           artifacts_bucket=ARTIFACTS, image="inference@sha256:" + "e" * 64, source="test")


def test_a_local_version_passes_only_while_its_report_evaluated_the_bundle_it_serves(model_group, artifacts,
                                                                                    tmp_path):
    from ml.bundle import MANIFEST

    assert BUNDLE_MANIFEST == MANIFEST  # package_facts names it without importing ml.bundle (numpy, xgboost)
    arn = local_version(model_group, artifacts, tmp_path)
    assert facts(arn)["report"]["problems"] == [] and broken(served(arn)) == {}
    model_key = description(arn)["InferenceSpecification"]["Containers"][0]["ModelDataUrl"].removeprefix(
        f"s3://{ARTIFACTS}/")
    manifest = json.dumps({"family": "xgboost", "files": {}, "note": "another bundle"}).encode()
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w:gz") as archive:
        member = tarfile.TarInfo("bundle.json")
        member.size = len(manifest)
        archive.addfile(member, io.BytesIO(manifest))
    artifacts.put_object(Bucket=ARTIFACTS, Key=model_key, Body=packed.getvalue())
    (message,) = broken(served(arn))["served-version-report-verified"]
    assert "evaluated bundle" in message and "the package serves bundle" in message


def unanchored_version(group: str, macro_f1: float) -> str:
    """A version as registered before the anchor (103ec10's registration): metadata hash, no ModelMetrics."""
    arn = cloud_version(group, macro_f1)
    old = description(arn)
    return sagemaker().create_model_package(
        ModelPackageGroupName=group, InferenceSpecification=old["InferenceSpecification"],
        ModelApprovalStatus="Approved", CustomerMetadataProperties=old["CustomerMetadataProperties"],
    )["ModelPackageArn"]


def test_a_version_registered_before_the_anchor_is_refused_saying_to_register_a_new_one(model_group):
    arn = unanchored_version(model_group, 0.8)
    assert report_anchor(description(arn)) == ("", "")
    (message,) = broken(served(arn))["served-version-report-verified"]
    assert message.endswith(UNANCHORED) and "register a new version" in message


def prod_violations(state: dict) -> list[str]:
    """The lifecycle violations of a deploy under prod's policy config (every rule mandatory)."""
    rules = [BY_NAME[name] for name in ("served-version-approved", "served-version-gated",
                                        "served-version-report-verified")]
    levels = load_levels(list(RULES), "prod")
    assert {levels[rule.name] for rule in rules} == {"mandatory"}
    settings = load_settings(list(RULES), "prod")
    return [f"{v.rule}: {v.message}" for v in evaluate(rules, [on_deploy(state)], levels, settings)]


def test_prod_promotes_away_from_a_served_version_registered_before_the_anchor_but_not_back(model_group):
    """Review 15c M1: prod serves a pre-anchor version; a new verified version that passed its gate is promoted
    without a comparison (none can be verified); a failed one is not; rolling back to the old one is refused."""
    old = unanchored_version(model_group, 0.9)
    new = cloud_version(model_group, 0.8)
    state = deploys(old, new)
    assert state["package"]["served"]["unanchored"] is True
    assert prod_violations(state) == []
    failed = cloud_version(model_group, 0.95, approval="Rejected")
    assert any("failed the promotion gate" in v for v in prod_violations(deploys(old, failed)))
    back = deploys(old, new, old)
    assert back["package"]["served"]["rollback"] is True
    assert [v.split(": ")[0] for v in prod_violations(back)] == ["served-version-gated",
                                                                 "served-version-report-verified"]


def test_access_denied_names_the_missing_permissions_and_a_missing_object_without_list_bucket(monkeypatch):
    s3 = boto3.client("s3", region_name=REGION)
    stub = Stubber(s3)
    stub.add_client_error("get_object", service_error_code="AccessDenied", http_status_code=403)
    stub.activate()
    monkeypatch.setattr(clients, "s3", lambda _region: s3)
    with pytest.raises(ReportUnavailable) as raised:
        report_reader(REGION)(f"s3://{ARTIFACTS}/training/j/output/output.tar.gz")
    message = str(raised.value)
    for needed in ("s3:GetObject", "kms:Decrypt", "does not exist", "s3:ListBucket"):
        assert needed in message


def test_a_report_that_cannot_be_read_at_registration_registers_nothing(model_group):
    missing = job_report_uri(f"s3://{ARTIFACTS}/training/never-ran/output/model.tar.gz")
    with pytest.raises(ReportUnavailable, match="never-ran/output/output.tar.gz cannot be read \\(NoSuchKey\\)"):
        ModelVersionProvider().create(props(model_group, lineage={"data_hash": "d", "validation_report": missing}))
    assert sagemaker().list_model_packages(ModelPackageGroupName=model_group)["ModelPackageSummaryList"] == []


def test_the_offline_placeholder_goes_through_the_same_check():
    """Offline the served package is the mocks' placeholder; its report is checked by the same code, and the
    offline report labels the rules as judged at deploy time only (tests/policies/test_lifecycle.py)."""
    import pulumi

    arn = "arn:aws:sagemaker:ap-southeast-1:123456789012:model-package/retail-dev-price-sensitivity/1"
    args = pulumi.runtime.MockResourceArgs(typ=DYNAMIC_TYPE, name="package", inputs={
        "kind": REGISTERED_PACKAGE, "model_package_arn": arn}, provider="", resource_id="", custom=True)
    _, outputs = PlatformMocks().new_resource(args)
    assert outputs["package"]["report"]["problems"] == [] and outputs["package"]["gate_passed"] is True
