"""SageMaker: the training execution role and the model package group (model registry)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.iam import Statement, policy_document, service_trust_policy
from infra.s3_access import data_key_through_s3

READ_ZONES = ("raw", "silver", "gold")
"""Lake zones training may read; it writes only to the artifacts bucket."""
VPC_DESCRIBE_ACTIONS = (
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeVpcs",
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
)
"""Documented for training in a private VPC; EC2 has no resource-level permissions for them."""
VPC_INTERFACE_ACTIONS = (
    "ec2:CreateNetworkInterface",
    "ec2:CreateNetworkInterfacePermission",
    "ec2:DeleteNetworkInterface",
    "ec2:DeleteNetworkInterfacePermission",
)
"""Documented for training in a private VPC: the job's elastic network interfaces in our subnets."""


@dataclass
class MlPlatformArgs:
    account_id: pulumi.Input[str]
    region: str
    bucket_arns: Mapping[str, pulumi.Input[str]]
    """Lake bucket ARNs by zone: `raw`, `silver`, `gold` and `artifacts`."""
    data_kms_key_arn: pulumi.Input[str]
    training_repository_arn: pulumi.Input[str]
    model_package_group_name: str


class MlPlatform(pulumi.ComponentResource):
    """What SageMaker training jobs run as, and where their model versions are registered.

    The execution role is assumable only by SageMaker for this account and may: read the
    raw/silver/gold buckets, read and write the artifacts bucket, use the data key through
    S3, encrypt job output with it and grant it to the job's encrypted volume, manage the
    network interfaces of jobs in the VPC, pull the training image, and write its own logs
    and metrics. The EC2 and KMS actions are the lists of
    "CreateTrainingJob API: Execution Role Permissions" in SageMaker's developer guide
    (private VPC; KMS key in the output configuration; volume KMS key), scoped to this
    account and region, and to the data key.
    """

    execution_role_arn: pulumi.Output[str]
    model_package_group_name: pulumi.Output[str]
    model_package_group_arn: pulumi.Output[str]

    def __init__(self, name: str, args: MlPlatformArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("retail:infra:MlPlatform", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.execution_role = aws.iam.Role(
            f"{name}-sagemaker-execution",
            description="SageMaker training and processing jobs",
            assume_role_policy=service_trust_policy("sagemaker.amazonaws.com", args.account_id),
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-sagemaker-access",
            role=self.execution_role.id,
            policy=policy_document(_execution_statements(args)),
            opts=child,
        )
        self.model_package_group = aws.sagemaker.ModelPackageGroup(
            f"{name}-models",
            model_package_group_name=args.model_package_group_name,
            model_package_group_description="Basket price-sensitivity classifier versions",
            opts=child,
        )
        self.execution_role_arn = self.execution_role.arn
        self.model_package_group_name = self.model_package_group.model_package_group_name
        self.model_package_group_arn = self.model_package_group.arn
        self.register_outputs(
            {
                "execution_role_arn": self.execution_role_arn,
                "model_package_group_name": self.model_package_group_name,
                "model_package_group_arn": self.model_package_group_arn,
            }
        )


def _objects(arn: pulumi.Input[str]) -> pulumi.Output[str]:
    return pulumi.Output.concat(arn, "/*")


def _execution_statements(args: MlPlatformArgs) -> list[Statement]:
    read_buckets = [args.bucket_arns[zone] for zone in READ_ZONES]
    artifacts = args.bucket_arns["artifacts"]
    log_groups = pulumi.Output.concat("arn:aws:logs:", args.region, ":", args.account_id, ":log-group:/aws/sagemaker/*")
    return [
        {
            "Sid": "ListLakeBuckets",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": [*read_buckets, artifacts],
        },
        {
            "Sid": "ReadLakeZones",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": [_objects(arn) for arn in read_buckets],
        },
        {
            "Sid": "ReadWriteArtifacts",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject"],
            "Resource": _objects(artifacts),
        },
        data_key_through_s3(args.data_kms_key_arn, args.region),
        *_encryption_statements(args),
        *_vpc_statements(args),
        {
            "Sid": "PullTrainingImage",
            "Effect": "Allow",
            "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            "Resource": args.training_repository_arn,
        },
        {
            "Sid": "EcrLogin",
            "Effect": "Allow",
            "Action": "ecr:GetAuthorizationToken",
            "Resource": "*",
        },
        {
            "Sid": "WriteJobLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
            "Resource": [log_groups, pulumi.Output.concat(log_groups, ":*")],
        },
        {
            "Sid": "WriteJobMetrics",
            "Effect": "Allow",
            "Action": "cloudwatch:PutMetricData",
            "Resource": "*",
            "Condition": {"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}},
        },
    ]


def _encryption_statements(args: MlPlatformArgs) -> list[Statement]:
    """The data key for a job's output (kms:Encrypt) and its storage volume (kms:CreateGrant), as the guide lists them.

    The grant has no `kms:GrantIsForAWSResource` condition: SageMaker makes it with this role, and no SageMaker or KMS
    page says the key is true on that call (KMS documents it for services calling on a user's behalf, with EBS as its
    example; the SageMaker Python SDK dropped it from its test key policy in 2019, its maintainers saying SageMaker is
    not one of the services that set it). With the condition and the key false, the grant falls to the caller of
    CreateTrainingJob, which the deploy role does not allow: the job would fail on its volume.

    What is left open: code running as this role (the training image) could grant the data key to another
    principal, for operations beyond S3's. `kms:GranteePrincipal` and `kms:GrantOperations` would narrow that, but
    no page says what SageMaker's volume grant sends for them: the CreateGrant event in CloudTrail of one job on a
    real account would, and is what should scope this statement.
    """
    return [
        {
            "Sid": "EncryptJobOutput",
            "Effect": "Allow",
            "Action": "kms:Encrypt",
            "Resource": args.data_kms_key_arn,
        },
        {
            "Sid": "GrantDataKeyForJobVolume",
            "Effect": "Allow",
            "Action": "kms:CreateGrant",
            "Resource": args.data_kms_key_arn,
        },
    ]


def _vpc_statements(args: MlPlatformArgs) -> list[Statement]:
    """Network interfaces of jobs in the VPC, exactly as SageMaker documents them: the nine actions on "*".

    https://docs.aws.amazon.com/sagemaker/latest/dg/sagemaker-roles.html#sagemaker-roles-createtrainingjob-perms
    SageMaker creates the interfaces in our subnets before the job starts; scoping these
    actions by ARN or condition is not what the page shows (for processing jobs it warns
    that conditions or resource filters make its validation fail), so it is not done here.
    """
    return [
        {
            "Sid": "JobNetworkInterfacesInTheVpc",
            "Effect": "Allow",
            "Action": [*VPC_DESCRIBE_ACTIONS, *VPC_INTERFACE_ACTIONS],
            "Resource": "*",
        }
    ]
