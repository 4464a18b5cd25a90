"""The built wheel runs `retail` outside the checkout, with only the distributions its metadata declares.

The wheel is built with uv and installed without its dependencies into a fresh virtual environment.
Downloading them would need the network, so for the extras a test names the environment gets a folder on
PYTHONPATH holding links to the installed files (dist-info included) of exactly the distributions pip would
install for the wheel: its Requires-Dist with markers evaluated, then each dependency's own requirements in
turn, read from the metadata installed here (versions aside). Nothing else of this environment is on its path,
and its metadata lists only those distributions, so a module left out of the wheel, or a library the code
imports without declaring it, fails here as it would for a user.
"""

from __future__ import annotations

import csv
import email.parser
import importlib.metadata
import os
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from collections.abc import Iterable
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from cli.extras import DISTRIBUTION
from tests.helpers import uv_command

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SHARED_SITE = Path(sysconfig.get_paths()["purelib"])


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
        name, asked = canonicalize_name(requirement.name), frozenset(requirement.extras)
        if (name, asked) in seen:
            continue
        seen.add((name, asked))
        closure.add(name)
        try:
            pending += _wanted(importlib.metadata.requires(requirement.name) or [], asked)
        except importlib.metadata.PackageNotFoundError:
            pytest.fail(f"the wheel needs {requirement}, which the locked environment does not have")
    return closure


def installed_files() -> dict[str, list[str]]:
    """Each distribution of the shared site-packages (by normalized name) and its RECORD's entries inside it."""
    files: dict[str, list[str]] = {}
    for distribution in importlib.metadata.distributions(path=[str(SHARED_SITE)]):
        rows = csv.reader((distribution.read_text("RECORD") or "").splitlines())
        files[canonicalize_name(distribution.metadata["Name"])] = [
            row[0] for row in rows if row and not row[0].startswith(("..", "/"))]
    return files


def holds_only(top: str, entries: set[str]) -> bool:
    """Whether the shared site's folder `top` holds nothing but `entries` (RECORD paths) and the bytecode Python
    caches in `__pycache__` folders: no file another installer left without a RECORD, no stray folder (an empty one
    imports as a namespace package), no .pyc beside a source (it would import without one)."""
    folders = {str(Path(entry).parent) for entry in entries} | {top}
    folders |= {str(parent) for folder in list(folders) for parent in Path(folder).parents if str(parent) != "."}
    for root, dirs, names in os.walk(SHARED_SITE / top):
        relative = Path(root).relative_to(SHARED_SITE)
        if relative.name == "__pycache__":
            if dirs or not all(name.endswith(".pyc") for name in names):
                return False
            continue
        if str(relative) not in folders or any(str(relative / name) not in entries for name in names):
            return False
    return True


def link_closure(closure: set[str], folder: Path) -> Path:
    """`folder` made a site of links to the installed files of the `closure` distributions (their RECORD's entries
    inside the shared site-packages: modules, data and dist-info), as a fresh install of them would lay them out.

    A top-level folder that holds one distribution's files and nothing else (`holds_only`; pulumi_aws/, thousands
    of files) is linked whole, so the run also finds the bytecode this environment already compiled there, in its
    `__pycache__` folders, and writes what it compiles there too; any other folder (a namespace package such as
    google/, which several distributions share) gets a link per file, so it holds the closure's files and no
    others. A `__pycache__` .pyc is only read for a module whose source the import found (PEP 3147)."""
    files = installed_files()
    owners: dict[str, set[str]] = {}
    for name, entries in files.items():
        for entry in entries:
            if "/" in entry:
                owners.setdefault(entry.split("/", 1)[0], set()).add(name)
    for name in closure & files.keys():
        whole_tops = {top for top, names in owners.items() if names == {name}
                      and holds_only(top, {e for e in files[name] if e.startswith(f"{top}/")})}
        for entry in files[name]:
            top = entry.split("/", 1)[0]
            whole = "/" in entry and top in whole_tops
            source, target = SHARED_SITE / (top if whole else entry), folder / (top if whole else entry)
            if source.exists() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(source)
    return folder


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
        site = self.scratch / f"site-{'-'.join(extras) or 'core'}"
        if not site.exists():
            link_closure(declared_closure(self.requires, extras), site)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env.update(PYTHONPATH=str(site), PATH=f"{self.venv / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin")
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
    """The check itself: without the `serve` extra, FastAPI is missing though this environment has it."""
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
    assert result.stderr == ("retail: retail infra check needs the 'infra' extra, not installed here: "
                             "pip install 'retail-mlops[infra]'\n")


@pytest.mark.parametrize(("args", "needed"), [
    (("demo",), "'ml', 'serve' extras"),
    (("demo", "--no-serve"), "'ml' extra"),
    (("pipeline", "run", "--input", "transactions.csv"), "'ml' extra"),
])
def test_a_command_refuses_before_any_work_when_its_extras_are_missing(wheel_env, tmp_path, args, needed):
    """`retail demo` used to synthesise a full-size file before its first MLflow import failed."""
    result = wheel_env.run("retail", *args, cwd=tmp_path)
    assert result.returncode == 1 and f"needs the {needed}, not installed here" in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_library_missing_past_the_commands_check_is_still_named(wheel_env, tmp_path):
    """A command that checks no extra up front (its needs depend on its options) still gets the message at the
    import that fails: `retail score` with a registered version needs MLflow."""
    result = wheel_env.run("retail", "score", "--input", str(tmp_path), "--model", "3", cwd=tmp_path)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert "the extras not installed here: infra, ml, monitor, serve" in result.stderr, result.stderr[-2000:]
    assert "pip install 'retail-mlops[all]'" in result.stderr and "Traceback" not in result.stderr


def test_serve_without_its_extra_says_so_before_starting_the_server(wheel_env, tmp_path):
    """Without RETAIL_MODEL_URI the service loads the registry's champion, through MLflow: `ml` is named too."""
    result = wheel_env.run("retail", "serve", extras=("infra",), cwd=tmp_path)
    assert result.returncode == 1 and "pip install 'retail-mlops[serve,ml]'" in result.stderr, result.stderr[-2000:]


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


def test_a_folder_several_distributions_share_holds_only_the_closures_files(tmp_path):
    """google/ holds files of protobuf, googleapis-common-protos and google-auth here: a site for a closure with
    protobuf alone gets its files in a google/ of links, not the shared folder linked whole."""
    files = installed_files()
    shared = [name for name in ("protobuf", "googleapis-common-protos", "google-auth") if name in files]
    if len(shared) < 2:
        pytest.skip(f"google/ is not shared by several distributions in this environment: {shared}")
    site = link_closure({"protobuf"}, tmp_path / "site")
    assert not (site / "google").is_symlink()
    linked = {str(path.relative_to(site)) for path in (site / "google").rglob("*") if path.is_symlink()}
    wanted = {entry for entry in files["protobuf"]
              if entry.startswith("google/") and (SHARED_SITE / entry).exists()}
    assert wanted and linked == wanted


@pytest.mark.parametrize(("stray", "whole"), [
    (None, True),
    ("pkg/left_by_another_installer.py", False),
    ("pkg/empty/", False),  # an empty folder imports as a namespace package
    ("pkg/old.pyc", False),  # a .pyc beside the sources imports without a source
    ("pkg/__pycache__/notes.txt", False),
])
def test_a_folder_is_linked_whole_only_when_it_holds_nothing_but_its_distribution_s_files(tmp_path, monkeypatch,
                                                                                         stray, whole):
    site = tmp_path / "site-packages"
    entries = {"pkg/__init__.py", "pkg/sub/mod.py"}
    for entry in (*entries, "pkg/__pycache__/__init__.cpython-311.pyc", "pkg/sub/__pycache__/mod.cpython-311.pyc"):
        (site / entry).parent.mkdir(parents=True, exist_ok=True)
        (site / entry).write_text("")
    if stray is not None and stray.endswith("/"):
        (site / stray).mkdir(parents=True)
    elif stray is not None:
        (site / stray).write_text("")
    monkeypatch.setattr(f"{__name__}.SHARED_SITE", site)
    assert holds_only("pkg", entries) is whole
