"""The S3 data lake: raw, silver and gold zones plus the model artifact bucket."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from infra.secure_bucket import SecureBucket, SecureBucketArgs

ZONES = ("raw", "silver", "gold", "artifacts")


@dataclass
class DataLakeArgs:
    kms_key_arn: pulumi.Input[str]
    intelligent_tiering_after_days: int = 0
    noncurrent_version_expiry_days: int = 90
    force_destroy: bool = False


class DataLake(pulumi.ComponentResource):
    """One SecureBucket per zone (`ZONES`), all encrypted with the data key.

    Current objects never expire (the lake is the record of truth); old versions do,
    after `noncurrent_version_expiry_days`, and objects move to Intelligent-Tiering.
    """

    bucket_names: dict[str, pulumi.Output[str]]
    bucket_arns: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: DataLakeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("retail:infra:DataLake", name, None, opts)
        self.buckets = {
            zone: SecureBucket(
                f"{name}-{zone}",
                SecureBucketArgs(
                    kms_key_arn=args.kms_key_arn,
                    intelligent_tiering_after_days=args.intelligent_tiering_after_days,
                    noncurrent_version_expiry_days=args.noncurrent_version_expiry_days,
                    force_destroy=args.force_destroy,
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
            for zone in ZONES
        }
        self.bucket_names = {zone: b.bucket_name for zone, b in self.buckets.items()}
        self.bucket_arns = {zone: b.arn for zone, b in self.buckets.items()}
        self.register_outputs({"bucket_names": self.bucket_names, "bucket_arns": self.bucket_arns})
