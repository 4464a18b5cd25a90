"""checkov over what a deployment runs: its Kubernetes objects, the Dockerfiles and the CI workflows.

`manifest_findings(runs, project_dir)` writes every Kubernetes object the offline runs
registered (type token `kubernetes:<group>/<version>:<Kind>`, inputs camelCase as in a
manifest; group `core` is apiVersion `v1`) as one YAML file each, and runs checkov
(tools/checkov, its own environment; `make setup-test` installs it) once over those
files, the repository's Dockerfiles (`Dockerfile`, `Dockerfile.<name>`) and
`.github/workflows/*.yml`: one process for all three frameworks, since checkov takes
seconds to start. `manifest_findings_by_stack` does the same for several stacks in
that one process.

Helm releases (`kubernetes:helm.sh/v3:Release`) are not rendered: rendering a chart
needs the chart itself, downloaded from its repository at deploy time, and the offline
preview has no network. Their values are checked where they meet this project's
resources (policies/documents.py: the service accounts' IAM roles, the Fluent Bit log
group); the charts' own manifests are upstream's.

Offline, the inference image is `<repository>@sha256:000...` (`infra.offline.OFFLINE_DIGEST`):
the digest is pinned at deploy time. Findings are `checkov` Findings with subject
`<Kind>/<name>` or the file's path in the repository, and message `<check id>: <name>`;
policies/waivers.yaml accepts the justified ones.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from infra.offline import OfflineRun, RegisteredResource
from policies.documents import CHECKOV, Waiver, apply_waivers, finding, load_waivers
from policies.findings import Finding

CHECKOV_BIN = Path("tools") / "checkov" / ".venv" / "bin" / "checkov"
CHECKOV_TIMEOUT_SECONDS = 180
FRAMEWORKS = ("kubernetes", "dockerfile", "github_actions")
KUBERNETES_TOKEN = re.compile(r"^kubernetes:(?P<group>[^/:]+)/(?P<version>[^/:]+):(?P<kind>[A-Za-z0-9]+)$")
NOT_OBJECTS = {"helm.sh"}
"""Groups whose resources are not Kubernetes objects (Helm releases)."""


class CheckovMissing(FileNotFoundError):
    """tools/checkov/.venv is not installed: run `make setup-test`."""


def kubernetes_manifest(resource: RegisteredResource) -> dict[str, Any] | None:
    """The object as `kubectl apply` would get it, or None for a resource that is not a Kubernetes object."""
    match = KUBERNETES_TOKEN.match(resource.type)
    if not match or match["group"] in NOT_OBJECTS:
        return None
    group, version, kind = match["group"], match["version"], match["kind"]
    manifest = _plain_numbers({k: v for k, v in resource.inputs.items() if v is not None})
    metadata = {**(resource.outputs.get("metadata") or {}), **(manifest.get("metadata") or {})}
    return {
        **manifest,
        "apiVersion": version if group == "core" else f"{group}/{version}",
        "kind": kind,
        "metadata": {k: metadata[k] for k in ("name", "namespace", "labels", "annotations") if metadata.get(k)},
    }


def _plain_numbers(value: Any) -> Any:
    """The protobuf wire format turns every integer into a float; a manifest wants `8000`, not `8000.0`."""
    if isinstance(value, dict):
        return {k: _plain_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_numbers(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def render_manifests(runs: Sequence[OfflineRun], directory: Path) -> dict[Path, str]:
    """One YAML file per Kubernetes object under `directory`; returns file -> `<Kind>/<name>`."""
    files: dict[Path, str] = {}
    for run in runs:
        for resource in run.resources:
            manifest = kubernetes_manifest(resource)
            if manifest is None:
                continue
            subject = f"{manifest['kind']}/{manifest['metadata'].get('name', resource.name)}"
            path = directory / run.project / f"{resource.name}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump(manifest, sort_keys=False))
            files[path.resolve()] = subject
    return files


def repository_files(project_dir: Path) -> dict[Path, str]:
    """The Dockerfiles and workflow files checkov reads from the repository, with their repository paths."""
    candidates = [
        *sorted(project_dir.glob("Dockerfile")),
        *sorted(project_dir.glob("Dockerfile.*")),
        *sorted((project_dir / ".github" / "workflows").glob("*.y*ml")),
    ]
    return {path.resolve(): path.relative_to(project_dir).as_posix() for path in candidates if path.is_file()}


@dataclass(frozen=True)
class CheckovReport:
    failed: list[dict[str, Any]]
    scanned: set[Path]
    """Files at least one check ran on (checkov skips a file it cannot parse without saying so)."""


def run_checkov(files: Sequence[Path], project_dir: Path, timeout: float = CHECKOV_TIMEOUT_SECONDS) -> CheckovReport:
    """checkov over `files` in one process (all of `FRAMEWORKS`); raises if it fails to run or to report."""
    checkov = project_dir / CHECKOV_BIN
    if not checkov.is_file():
        raise CheckovMissing(f"{checkov} is missing: run `make setup-test` (uv sync --project tools/checkov)")
    command = [str(checkov), "--framework", *FRAMEWORKS, "--skip-download", "--output", "json"]
    for path in files:
        command += ["--file", str(path)]
    returncode, stdout, stderr = _run_bounded(command, project_dir, timeout)
    if returncode not in (0, 1):
        raise RuntimeError(f"checkov exited with {returncode}: {stderr.strip()[-2000:]}")
    try:
        reports = json.loads(stdout)
    except json.JSONDecodeError as error:
        raise RuntimeError(f"checkov printed no JSON report ({error}): {stdout[:500]!r}") from error
    results = [(r.get("results") or {}) for r in (reports if isinstance(reports, list) else [reports])]
    failed = [check for result in results for check in result.get("failed_checks", [])]
    checked = [
        check for result in results for key in ("passed_checks", "failed_checks") for check in result.get(key, [])
    ]
    return CheckovReport(failed, {Path(check["file_abs_path"]).resolve() for check in checked})


def _run_bounded(command: Sequence[str], cwd: Path, timeout: float) -> tuple[int, str, str]:
    """Run `command` in its own process group; past `timeout`, kill that group (checkov's workers too) and raise."""
    with subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
    return process.returncode, stdout, stderr


def _finding(check: Mapping[str, Any], subject: str, in_repository: bool) -> Finding:
    where = ""
    if in_repository:  # e.g. `Dockerfile.FROM`, `on(main)`, `jobs(train).steps[3]`
        resource = str(check.get("resource") or "")
        for prefix in (check.get("file_abs_path", ""), check.get("file_path", "")):
            resource = resource.removeprefix(prefix) if prefix else resource
        where = f" [{resource.lstrip('.')}]" if resource.lstrip(".") else ""
    fix = check.get("guideline") or f"See checkov's documentation of {check['check_id']}"
    return finding(CHECKOV, check["check_id"], subject, f"{check['check_name'].strip()}{where}", fix)


def _unscanned(subject: str) -> Finding:
    return finding(
        CHECKOV,
        "UNSCANNED",
        subject,
        "checkov ran no check on this file (it skips files it cannot parse)",
        "Make the file parse (hadolint / actionlint show why), then run the check again",
    )


def raw_manifest_findings_by_stack(
    deployments: Mapping[str, Sequence[OfflineRun]], project_dir: Path, timeout: float = CHECKOV_TIMEOUT_SECONDS
) -> dict[str, list[Finding]]:
    """checkov's findings per stack, before waivers; repository files count for every stack."""
    project_dir = project_dir.resolve()
    with tempfile.TemporaryDirectory(prefix="retail-manifests-") as scratch:
        objects = {
            stack: render_manifests(runs, Path(scratch) / (stack or "stack")) for stack, runs in deployments.items()
        }
        shared = repository_files(project_dir)
        report = run_checkov([*shared, *(path for files in objects.values() for path in files)], project_dir, timeout)
    repository = [_finding(c, shared[p], True) for c in report.failed if (p := _path(c)) in shared]
    repository += [_unscanned(subject) for path, subject in shared.items() if path not in report.scanned]
    return {
        stack: repository + [_finding(c, files[p], False) for c in report.failed if (p := _path(c)) in files]
        for stack, files in objects.items()
    }


def _path(check: Mapping[str, Any]) -> Path:
    return Path(check["file_abs_path"]).resolve()


def manifest_findings_by_stack(
    deployments: Mapping[str, Sequence[OfflineRun]],
    project_dir: Path,
    waivers: Sequence[Waiver] | None = None,
    timeout: float = CHECKOV_TIMEOUT_SECONDS,
) -> dict[str, list[Finding]]:
    """checkov's findings per stack, accepted ones carrying their waiver's reason."""
    waivers = load_waivers() if waivers is None else waivers
    raw = raw_manifest_findings_by_stack(deployments, project_dir, timeout)
    return {stack: apply_waivers(findings, waivers) for stack, findings in raw.items()}


def manifest_findings(
    runs: Sequence[OfflineRun],
    project_dir: Path,
    waivers: Sequence[Waiver] | None = None,
    timeout: float = CHECKOV_TIMEOUT_SECONDS,
) -> list[Finding]:
    """checkov over the runs' Kubernetes objects, the Dockerfiles and the workflows of `project_dir`."""
    return manifest_findings_by_stack({"": runs}, project_dir, waivers, timeout)[""]
