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
from google.protobuf import json_format, struct_pb2
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.proto import resource_pb2

from infra.config import NAMESPACE, SECRET_KEYS, read_stack_file
from infra.mocks import PlatformMocks

OFFLINE_SECRET = "offline-preview-placeholder"
"""Stands in for encrypted config, which cannot be decrypted without the Pulumi CLI."""


@dataclass(frozen=True)
class RegisteredResource:
    """One resource as the program registered it (inputs) and the mocks answered (outputs)."""

    urn: str
    id: str
    """Physical id the mocks assigned; empty for components."""
    type: str
    name: str
    parent: str
    """URN of the parent resource; the stack's URN for top-level resources."""
    custom: bool
    remote: bool
    inputs: dict[str, Any]
    """As the program sent them, with secrets unwrapped (offline, they are placeholders)."""
    outputs: dict[str, Any]
    provider: str = ""
    """The provider reference (`urn::id`) the resource was registered with; empty if none."""
    property_dependencies: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Input name -> URNs of the resources that input's value came from."""

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


class RecordingMonitor(MockMonitor):
    """A mock resource monitor that also keeps each registration's parent and inputs.

    Inputs are decoded as plain data: secrets unwrapped and references to other
    resources replaced by their URN. (The stock mock monitor rehydrates references into
    resource objects on a worker thread's event loop, which breaks inputs such as the
    pulumi-eks node group's `cluster`.)
    """

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.records: list[RegisteredResource] = []
        self._lock = threading.Lock()

    def RegisterResource(self, request):  # noqa: N802 (gRPC method name)
        urn = self.make_urn(request.parent, request.type, request.name)
        if request.type == "pulumi:pulumi:Stack":
            return resource_pb2.RegisterResourceResponse(urn=urn)
        inputs = _plain(json_format.MessageToDict(request.object))
        resource_id, state = self.mocks.new_resource(
            pulumi.runtime.MockResourceArgs(
                typ=request.type,
                name=request.name,
                inputs=inputs,
                provider=request.provider,
                resource_id=request.importId,
                custom=request.custom or False,
            )
        )
        resource_id = resource_id or ""
        state_proto = struct_pb2.Struct()
        state_proto.update(state)
        record = RegisteredResource(
            urn=urn,
            id=resource_id,
            type=request.type,
            name=request.name,
            parent=request.parent,
            custom=request.custom,
            remote=request.remote,
            inputs=inputs,
            outputs=state,
            provider=request.provider,
            property_dependencies={key: tuple(deps.urns) for key, deps in request.propertyDependencies.items()},
        )
        with self._lock:
            self.resources[urn] = MockMonitor.ResourceRegistration(urn, resource_id, state)
            self.records.append(record)
        return resource_pb2.RegisterResourceResponse(urn=urn, id=resource_id, object=state_proto)


def _plain(value: Any) -> Any:
    """Wire-format property values as plain data: secrets unwrapped, resource refs as URNs."""
    if isinstance(value, dict):
        signature = value.get(rpc._special_sig_key)
        if signature == rpc._special_secret_sig:
            return _plain(value["value"])
        if signature == rpc._special_resource_sig:
            return value["urn"]
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


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
    pulumi.runtime.set_mocks(monitor.mocks, project=project, stack=stack, preview=False, monitor=monitor)
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
    raise FileNotFoundError(f"no Pulumi.yaml in {here} or its parents; run from the project or pass its path")


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
