"""The built wheel runs `retail` outside the checkout: every package the CLI imports is packaged.

The wheel is built with uv and installed without its dependencies into a fresh virtual
environment that sees this environment's installed libraries (a path entry to its
site-packages, whose .pth files, the editable install of this checkout among them, are not
processed). So `retail` imports the project's own modules from the wheel only, and a module
left out of the wheel fails here as it would for a user.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

from tests.helpers import uv_command

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory) -> Path:
    scratch = tmp_path_factory.mktemp("wheel")
    subprocess.run([*uv_command(), "build", "--wheel", "--out-dir", str(scratch / "dist"), str(ROOT)], check=True,
                   capture_output=True)
    wheel = next((scratch / "dist").glob("retail_mlops-*.whl"))
    venv = scratch / "venv"
    subprocess.run([*uv_command(), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True,
                   capture_output=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    (Path(site) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([*uv_command(), "pip", "install", "--quiet", "--no-deps", "--python", str(python), str(wheel)],
                   check=True, capture_output=True)
    return venv


def _run(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(venv / "bin" / "retail"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def test_the_project_s_packages_come_from_the_wheel(wheel_env, tmp_path):
    packages = "api, cli, infra, ml, policies"
    probe = f"import {packages}; print('\\n'.join(m.__file__ for m in ({packages})))"
    files = subprocess.run([str(wheel_env / "bin" / "python"), "-c", probe], cwd=tmp_path, check=True,
                           capture_output=True, text=True).stdout.split()
    assert all(str(wheel_env) in f for f in files), files


def test_the_installed_retail_shows_its_help(wheel_env, tmp_path):
    result = _run(wheel_env, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for command in ("pipeline", "score", "serve", "infra", "models"):
        assert command in result.stdout


def test_the_installed_retail_lists_the_saved_lake_queries_it_packaged(wheel_env, tmp_path):
    """The queries are package data (ml/queries/*.sql), not modules: the wheel must carry them."""
    result = _run(wheel_env, "lake", "queries", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    names = sorted(path.stem for path in (ROOT / "ml" / "queries").glob("*.sql"))
    assert names and all(name in result.stdout for name in names), result.stdout


def test_the_installed_retail_checks_the_dev_stack(wheel_env):
    result = _run(wheel_env, "infra", "check", "--stack", "dev", cwd=ROOT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "PASSED: dev" in result.stdout


def test_no_installed_distribution_claims_a_top_level_name_of_the_wheel():
    """The wheel's packages have generic names (docs/architecture.md says why they stay): if a dependency ever
    installs a module of the same name, one would silently shadow the other, so the locked environment is checked."""
    from importlib.metadata import packages_distributions

    ours = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]
               ["packages"])
    claimed = {name: dists for name, dists in packages_distributions().items()
               if name in ours and set(dists) != {"retail-mlops"}}
    assert not claimed, f"installed distributions providing the wheel's top-level names: {claimed}"
