"""Encryption: customer-managed keys with rotation, usable by the log services only here."""

import pytest

from infra.encryption import Encryption, EncryptionArgs
from infra.mocks import ACCOUNT_ID

from .helpers import build, statements

REGION = "ap-southeast-1"


TRAIL_ARN = f"arn:aws:cloudtrail:{REGION}:{ACCOUNT_ID}:trail/t-audit-trail"


@pytest.fixture(scope="module")
def run():
    return build(lambda: Encryption("t", EncryptionArgs(ACCOUNT_ID, REGION, 7, trail_name="t-audit-trail")))


def by_sid(run, key: str = "t-logs-key") -> dict[str, dict]:
    return {s["Sid"]: s for s in statements(run.named(key))}


def test_creates_a_data_a_logs_a_cluster_and_an_audit_key_each_with_an_alias(run):
    aliases = {a.inputs["name"] for a in run.of_type("aws:kms/alias:Alias")}
    assert len(run.of_type("aws:kms/key:Key")) == 4
    assert aliases == {"alias/t-data", "alias/t-logs", "alias/t-cluster", "alias/t-audit"}


def test_the_audit_key_outlives_a_destroy_so_the_kept_audit_logs_stay_readable(run):
    assert run.named("t-audit-key").retain_on_delete
    assert not run.named("t-logs-key").retain_on_delete


def test_every_key_rotates_yearly(run):
    for key in run.of_type("aws:kms/key:Key"):
        assert key.inputs["enableKeyRotation"] is True
        assert key.inputs["rotationPeriodInDays"] == 365


def test_deletion_window_comes_from_args(run):
    assert {k.inputs["deletionWindowInDays"] for k in run.of_type("aws:kms/key:Key")} == {7}


def test_the_account_administers_every_key(run):
    for key in run.of_type("aws:kms/key:Key"):
        admin = statements(key)[0]
        assert admin["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}


def test_only_the_logs_key_admits_aws_services(run):
    def services(key):
        return [s for s in statements(key) if "Service" in s["Principal"]]

    assert services(run.named("t-data-key")) == []
    assert services(run.named("t-cluster-key")) == []
    assert len(services(run.named("t-logs-key"))) == 3
    assert len(services(run.named("t-audit-key"))) == 3


def test_cloudtrail_encrypts_describes_and_decrypts_only_for_this_trail(run):
    statements_ = by_sid(run, "t-audit-key")
    encrypt = statements_["CloudTrailEncryptsLogs"]
    assert encrypt["Action"] == "kms:GenerateDataKey*"
    assert encrypt["Condition"]["StringEquals"] == {"aws:SourceArn": TRAIL_ARN}
    assert "kms:EncryptionContext:aws:cloudtrail:arn" in encrypt["Condition"]["StringLike"]
    describe = statements_["CloudTrailDescribesKey"]
    assert describe["Action"] == "kms:DescribeKey"
    assert describe["Condition"] == {"StringEquals": {"aws:SourceArn": TRAIL_ARN}}, "DescribeKey has no context"
    assert statements_["CloudTrailDecryptsWithBucketKey"]["Action"] == "kms:Decrypt"


def test_a_stack_without_a_trail_grants_cloudtrail_nothing():
    quiet = build(lambda: Encryption("t", EncryptionArgs(ACCOUNT_ID, REGION, 7)))
    assert len(quiet.of_type("aws:kms/key:Key")) == 3
    assert not [sid for sid in by_sid(quiet) if sid.startswith("CloudTrail")]


def test_eventbridge_may_publish_to_the_encrypted_topic_without_a_source_condition_it_cannot_carry(run):
    events = by_sid(run)["EventBridgePublishesToEncryptedTopic"]
    assert events["Principal"] == {"Service": "events.amazonaws.com"} and "Condition" not in events
    alarms = by_sid(run)["AlarmsAndBudgetsPublishToEncryptedTopic"]
    assert alarms["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT_ID}}


def test_cloudwatch_logs_may_use_the_logs_key_only_for_this_account(run):
    logs = next(
        s for s in statements(run.named("t-logs-key")) if s["Principal"] == {"Service": f"logs.{REGION}.amazonaws.com"}
    )
    assert logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"] == (
        f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:*"
    )
