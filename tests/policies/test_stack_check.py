"""`retail infra check`: each project passes the pack; a stack with a broken setting fails with that rule.

The deploy checks other modules provide (policies/documents.py, policies/manifests.py)
are left out here (`OPTIONAL_CHECKS`), so these tests judge the rules, the deploy graph
and the alarm producers; test_report.py covers how the others are reported.
"""

from __future__ import annotations

import pulumi_aws
import pytest
from typer.testing import CliRunner

import policies.report
from cli.infra import app
from tests.policies.conftest import PROJECT_DIR


@pytest.fixture(autouse=True)
def _only_this_modules_checks(monkeypatch):
    monkeypatch.setattr(policies.report, "OPTIONAL_CHECKS", ())


def check(stack: str):
    return CliRunner().invoke(app, ["check", "--stack", stack, "--project-dir", str(PROJECT_DIR)])


@pytest.mark.parametrize("stack", ["dev", "prod", "ephemeral"])
def test_every_project_of_the_stack_has_no_mandatory_violation_and_no_graph_finding(stack):
    result = check(stack)
    assert "Summary: 0 mandatory" in result.output, result.output
    assert f"retail-mlops/{stack} (" in result.output and f"retail-mlops-service/{stack} (" in result.output
    assert "graph: 0 finding(s)" in result.output
    assert "producers: 0 finding(s)" in result.output
    assert result.exit_code == 0, result.output
    assert f"PASSED: {stack} has no mandatory violation" in result.output


def test_the_service_project_is_not_asked_for_a_budget_or_alarms():
    output = check("dev").output
    assert "stack-has-budget" not in output and "stack-has-alarms" not in output
    assert "retail-mlops-service/dev" in output and "[advisory] ingress-tls: retail-dev-inference-ingress" in output


def test_turning_off_bucket_encryption_fails_the_check_with_the_rule_and_the_buckets(monkeypatch):
    monkeypatch.setattr(pulumi_aws.s3, "BucketServerSideEncryptionConfiguration", lambda *args, **kwargs: None)
    result = check("dev")
    assert result.exit_code == 1
    assert "[mandatory] s3-bucket-encrypted: retail-dev-lake-raw-bucket (aws:s3/bucket:Bucket)" in result.output
    assert "fix: Give every bucket a BucketServerSideEncryptionConfiguration" in result.output
    assert "FAILED: dev breaks mandatory rule(s): s3-bucket-encrypted" in result.output
