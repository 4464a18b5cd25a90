"""An S3 bucket with the platform's non-negotiable defaults, used by DataLake and AuditTrail."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.iam import Statement, policy_document

ExtraStatements = Callable[[pulumi.Output[str]], list[Statement]]
"""Given the bucket ARN, the statements to add to the bucket policy (e.g. a service's writes)."""


@dataclass
class SecureBucketArgs:
    kms_key_arn: pulumi.Input[str]
    noncurrent_version_expiry_days: int
    intelligent_tiering_after_days: int | None = None
    """None: objects stay in S3 Standard (e.g. small, short-lived logs)."""
    expiration_days: int | None = None
    """None: current objects never expire."""
    object_lock_days: int | None = None
    """Days each object version is write-once (GOVERNANCE mode); None: no object lock."""
    extra_policy_statements: ExtraStatements | None = None
    force_destroy: bool = False
    retain_on_delete: bool = False
    """True: `pulumi destroy` leaves the bucket and its settings in the account (audit logs)."""


class SecureBucket(pulumi.ComponentResource):
    """A versioned, SSE-KMS bucket that cannot be made public and refuses plain HTTP.

    Children: the bucket, owner-enforced object ownership (no ACLs), a public access
    block with all four switches on, versioning, default SSE-KMS with a bucket key, a
    lifecycle (Intelligent-Tiering, noncurrent version expiry, aborted multipart
    uploads), a bucket policy denying non-TLS requests, and optionally object lock.
    """

    bucket_name: pulumi.Output[str]
    arn: pulumi.Output[str]

    def __init__(self, name: str, args: SecureBucketArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("retail:infra:SecureBucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, retain_on_delete=args.retain_on_delete)
        locked = args.object_lock_days is not None
        self.bucket = aws.s3.Bucket(
            f"{name}-bucket", object_lock_enabled=locked, force_destroy=args.force_destroy, opts=child
        )
        self.bucket_name = self.bucket.bucket
        self.arn = self.bucket.arn
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=self.bucket.id,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=child,
        )
        access_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access",
            bucket=self.bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        versioning = aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=self.bucket.id,
            versioning_configuration={"status": "Enabled"},
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-sse",
            bucket=self.bucket.id,
            rules=[
                {
                    "apply_server_side_encryption_by_default": {
                        "sse_algorithm": "aws:kms",
                        "kms_master_key_id": args.kms_key_arn,
                    },
                    "bucket_key_enabled": True,
                }
            ],
            opts=child,
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=self.bucket.id,
            rules=[self._lifecycle_rule(args)],
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[versioning])),
        )
        extra = args.extra_policy_statements(self.arn) if args.extra_policy_statements else []
        aws.s3.BucketPolicy(
            f"{name}-policy",
            bucket=self.bucket.id,
            policy=policy_document([self._deny_insecure_transport(), *extra]),
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[access_block])),
        )
        if locked:
            aws.s3.BucketObjectLockConfiguration(
                f"{name}-object-lock",
                bucket=self.bucket.id,
                rule={"default_retention": {"mode": "GOVERNANCE", "days": args.object_lock_days}},
                opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[versioning])),
            )
        self.register_outputs({"bucket_name": self.bucket_name, "arn": self.arn})

    @staticmethod
    def _lifecycle_rule(args: SecureBucketArgs) -> dict:
        rule: dict = {
            "id": "platform-defaults",
            "status": "Enabled",
            "filter": {},
            "noncurrent_version_expiration": {"noncurrent_days": args.noncurrent_version_expiry_days},
            "abort_incomplete_multipart_upload": {"days_after_initiation": 7},
        }
        if args.intelligent_tiering_after_days is not None:
            rule["transitions"] = [
                {
                    "days": args.intelligent_tiering_after_days,
                    "storage_class": "INTELLIGENT_TIERING",
                }
            ]
        if args.expiration_days is not None:
            rule["expiration"] = {"days": args.expiration_days}
        return rule

    def _deny_insecure_transport(self) -> Statement:
        return {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [self.arn, pulumi.Output.concat(self.arn, "/*")],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
