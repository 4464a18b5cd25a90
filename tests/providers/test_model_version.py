"""ModelVersionProvider against the SageMaker model registry served by moto on 127.0.0.1."""

from __future__ import annotations

import re

import boto3
import pytest

from infra.providers.kinds import MODEL_VERSION
from infra.providers.model_version import ModelVersionProvider, list_versions
from tests.providers.conftest import REGION, SECRET, as_the_provider_host_loads_it

LINEAGE = {"data_hash": "data-1", "code_version": "code-1", "training_job_arn": "arn:aws:sagemaker:job/train-1"}


def props(group: str, **overrides) -> dict:
    return {
        "kind": MODEL_VERSION,
        "region": REGION,
        "group_name": group,
        "model_artifact_uri": "s3://artifacts/training/train-1/output/model.tar.gz",
        "image_uri": "123456789012.dkr.ecr.ap-southeast-1.amazonaws.com/retail-dev-registry/inference:0.1.0",
        "metrics": {"xgboost_holdout_accuracy": 0.81, "xgboost_holdout_macro_f1": 0.77},
        "lineage": LINEAGE,
        "family": "xgboost",
        "approval_status": "PendingManualApproval",
        "approval_description": "",
        "description": "xgboost on data-1",
    } | overrides


def describe(arn: str) -> dict:
    return boto3.client("sagemaker", region_name=REGION).describe_model_package(ModelPackageName=arn)


def test_create_registers_a_version_with_metrics_lineage_and_approval(model_group):
    result = ModelVersionProvider().create(props(model_group, approval_status="Approved"))
    package = describe(result.id)
    assert package["ModelPackageGroupName"] == model_group
    assert package["ModelApprovalStatus"] == "Approved"
    assert package["CustomerMetadataProperties"] == {
        "family": "xgboost",
        "champion:arn": "none",
        "metric:xgboost_holdout_accuracy": "0.81",
        "metric:xgboost_holdout_macro_f1": "0.77",
        "lineage:data_hash": "data-1",
        "lineage:code_version": "code-1",
        "lineage:training_job_arn": "arn:aws:sagemaker:job/train-1",
    }
    assert "CommitId" not in package["MetadataProperties"]  # no git commit given: the sources hash is not one
    container = package["InferenceSpecification"]["Containers"][0]
    assert container["ModelDataUrl"] == "s3://artifacts/training/train-1/output/model.tar.gz"
    assert result.outs["version"] == 1 and result.outs["model_package_arn"] == result.id


def test_updating_the_approval_keeps_metrics_lineage_and_description(model_group):
    provider = ModelVersionProvider()
    created = provider.create(props(model_group))
    news = props(model_group, approval_status="Approved", approval_description="gate passed")
    provider.update(created.id, created.outs, news)
    package = describe(created.id)
    assert (package["ModelApprovalStatus"], package["ApprovalDescription"]) == ("Approved", "gate passed")
    assert package["CustomerMetadataProperties"]["lineage:data_hash"] == "data-1"
    assert package["CustomerMetadataProperties"]["metric:xgboost_holdout_macro_f1"] == "0.77"
    assert package["CustomerMetadataProperties"]["family"] == "xgboost"
    assert package["ModelPackageDescription"] == "xgboost on data-1"


def test_an_approval_change_is_an_update_and_an_artifact_change_a_replacement(model_group):
    olds = props(model_group) | {"model_package_arn": "arn", "version": 1}
    approval = ModelVersionProvider().diff("arn", olds, props(model_group, approval_status="Rejected"))
    artifact = ModelVersionProvider().diff("arn", olds, props(model_group, model_artifact_uri="s3://b/other.tar.gz"))
    assert approval.changes and approval.replaces == []
    assert artifact.changes and artifact.replaces == ["model_artifact_uri"]


def test_read_sees_an_approval_changed_outside_pulumi(model_group):
    created = ModelVersionProvider().create(props(model_group))
    boto3.client("sagemaker", region_name=REGION).update_model_package(
        ModelPackageArn=created.id, ModelApprovalStatus="Rejected", CustomerMetadataProperties={"k": "v"}
    )
    read = ModelVersionProvider().read(created.id, created.outs)
    assert read.outs["approval_status"] == "Rejected"


def test_delete_leaves_the_version_registered(model_group):
    created = ModelVersionProvider().create(props(model_group, approval_status="Approved"))
    ModelVersionProvider().delete(created.id, created.outs)
    assert describe(created.id)["ModelApprovalStatus"] == "Approved"


def test_retraining_replaces_the_resource_and_the_group_keeps_every_version(model_group):
    """A retrain: new artifact -> diff says replace -> create the new version, then delete the old one."""
    provider = ModelVersionProvider()
    first = provider.create(props(model_group, approval_status="Approved"))
    retrained = props(model_group, model_artifact_uri="s3://artifacts/training/train-2/output/model.tar.gz",
                      lineage=LINEAGE | {"data_hash": "data-2"})
    assert provider.diff(first.id, first.outs, retrained).replaces
    second = provider.create(retrained)
    provider.delete(first.id, first.outs)
    versions = list_versions(model_group, REGION)
    assert [(v.version, v.data_hash) for v in versions] == [(2, "data-2"), (1, "data-1")]
    assert second.outs["version"] == 2


def test_list_versions_reads_family_metrics_and_lineage_back(model_group):
    ModelVersionProvider().create(props(model_group, approval_status="Rejected"))
    (version,) = list_versions(model_group, REGION)
    assert (version.version, version.approval, version.family) == (1, "Rejected", "xgboost")
    assert (version.metric("accuracy"), version.metric("macro_f1"), version.data_hash) == ("0.81", "0.77", "data-1")


def test_an_unknown_approval_status_is_refused_before_calling_sagemaker(model_group):
    with pytest.raises(ValueError, match="approval_status 'Approve' is not one of Approved, Rejected"):
        ModelVersionProvider().create(props(model_group, approval_status="Approve"))


def test_a_used_provider_pickled_as_pulumi_does_holds_no_client_or_secret_and_registers_alike(
    model_group, monkeypatch
):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    provider = ModelVersionProvider()
    first = provider.create(props(model_group))
    assert vars(provider) == {}
    loaded, pickled = as_the_provider_host_loads_it(provider)
    assert SECRET.encode() not in pickled and b"botocore" not in pickled
    second = loaded.create(props(model_group))
    assert [(v.version, v.data_hash) for v in list_versions(model_group, REGION)] == [(2, "data-1"), (1, "data-1")]
    assert describe(second.id)["CustomerMetadataProperties"] == describe(first.id)["CustomerMetadataProperties"]


def test_a_create_whose_approval_fails_leaves_no_approved_version(model_group, monkeypatch):
    """The version is registered pending and approved by the call after: should that call fail, Pulumi records
    nothing, and nothing a deploy would serve was left in the group."""
    from moto.sagemaker.models import SageMakerModelBackend

    def refused(*_args, **_kwargs):
        raise RuntimeError("the approval call failed")

    monkeypatch.setattr(SageMakerModelBackend, "update_model_package", refused)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # the 500 once, not after botocore's backoff (seconds of sleep)
    with pytest.raises(Exception, match="500"):
        ModelVersionProvider().create(props(model_group, approval_status="Approved"))
    (version,) = list_versions(model_group, REGION)
    assert version.approval == "PendingManualApproval"


def test_create_sends_a_client_token_that_names_its_request(model_group, monkeypatch):
    """The same request sends the same token (a retried create gets its version back), another request another."""
    from moto.sagemaker.models import SageMakerModelBackend

    create, sent = SageMakerModelBackend.create_model_package, []

    def recording(self, *args, **kwargs):
        sent.append(kwargs["client_token"])
        return create(self, *args, **kwargs)

    monkeypatch.setattr(SageMakerModelBackend, "create_model_package", recording)
    provider = ModelVersionProvider()
    provider.create(props(model_group, approval_status="Rejected"))
    provider.create(props(model_group, approval_status="Rejected"))
    provider.create(props(model_group, approval_status="Rejected", lineage=LINEAGE | {"data_hash": "data-2"}))
    assert sent[0] == sent[1] != sent[2]
    assert all(re.fullmatch(r"[a-zA-Z0-9-]{1,36}", token) for token in sent)


def test_where_the_code_came_from_is_no_change_and_what_was_trained_a_replacement(model_group):
    olds = props(model_group, lineage=LINEAGE | {"git_commit": "a" * 40}) | {"model_package_arn": "arn", "version": 1}
    moved = props(model_group, lineage=LINEAGE | {"git_commit": "b" * 40, "repository": "github.com/o/r"})
    retrained = props(model_group, lineage=LINEAGE | {"git_commit": "a" * 40, "data_hash": "data-2"})
    assert not ModelVersionProvider().diff("arn", olds, moved).changes
    assert ModelVersionProvider().diff("arn", olds, retrained).replaces == ["lineage"]


def test_read_reports_a_version_an_operator_deleted_as_gone(model_group):
    created = ModelVersionProvider().create(props(model_group))
    boto3.client("sagemaker", region_name=REGION).delete_model_package(ModelPackageName=created.id)
    read = ModelVersionProvider().read(created.id, created.outs)
    assert (read.id, read.outs) == ("", {})


def test_an_approval_change_after_a_new_commit_keeps_the_commit_that_registered_the_version(model_group):
    provider = ModelVersionProvider()
    created = provider.create(props(model_group, lineage=LINEAGE | {"git_commit": "a" * 40}))
    moved = props(model_group, approval_status="Approved", lineage=LINEAGE | {"git_commit": "b" * 40})
    updated = provider.update(created.id, created.outs, moved)
    package = describe(created.id)
    assert package["CustomerMetadataProperties"]["lineage:git_commit"] == package["MetadataProperties"]["CommitId"]
    assert updated.outs["lineage"]["git_commit"] == "a" * 40 and package["ModelApprovalStatus"] == "Approved"
