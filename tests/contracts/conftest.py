"""The real deployments, rendered offline once per session (`deployments`), and a private copy of dev (`dev`).

`deployments` holds `preview_deployment(stack)` for dev, prod and ephemeral: the platform
and service projects exactly as `pulumi up` would register them, under the mocks.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import pulumi
import pytest

from infra.offline import OfflineRun, preview_deployment
from tests.contracts.helpers import PROJECT_DIR, STACKS


@pytest.fixture(scope="session")
def deployments() -> Mapping[str, list[OfflineRun]]:
    rendered = {stack: preview_deployment(stack, PROJECT_DIR) for stack in STACKS}
    pulumi.runtime.reset_options()
    pulumi.runtime.set_all_config({})
    return rendered


@pytest.fixture
def dev(deployments) -> list[OfflineRun]:
    """A private copy of the dev deployment, free to edit."""
    return copy.deepcopy(deployments["dev"])
