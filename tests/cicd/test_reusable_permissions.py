"""A called workflow gets at most the permissions of the job that calls it, so every caller grants what it asks for.

GitHub: "The GITHUB_TOKEN permissions passed from the caller workflow can be only downgraded
by the called workflow" (https://docs.github.com/en/actions/sharing-automations/reusing-workflows#access-and-permissions).
A caller that grants less makes the whole run fail at start-up, which actionlint does not report.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
LEVELS = {"none": 0, "read": 1, "write": 2}


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def granted(workflow: dict, job: dict) -> dict[str, str]:
    """The job's permissions: its own block, else the workflow's (both maps; `read-all`/`write-all` not used here)."""
    return dict(job.get("permissions") or workflow.get("permissions") or {})


def requested(called: dict) -> dict[str, str]:
    """Everything the called workflow or any of its jobs asks for, at the highest level asked."""
    wanted: dict[str, str] = {}
    for block in [called.get("permissions") or {}, *((j.get("permissions") or {}) for j in called["jobs"].values())]:
        for scope, level in block.items():
            if LEVELS[level] > LEVELS.get(wanted.get(scope, "none"), 0):
                wanted[scope] = level
    return wanted


def calls() -> list[tuple[str, str, dict, dict]]:
    found = []
    for path in sorted(WORKFLOWS.glob("*.yml")):
        workflow = load(path)
        for name, job in workflow["jobs"].items():
            uses = job.get("uses", "")
            if uses.startswith("./.github/workflows/"):
                found.append((f"{path.name}:{name}", uses, granted(workflow, job), load(ROOT / uses[2:])))
    return found


def shortfall(grant: dict[str, str], called: dict) -> dict[str, str]:
    return {s: level for s, level in requested(called).items() if LEVELS[grant.get(s, "none")] < LEVELS[level]}


@pytest.mark.parametrize(("caller", "uses", "grant", "called"), calls(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_caller_grants_what_the_called_workflow_asks_for(caller, uses, grant, called):
    assert shortfall(grant, called) == {}, f"{caller} calls {uses} with {grant}"


def test_there_are_calls_to_check():
    assert calls(), "no job calls a reusable workflow any more: drop this module"


def test_a_caller_granting_only_read_is_reported():
    called = {"permissions": {"contents": "read", "id-token": "write"}, "jobs": {"deploy": {}}}
    assert shortfall({"contents": "read"}, called) == {"id-token": "write"}
