"""`make setup` finds uv as the Makefile says: the `uv` on PATH at UV_VERSION, else the system Python's uv module,
installed with pip when missing; when pip refuses (an externally managed Python, PEP 668) set-up stops, non-zero,
saying how to install uv. `make setup-test` runs its three installs at once as make jobs, waits for each, fails naming
the one that failed, and a SIGTERM to make stops its jobs. Run for real with GNU make, with stand-ins for `uv`,
`python3` and `npm` that log their calls."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.cicd.commands import ROOT

(UV_VERSION,) = re.findall(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
PIP_REFUSES = "error: externally-managed-environment"

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")


def stand_in(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f'#!/bin/sh\necho "{name} $*" >> "$CALLS"\n{body}\n')
    path.chmod(0o755)


def run_setup(tmp_path: Path, uv_on_path: str | None, module_uv: str | None, pip_refuses: bool
              ) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """`make setup` with a `uv` on PATH printing `uv_on_path` (none when None), and a `python3` whose uv module
    prints `module_uv` (absent when None) and whose pip installs the module or refuses."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    if uv_on_path is not None:
        stand_in(bin_dir, "uv", f'[ "$1" = --version ] && echo "{uv_on_path}"; exit 0')
    installed = tmp_path / "installed"
    module_version = f'echo "uv {module_uv}"' if module_uv else f'[ -f "{installed}" ] && echo "uv {UV_VERSION}"'
    stand_in(bin_dir, "python3", f"""
case "$*" in
  "-m uv --version") {module_version} || {{ echo "No module named uv" >&2; exit 1; }} ;;
  "-m pip install"*) {"echo " + repr(PIP_REFUSES) + " >&2; exit 1" if pip_refuses else f': > "{installed}"'} ;;
esac""")
    done = make_with(bin_dir, calls, "setup")
    return done, calls.read_text().splitlines() if calls.exists() else []


def make_command(bin_dir: Path, calls: Path, *arguments: str, tools: tuple[str, ...] = ()
                 ) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of GNU make on the Makefile with `bin_dir`, holding the stand-ins plus make,
    grep, sh and `tools`, as the whole PATH."""
    for tool in ("make", "grep", "sh", *tools):
        (bin_dir / tool).symlink_to(str(shutil.which(tool)))
    env = {"PATH": str(bin_dir), "CALLS": str(calls), "HOME": str(bin_dir.parent)}
    return ["make", "--no-print-directory", "-C", str(ROOT), *arguments], env


def make_with(bin_dir: Path, calls: Path, *arguments: str, tools: tuple[str, ...] = ()
              ) -> subprocess.CompletedProcess[str]:
    """`make_command` run to its end."""
    command, env = make_command(bin_dir, calls, *arguments, tools=tools)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def test_the_uv_on_path_at_the_pinned_version_is_used_and_nothing_is_installed(tmp_path):
    done, calls = run_setup(tmp_path, f"uv {UV_VERSION} (0123abcd 2026-01-01)", None, pip_refuses=True)
    assert done.returncode == 0, done.stderr
    assert calls == ["uv --version", "uv --version", "uv sync --frozen"]


def test_another_uv_on_path_is_passed_over_for_the_module_installed_with_pip(tmp_path):
    done, calls = run_setup(tmp_path, "uv 0.5.0", None, pip_refuses=False)
    assert done.returncode == 0, done.stderr
    assert calls == ["uv --version", "python3 -m uv --version", f"python3 -m pip install --quiet uv=={UV_VERSION}",
                     "python3 -m uv sync --frozen"]


def test_a_module_at_another_version_is_replaced_with_pip(tmp_path):
    done, calls = run_setup(tmp_path, None, f"{UV_VERSION}0", pip_refuses=False)  # 0.13.90 is not 0.13.9
    assert done.returncode == 0, done.stderr
    assert calls == ["python3 -m uv --version", f"python3 -m pip install --quiet uv=={UV_VERSION}",
                     "python3 -m uv sync --frozen"]


@pytest.mark.parametrize("uv_on_path, expected", [(f"uv {UV_VERSION}", "uv"), ("uv 0.5.0", "python3 -m uv")])
def test_every_target_runs_the_uv_set_up_chose(tmp_path, uv_on_path, expected):
    """`make -n` prints the recipes without running them: each uv command of every target starts with the same uv."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_in(bin_dir, "uv", f'echo "{uv_on_path}"')
    done = make_with(bin_dir, tmp_path / "calls", "-n", "setup", "setup-test", "demo", "test", "lint")
    assert done.returncode == 0, done.stderr
    commands = [line.strip() for line in done.stdout.splitlines() if re.search(r"\buv (sync|run)\b", line)]
    assert len(commands) >= 6 and all(line.startswith(f"{expected} ") for line in commands), commands


def test_the_module_at_the_pinned_version_is_used_without_pip(tmp_path):
    done, calls = run_setup(tmp_path, None, UV_VERSION, pip_refuses=True)
    assert done.returncode == 0, done.stderr
    assert calls == ["python3 -m uv --version", "python3 -m uv sync --frozen"]


def test_an_externally_managed_python_stops_set_up_saying_how_to_install_uv(tmp_path):
    done, calls = run_setup(tmp_path, None, None, pip_refuses=True)
    assert done.returncode != 0
    assert PIP_REFUSES in done.stderr
    assert f"uv {UV_VERSION} is needed" in done.stderr and f"pipx install uv=={UV_VERSION}" in done.stderr
    assert f"https://astral.sh/uv/{UV_VERSION}/install.sh" in done.stderr
    assert not [call for call in calls if "sync" in call]


INSTALLS = {"project": "install-project", "checkov": "install-checkov", "npm": "install-linters"}
"""Each install of `make setup-test`, by the name its stand-in goes by, and its make target."""


def run_setup_test(tmp_path: Path, failing: str | None) -> tuple[subprocess.CompletedProcess[str], list[str], Path]:
    """`make setup-test` with the pinned `uv` on PATH and stand-ins for its three installs: the project's
    (`uv sync --frozen`), checkov's (`--project tools/checkov`) and the linters' (`npm ci`). Each install marks that
    it started, waits up to 20 s for the other two to have started (so installs run one after the other fail), then
    closes its output and marks that it finished: `failing` at once, exiting 1, the others a second later (a make that
    returned on the failure without waiting would find their marks missing). Returns the run, the calls and the
    folder of the marks."""
    bin_dir, calls, marks = tmp_path / "bin", tmp_path / "calls", tmp_path / "marks"
    bin_dir.mkdir()
    marks.mkdir()

    def install(name: str) -> str:
        others = " ".join(f'"{marks}/started-{other}"' for other in INSTALLS if other != name)
        return f""": > "{marks}/started-{name}"
for i in $(seq 200); do all=1; for f in {others}; do [ -f "$f" ] || all=0; done; [ $all = 1 ] && break; sleep 0.1; done
[ $all = 1 ] || {{ echo "{name} ran alone" >&2; exit 3; }}
exec > /dev/null 2>&1
{"" if failing == name else "sleep 1"}
: > "{marks}/finished-{name}"
exit {1 if failing == name else 0}"""

    stand_in(bin_dir, "uv", f"""case "$*" in
  --version) echo "uv {UV_VERSION}" ;;
  *tools/checkov*) {install("checkov")} ;;
  "sync --frozen") {install("project")} ;;
esac""")
    stand_in(bin_dir, "npm", install("npm"))
    done = make_with(bin_dir, calls, "setup-test", tools=("seq", "sleep"))
    return done, calls.read_text().splitlines(), marks


def test_the_three_installs_of_set_up_for_the_tests_run_at_once(tmp_path):
    done, calls, marks = run_setup_test(tmp_path, None)
    assert done.returncode == 0, done.stderr
    assert calls.count("uv --version") == 3  # each make's parse, then the `uv` target once before both syncs
    installs = [call for call in calls if call != "uv --version"]
    assert sorted(installs) == ["npm ci --prefix tools/lint --no-audit --no-fund --loglevel=error", "uv sync --frozen",
                                "uv sync --frozen --compile-bytecode --project tools/checkov"]
    assert {mark.name for mark in marks.iterdir()} == {f"{when}-{name}" for when in ("started", "finished")
                                                       for name in INSTALLS}


@pytest.mark.parametrize("failing", list(INSTALLS))
def test_set_up_for_the_tests_waits_for_every_install_and_fails_naming_the_one_that_failed(tmp_path, failing):
    done, _, marks = run_setup_test(tmp_path, failing)
    assert done.returncode != 0
    assert {mark.name for mark in marks.glob("finished-*")} == {f"finished-{name}" for name in INSTALLS}
    failed = re.findall(r"\[Makefile:\d+: (install-\w+)\] Error", done.stderr)
    assert failed == [INSTALLS[failing]], done.stderr


def test_a_sigterm_to_make_stops_every_install_of_set_up_for_the_tests(tmp_path):
    """As `kill <make's pid>` (a CI runner that signals make alone) stops set-up: make passes the SIGTERM to its jobs,
    and no install is left running (a shell's `&` would leave them, re-parented to init). make signals its own
    children only: what an install started in turn is that install's to stop."""
    bin_dir, pids = tmp_path / "bin", tmp_path / "pids"
    bin_dir.mkdir()
    pids.mkdir()
    long_install = f': > "{pids}/$$"; exec sleep 60'
    stand_in(bin_dir, "uv", f'[ "$1" = --version ] && {{ echo "uv {UV_VERSION}"; exit 0; }}; {long_install}')
    stand_in(bin_dir, "npm", long_install)
    command, env = make_command(bin_dir, tmp_path / "calls", "setup-test", tools=("sleep",))
    make = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while len(list(pids.iterdir())) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        started = [int(path.name) for path in pids.iterdir()]
        make.terminate()
        assert make.wait(timeout=10) != 0
        assert len(started) == 3
        assert [pid for pid in started if alive(pid)] == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(make.pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
