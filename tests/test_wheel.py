"""The built wheel runs `retail` outside the checkout, with only the distributions its metadata declares.

The wheel is built with uv and installed without its dependencies into a fresh virtual environment.
Downloading them would need the network, so that environment reaches this one's installed libraries through
a path entry to its site-packages (whose .pth files, the editable install of this checkout among them, are
not processed), and an import hook refuses every library outside the dependency closure that pip would
install for the wheel with the extras a test names: the wheel's Requires-Dist, then each dependency's own,
read from the metadata installed here (versions aside). So `retail` imports the project's modules from the
wheel only, and a module left out of the wheel, or a library it imports without declaring, fails here as it
would for a user.
"""

from __future__ import annotations

import csv
import email.parser
import functools
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.helpers import uv_command

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DISTRIBUTION = "retail-mlops"
DECLARED_ONLY = """
import importlib.abc, importlib.machinery, json, os, sys

BLOCKED = frozenset(json.loads(open(os.environ["WHEEL_TEST_BLOCKED_MODULES"]).read()))
SHARED = os.environ["WHEEL_TEST_SHARED_SITE"]


class DeclaredOnly(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if path is not None or name not in BLOCKED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, [entry for entry in sys.path if entry != SHARED])
        if spec is None:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return spec


sys.meta_path.insert(0, DeclaredOnly())
"""
"""The import hook, installed by a .pth file of the test environment: a top-level module that only the shared
site-packages (WHEEL_TEST_SHARED_SITE) provides for a distribution the wheel does not declare (a JSON list in the
file WHEEL_TEST_BLOCKED_MODULES names) is looked for everywhere else on the path (the wheel's own packages, the
standard library, a library's vendored copies, as setuptools puts its own on the path), and is missing if it is
nowhere else."""
SHARED_SITE = sysconfig.get_paths()["purelib"]


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _wanted(requires: Iterable[str], extras: Iterable[str]) -> list[Requirement]:
    """The requirements that apply with `extras` requested (the unconditional ones always)."""
    contexts = [{"extra": extra} for extra in ("", *extras)]
    return [requirement for requirement in map(Requirement, requires)
            if requirement.marker is None or any(requirement.marker.evaluate(c) for c in contexts)]


def declared_closure(wheel_requires: list[str], extras: Iterable[str]) -> set[str]:
    """The normalized names of the distributions pip would install for the wheel with `extras`: its requirements
    that apply, then theirs in turn, read from this environment's metadata."""
    closure: set[str] = set()
    seen: set[tuple[str, frozenset[str]]] = set()
    pending = _wanted(wheel_requires, extras)
    while pending:
        requirement = pending.pop()
        name, asked = _normalized(requirement.name), frozenset(requirement.extras)
        if (name, asked) in seen:
            continue
        seen.add((name, asked))
        closure.add(name)
        try:
            pending += _wanted(importlib.metadata.requires(requirement.name) or [], asked)
        except importlib.metadata.PackageNotFoundError:
            pytest.fail(f"the wheel needs {requirement}, which the locked environment does not have")
    return closure


@functools.cache
def site_modules(site: str) -> dict[str, set[str]]:
    """The top-level names the distributions installed in `site` put there, each with the normalized names of those
    distributions: read from their RECORD files, whatever else is on this process's path."""
    provided: dict[str, set[str]] = defaultdict(set)
    for distribution in importlib.metadata.distributions(path=[site]):
        name = _normalized(distribution.metadata["Name"])
        record = csv.reader((distribution.read_text("RECORD") or "").splitlines())
        tops = {row[0].partition("/")[0] for row in record if row}
        for top in tops:
            if top and top not in ("..", "__pycache__") and not top.endswith((".dist-info", ".pth")):
                provided[top.partition(".")[0]].add(name)
    return provided


def blocked_modules(closure: set[str]) -> list[str]:
    """The top-level modules of the shared site-packages provided by no distribution of `closure` (the wheel's own
    modules, installed in the test environment, come first on its path)."""
    return sorted(module for module, distributions in site_modules(SHARED_SITE).items()
                  if not distributions & (closure | {DISTRIBUTION}))


class InstalledWheel:
    """The wheel installed in a fresh virtual environment, run with the libraries of chosen extras only."""

    def __init__(self, wheel: Path, venv: Path, scratch: Path):
        self.venv, self.scratch = venv, scratch
        with zipfile.ZipFile(wheel) as archive:
            metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
            headers = email.parser.BytesHeaderParser().parsebytes(archive.read(metadata))
        self.requires = headers.get_all("Requires-Dist") or []
        self.extras = headers.get_all("Provides-Extra") or []

    def run(self, command: str, *args: str, extras: tuple[str, ...] = (), cwd: Path) -> subprocess.CompletedProcess:
        """`command` (a script of the environment's bin folder) with only what the wheel declares for `extras`."""
        blocked = self.scratch / f"blocked-{'-'.join(extras) or 'core'}.json"
        if not blocked.exists():
            blocked.write_text(json.dumps(blocked_modules(declared_closure(self.requires, extras))))
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env.update(WHEEL_TEST_BLOCKED_MODULES=str(blocked), WHEEL_TEST_SHARED_SITE=SHARED_SITE)
        return subprocess.run([str(self.venv / "bin" / command), *args], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=600)


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory) -> InstalledWheel:
    scratch = tmp_path_factory.mktemp("wheel")
    subprocess.run([*uv_command(), "build", "--wheel", "--out-dir", str(scratch / "dist"), str(ROOT)], check=True,
                   capture_output=True)
    wheel = next((scratch / "dist").glob("retail_mlops-*.whl"))
    venv = scratch / "venv"
    subprocess.run([*uv_command(), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True,
                   capture_output=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "dependencies.pth").write_text(SHARED_SITE + "\n")
    (site / "wheel_test_declared_only.py").write_text(DECLARED_ONLY)
    (site / "wheel_test_declared_only.pth").write_text("import wheel_test_declared_only\n")
    subprocess.run([*uv_command(), "pip", "install", "--quiet", "--no-deps", "--python", str(python), str(wheel)],
                   check=True, capture_output=True)
    return InstalledWheel(wheel, venv, scratch)


def test_the_project_s_packages_come_from_the_wheel(wheel_env, tmp_path):
    packages = "api, cli, infra, ml, policies"
    probe = f"import {packages}; print('\\n'.join(m.__file__ for m in ({packages})))"
    result = wheel_env.run("python", "-c", probe, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert all(str(wheel_env.venv) in f for f in result.stdout.split()), result.stdout


def test_an_undeclared_library_cannot_be_imported_in_the_test_environment(wheel_env, tmp_path):
    """The check itself: without the `serve` extra, FastAPI is refused though this environment has it."""
    probe = "import fastapi"
    assert wheel_env.run("python", "-c", probe, extras=("serve",), cwd=tmp_path).returncode == 0
    refused = wheel_env.run("python", "-c", probe, cwd=tmp_path)
    assert refused.returncode != 0 and "No module named 'fastapi'" in refused.stderr


def test_the_installed_retail_shows_its_help_with_the_core_dependencies(wheel_env, tmp_path):
    result = wheel_env.run("retail", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for command in ("pipeline", "score", "serve", "infra", "models"):
        assert command in result.stdout


def test_the_installed_retail_lists_the_saved_lake_queries_it_packaged(wheel_env, tmp_path):
    """The queries are package data (ml/queries/*.sql), not modules: the wheel must carry them."""
    result = wheel_env.run("retail", "lake", "queries", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    names = sorted(path.stem for path in (ROOT / "ml" / "queries").glob("*.sql"))
    assert names and all(name in result.stdout for name in names), result.stdout


def test_the_installed_retail_checks_the_dev_stack_with_the_infra_extra(wheel_env):
    result = wheel_env.run("retail", "infra", "check", "--stack", "dev", extras=("infra",), cwd=ROOT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "PASSED: dev" in result.stdout


def test_a_command_whose_extra_is_missing_names_the_extra_to_install(wheel_env):
    result = wheel_env.run("retail", "infra", "check", "--stack", "dev", cwd=ROOT)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert "pip install 'retail-mlops[infra]'" in result.stderr and "Traceback" not in result.stderr


def test_the_all_extra_declares_every_library_of_the_others(wheel_env):
    every = set().union(*(declared_closure(wheel_env.requires, (extra,)) for extra in wheel_env.extras))
    assert declared_closure(wheel_env.requires, ("all",)) == every


def test_each_extra_lists_what_the_same_named_dependency_group_lists():
    """The extras publish the groups this checkout and the images install: the two must not drift apart."""
    extras = PYPROJECT["project"]["optional-dependencies"]
    groups = PYPROJECT["dependency-groups"]
    for name, requirements in extras.items():
        if name != "all":
            assert sorted(map(str, map(Requirement, requirements))) == sorted(
                map(str, map(Requirement, groups[name]))), name
    assert set(extras) - {"all"} <= set(groups)


def test_no_installed_distribution_claims_a_top_level_name_of_the_wheel():
    """The wheel's packages have generic names (docs/architecture.md says why they stay): if a dependency ever
    installs a module of the same name, one would silently shadow the other, so the locked environment is checked."""
    ours = set(PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"])
    claimed = {name: dists for name, dists in importlib.metadata.packages_distributions().items()
               if name in ours and set(dists) != {DISTRIBUTION}}
    assert not claimed, f"installed distributions providing the wheel's top-level names: {claimed}"
