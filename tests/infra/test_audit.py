"""AuditTrail: multi-region, validated, encrypted CloudTrail into a locked bucket."""

import pytest

from infra.audit import AuditTrail, AuditTrailArgs
from infra.mocks import ACCOUNT_ID

from .helpers import build, statements

LOGS_KEY = "arn:aws:kms:ap-southeast-1:123456789012:key/logs"


@pytest.fixture(scope="module")
def run():
    args = AuditTrailArgs(
        account_id=ACCOUNT_ID,
        region="ap-southeast-1",
        kms_key_arn=LOGS_KEY,
        retention_days=365,
        object_lock_days=90,
    )
    return build(lambda: AuditTrail("audit", args))


def test_trail_covers_every_region_and_global_services(run):
    (trail,) = run.of_type("aws:cloudtrail/trail:Trail")
    assert trail.inputs["isMultiRegionTrail"] is True
    assert trail.inputs["includeGlobalServiceEvents"] is True
    assert trail.inputs["enableLogging"] is True


def test_trail_validates_log_files_and_encrypts_them_with_the_logs_key(run):
    (trail,) = run.of_type("aws:cloudtrail/trail:Trail")
    assert trail.inputs["enableLogFileValidation"] is True
    assert trail.inputs["kmsKeyId"] == LOGS_KEY


def test_trail_writes_into_its_own_bucket(run):
    (trail,) = run.of_type("aws:cloudtrail/trail:Trail")
    (bucket,) = run.of_type("aws:s3/bucket:Bucket")
    assert trail.inputs["s3BucketName"] == bucket.id


def test_log_bucket_is_write_once_for_the_lock_period(run):
    (bucket,) = run.of_type("aws:s3/bucket:Bucket")
    (lock,) = run.of_type("aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration")
    assert bucket.inputs["objectLockEnabled"] is True
    assert lock.inputs["rule"]["defaultRetention"] == {"mode": "GOVERNANCE", "days": 90}


def test_log_files_expire_after_the_retention_period(run):
    (lifecycle,) = run.of_type("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    assert lifecycle.inputs["rules"][0]["expiration"] == {"days": 365}


def test_only_this_trail_may_write_to_the_bucket(run):
    (policy,) = run.of_type("aws:s3/bucketPolicy:BucketPolicy")
    trail_arn = f"arn:aws:cloudtrail:ap-southeast-1:{ACCOUNT_ID}:trail/audit-trail"
    writes = [s for s in statements(policy) if s["Effect"] == "Allow"]
    assert {s["Principal"]["Service"] for s in writes} == {"cloudtrail.amazonaws.com"}
    assert all(s["Condition"]["StringEquals"]["aws:SourceArn"] == trail_arn for s in writes)


def test_the_log_bucket_outlives_a_destroy_and_the_trail_waits_for_its_policy(run):
    (bucket,) = run.of_type("aws:s3/bucket:Bucket")
    (policy,) = run.of_type("aws:s3/bucketPolicy:BucketPolicy")
    (trail,) = run.of_type("aws:cloudtrail/trail:Trail")
    assert bucket.retain_on_delete
    assert policy.urn in trail.dependencies
