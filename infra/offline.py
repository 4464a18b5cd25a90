"""Run a Pulumi program under the mock runtime and keep every registered resource.

`preview_stack()` runs the project's `__main__.py` with a stack's config exactly as
`pulumi up` would, minus the engine and the cloud: no credentials, no Pulumi CLI. The
result lists every resource with its type, name, parent and inputs, for the CLI's
tree, the tests and policy checks.
"""

from __future__ import annotations

import runpy
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime.mocks import MockMonitor

from infra.config import NAMESPACE, SECRET_KEYS, read_stack_file
from infra.mocks import PlatformMocks

OFFLINE_SECRET = "offline-preview-placeholder"
"""Stands in for encrypted config, which cannot be decrypted without the Pulumi CLI."""


@dataclass(frozen=True)
class RegisteredResource:
    """One resource as the program registered it (inputs) and the mocks answered (outputs)."""

    urn: str
    type: str
    name: str
    parent: str
    """URN of the parent resource; the stack's URN for top-level resources."""
    custom: bool
    remote: bool
    inputs: dict[str, Any]
    outputs: dict[str, Any]

    @property
    def is_component(self) -> bool:
        return not self.custom


@dataclass
class OfflineRun:
    project: str
    stack: str
    stack_urn: str
    resources: list[RegisteredResource]
    stack_outputs: dict[str, Any] = field(default_factory=dict)

    def of_type(self, type_: str) -> list[RegisteredResource]:
        return [r for r in self.resources if r.type == type_]

    def named(self, name: str) -> RegisteredResource:
        matches = [r for r in self.resources if r.name == name]
        if len(matches) != 1:
            raise KeyError(f"expected one resource named {name!r}, found {len(matches)}")
        return matches[0]

    def children(self, parent_urn: str) -> list[RegisteredResource]:
        return [r for r in self.resources if r.parent == parent_urn]


class _InputCapturingMocks(pulumi.runtime.Mocks):
    """Delegates to the real mocks and remembers, per thread, the last inputs it saw."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        self.mocks = mocks
        self.last = threading.local()

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict]:
        self.last.inputs = args.inputs
        return self.mocks.new_resource(args)

    def call(self, args: pulumi.runtime.MockCallArgs) -> Any:
        return self.mocks.call(args)


class RecordingMonitor(MockMonitor):
    """A mock resource monitor that also keeps each registration's parent and inputs."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        self._capture = _InputCapturingMocks(mocks)
        super().__init__(self._capture)
        self.records: list[RegisteredResource] = []
        self._lock = threading.Lock()

    def RegisterResource(self, request):  # noqa: N802 (gRPC method name)
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        record = RegisteredResource(
            urn=response.urn,
            type=request.type,
            name=request.name,
            parent=request.parent,
            custom=request.custom,
            remote=request.remote,
            inputs=self._capture.last.inputs,
            outputs=self.resources[response.urn].state,
        )
        with self._lock:
            self.records.append(record)
        return response


def run_offline(
    program: Callable[[], Mapping[str, Any] | None],
    *,
    project: str,
    stack: str,
    config: Mapping[str, str] | None = None,
    secret_keys: Sequence[str] = (),
) -> OfflineRun:
    """Run `program` under PlatformMocks with `config` installed as the stack's config.

    `program` may return a mapping of outputs to resolve (e.g. the stack's exports).
    """
    pulumi.runtime.reset_options(project=project, stack=stack)
    pulumi.runtime.set_all_config(dict(config or {}), list(secret_keys))
    monitor = RecordingMonitor(PlatformMocks())
    pulumi.runtime.set_mocks(
        monitor.mocks, project=project, stack=stack, preview=False, monitor=monitor
    )
    resolved: dict[str, Any] = {}

    def run() -> pulumi.Output:
        outputs = program() or {}
        return pulumi.Output.all(**outputs).apply(resolved.update)

    pulumi.runtime.test(run)()
    stack_urn = f"urn:pulumi:{stack}::{project}::pulumi:pulumi:Stack::{project}-{stack}"
    return OfflineRun(project, stack, stack_urn, list(monitor.records), resolved)


def find_project_dir(start: Path | None = None) -> Path:
    """The nearest directory at or above `start` (default: cwd) holding `Pulumi.yaml`."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "Pulumi.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        f"no Pulumi.yaml in {here} or its parents; run from the project or pass its path"
    )


def preview_stack(stack: str, project_dir: Path | None = None) -> OfflineRun:
    """Run the project's `__main__.py` with `Pulumi.<stack>.yaml`, under the mocks.

    Encrypted config values and unset required secrets (`SECRET_KEYS`) are replaced
    by `OFFLINE_SECRET`.
    """
    project_dir = project_dir or find_project_dir()
    stack_file = read_stack_file(project_dir, stack)
    config = dict(stack_file.config)
    secrets = {*stack_file.secret_keys, *(f"{NAMESPACE}:{key}" for key in SECRET_KEYS)}
    for key in secrets:
        config.setdefault(key, OFFLINE_SECRET)

    def program() -> Mapping[str, Any]:
        runpy.run_path(str(project_dir / "__main__.py"), run_name="__pulumi_program__")
        return dict(pulumi.runtime.get_root_resource().outputs)

    return run_offline(
        program,
        project=stack_file.project,
        stack=stack,
        config=config,
        secret_keys=sorted(secrets),
    )
