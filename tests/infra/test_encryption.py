"""Encryption: customer-managed keys with rotation, usable by the log services only here."""

import pytest

from infra.encryption import Encryption, EncryptionArgs
from infra.mocks import ACCOUNT_ID

from .helpers import build, statements

REGION = "ap-southeast-1"


@pytest.fixture(scope="module")
def run():
    return build(lambda: Encryption("t", EncryptionArgs(ACCOUNT_ID, REGION, 7)))


def test_creates_a_data_a_logs_and_a_cluster_key_each_with_an_alias(run):
    aliases = {a.inputs["name"] for a in run.of_type("aws:kms/alias:Alias")}
    assert len(run.of_type("aws:kms/key:Key")) == 3
    assert aliases == {"alias/t-data", "alias/t-logs", "alias/t-cluster"}


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


def test_cloudwatch_logs_may_use_the_logs_key_only_for_this_account(run):
    logs = next(
        s for s in statements(run.named("t-logs-key")) if s["Principal"] == {"Service": f"logs.{REGION}.amazonaws.com"}
    )
    assert logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"] == (
        f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:*"
    )
