"""Pulumi mock runtime for the infra tests, and nothing outside tests/infra.

Every run goes through `infra.offline.run_offline`, which installs `PlatformMocks` (the
same mocks the offline preview uses) for that run only; the autouse fixture below
restores a neutral Pulumi runtime after each test so other test packages see no mocks.
"""

from __future__ import annotations

from pathlib import Path

import pulumi
import pytest

from infra.offline import OfflineRun, preview_service, preview_stack

PROJECT_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _neutral_pulumi_runtime():
    yield
    pulumi.runtime.reset_options()
    pulumi.runtime.set_all_config({})


@pytest.fixture(scope="session")
def dev() -> OfflineRun:
    """The dev stack, built once per session from Pulumi.dev.yaml through __main__.py."""
    run = preview_stack("dev", PROJECT_DIR)
    pulumi.runtime.reset_options()
    return run


@pytest.fixture(scope="session")
def prod() -> OfflineRun:
    """The prod stack, built once per session from Pulumi.prod.yaml through __main__.py."""
    run = preview_stack("prod", PROJECT_DIR)
    pulumi.runtime.reset_options()
    return run


@pytest.fixture(scope="session")
def ephemeral() -> OfflineRun:
    """The ephemeral platform, from Pulumi.ephemeral.yaml (what every ephemeral-<name> stack is built from)."""
    run = preview_stack("ephemeral", PROJECT_DIR)
    pulumi.runtime.reset_options()
    return run


def _service(platform: OfflineRun) -> OfflineRun:
    run = preview_service(platform.stack, PROJECT_DIR, platform)
    pulumi.runtime.reset_options()
    return run


@pytest.fixture(scope="session")
def dev_service(dev) -> OfflineRun:
    """The dev service stack, its StackReference answered by the dev platform's offline outputs."""
    return _service(dev)


@pytest.fixture(scope="session")
def prod_service(prod) -> OfflineRun:
    return _service(prod)


@pytest.fixture(scope="session")
def ephemeral_service(ephemeral) -> OfflineRun:
    return _service(ephemeral)
