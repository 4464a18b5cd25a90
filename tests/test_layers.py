"""Imports run one way: cli, then policies, then api and infra (independent of each other), then ml.

The contract is pyproject.toml's [tool.importlinter] (docs/architecture.md says why each layer sits where it
does); `lint-imports` reads every import of the five packages, those inside functions included.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": str(cwd), "PATH": str(Path(sys.executable).parent)})


def test_every_import_of_the_project_follows_the_layers():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 kept, 0 broken" in result.stdout


def test_an_import_against_the_layers_is_reported(tmp_path):
    """The same contract on a copy of the layout where ml imports api, the way api/emf.py once imported infra."""
    for package in ("ml", "api", "cli", "infra", "policies"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "api" / "emf.py").write_text("NAMESPACE = 'x'\n")
    (tmp_path / "ml" / "emf.py").write_text("def publish():\n    from api.emf import NAMESPACE\n    return NAMESPACE\n")
    config = (ROOT / "pyproject.toml").read_text().split("[tool.importlinter]", 1)[1]
    (tmp_path / "pyproject.toml").write_text("[tool.importlinter]" + config)
    result = lint_imports(tmp_path)
    assert result.returncode == 1
    assert "ml.emf -> api.emf" in result.stdout
