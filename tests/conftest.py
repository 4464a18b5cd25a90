"""Shared fixtures: a small synthetic data set and a pipeline run on it.

The run is real (nothing mocked): synthetic CSV -> lake -> features -> four families
-> MLflow registry in a temporary folder. Session-scoped, so it is paid for once.
"""

from __future__ import annotations

import fnmatch
import functools
import gc
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

NATIVE_POOLS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "POLARS_MAX_THREADS")
"""The thread pools of the native libraries the tests load: OpenMP (XGBoost, scikit-learn), OpenBLAS (NumPy) and
Polars; each sizes itself from its variable when first loaded, so they are set before anything imports them."""


def share_cpus_between_workers() -> None:
    """Under pytest-xdist with several workers, size each worker's native pools to its share of the CPUs.

    By default every worker's pools take every CPU, so two workers run four busy threads on two cores, and OpenMP
    spins while it waits for a core. Six model-training modules took 99-113 s of CPU on two workers with the
    defaults, 77-85 s with OpenMP at one thread and 75 s with Polars at one too (2-core machine). A variable the
    caller set is kept; the processes the tests start inherit the values, as they would the caller's.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        share = str(max(1, (os.cpu_count() or 1) // workers))
        for variable in NATIVE_POOLS:
            os.environ.setdefault(variable, share)


share_cpus_between_workers()

import pytest  # noqa: E402

from ml.pipeline import PipelineResult, run_pipeline  # noqa: E402
from ml.progress import StageTimer  # noqa: E402
from ml.settings import Settings  # noqa: E402
from ml.synth import SynthConfig, generate, write_csv  # noqa: E402
from tests import hypothesis_profile  # noqa: E402
from tests.helpers import gold_channel  # noqa: E402

hypothesis_profile.load()  # before any test module is collected; a --hypothesis-profile option still overrides it

SMALL_ROWS = 40_000
YOUNG_GENERATION_THRESHOLD = 50_000
"""Allocations between two young-generation collections while the tests run (Python's default is 700)."""


def pytest_configure(config: pytest.Config) -> None:
    """Run the suite with the collector tuned as `retail` runs (cli/main.py): fewer passes over what lives on.

    Collecting imports Pulumi, MLflow, scikit-learn and the AWS SDK, and the tests make millions of objects
    that live as long as a test; at the default threshold the collector walks all of them again and again.
    tests/infra took 101-108 s with the defaults and 76 s with this, on the same idle machine. Cycles are
    still collected, only less often.
    """
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, *gc.get_threshold()[1:])
    keep_the_collected_order(config)


def keep_the_collected_order(config: pytest.Config) -> None:
    """pytest-xdist hands out `--dist loadfile`'s modules in the order collected only with `--no-loadscope-reorder`;
    by default it sorts them by their number of tests, most first, which undid `pytest_collection_modifyitems`: the
    one-test tests/test_types.py (mypy, 18 s) went out last, and one worker finished 40 s before the other. An explicit
    `--loadscope-reorder` is overridden too."""
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist's option, absent under `-p no:xdist`
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The modules marked `slow` first, each module's tests kept together and in order.

    pytest-xdist (`--dist loadfile`) hands the modules out in this order, to whichever worker is free; a slow module
    handed out last keeps one worker busy while the other has finished (collected in path order, the slowest
    modules came last: tests/test_*.py after the folders).
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_collection_finish(session: pytest.Session) -> None:
    """What collection loaded (modules, their classes and constants) stays: later collections need not walk it."""
    gc.freeze()


KEPT_BY_TOOLS = {
    ".lark_cache_*.tmp": "the grammar cache of lark (checkov's HCL parser), kept for the next run",
    "uv-*.lock": "the lock files uv takes while it syncs or runs an environment",
}
"""Files the tools the tests start leave in the temporary folder by design, by name pattern (fnmatch)."""


@pytest.fixture(scope="session", autouse=True)
def temporary_files_are_removed(tmp_path_factory):
    """The temporary files of this session's code, and of the processes its tests start with its environment, go in
    a folder of the session's own (`tempfile.tempdir` and TMPDIR; PySpark's JVM keeps to /tmp), and the session
    fails if any is left there at its end: a work folder nobody removes (`retail infra destroy` left two per run)
    or a process killed before its clean-up (a training host) would otherwise pile up in the machine's /tmp unseen.
    Autouse at session scope, so it is set up before every other fixture and torn down after them."""
    sandbox = tmp_path_factory.mktemp("tempdir")
    patch = pytest.MonkeyPatch()
    patch.setenv("TMPDIR", str(sandbox))
    patch.setattr(tempfile, "tempdir", str(sandbox))
    yield
    patch.undo()
    gc.collect()  # a TemporaryDirectory dropped without `with` is removed by its finalizer
    left = sorted(entry.name for entry in sandbox.iterdir()
                  if not any(fnmatch.fnmatch(entry.name, kept) for kept in KEPT_BY_TOOLS))
    if left:
        raise AssertionError(f"temporary files left in {sandbox} by this session's tests: {', '.join(left)}")


@dataclass
class SmallRun:
    settings: Settings
    result: PipelineResult
    data: Path


TEST_FAMILIES = "decision_tree,random_forest"
"""The families a test run trains unless it asks for others: the two that fit in seconds, so a run still
compares and ranks families. Logistic regression and XGBoost took 19 s and 17 s of a 40,000-row run on the
2-core machine, the two trees 3 s each; tests/test_pipeline_end_to_end.py trains all four."""


@functools.cache
def empty_registry_database() -> bytes:
    """The SQLite file of an MLflow registry as MLflow makes it on first use: its tables created and every one of
    its migrations run, with nothing registered. MLflow does that to every new database, loading each of its
    Alembic migration scripts: 1.3 s a registry, paid by most test modules several times over. A test registry
    starts as a copy of this file instead (`settings_under`); tests/test_bundle_and_registry.py keeps one registry
    that MLflow creates itself."""
    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory() as folder:
        uri = f"sqlite:///{Path(folder) / 'mlflow.db'}"
        MlflowClient(tracking_uri=uri, registry_uri=uri).search_experiments()
        return (Path(folder) / "mlflow.db").read_bytes()


def settings_under(root: Path, **overrides) -> Settings:
    """Settings that keep the lake, registry and scratch space inside `root`, training `TEST_FAMILIES`; the
    registry's database, unless `overrides` name another, starts as `empty_registry_database()`."""
    database = root / "registry" / "mlflow.db"
    values = {
        "lake_root": str(root / "lake"),
        "registry_uri": f"sqlite:///{database}",
        "artifact_root": root / "registry" / "artifacts",
        "work_dir": root / "work",
        "xgb_trials": 2,
        "families": TEST_FAMILIES,
    }
    settings = Settings(**(values | overrides))
    if settings.registry_uri == values["registry_uri"] and not database.exists():
        database.parent.mkdir(parents=True, exist_ok=True)
        database.write_bytes(empty_registry_database())
    return settings


def settings_env(root: Path, registry: Settings | None = None, **extra: str) -> dict[str, str]:
    """`settings_under(root)` as the environment a `retail` command reads, plus `extra` variables; with
    `registry`, that settings' registry (e.g. the small run's champion) instead of one under `root`."""
    settings = settings_under(root)
    registry = registry or settings
    return {
        "RETAIL_LAKE_ROOT": settings.lake_root,
        "RETAIL_REGISTRY_URI": registry.registry_uri,
        "RETAIL_ARTIFACT_ROOT": str(registry.artifact_root),
        "RETAIL_WORK_DIR": str(settings.work_dir),
        **extra,
    }


@pytest.fixture(scope="session")
def small_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "transaction.csv"
    write_csv(generate(SynthConfig(rows=SMALL_ROWS, seed=3)), path)
    return path


@pytest.fixture(scope="session")
def small_run(tmp_path_factory, small_csv) -> SmallRun:
    settings = settings_under(tmp_path_factory.mktemp("small-run"))
    result = run_pipeline(small_csv, settings, StageTimer(quiet=True))
    return SmallRun(settings=settings, result=result, data=small_csv)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A served model's bundle in about two seconds: a decision tree trained by the training entry point
    (ml/train.py, as a SageMaker job runs it) on a gold channel of 8,000 synthetic lines, with no lake, registry or
    pipeline run. For tests that need a model to serve, not where it came from; those use `small_run`."""
    from ml.train import main as train

    root = tmp_path_factory.mktemp("tiny-bundle")
    gold_channel(root / "train", rows=8_000)
    (root / "train" / "lineage.json").write_text(json.dumps({"run_id": "tiny-bundle", "validation_weeks": 2}))
    train(["--train", str(root / "train"), "--model-dir", str(root / "model"), "--output-data-dir",
           str(root / "reports"), "--families", "decision_tree"])
    return root / "model"


@pytest.fixture(scope="session")
def moto_endpoint():
    """A moto server on 127.0.0.1 (a real HTTP endpoint), with fake credentials in the env.

    Yields the endpoint URL; AWS SDKs and Arrow's S3 filesystem reach it through
    AWS_ENDPOINT_URL, which is set only while the fixture is alive.
    """
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    patch = pytest.MonkeyPatch()
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "ap-southeast-1",
        "AWS_ENDPOINT_URL": endpoint,
    }.items():
        patch.setenv(name, value)
    yield endpoint
    patch.undo()
    server.stop()


@pytest.fixture
def moto_deletes_model_packages(moto_endpoint, monkeypatch):
    """moto 5.2 lacks DeleteModelPackage: add it to the server with AWS's behaviour (the version is gone)."""
    from moto.sagemaker.responses import SageMakerResponse

    def delete_model_package(self):
        backend = self.sagemaker_backend
        name = self._get_param("ModelPackageName")
        arn = backend.model_package_name_mapping.pop(name, name)
        package = backend.model_packages.pop(arn)
        backend.model_package_name_mapping.pop(package.model_package_name, None)
        return "{}"

    monkeypatch.setattr(SageMakerResponse, "delete_model_package", delete_model_package, raising=False)
