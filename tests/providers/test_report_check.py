"""A deploy trusts a package's validation report over its rewritable metadata: rewrites, altered reports refused (moto).

The deploy role may call UpdateModelPackage, so a version's customer metadata can say
anything. Registration records the report's sha256 (`report:sha256`); `RegisteredPackage`
reads the report back, checks the hash and takes the gate verdict, held-out run and
macro-F1 from it, and served-version-report-verified fails on each disagreement. Here,
against SageMaker and S3 served by moto on 127.0.0.1: an honest version passes, a version
whose metadata was rewritten to `gate_passed=true` while its report says the gate failed
is refused, a report altered (or deleted) after registration is refused, a served version
whose report was altered cannot be the yardstick of a promotion, a change to the report
after a deploy is seen by the next `up`, and a report that cannot be read at registration
registers nothing.
"""

from __future__ import annotations

import boto3
import pytest

from infra.mocks import PlatformMocks
from infra.providers.kinds import DYNAMIC_TYPE, REGISTERED_PACKAGE
from infra.providers.model_version import ModelVersionProvider
from infra.providers.package_facts import REPORT_SHA256, ReportUnavailable, job_report_uri
from infra.providers.registered_package import RegisteredPackageProvider
from tests.providers.conftest import ARTIFACTS, REGION, job_report
from tests.providers.test_model_version import props
from tests.providers.test_package_facts import RUN, broken, cloud_version, deploys, facts, on_deploy, served

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


def test_a_version_registered_without_a_report_hash_is_refused(model_group):
    arn = cloud_version(model_group, 0.8)
    metadata = sagemaker().describe_model_package(ModelPackageName=arn)["CustomerMetadataProperties"]
    sagemaker().update_model_package(ModelPackageArn=arn, CustomerMetadataProperties={
        k: v for k, v in metadata.items() if k != REPORT_SHA256})
    (message,) = broken(served(arn))["served-version-report-verified"]
    assert message.endswith(f"was recorded at registration ({REPORT_SHA256})")


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
