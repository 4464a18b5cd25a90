"""The lake job's engine on AWS: EMR Serverless running ml/spark_lake.py from the project's own image.

Two components, for the two lifetimes involved:

- `LakeEngine`, in the platform stack: what a run executes as and where it may go, which outlives any image. A job
  execution role that EMR Serverless assumes for this account only, allowed to list and read the lake's raw/
  prefix (the job writes nothing there), list, read and write its silver/ and gold/ prefixes (plus deleting there,
  which Spark's commit of a run's files does with its temporary files) and write its manifests/ prefix, with
  multipart uploads, and to use the
  data key only through S3 (kms:ViaService); nothing else in the lake bucket, no other bucket. A security group
  with no ingress and HTTPS out only (S3 through the VPC's gateway endpoint, CloudWatch Logs and STS through its
  interface endpoints or NAT). A CloudWatch log group encrypted with the logs key, with the stack's retention,
  for the driver's and executors' logs. The policy of the platform's `lake` ECR repository, letting EMR Serverless
  pull the image for applications of this account and region only (it pulls with its service principal, not the
  job role: https://docs.aws.amazon.com/emr/latest/EMR-Serverless-UserGuide/application-custom-image.html).
- `LakeApplication`, in `retail lake build --cloud`'s stack (infra/providers/lake_program.py): the EMR Serverless
  Spark application on the image that run built (named by digest), in the platform's private subnets with that
  security group, logging to that group, with a capacity ceiling and auto-stop and no pre-initialized capacity, so
  it costs nothing between runs. The application lives with the image because EMR Serverless takes the image per
  application, not per job run, and the image changes with the code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.config import LakeEngineConfig
from infra.iam import Statement, policy_document, service_trust_policy
from infra.s3_access import data_key_through_s3, join

SERVICE = "emr-serverless.amazonaws.com"
READ_ZONES = ("raw", "silver", "gold")
"""What a run reads: the raw input, and back what it wrote (gold is built from silver); not manifests/, which
the job only writes (tests/infra/test_lake_job_requests.py records the job's requests)."""
WRITE_ZONES = ("silver", "gold", "manifests")
"""What a run writes (ml/spark_lake.py's contract): nothing under raw/ (an input in the raw zone is recorded where it
is), nowhere else."""
SCRATCH_ZONES = ("silver", "gold")
"""Where Spark deletes: its commit removes the task files it wrote under a run's folders (`_temporary/`)."""
WRITE_ACTIONS = ("s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts")
IMAGE_PULL_ACTIONS = ("ecr:BatchGetImage", "ecr:DescribeImages", "ecr:GetDownloadUrlForLayer")
"""What EMR Serverless needs on a custom image's repository (the EMR Serverless User Guide's repository policy)."""
LOG_STREAM_PREFIX = "lake"
LOG_SOURCES = ("SPARK_DRIVER", "SPARK_EXECUTOR")
LOG_TYPES = ("STDOUT", "STDERR")
"""What the application publishes to CloudWatch Logs: the driver's and every executor's stdout and stderr (without
`logTypes` EMR Serverless publishes the driver's only: the API reference's CloudWatchLoggingConfiguration)."""
LOG_ACTIONS = ("logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents")


@dataclass
class LakeEngineArgs:
    account_id: pulumi.Input[str]
    region: str
    vpc_id: pulumi.Input[str]
    lake_bucket_arn: pulumi.Input[str]
    lake_prefix: str
    """The lake root's prefix in the bucket (`retail:lakeCatalog.lakePrefix`): the job's zones are below it."""
    data_kms_key_arn: pulumi.Input[str]
    logs_kms_key_arn: pulumi.Input[str]
    log_retention_days: int
    repository_name: pulumi.Input[str]
    """The platform's `lake` ECR repository, which Dockerfile.lake's image is pushed to."""
    log_group_name: str


class LakeEngine(pulumi.ComponentResource):
    """The lake job's role, security group, log group and image pull permission (see the module docstring)."""

    job_role_arn: pulumi.Output[str]
    security_group_id: pulumi.Output[str]
    log_group_name: pulumi.Output[str]

    def __init__(self, name: str, args: LakeEngineArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("retail:infra:LakeEngine", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=args.log_group_name,
            retention_in_days=args.log_retention_days,
            kms_key_id=args.logs_kms_key_arn,
            opts=child,
        )
        self.job_role = aws.iam.Role(
            f"{name}-job",
            description="EMR Serverless lake job runs: raw -> silver -> gold in the lake",
            assume_role_policy=service_trust_policy(SERVICE, args.account_id),
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-job-access",
            role=self.job_role.id,
            policy=policy_document(job_statements(args, self.log_group.arn)),
            opts=child,
        )
        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=args.vpc_id,
            description="EMR Serverless lake job: no ingress, HTTPS out to S3 and the VPC endpoints",
            egress=[{"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_blocks": ["0.0.0.0/0"],
                     "description": "HTTPS: S3 (gateway endpoint), CloudWatch Logs, STS"}],
            ingress=[],
            opts=child,
        )
        aws.ecr.RepositoryPolicy(
            f"{name}-image-pull",
            repository=args.repository_name,
            policy=image_pull_policy(args.account_id, args.region),
            opts=child,
        )
        self.job_role_arn = self.job_role.arn
        self.security_group_id = self.security_group.id
        self.log_group_name = self.log_group.name
        self.register_outputs({
            "job_role_arn": self.job_role_arn,
            "security_group_id": self.security_group_id,
            "log_group_name": self.log_group_name,
        })


def _objects(bucket_arn: pulumi.Input[str], prefix: str, zone: str) -> pulumi.Output[str]:
    return pulumi.Output.format("{0}/{1}/*", bucket_arn, join(prefix, zone))


def job_statements(args: LakeEngineArgs, log_group_arn: pulumi.Input[str]) -> list[Statement]:
    """The job role's policy: the lake's zones by prefix, the data key through S3, its own log group."""
    bucket, prefix = args.lake_bucket_arn, args.lake_prefix
    return [
        {  # Unconditioned: a HEAD of a key that does not exist is answered 404 only to a caller allowed s3:ListBucket
            # on the bucket, else 403 (HeadObject's API reference). Spark's own S3 client (EMRFS) asks whether an
            # output path exists before `mode("overwrite")` writes it, and a 403 there fails the run. Listing shows
            # the lake's key names, not their contents.
            "Sid": "ListLakeBucket",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": bucket,
        },
        {
            "Sid": "ReadLakeZones",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": [_objects(bucket, prefix, zone) for zone in READ_ZONES],
        },
        {
            "Sid": "WriteLakeRun",
            "Effect": "Allow",
            "Action": list(WRITE_ACTIONS),
            "Resource": [_objects(bucket, prefix, zone) for zone in WRITE_ZONES],
        },
        {
            "Sid": "RemoveSparkTaskFiles",
            "Effect": "Allow",
            "Action": "s3:DeleteObject",
            "Resource": [_objects(bucket, prefix, zone) for zone in SCRATCH_ZONES],
        },
        data_key_through_s3(args.data_kms_key_arn, args.region),
        {
            "Sid": "WriteJobLogs",
            "Effect": "Allow",
            "Action": list(LOG_ACTIONS),
            "Resource": [log_group_arn, pulumi.Output.concat(log_group_arn, ":*")],
        },
        {
            # EMR Serverless looks the group up before writing to it; DescribeLogGroups takes no resource ARN (it
            # lists names only), so it is granted on "*", as IAM's service reference requires.
            "Sid": "FindJobLogGroup",
            "Effect": "Allow",
            "Action": "logs:DescribeLogGroups",
            "Resource": "*",
        },
    ]


def image_pull_policy(account_id: pulumi.Input[str], region: str) -> pulumi.Output[str]:
    """The lake repository's policy: EMR Serverless may pull for this account's applications in this region."""
    applications = pulumi.Output.concat("arn:aws:emr-serverless:", region, ":", account_id, ":/applications/*")
    return policy_document([
        {
            "Sid": "EmrServerlessPullsTheLakeImage",
            "Effect": "Allow",
            "Principal": {"Service": SERVICE},
            "Action": list(IMAGE_PULL_ACTIONS),
            # The EMR Serverless User Guide conditions on aws:SourceArn alone: the ARN pins the account and region.
            "Condition": {"ArnLike": {"aws:SourceArn": applications}},
        }
    ])


@dataclass
class LakeApplicationArgs:
    settings: LakeEngineConfig
    image_uri: pulumi.Input[str]
    """Dockerfile.lake's image, `<lake repository>@sha256:...`."""
    subnet_ids: pulumi.Input[Sequence[str]]
    security_group_id: pulumi.Input[str]
    log_group_name: pulumi.Input[str]
    application_name: str


class LakeApplication(pulumi.ComponentResource):
    """An EMR Serverless Spark application on the lake image, in the VPC, stopping itself when idle."""

    application_id: pulumi.Output[str]
    application_arn: pulumi.Output[str]

    def __init__(self, name: str, args: LakeApplicationArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("retail:infra:LakeApplication", name, None, opts)
        settings = args.settings
        self.application = aws.emrserverless.Application(
            f"{name}-spark",
            name=args.application_name,
            release_label=settings.release_label,
            type="spark",
            architecture=settings.architecture,
            image_configuration={"image_uri": args.image_uri},
            maximum_capacity={"cpu": settings.max_cpu, "memory": settings.max_memory, "disk": settings.max_disk},
            auto_start_configuration={"enabled": True},
            auto_stop_configuration={"enabled": True, "idle_timeout_minutes": settings.idle_timeout_minutes},
            network_configuration={"subnet_ids": args.subnet_ids, "security_group_ids": [args.security_group_id]},
            monitoring_configuration={
                "cloudwatch_logging_configuration": {
                    "enabled": True,
                    "log_group_name": args.log_group_name,
                    "log_stream_name_prefix": LOG_STREAM_PREFIX,
                    # Without log types EMR Serverless publishes the driver's stdout and stderr only.
                    "log_types": [{"name": name, "values": list(LOG_TYPES)} for name in LOG_SOURCES],
                },
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.application_id = self.application.id
        self.application_arn = self.application.arn
        self.register_outputs({"application_id": self.application_id, "application_arn": self.application_arn})
