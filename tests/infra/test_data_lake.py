"""DataLake and SecureBucket: encrypted, versioned, private, TLS-only, tiered buckets."""

import pytest

from infra.data_lake import ZONES, DataLake, DataLakeArgs

from .helpers import build, statements

DATA_KEY = "arn:aws:kms:ap-southeast-1:123456789012:key/data"
S3 = "aws:s3/"


@pytest.fixture(scope="module")
def run():
    args = DataLakeArgs(kms_key_arn=DATA_KEY, intelligent_tiering_after_days=0, noncurrent_version_expiry_days=30)
    return build(lambda: DataLake("lake", args))


def per_bucket(run, type_suffix):
    return {r.inputs["bucket"]: r for r in run.of_type(S3 + type_suffix)}


def bucket_names(run):
    return {b.id for b in run.of_type("aws:s3/bucket:Bucket")}


def test_one_bucket_per_zone_raw_silver_gold_and_artifacts(run):
    names = sorted(b.name for b in run.of_type("aws:s3/bucket:Bucket"))
    assert names == sorted(f"lake-{zone}-bucket" for zone in ZONES)


def test_every_bucket_is_versioned(run):
    versioning = per_bucket(run, "bucketVersioning:BucketVersioning")
    assert set(versioning) == bucket_names(run)
    assert all(v.inputs["versioningConfiguration"]["status"] == "Enabled" for v in versioning.values())


def test_every_bucket_defaults_to_sse_kms_with_the_data_key(run):
    sse = per_bucket(run, "bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    assert set(sse) == bucket_names(run)
    for config in sse.values():
        (rule,) = config.inputs["rules"]
        default = rule["applyServerSideEncryptionByDefault"]
        assert (default["sseAlgorithm"], default["kmsMasterKeyId"]) == ("aws:kms", DATA_KEY)
        assert rule["bucketKeyEnabled"] is True


def test_every_bucket_blocks_all_public_access(run):
    blocks = per_bucket(run, "bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert set(blocks) == bucket_names(run)
    switches = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    assert all(all(b.inputs[s] is True for s in switches) for b in blocks.values())


def test_acls_are_disabled_by_owner_enforced_ownership(run):
    ownership = per_bucket(run, "bucketOwnershipControls:BucketOwnershipControls")
    assert set(ownership) == bucket_names(run)
    assert all(o.inputs["rule"]["objectOwnership"] == "BucketOwnerEnforced" for o in ownership.values())


def test_every_bucket_policy_denies_requests_without_tls(run):
    policies = per_bucket(run, "bucketPolicy:BucketPolicy")
    assert set(policies) == bucket_names(run)
    for policy in policies.values():
        deny = statements(policy)[0]
        assert deny["Effect"] == "Deny" and deny["Principal"] == "*" and deny["Action"] == "s3:*"
        assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_no_bucket_policy_allows_everyone(run):
    for policy in run.of_type("aws:s3/bucketPolicy:BucketPolicy"):
        assert not [s for s in statements(policy) if s["Effect"] == "Allow" and s["Principal"] == "*"]


def test_lifecycle_tiers_objects_and_expires_old_versions(run):
    lifecycles = per_bucket(run, "bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    assert set(lifecycles) == bucket_names(run)
    for lifecycle in lifecycles.values():
        (rule,) = lifecycle.inputs["rules"]
        assert rule["transitions"] == [{"days": 0, "storageClass": "INTELLIGENT_TIERING"}]
        assert rule["noncurrentVersionExpiration"] == {"noncurrentDays": 30}
        assert rule["abortIncompleteMultipartUpload"] == {"daysAfterInitiation": 7}


def test_current_lake_objects_never_expire(run):
    for lifecycle in run.of_type("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"):
        assert "expiration" not in lifecycle.inputs["rules"][0]


def test_buckets_keep_their_data_on_destroy_by_default(run):
    assert all(b.inputs["forceDestroy"] is False for b in run.of_type("aws:s3/bucket:Bucket"))
