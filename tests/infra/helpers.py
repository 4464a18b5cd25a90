"""Small readers for the recorded resources' inputs."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from infra.offline import OfflineRun, RegisteredResource, run_offline


def build(program: Callable[[], Any]) -> OfflineRun:
    """Run `program` (typically one component) under the shared mocks; keep what it registered."""

    def wrapped() -> None:
        program()

    return run_offline(wrapped, project="retail-mlops", stack="test")


def policy_of(resource: RegisteredResource, key: str = "policy") -> dict:
    """The JSON policy document a resource was given, parsed."""
    return json.loads(resource.inputs[key])


def statements(resource: RegisteredResource, key: str = "policy") -> list[dict]:
    return policy_of(resource, key)["Statement"]


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]
