"""ml/ and api/ type-check under mypy --strict with the pydantic plugin ([tool.mypy] in pyproject.toml).

Run as a test so that every road to CI (make test, the workflows, the Jenkinsfile) checks the types.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def test_ml_and_api_type_check_strictly(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy-cache")], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "Success: no issues found" in result.stdout
