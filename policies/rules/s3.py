"""S3: KMS encryption, blocked public access, versioning and TLS-only access on every bucket.

With pulumi-aws 7 a bucket's settings are separate resources (`BucketServerSideEncryption
Configuration`, `BucketPublicAccessBlock`, ...), so "every bucket has X" is a stack rule that
joins each setting to its bucket through the `bucket` input's dependency.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from policies.model import Resource, ResourceRule, StackRule, as_json, as_list

BUCKET = "aws:s3/bucket:Bucket"
SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
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
    setting_type: str, ok: Callable[[Resource], bool], missing: str
) -> Callable[[Sequence[Resource]], list[tuple[str, str]]]:
    """A stack check: each bucket has a `setting_type` resource pointing at it for which `ok` holds."""

    def check(resources: Sequence[Resource]) -> list[tuple[str, str]]:
        settings = [r for r in resources if r.type == setting_type and ok(r)]
        return [
            (bucket.name, missing)
            for bucket in resources
            if bucket.type == BUCKET and not any(s.depends_on("bucket", bucket) for s in settings)
        ]

    return check


RULES = [
    ResourceRule(
        "s3-sse-kms",
        "Encrypt buckets with SSE-KMS and the platform's KMS key (sse_algorithm='aws:kms', kms_master_key_id=...).",
        frozenset({SSE}),
        sse_uses_kms,
    ),
    ResourceRule(
        "s3-public-access-block-complete",
        "Turn on all four public access block flags (block/ignore public ACLs, block/restrict public policies).",
        frozenset({PUBLIC_ACCESS_BLOCK}),
        public_access_block_complete,
    ),
    StackRule(
        "s3-bucket-encrypted",
        "Give every bucket a BucketServerSideEncryptionConfiguration with SSE-KMS (use infra.secure_bucket).",
        _every_bucket_has(SSE, lambda r: not sse_uses_kms(r), "has no SSE-KMS default encryption"),
    ),
    StackRule(
        "s3-bucket-public-access-blocked",
        "Give every bucket a BucketPublicAccessBlock with all four flags on (use infra.secure_bucket).",
        _every_bucket_has(
            PUBLIC_ACCESS_BLOCK, lambda r: not public_access_block_complete(r), "has no complete public access block"
        ),
    ),
    StackRule(
        "s3-bucket-versioning",
        "Enable versioning on every bucket (BucketVersioning status 'Enabled') so lake data can be recovered.",
        _every_bucket_has(VERSIONING, _versioning_enabled, "has no versioning enabled"),
    ),
    StackRule(
        "s3-tls-only",
        "Attach a bucket policy that denies s3:* when aws:SecureTransport is false.",
        _every_bucket_has(BUCKET_POLICY, _denies_insecure_transport, "has no policy denying non-TLS requests"),
    ),
]
