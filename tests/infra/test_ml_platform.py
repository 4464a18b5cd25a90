"""MlPlatform: a least-privilege SageMaker role and the model package group."""

import pytest

from infra.ml_platform import MlPlatform, MlPlatformArgs
from infra.mocks import ACCOUNT_ID

from .helpers import as_list, build, policy_of, statements

DATA_KEY = "arn:aws:kms:ap-southeast-1:123456789012:key/data"
BUCKETS = {zone: f"arn:aws:s3:::lake-{zone}" for zone in ("raw", "silver", "gold", "artifacts")}
TRAINING_REPO = "arn:aws:ecr:ap-southeast-1:123456789012:repository/reg/training"


@pytest.fixture(scope="module")
def run():
    args = MlPlatformArgs(
        account_id=ACCOUNT_ID,
        region="ap-southeast-1",
        bucket_arns=BUCKETS,
        data_kms_key_arn=DATA_KEY,
        training_repository_arn=TRAINING_REPO,
        model_package_group_name="retail-test-price-sensitivity",
    )
    return build(lambda: MlPlatform("ml", args))


@pytest.fixture(scope="module")
def allowed(run):
    (policy,) = run.of_type("aws:iam/rolePolicy:RolePolicy")
    return statements(policy)


def test_only_sagemaker_acting_for_this_account_can_assume_the_role(run):
    (role,) = run.of_type("aws:iam/role:Role")
    (trust,) = policy_of(role, "assumeRolePolicy")["Statement"]
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT_ID}}


def test_no_statement_grants_wildcard_actions(allowed):
    actions = [a for s in allowed for a in as_list(s["Action"])]
    assert not [a for a in actions if a == "*" or a.endswith(":*")]


def test_s3_writes_only_reach_the_artifacts_bucket(allowed):
    writes = [s for s in allowed if "s3:PutObject" in as_list(s["Action"])]
    assert [s["Resource"] for s in writes] == [BUCKETS["artifacts"] + "/*"]


def test_lake_zones_are_readable(allowed):
    reads = next(s for s in allowed if s["Sid"] == "ReadLakeZones")
    assert reads["Resource"] == [BUCKETS[z] + "/*" for z in ("raw", "silver", "gold")]


def test_the_data_key_is_usable_only_through_s3(allowed):
    kms = next(s for s in allowed if s["Sid"] == "UseDataKeyThroughS3")
    assert kms["Resource"] == DATA_KEY
    assert kms["Condition"] == {"StringEquals": {"kms:ViaService": "s3.ap-southeast-1.amazonaws.com"}}


def test_only_the_training_image_can_be_pulled(allowed):
    pull = next(s for s in allowed if s["Sid"] == "PullTrainingImage")
    assert pull["Resource"] == TRAINING_REPO


def test_wildcard_resources_are_limited_to_ecr_login_and_scoped_metrics(allowed):
    wildcard = {s["Sid"] for s in allowed if s["Resource"] == "*"}
    assert wildcard == {"EcrLogin", "WriteJobMetrics", "JobNetworkInterfacesInTheVpc"}


def test_a_model_package_group_registers_model_versions(run):
    (group,) = run.of_type("aws:sagemaker/modelPackageGroup:ModelPackageGroup")
    assert group.inputs["modelPackageGroupName"] == "retail-test-price-sensitivity"
