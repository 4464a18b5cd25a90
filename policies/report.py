"""`retail infra check`: the policy rules on each project, then the checks across the whole deployment.

`check_deployment(stack, project_dir)` runs every project of the stack offline
(`infra.offline.preview_deployment`: the platform, the service, and whatever runs are
added there later) and judges:

1. each run on its own with the pack's rules and the levels of
   `policies/config/<stack>.json`, exactly as CrossGuard judges that one stack during its
   `pulumi preview` (it never sees two stacks at once);
2. all runs together with the deploy checks, whose findings fail the check unless
   waived: the deploy graph (`policies.graph`), alarm producers (`policies.producers`),
   and, once they are in the checkout, the rendered policy documents
   (`policies.documents.document_findings`) and manifests
   (`policies.manifests.manifest_findings`), which apply their own waivers
   (policies/waivers.yaml).

`report_lines(report)` renders it in the format `retail infra check` prints.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.offline import OfflineRun, preview_deployment
from infra.providers.kinds import DYNAMIC_TYPE, SERVED_MODEL
from policies.catalog import RULES
from policies.enforcement import CONFIG_DIR, config_path, load_levels, load_settings
from policies.evaluate import mandatory
from policies.findings import Finding
from policies.graph import graph_findings
from policies.model import Enforcement, Violation
from policies.offline import check_run
from policies.producers import producer_findings


@dataclass(frozen=True)
class ProjectResult:
    """The pack's verdict on one project's run."""

    project: str
    stack: str
    resources: int
    violations: list[Violation]
    deploy_time_only: list[str] = field(default_factory=list)
    """Rules that passed or failed here on the mocks' placeholder package, not a registry's record."""


@dataclass(frozen=True)
class CheckResult:
    """One deploy check's findings, or why it did not run."""

    name: str
    findings: list[Finding]
    not_run: str = ""

    @property
    def blocking(self) -> list[Finding]:
        return [f for f in self.findings if f.blocking]


@dataclass(frozen=True)
class DeploymentReport:
    stack: str
    levels_from: str
    """Where the enforcement levels came from (the config file, or the rules' defaults)."""
    projects: list[ProjectResult]
    checks: list[CheckResult]

    @property
    def violations(self) -> list[Violation]:
        return [v for p in self.projects for v in p.violations]

    @property
    def mandatory(self) -> list[Violation]:
        return mandatory(self.violations)

    @property
    def findings(self) -> list[Finding]:
        return [f for c in self.checks for f in c.findings]

    @property
    def blocking_findings(self) -> list[Finding]:
        return [f for f in self.findings if f.blocking]

    @property
    def passed(self) -> bool:
        return not self.mandatory and not self.blocking_findings


DeployCheck = Callable[[Sequence[OfflineRun], Path], list[Finding]]
OPTIONAL_CHECKS = (
    ("documents", "policies.documents", "document_findings", False),
    ("manifests", "policies.manifests", "manifest_findings", True),
)
"""(section, module, function, whether it takes the project directory): checks other modules provide."""


def deploy_checks() -> list[tuple[str, DeployCheck | str]]:
    """Each deploy check by section name, or the reason it cannot run in this checkout."""
    checks: list[tuple[str, DeployCheck | str]] = [
        ("graph", lambda runs, _: graph_findings(runs)),
        ("producers", lambda runs, _: producer_findings(runs)),
    ]
    for section, module, function, takes_dir in OPTIONAL_CHECKS:
        checks.append((section, _optional_check(module, function, takes_dir)))
    return checks


def _optional_check(module_name: str, function: str, takes_dir: bool) -> DeployCheck | str:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise  # the module is there but needs something missing: that is a failure, not an absence
        return f"{module_name.replace('.', '/')}.py is not in this checkout"
    found: Any = getattr(module, function, None)
    if not callable(found):
        return f"{module_name.replace('.', '/')}.py has no {function}()"
    if takes_dir:
        return lambda runs, project_dir: found(list(runs), project_dir)
    return lambda runs, _: found(list(runs))


def check_runs(
    stack: str, runs: Sequence[OfflineRun], project_dir: Path, config_dir: Path = CONFIG_DIR
) -> DeploymentReport:
    """The report for runs already made (what `check_deployment` does after running the programs)."""
    levels, settings = load_levels(RULES, stack, config_dir), load_settings(RULES, stack, config_dir)
    path = config_path(stack, config_dir)
    levels_from = f"policies/config/{path.name}" if path.is_file() else "the rules' defaults (no policies/config file)"
    projects = [
        ProjectResult(run.project, run.stack, len(run.resources), check_run(run, levels, settings),
                      _placeholder_judged(run, levels))
        for run in runs
    ]
    checks = []
    for name, check in deploy_checks():
        if isinstance(check, str):
            checks.append(CheckResult(name, [], not_run=check))
        else:
            checks.append(CheckResult(name, check(runs, project_dir)))
    return DeploymentReport(stack, levels_from, projects, checks)


DEPLOY_TIME_RULES = ("served-version-approved", "served-version-gated", "served-version-report-verified")
"""Rules on the registry's record of the served package, which offline is `infra.mocks`' placeholder."""
PLACEHOLDER_NOTE = "judged at deploy time only (offline: placeholder package)"


def _placeholder_judged(run: OfflineRun, levels: Mapping[str, Enforcement]) -> list[str]:
    """The enabled DEPLOY_TIME_RULES, when the run serves a model (its package facts are the placeholder's)."""
    serves = any(r.type == DYNAMIC_TYPE and r.inputs.get("kind") == SERVED_MODEL for r in run.resources)
    return [name for name in DEPLOY_TIME_RULES if serves and levels.get(name) is not Enforcement.disabled]


def check_deployment(stack: str, project_dir: Path) -> DeploymentReport:
    """Run every project of `stack` offline and check it (see the module docstring)."""
    return check_runs(stack, preview_deployment(stack, project_dir), project_dir)


# --- rendering ------------------------------------------------------------------------------------------------
ORDER = {Enforcement.mandatory: 0, Enforcement.advisory: 1}


def violation_lines(violations: Sequence[Violation]) -> list[str]:
    """Mandatory first, then advisory; each with the resource, what is wrong and the fix."""
    lines = []
    for v in sorted(violations, key=lambda v: (ORDER.get(v.enforcement, 2), v.rule, v.resource)):
        subject = f"{v.resource} ({v.resource_type})" if v.resource else "stack"
        lines.append(f"[{v.enforcement.value}] {v.rule}: {subject} {v.message}")
        lines.append(f"    fix: {v.fix}")
    return lines


def finding_lines(findings: Sequence[Finding]) -> list[str]:
    """Unwaived findings first; a waived one shows its reason instead of failing."""
    lines = []
    for f in sorted(findings, key=lambda f: (not f.blocking, f.check, f.subject, f.message)):
        lines.append(f"[{'finding' if f.blocking else 'waived'}] {f.check}: {f.subject} {f.message}")
        lines.append(f"    {'fix' if f.blocking else 'waived'}: {f.fix if f.blocking else f.waived}")
    return lines


def report_lines(report: DeploymentReport) -> list[str]:
    resources = sum(p.resources for p in report.projects)
    lines = [
        f"Policy check of stack {report.stack} under Pulumi's mock runtime: {len(RULES)} rules on each of "
        f"{len(report.projects)} project(s), levels from {report.levels_from}",
    ]
    for project in report.projects:
        blocking = mandatory(project.violations)
        lines.append(
            f"{project.project}/{project.stack} ({project.resources} resources): {len(blocking)} mandatory, "
            f"{len(project.violations) - len(blocking)} advisory violation(s)"
        )
        lines.extend(violation_lines(project.violations))
        if project.deploy_time_only:
            lines.append(f"[{PLACEHOLDER_NOTE}] {', '.join(project.deploy_time_only)}: the served package's "
                         "approval, gate, comparison and report check are read from the registry at `pulumi up`")
    violations, blocking = report.violations, report.mandatory
    lines.append(
        f"Summary: {len(blocking)} mandatory, {len(violations) - len(blocking)} advisory violation(s) "
        f"({len(RULES)} rules on {resources} resources in {len(report.projects)} project(s))"
    )
    lines.append("")
    lines.append(f"Deploy checks across {', '.join(p.project for p in report.projects)}:")
    for check in report.checks:
        if check.not_run:
            lines.append(f"{check.name}: not run ({check.not_run})")
            continue
        waived = len(check.findings) - len(check.blocking)
        lines.append(f"{check.name}: {len(check.blocking)} finding(s)" + (f", {waived} waived" if waived else ""))
        lines.extend(finding_lines(check.findings))
    per_check = ", ".join(f"{c.name} {len(c.blocking)}" for c in report.checks if not c.not_run)
    waived = len(report.findings) - len(report.blocking_findings)
    total = f"Deploy checks: {len(report.blocking_findings)} finding(s) ({per_check})"
    lines.append(total + (f", {waived} waived" if waived else ""))
    lines.append(_verdict(report))
    return lines


def _verdict(report: DeploymentReport) -> str:
    stack = report.stack
    if report.passed:
        return f"PASSED: {stack} has no mandatory violation and no unwaived deploy finding"
    failing = sorted({c.name for c in report.checks if c.blocking})
    findings = f"{len(report.blocking_findings)} unwaived deploy finding(s) ({', '.join(failing)})"
    if report.mandatory:
        rules = ", ".join(sorted({v.rule for v in report.mandatory}))
        return f"FAILED: {stack} breaks mandatory rule(s): {rules}" + (f"; {findings}" if failing else "")
    return f"FAILED: {stack} has {findings}"
