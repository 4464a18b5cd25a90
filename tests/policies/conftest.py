"""The real deployments, run once per session, and a neutral Pulumi runtime after every test.

`deployment(stack)` runs every project of a stack offline (`infra.offline.preview_deployment`)
the first time a test asks for it; tests that change a program run it again themselves. dev is
run when the fixture is set up, before the first test's body: the tests that change a program
(monkeypatch) change dev's, and take the unchanged projects from here, so a cache first filled
inside such a test would hold the changed program for every later test of the worker.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pulumi
import pytest

from infra.offline import OfflineRun, preview_deployment

PROJECT_DIR = Path(__file__).resolve().parents[2]
_RUNS: dict[str, list[OfflineRun]] = {}


@pytest.fixture(autouse=True)
def _neutral_pulumi_runtime():
    yield
    pulumi.runtime.reset_options()
    pulumi.runtime.set_all_config({})


@pytest.fixture(scope="session")
def deployment() -> Callable[[str], list[OfflineRun]]:
    """`deployment("dev")`: the runs of every project of that stack, unchanged programs, cached."""

    def runs(stack: str) -> list[OfflineRun]:
        if stack not in _RUNS:
            _RUNS[stack] = preview_deployment(stack, PROJECT_DIR)
            pulumi.runtime.reset_options()
            pulumi.runtime.set_all_config({})
        return _RUNS[stack]

    runs("dev")
    return runs
