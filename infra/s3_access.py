"""S3 paths under a bucket and the IAM statements that grant access below them, shared by the components that
read or write the lake (batch scoring, monitoring, the lake catalog) and the training platform."""

from __future__ import annotations

import pulumi


def join(*parts: str) -> str:
    """Path parts joined by `/`, each stripped of slashes, empty ones left out."""
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


def s3_uri(bucket: pulumi.Input[str], prefix: str) -> pulumi.Output[str]:
    return pulumi.Output.from_input(bucket).apply(lambda name: "s3://" + join(name, prefix))


def data_key_through_s3(key_arn: pulumi.Input[str], region: str) -> dict:
    """kms:Decrypt and kms:GenerateDataKey on the data key, only when S3 asks (SSE-KMS reads, writes, multipart)."""
    return {
        "Sid": "UseDataKeyThroughS3",
        "Effect": "Allow",
        "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
        "Resource": key_arn,
        "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}},
    }


def read_prefix(sid: str, bucket_arn: pulumi.Input[str], prefix: str) -> list[dict]:
    """s3:ListBucket with `<prefix>/*` as the s3:prefix condition, and s3:GetObject below `prefix`."""
    return [
        {
            "Sid": f"List{sid}",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": bucket_arn,
            "Condition": {"StringLike": {"s3:prefix": f"{prefix}/*"}},
        },
        {
            "Sid": f"Read{sid}",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": pulumi.Output.format("{0}/{1}/*", bucket_arn, prefix),
        },
    ]


def write_prefix(sid: str, bucket_arn: pulumi.Input[str], prefix: str) -> dict:
    """s3:PutObject below `prefix` (and nothing else: no delete, no listing)."""
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Action": "s3:PutObject",
        "Resource": pulumi.Output.format("{0}/{1}/*", bucket_arn, prefix),
    }
