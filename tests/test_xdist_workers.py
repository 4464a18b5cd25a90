"""The pytest-xdist workers share the CPUs: each sizes its native thread pools to its share, and the slow modules
are handed out first.

tests/conftest.py sets the pools' variables (OpenMP, OpenBLAS, Polars) before anything loads the libraries; these
tests check that the pools took the sizes, in this process when it is an xdist worker and in a fresh interpreter
posing as one, that the collected order puts every module marked `slow` before the rest, and that pytest-xdist's
scheduler hands the modules out in that order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from types import SimpleNamespace

import pytest
from xdist.scheduler import LoadFileScheduling

from tests.conftest import NATIVE_POOLS, keep_the_collected_order

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


class Worker:
    """What pytest-xdist's scheduler calls on a worker: the tests handed to it go on `handed`, shared by the workers, in
    the order handed out."""

    def __init__(self, name: str, handed: list[int]):
        self.gateway = SimpleNamespace(id=name)
        self.handed = handed
        self.shutting_down = False

    def send_runtest_some(self, indices: list[int]) -> None:
        self.handed.extend(indices)

    def shutdown(self) -> None:
        self.shutting_down = True


def two_workers(option: object) -> SimpleNamespace:
    """A pytest config as pytest-xdist's scheduler reads it: these options, with two local workers."""
    options = SimpleNamespace(**{**vars(option), "tx": ["2*popen"]})
    return SimpleNamespace(option=options, getvalue=lambda name: getattr(options, name))


def modules_of(nodeids: Iterable[str]) -> list[str]:
    """The test modules of node ids, each once, in the order they first appear."""
    return list(dict.fromkeys(nodeid.split("::")[0] for nodeid in nodeids))


def modules_handed_out(config: SimpleNamespace, nodeids: list[str]) -> list[str]:
    """The modules `--dist loadfile` hands to two fresh workers at the start, in the order it hands them out."""
    scheduler = LoadFileScheduling(config)  # the options and getvalue are what it reads of a config
    handed: list[int] = []
    workers = [Worker("gw0", handed), Worker("gw1", handed)]
    for worker in workers:
        scheduler.add_node(worker)
    for worker in workers:
        scheduler.add_node_collection(worker, nodeids)
    scheduler.schedule()
    return modules_of(nodeids[position] for position in handed)


def test_the_scheduler_hands_the_modules_out_in_the_collected_order(request):
    """The session's own items, dealt by pytest-xdist's scheduler under this run's options (tests/conftest.py set
    them, in this process too when it is a worker). With the scheduler's default reordering the first modules out
    are those of the most tests, and a one-test slow module (tests/test_types.py) goes out last."""
    if not hasattr(request.config.option, "loadscopereorder"):
        pytest.skip("pytest-xdist is not loaded (-p no:xdist): nothing is handed out")
    nodeids = [item.nodeid for item in request.session.items]
    collected = modules_of(nodeids)
    handed = modules_handed_out(two_workers(request.config.option), nodeids)
    assert handed  # two modules each under `make test`; one when this module runs alone
    assert handed == collected[:len(handed)]


def test_without_the_conftest_setting_the_scheduler_would_reorder(request):
    """The check above can fail: the same options with pytest-xdist's default put a larger module first."""
    nodeids = ["tests/one_slow_test.py::test_0"] + [f"tests/many_tests.py::test_{i}" for i in range(5)]
    config = two_workers(SimpleNamespace(**{**vars(request.config.option), "loadscopereorder": True}))
    assert modules_handed_out(config, nodeids)[0] == "tests/many_tests.py"
    keep_the_collected_order(config)
    assert modules_handed_out(config, nodeids)[0] == "tests/one_slow_test.py"
