"""Account-wide audit log: a multi-region CloudTrail into a write-once bucket."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.iam import Statement
from infra.secure_bucket import SecureBucket, SecureBucketArgs


@dataclass
class AuditTrailArgs:
    account_id: pulumi.Input[str]
    region: str
    kms_key_arn: pulumi.Input[str]
    retention_days: int = 365
    object_lock_days: int = 90


class AuditTrail(pulumi.ComponentResource):
    """CloudTrail for management events in every region, with log file validation.

    Log files are SSE-KMS encrypted with the logs key and land in a SecureBucket with
    object lock (GOVERNANCE, `object_lock_days`) whose policy admits only this trail's
    writes; files expire after `retention_days`. The trail waits for the bucket policy
    (CloudTrail checks it on creation). A destroy stops the trail but keeps the bucket
    (`retain_on_delete`): audit logs outlive the stack, and a locked, non-empty bucket
    could not be deleted anyway. Stacks that must leave nothing behind (ephemeral ones)
    have no trail of their own (`retail:audit.trail: false`).
    """

    trail_arn: pulumi.Output[str]
    bucket_name: pulumi.Output[str]

    def __init__(self, name: str, args: AuditTrailArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("retail:infra:AuditTrail", name, None, opts)
        trail_name = f"{name}-trail"
        trail_arn = pulumi.Output.concat(
            "arn:aws:cloudtrail:", args.region, ":", args.account_id, ":trail/", trail_name
        )
        self.bucket = SecureBucket(
            f"{name}-logs",
            SecureBucketArgs(
                kms_key_arn=args.kms_key_arn,
                noncurrent_version_expiry_days=args.retention_days,
                expiration_days=args.retention_days,
                object_lock_days=args.object_lock_days,
                extra_policy_statements=lambda arn: _cloudtrail_writes(arn, trail_arn, args.account_id),
                retain_on_delete=True,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.trail = aws.cloudtrail.Trail(
            trail_name,
            name=trail_name,
            s3_bucket_name=self.bucket.bucket_name,
            kms_key_id=args.kms_key_arn,
            is_multi_region_trail=True,
            include_global_service_events=True,
            enable_log_file_validation=True,
            enable_logging=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.bucket]),
        )
        self.trail_arn = self.trail.arn
        self.bucket_name = self.bucket.bucket_name
        self.register_outputs({"trail_arn": self.trail_arn, "bucket_name": self.bucket_name})


def _cloudtrail_writes(
    bucket_arn: pulumi.Output[str], trail_arn: pulumi.Output[str], account_id: pulumi.Input[str]
) -> list[Statement]:
    only_this_trail = {"StringEquals": {"aws:SourceArn": trail_arn}}
    return [
        {
            "Sid": "CloudTrailReadsAcl",
            "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"},
            "Action": "s3:GetBucketAcl",
            "Resource": bucket_arn,
            "Condition": only_this_trail,
        },
        {
            "Sid": "CloudTrailWritesLogs",
            "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"},
            "Action": "s3:PutObject",
            "Resource": pulumi.Output.concat(bucket_arn, "/AWSLogs/", account_id, "/*"),
            "Condition": {
                "StringEquals": {
                    "aws:SourceArn": trail_arn,
                    "s3:x-amz-acl": "bucket-owner-full-control",
                }
            },
        },
    ]
