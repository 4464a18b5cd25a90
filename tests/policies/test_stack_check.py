"""`retail infra check`: the dev and prod stacks pass; a stack with a broken setting fails with that rule."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pulumi_aws
import pytest
from typer.testing import CliRunner

from cli.infra import app

PROJECT_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _neutral_pulumi_runtime():
    yield
    pulumi.runtime.reset_options()
    pulumi.runtime.set_all_config({})


def check(stack: str):
    return CliRunner().invoke(app, ["check", "--stack", stack, "--project-dir", str(PROJECT_DIR)])


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_stack_has_no_mandatory_violation(stack):
    result = check(stack)
    assert result.exit_code == 0, result.output
    assert "Summary: 0 mandatory" in result.output
    assert f"PASSED: {stack} has no mandatory violation" in result.output


def test_turning_off_bucket_encryption_fails_the_check_with_the_rule_and_the_buckets(monkeypatch):
    monkeypatch.setattr(pulumi_aws.s3, "BucketServerSideEncryptionConfiguration", lambda *args, **kwargs: None)
    result = check("dev")
    assert result.exit_code == 1
    assert "[mandatory] s3-bucket-encrypted: retail-dev-lake-raw-bucket (aws:s3/bucket:Bucket)" in result.output
    assert "fix: Give every bucket a BucketServerSideEncryptionConfiguration" in result.output
    assert "FAILED: dev breaks mandatory rule(s): s3-bucket-encrypted" in result.output
