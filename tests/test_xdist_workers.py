"""The pytest-xdist workers share the CPUs: each sizes its native thread pools to its share, and the slow modules
are handed out first.

tests/conftest.py sets the pools' variables (OpenMP, OpenBLAS, Polars) before anything loads the libraries; these
tests check that the pools took the sizes, in this process when it is an xdist worker and in a fresh interpreter
posing as one, and that the collected order puts every module marked `slow` before the rest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import NATIVE_POOLS

PROBE = """
import json
import tests.conftest
import polars as pl
import xgboost  # loads OpenMP
from threadpoolctl import threadpool_info
pools = {p["user_api"]: p["num_threads"] for p in threadpool_info()}
print(json.dumps({"polars": pl.thread_pool_size(), **pools}))
"""


def probe(**env: str) -> dict[str, int]:
    """The pool sizes a fresh interpreter gets after importing tests.conftest, with `env` over a clean environment."""
    clean = {k: v for k, v in os.environ.items() if k not in {*NATIVE_POOLS, "PYTEST_XDIST_WORKER_COUNT"}}
    result = subprocess.run([sys.executable, "-c", PROBE], env=clean | env, capture_output=True, text=True,
                            timeout=60, check=True)
    return json.loads(result.stdout)


def test_a_worker_of_two_takes_half_the_cpus_in_every_pool():
    share = max(1, (os.cpu_count() or 1) // 2)
    assert probe(PYTEST_XDIST_WORKER_COUNT="2") == {"polars": share, "openmp": share, "blas": share}


def test_a_lone_run_and_a_callers_setting_keep_their_sizes():
    assert probe()["polars"] == (os.cpu_count() or 1)
    assert probe(PYTEST_XDIST_WORKER_COUNT="2", POLARS_MAX_THREADS="3")["polars"] == 3


def test_this_worker_sized_polars_before_loading_it():
    """Under `make test` (two workers) conftest set the variable; the pool must have been sized by it, which fails
    if anything imported Polars before conftest ran."""
    import polars as pl

    assert pl.thread_pool_size() == int(os.environ.get("POLARS_MAX_THREADS", os.cpu_count() or 1))


def test_the_slow_modules_come_first_each_whole(request):
    slow = [item.get_closest_marker("slow") is not None for item in request.session.items]
    assert slow == sorted(slow, reverse=True)
    modules = [item.path for item in request.session.items]
    assert len(set(modules)) == sum(1 for i, path in enumerate(modules) if i == 0 or modules[i - 1] != path)
