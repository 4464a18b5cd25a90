"""S3: KMS encryption, blocked public access, versioning and TLS-only access on every bucket.

With pulumi-aws 7 a bucket's settings are separate resources (`BucketServerSideEncryption
Configuration`, `BucketPublicAccessBlock`, ...), so "every bucket has X" is a stack rule that
joins each setting to its bucket through the `bucket` input's dependency.

pulumi-aws 7 still ships the previous generation's types beside the current ones, and
either may hold a bucket or its settings: `aws:s3/bucketV2:BucketV2` (the old name of
today's `Bucket`, kept as an alias) and the `...V2` settings resources. Every rule here
treats both generations alike (token lists from pulumi_aws/s3/*.py of pulumi-aws 7.51,
https://www.pulumi.com/registry/packages/aws/api-docs/s3/bucketv2/), so a bare BucketV2
is judged like a Bucket and a V2 setting counts for a bucket of either generation. The
deprecated inline settings of a bucket (`serverSideEncryptionConfigurations`, ...) are not
read: the fix these rules give is the separate resource `infra.secure_bucket` creates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from policies.model import Resource, ResourceRule, StackRule, as_json, as_list

BUCKET = "aws:s3/bucket:Bucket"
BUCKET_V2 = "aws:s3/bucketV2:BucketV2"
SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
SSE_V2 = "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2"
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
VERSIONING_V2 = "aws:s3/bucketVersioningV2:BucketVersioningV2"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
LIFECYCLE_V2 = "aws:s3/bucketLifecycleConfigurationV2:BucketLifecycleConfigurationV2"
OBJECT_LOCK = "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration"
OBJECT_LOCK_V2 = "aws:s3/bucketObjectLockConfigurationV2:BucketObjectLockConfigurationV2"

BUCKETS = frozenset({BUCKET, BUCKET_V2})
SSE_TYPES = frozenset({SSE, SSE_V2})
PUBLIC_ACCESS_BLOCKS = frozenset({PUBLIC_ACCESS_BLOCK})
"""pulumi-aws 7 has no V2 public access block or bucket policy: one type each serves both generations."""
VERSIONING_TYPES = frozenset({VERSIONING, VERSIONING_V2})
BUCKET_POLICIES = frozenset({BUCKET_POLICY})
LIFECYCLE_TYPES = frozenset({LIFECYCLE, LIFECYCLE_V2})
OBJECT_LOCK_TYPES = frozenset({OBJECT_LOCK, OBJECT_LOCK_V2})
KMS_ALGORITHMS = {"aws:kms", "aws:kms:dsse"}
PUBLIC_ACCESS_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")


def sse_uses_kms(resource: Resource) -> list[str]:
    rules = as_list(resource.get("rules"))
    if not rules:
        return ["has no encryption rule"]
    problems = []
    for rule in rules:
        default = rule.get("applyServerSideEncryptionByDefault") or {}
        algorithm = default.get("sseAlgorithm")
        if algorithm not in KMS_ALGORITHMS:
            problems.append(f"encrypts with {algorithm!r}, not SSE-KMS")
        elif not default.get("kmsMasterKeyId"):
            problems.append("uses SSE-KMS with the AWS-managed key instead of the platform's customer-managed key")
    return problems


def public_access_block_complete(resource: Resource) -> list[str]:
    off = [flag for flag in PUBLIC_ACCESS_FLAGS if resource.get(flag) is not True]
    return [f"leaves {', '.join(off)} off"] if off else []


def _versioning_enabled(resource: Resource) -> bool:
    return resource.get("versioningConfiguration", "status") == "Enabled"


def _denies_insecure_transport(resource: Resource) -> bool:
    document = as_json(resource.get("policy"))
    if not isinstance(document, dict):
        return True  # not known until deploy (computed from the bucket's ARN): cannot be judged here
    for statement in as_list(document.get("Statement")):
        condition = (statement.get("Condition") or {}).get("Bool") or {}
        if statement.get("Effect") == "Deny" and str(condition.get("aws:SecureTransport")).lower() == "false":
            return True
    return False


def _every_bucket_has(
    setting_types: frozenset[str], ok: Callable[[Resource], bool], missing: str
) -> Callable[[Sequence[Resource]], list[tuple[str, str]]]:
    """A stack check: each bucket (either generation) has a setting of `setting_types` pointing at it for which
    `ok` holds."""

    def check(resources: Sequence[Resource]) -> list[tuple[str, str]]:
        settings = [r for r in resources if r.type in setting_types and ok(r)]
        return [
            (bucket.name, missing)
            for bucket in resources
            if bucket.type in BUCKETS and not any(s.depends_on("bucket", bucket) for s in settings)
        ]

    return check


RULES = [
    ResourceRule(
        "s3-sse-kms",
        "Encrypt buckets with SSE-KMS and the platform's KMS key (sse_algorithm='aws:kms', kms_master_key_id=...).",
        SSE_TYPES,
        sse_uses_kms,
    ),
    ResourceRule(
        "s3-public-access-block-complete",
        "Turn on all four public access block flags (block/ignore public ACLs, block/restrict public policies).",
        PUBLIC_ACCESS_BLOCKS,
        public_access_block_complete,
    ),
    StackRule(
        "s3-bucket-encrypted",
        "Give every bucket a BucketServerSideEncryptionConfiguration with SSE-KMS (use infra.secure_bucket).",
        _every_bucket_has(SSE_TYPES, lambda r: not sse_uses_kms(r), "has no SSE-KMS default encryption"),
    ),
    StackRule(
        "s3-bucket-public-access-blocked",
        "Give every bucket a BucketPublicAccessBlock with all four flags on (use infra.secure_bucket).",
        _every_bucket_has(
            PUBLIC_ACCESS_BLOCKS, lambda r: not public_access_block_complete(r), "has no complete public access block"
        ),
    ),
    StackRule(
        "s3-bucket-versioning",
        "Enable versioning on every bucket (BucketVersioning status 'Enabled') so lake data can be recovered.",
        _every_bucket_has(VERSIONING_TYPES, _versioning_enabled, "has no versioning enabled"),
    ),
    StackRule(
        "s3-tls-only",
        "Attach a bucket policy that denies s3:* when aws:SecureTransport is false.",
        _every_bucket_has(BUCKET_POLICIES, _denies_insecure_transport, "has no policy denying non-TLS requests"),
    ),
]
