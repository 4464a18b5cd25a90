"""The Jenkinsfile parses as Groovy with no error (npm-groovy-lint: CodeNarc under the machine's Java, offline).

That its commands exist is checked with the workflows' in test_workflow_commands.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cicd.commands import JENKINSFILE, ROOT

pytestmark = pytest.mark.slow

GROOVY_LINT = ROOT / "tools" / "lint" / "node_modules" / ".bin" / "npm-groovy-lint"
QUICK_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
"""The linter's one short run needs no optimizing compiler or parallel collector: with only the quick compiler and
the serial collector it took 6.7 s of CPU against 14-17 s with the JVM's defaults (2-core machine, same file)."""
UNCLOSED = "pipeline {\n  agent any\n  stages {\n    stage('build') {\n      steps {\n        sh 'make test'\n"


def test_the_jenkinsfile_has_no_groovy_error_and_a_broken_one_is_reported(tmp_path):
    if shutil.which("java") is None or not GROOVY_LINT.exists():
        pytest.fail("npm-groovy-lint is not installed or Java is missing: run `make setup-test` on a machine with Java")
    # Copies in a small folder: given paths in different folders, the linter scans everything under their common root.
    (tmp_path / "ours").mkdir()
    (tmp_path / "broken").mkdir()
    shutil.copy(JENKINSFILE, tmp_path / "ours" / "Jenkinsfile")
    (tmp_path / "broken" / "Jenkinsfile").write_text(UNCLOSED)
    result = subprocess.run([str(GROOVY_LINT), "--noserver", "--output", "json", "--failon", "none", "--path",
                             str(tmp_path), "--files", "**/Jenkinsfile"], cwd=tmp_path, stdin=subprocess.DEVNULL,
                            env={**os.environ, "JAVA_TOOL_OPTIONS": QUICK_JVM},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    files = json.loads(result.stdout)["files"]
    errors = {Path(path).parent.name: [e["rule"] for e in found["errors"] if e["severity"] == "error"]
              for path, found in files.items()}
    assert errors == {"ours": [], "broken": ["NglParseError"]}
