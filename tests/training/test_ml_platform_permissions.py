"""The SageMaker execution role can run a job in the VPC with an encrypted volume and output, and no more.

The lists are those of "CreateTrainingJob API: Execution Role Permissions" in SageMaker's
developer guide: for a private VPC, the nine EC2 actions below, on Resource "*" as the page
shows them (SageMaker creates the job's interfaces before it starts; the page warns, for
processing jobs, that resource filters or conditions make its validation fail); for a KMS
key in the output configuration, kms:Encrypt; for a volume KMS key, kms:CreateGrant. The
key actions name the data key; the grant holds whether or not the request says it is for an AWS resource (the
page sets no condition, and none documents that SageMaker's call sets kms:GrantIsForAWSResource).
"""

from __future__ import annotations

import json

import pulumi
import pytest

from infra.ml_platform import MlPlatform, MlPlatformArgs
from infra.offline import run_offline
from policies.documents import SAGEMAKER_VPC_ACTIONS, Need, allows
from tests.training.fakes import ACCOUNT, DATA_KEY_ARN, REGION

DOCUMENTED_VPC_ACTIONS = set(SAGEMAKER_VPC_ACTIONS)
"""The nine EC2 actions SageMaker's page lists, as the documented-permissions check holds them."""
BUCKETS = {zone: f"arn:aws:s3:::lake-{zone}" for zone in ("raw", "silver", "gold", "artifacts")}


@pytest.fixture(scope="module")
def allowed() -> list[dict]:
    """The role's inline policy statements, with MlPlatformArgs built as infra/platform.py builds them."""
    args = MlPlatformArgs(
        account_id=ACCOUNT,
        region=REGION,
        bucket_arns=BUCKETS,
        data_kms_key_arn=DATA_KEY_ARN,
        training_repository_arn=f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/reg/training",
        model_package_group_name="retail-test-price-sensitivity",
    )

    def program() -> None:
        MlPlatform("ml", args)

    try:
        run = run_offline(program, project="retail-mlops", stack="test")
    finally:
        pulumi.runtime.reset_options()
        pulumi.runtime.set_all_config({})
    (policy,) = run.of_type("aws:iam/rolePolicy:RolePolicy")
    return json.loads(policy.inputs["policy"])["Statement"]


def granting(allowed: list[dict], prefix: str) -> list[dict]:
    return [s for s in allowed if any(a.startswith(prefix) for a in _list(s["Action"]))]


def _list(value) -> list:
    return value if isinstance(value, list) else [value]


def test_the_role_has_exactly_the_documented_ec2_actions_for_a_job_in_a_private_vpc(allowed):
    actions = [a for s in granting(allowed, "ec2:") for a in _list(s["Action"])]
    assert sorted(actions) == sorted(DOCUMENTED_VPC_ACTIONS)


def test_the_vpc_actions_are_one_statement_exactly_as_documented(allowed):
    (vpc,) = granting(allowed, "ec2:")
    assert vpc["Resource"] == "*" and "Condition" not in vpc


@pytest.mark.parametrize("context", [{}, {"kms:GrantIsForAWSResource": "false"}, {"kms:GrantIsForAWSResource": "true"}],
                         ids=["key absent", "key false", "key true"])
def test_the_data_key_may_be_granted_for_the_job_volume_whatever_the_request_says_of_aws_resources(allowed, context):
    assert allows(allowed, Need(("kms:CreateGrant",), resources=(DATA_KEY_ARN,), context=context)) == []
    (grant,) = [s for s in allowed if "kms:CreateGrant" in _list(s["Action"])]
    assert _list(grant["Action"]) == ["kms:CreateGrant"] and grant["Resource"] == DATA_KEY_ARN


def test_job_output_may_be_encrypted_with_the_data_key_only(allowed):
    (encrypt,) = [s for s in allowed if "kms:Encrypt" in _list(s["Action"])]
    assert _list(encrypt["Action"]) == ["kms:Encrypt"] and encrypt["Resource"] == DATA_KEY_ARN


def test_every_kms_permission_names_the_data_key_and_reading_the_lake_stays_through_s3(allowed):
    kms = granting(allowed, "kms:")
    assert {s["Resource"] for s in kms} == {DATA_KEY_ARN}
    (through_s3,) = [s for s in kms if "kms:Decrypt" in _list(s["Action"])]
    assert through_s3["Condition"] == {"StringEquals": {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}}


def test_the_training_image_is_pulled_with_the_documented_ecr_actions(allowed):
    pull = next(s for s in allowed if s["Sid"] == "PullTrainingImage")
    assert sorted(pull["Action"]) == ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage",
                                      "ecr:GetDownloadUrlForLayer"]
