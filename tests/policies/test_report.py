"""The report `retail infra check` prints: rules per project, deploy checks across projects, the verdict.

The checks other modules provide (documents, manifests) are replaced by fakes here, so
these tests say how any check's findings are reported, whatever the check finds today.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pytest

import policies.report as report
from infra.offline import run_offline
from policies.findings import Finding
from policies.report import check_runs, report_lines
from tests.policies.conftest import PROJECT_DIR

BLOCKING = Finding("parliament", "retail-dev-role", "MALFORMED: the statement names no resource", "Name the ARN.")
WAIVED = Finding(
    "checkov", "retail-inference", "CKV_K8S_21: default namespace", "Set a namespace.", waived="By design."
)


def fake_check(monkeypatch, module_name: str, function: str | None, takes_dir: bool, found: list[Finding]) -> list:
    """Install `module_name` with `function` returning `found`; returns the arguments it is called with."""
    calls: list = []
    module = types.ModuleType(module_name)
    if function:
        setattr(module, function, lambda *args: calls.append(args) or list(found))
    monkeypatch.setitem(sys.modules, module_name, module)
    monkeypatch.setattr(
        report,
        "OPTIONAL_CHECKS",
        (
            *[c for c in report.OPTIONAL_CHECKS if c[0] != ("manifests" if takes_dir else "documents")],
            ("manifests" if takes_dir else "documents", module_name, function or "missing", takes_dir),
        ),
    )
    return calls


@pytest.fixture(autouse=True)
def _absent_optional_checks(monkeypatch):
    monkeypatch.setattr(
        report,
        "OPTIONAL_CHECKS",
        (
            ("documents", "policies.no_such_documents", "document_findings", False),
            ("manifests", "policies.no_such_manifests", "manifest_findings", True),
        ),
    )


def test_a_check_whose_module_is_absent_is_listed_as_not_run_and_does_not_fail():
    result = check_runs("dev", [], PROJECT_DIR)
    lines = report_lines(result)
    assert "documents: not run (policies/no_such_documents.py is not in this checkout)" in lines
    assert result.passed and lines[-1] == "PASSED: dev has no mandatory violation and no unwaived deploy finding"


def test_findings_of_another_check_are_listed_and_fail_unless_waived(monkeypatch):
    fake_check(monkeypatch, "policies.fake_documents", "document_findings", False, [BLOCKING, WAIVED])
    result = check_runs("dev", [], PROJECT_DIR)
    lines = report_lines(result)
    assert "documents: 1 finding(s), 1 waived" in lines
    assert f"[finding] parliament: retail-dev-role {BLOCKING.message}" in lines
    assert "    fix: Name the ARN." in lines
    assert f"[waived] checkov: retail-inference {WAIVED.message}" in lines
    assert "    waived: By design." in lines
    assert "Deploy checks: 1 finding(s) (graph 0, producers 0, documents 1), 1 waived" in lines
    assert not result.passed
    assert lines[-1] == "FAILED: dev has 1 unwaived deploy finding(s) (documents)"


def test_waived_findings_alone_pass(monkeypatch):
    fake_check(monkeypatch, "policies.fake_documents", "document_findings", False, [WAIVED])
    assert check_runs("dev", [], PROJECT_DIR).passed


def test_the_manifest_check_gets_every_run_and_the_project_directory(monkeypatch, deployment):
    calls = fake_check(monkeypatch, "policies.fake_manifests", "manifest_findings", True, [])
    runs = deployment("dev")
    check_runs("dev", runs, PROJECT_DIR)
    ((given_runs, given_dir),) = calls
    assert given_runs == runs and given_dir == PROJECT_DIR


def test_a_module_without_the_function_is_listed_as_not_run(monkeypatch):
    fake_check(monkeypatch, "policies.fake_manifests", None, True, [])
    assert "manifests: not run (policies/fake_manifests.py has no missing())" in report_lines(
        check_runs("dev", [], PROJECT_DIR)
    )


def test_a_check_module_missing_a_dependency_is_an_error_not_an_absence(monkeypatch, tmp_path: Path):
    (tmp_path / "broken_check.py").write_text("import no_such_dependency_for_this_test\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(report, "OPTIONAL_CHECKS", (("documents", "broken_check", "document_findings", False),))
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_for_this_test"):
        check_runs("dev", [], PROJECT_DIR)


def test_each_project_is_judged_on_its_own_with_the_stacks_levels(deployment):
    lines = report_lines(check_runs("dev", deployment("dev"), PROJECT_DIR))
    assert lines[0].endswith("levels from policies/config/dev.json")
    platform = next(i for i, line in enumerate(lines) if line.startswith("retail-mlops/dev ("))
    service = next(i for i, line in enumerate(lines) if line.startswith("retail-mlops-service/dev ("))
    assert lines[platform + 1].startswith("[advisory] eks-endpoint-not-public: retail-dev-cluster-eks")
    assert lines[service + 1].startswith("[advisory] ingress-tls: retail-dev-inference-ingress")
    assert any(line.startswith("Deploy checks: ") and "(graph 0, producers " in line for line in lines)


def key_without_rotation():
    aws.kms.Key(
        "key", enable_key_rotation=False, tags={"project": "p", "environment": "e", "owner": "o", "cost-center": "c"}
    )


def test_a_mandatory_violation_and_a_finding_are_both_named_in_the_verdict(monkeypatch):
    fake_check(monkeypatch, "policies.fake_documents", "document_findings", False, [BLOCKING])
    run = run_offline(key_without_rotation, project="retail-mlops-training", stack="dev")
    lines = report_lines(check_runs("dev", [run], PROJECT_DIR))
    assert "[mandatory] kms-key-rotation: key (aws:kms/key:Key) does not rotate its key material" in lines
    assert (
        lines[-1] == "FAILED: dev breaks mandatory rule(s): kms-key-rotation; 1 unwaived deploy finding(s) (documents)"
    )


def test_any_number_of_runs_is_reported_one_project_each(deployment):
    platform, service, *_ = deployment("dev")

    def training():
        pulumi.StackReference("organization/retail-mlops/dev")
        key_without_rotation()

    third = run_offline(
        training,
        project="retail-mlops-training",
        stack="dev",
        stack_outputs={"organization/retail-mlops/dev": platform.stack_outputs},
    )
    result = check_runs("dev", [platform, service, third], PROJECT_DIR)
    assert [p.project for p in result.projects] == ["retail-mlops", "retail-mlops-service", "retail-mlops-training"]
    training_violations = {v.rule for v in result.projects[2].violations}
    assert training_violations == {"kms-key-rotation"}, "the platform's budget and alarm rules do not judge training"
    assert "Deploy checks across retail-mlops, retail-mlops-service, retail-mlops-training:" in report_lines(result)
