"""Fixtures of the API tests: apps on the tiny bundle or the small pipeline run's registry, live servers, requests.

One app on the tiny bundle (`client`) serves most tests, and one on the small run's registered champion
(`champion_client`) the tests of the registry's model; tests that need another source or other settings build
their own. A second registered version, for swap tests, is
trained once into a copy of the small run's registry, so the shared registry is
left as it was.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from api.app import create_app
from api.model_source import BundleLocationSource, RegistrySource
from api.schemas import EXAMPLE_BASKET
from api.settings import ApiSettings
from bench.serve import sample_baskets
from cli.smoke import poll_ready
from ml.pipeline import run_pipeline
from ml.progress import StageTimer
from ml.registry import Registry
from ml.schema import BASKET_KEY, HIERARCHY
from ml.settings import Settings
from ml.synth import SynthConfig, generate, write_csv
from tests.conftest import settings_under

API_KEY = "test-key-0123456789abcdef"
AUTH = {"X-API-Key": API_KEY}


def api_settings(**overrides) -> ApiSettings:
    """The service's settings for an in-process app; glibc's allocator thresholds are left as they are (an app's
    start-up would change them for the rest of the worker's tests; tests/api/test_memory.py tests them)."""
    defaults = {"api_keys": API_KEY, "reload_interval_seconds": 0, "drift_min_baskets": 10,
                "malloc_trim_threshold_bytes": 0, "malloc_mmap_threshold_bytes": 0}
    return ApiSettings(**{**defaults, **overrides})


def scoring_calls(path: str) -> tuple[float, float]:
    """Scoring calls so far that ran on `path` (`loop` or `thread`), and their baskets, from the batch-size
    histogram."""
    labels = {"path": path}
    return (REGISTRY.get_sample_value("retail_scoring_batch_baskets_count", labels) or 0.0,
            REGISTRY.get_sample_value("retail_scoring_batch_baskets_sum", labels) or 0.0)


def basket(**changes) -> dict:
    """The example basket with header fields changed."""
    return {**EXAMPLE_BASKET, **changes}


def basket_with_line(**changes) -> dict:
    """The example basket with fields of its first line changed."""
    lines = [{**EXAMPLE_BASKET["lines"][0], **changes}, *EXAMPLE_BASKET["lines"][1:]]
    return {**EXAMPLE_BASKET, "lines": lines}


def tiny_source(tiny_bundle: Path) -> BundleLocationSource:
    """The tiny bundle as the service reads a bundle folder (RETAIL_MODEL_URI)."""
    return BundleLocationSource(str(tiny_bundle), cache_dir=tiny_bundle.parent / "cache")


@pytest.fixture(scope="session")
def client(tiny_bundle) -> Iterator[TestClient]:
    """The service on the tiny bundle (a folder, as RETAIL_MODEL_URI names one), started once: for tests of what
    the service does with a model, whichever it is."""
    with TestClient(create_app(api_settings(), source=tiny_source(tiny_bundle))) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def champion_client(small_run) -> Iterator[TestClient]:
    """The service on the small run's registered champion, started once: for tests of the registry's model (its
    version, lineage, metrics) and of predictions on the run's own held-out baskets."""
    with TestClient(create_app(api_settings(), source=RegistrySource(small_run.settings))) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def bodies() -> list[dict]:
    """40 synthetic baskets as request bodies (bench/serve.py's, in the data set's layout)."""
    return sample_baskets(40)


@pytest.fixture(scope="session")
def holdout_baskets(small_run) -> tuple[pl.DataFrame, list[dict]]:
    """Held-out lines of the small run and the same baskets as request bodies."""
    path = small_run.settings.work_dir / small_run.result.run_id / "train" / "holdout_lines.parquet"
    lines = pl.read_parquet(path)
    keys = lines[BASKET_KEY].unique(maintain_order=True).head(40)
    lines = lines.filter(pl.col(BASKET_KEY).is_in(keys.implode()))
    header = ("SHOP_WEEKDAY", "SHOP_HOUR", "CUST_CODE", "CUST_PRICE_SENSITIVITY", "CUST_LIFESTAGE", "BASKET_SIZE",
              "BASKET_TYPE", "BASKET_DOMINANT_MISSION", "STORE_CODE", "STORE_FORMAT", "STORE_REGION")
    bodies = []
    for (key,), group in lines.group_by(BASKET_KEY, maintain_order=True):
        first = group.row(0, named=True)
        bodies.append({
            "BASKET_ID": key,
            "SHOP_DATE": first["SHOP_DATE"].isoformat(),
            **{c: first[c] for c in header},
            "lines": group.select("QUANTITY", "SPEND", *HIERARCHY).to_dicts(),
        })
    return lines, bodies


@pytest.fixture(scope="session")
def two_versions(small_run, tmp_path_factory) -> tuple[Settings, str, str]:
    """A registry holding the small run's version and a second one trained on other data."""
    root = tmp_path_factory.mktemp("two-versions")
    source_root = Path(small_run.settings.registry_uri.removeprefix("sqlite:///")).parent
    shutil.copytree(source_root, root / "registry")
    settings = settings_under(root)
    first = Registry(settings).champion_version()
    data = root / "other.csv"
    write_csv(generate(SynthConfig(rows=40_000, seed=11)), data)
    second = run_pipeline(data, settings, StageTimer(quiet=True)).registration["version"]
    return settings, first, second


def wait_until(condition: Callable[[], object], timeout: float = 10.0, interval: float = 0.02) -> object:
    """The first truthy value of `condition()`, asked every `interval` seconds; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() >= deadline:
            raise AssertionError(f"not true after {timeout} s: {getattr(condition, '__doc__', None) or condition}")
        time.sleep(interval)
    return value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    """The app under uvicorn on 127.0.0.1 in a background thread; yields its base URL once ready."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    poll_ready(f"{url}/health/ready", wait=60, interval=0.1)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
