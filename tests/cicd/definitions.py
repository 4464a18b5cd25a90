"""The CI definitions as data for the design tests: workflow jobs and steps, Jenkinsfile helpers, and running a
step's script under bash with stand-ins for the tools it calls."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import yaml

from tests.cicd.commands import JENKINSFILE, ROOT, WORKFLOWS

WORKFLOW_DIR = ROOT / ".github" / "workflows"
PATH_WORD = re.compile(r"(?<![\w$/.{-])((?:[\w.-]+/)+[\w.-]+\.(?:txt|json|ya?ml|toml|lock|cjs|py|md))\b")
"""A repository-relative file path in a script (not an absolute path, a URL's path or a variable's expansion)."""


def load(name: str) -> dict:
    return yaml.safe_load((WORKFLOW_DIR / name).read_text())


def all_workflows() -> dict[str, dict]:
    return {path.name: yaml.safe_load(path.read_text()) for path in WORKFLOWS}


def steps(job: dict) -> list[dict]:
    return job.get("steps", [])


def step(job: dict, step_id: str) -> dict:
    (found,) = [s for s in steps(job) if s.get("id") == step_id]
    return found


def position(job: dict, step_id: str) -> int:
    return next(i for i, s in enumerate(steps(job)) if s.get("id") == step_id)


def steps_using(workflow: dict, action: str) -> list[dict]:
    return [s for job in workflow["jobs"].values() for s in steps(job) if s.get("uses", "").startswith(f"{action}@")]


def jenkinsfile() -> str:
    return JENKINSFILE.read_text()


def groovy_function(name: str) -> str:
    """The source of a top-level function of the Jenkinsfile, from its signature to the next top-level line."""
    text = jenkinsfile()
    start = re.search(rf"^\S.*\b{name}\(.*\{{$", text, re.M)
    assert start, f"no function {name} in the Jenkinsfile"
    end = re.search(r"^}$", text[start.start():], re.M)
    return text[start.start(): start.start() + end.end()]


def jenkins_stage(name: str) -> str:
    """The text of a top-level stage, up to the next stage at the same indentation."""
    text = jenkinsfile()
    start = text.index(f"    stage('{name}') {{")
    end = re.compile(r"^    (stage\(|\})", re.M).search(text, start + 1)
    return text[start: end.start()]


def files_read(script: str) -> list[str]:
    """Repository-relative file paths a script names."""
    return PATH_WORD.findall(script)


def unguarded_reads(script: str) -> list[str]:
    """Paths a script names that are not in the repository and that it does not test for (`-f PATH`) first."""
    missing = []
    for path in files_read(script):
        if (ROOT / path).exists():
            continue
        guard = re.search(rf"-f\s+\"?{re.escape(path)}\b", script)
        if guard is None or guard.start() > script.index(path):
            missing.append(path)
    return missing


def run_step(script: str, tmp_path: Path, env: dict[str, str], tools: dict[str, str]) -> tuple[int, dict, str]:
    """Run a step's `run:` script under `bash -eo pipefail` (what `shell: bash` runs) in `tmp_path`.

    `tools` maps a command name to a bash stand-in put first on PATH. Returns the exit
    code, what the script wrote to $GITHUB_OUTPUT and its stdout plus stderr.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, body in tools.items():
        tool = bin_dir / name
        tool.write_text(f"#!/usr/bin/env bash\n{body}\n")
        tool.chmod(0o755)
    output = tmp_path / "github-output"
    output.write_text("")
    environment = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "GITHUB_OUTPUT": str(output), **env}
    result = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=tmp_path,
                            env=environment, capture_output=True, text=True, timeout=60)
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)
    return result.returncode, outputs, result.stdout + result.stderr


PULUMI_STAND_IN = """echo "$*" >> "$CALLS"
case "$1" in
  stack)
    [ -z "$BACKEND_DOWN" ] || { echo "error: [401] Unauthorized: No credentials provided" >&2; exit 255; }
    [ -z "$NO_STACK" ] || { echo "error: no stack named '$3' found" >&2; exit 6; } ;;
  cancel) [ -n "$OPEN" ] || { echo "error: [409] Conflict: The Update has already completed" >&2; exit 255; } ;;
  destroy) [ -z "$DESTROY_FAILS" ] ;;
esac"""
"""`pulumi` for a step's script: logs its arguments; `stack select` fails as Pulumi does for a stack that does not
exist with NO_STACK set (its message, and exit code 6 since Pulumi v3.226.0) and for a token the backend refuses with
BACKEND_DOWN set, `cancel` unless OPEN is set (as Pulumi Cloud refuses it with no update open), `destroy` with
DESTROY_FAILS set."""


def pulumi_calls(script: str, tmp_path, **env: str) -> tuple[int, list[str]]:
    """The exit code of `script` run with `PULUMI_STAND_IN` (and a `uv` that only logs), and the pulumi and uv
    commands it ran."""
    code, calls, _ = pulumi_run(script, tmp_path, **env)
    return code, calls


def pulumi_run(script: str, tmp_path, **env: str) -> tuple[int, list[str], str]:
    """`pulumi_calls`, and what the script printed (stdout and stderr)."""
    calls = tmp_path / "calls"
    calls.write_text("")
    code, _, printed = run_step(script, tmp_path, {"STACK": "ephemeral-pr-42", "CALLS": str(calls), **env},
                                {"pulumi": PULUMI_STAND_IN, "uv": 'echo "uv $*" >> "$CALLS"'})
    return code, calls.read_text().splitlines(), printed


DESTROY_LEFTOVER_STACK = ".ci/destroy-leftover-stack"
"""The CI clean-ups' destroy of one project's leftover stack (pr-environment.yml, the Jenkinsfile)."""
