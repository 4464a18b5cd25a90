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

from infra.config import DEPLOY_TIME_KEYS, NAMESPACE, PLATFORM_PROJECT, SERVICE_DIR, read_stack_file
from infra.mocks import ACCOUNT_ID, PlatformMocks

OFFLINE_SECRET = "offline-preview-placeholder"
"""Stands in for encrypted config, which cannot be decrypted without the Pulumi CLI."""
OFFLINE_ORGANIZATION = "organization"
"""The organization offline runs report (Pulumi's default for self-managed backends)."""
OFFLINE_DIGEST = "0" * 64


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
    retain_on_delete: bool = False
    """`pulumi destroy` leaves it in the account."""
    dependencies: tuple[str, ...] = ()
    """URNs the resource waits for: explicit `depends_on` (components expanded to their children) and inputs."""

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
            dependencies=tuple(request.dependencies),
            retain_on_delete=bool(request.retainOnDelete),
        )
        with self._lock:
            self.resources[urn] = MockMonitor.ResourceRegistration(urn, resource_id, state)
            self.records.append(record)
        return resource_pb2.RegisterResourceResponse(urn=urn, id=resource_id, object=state_proto)


    def ReadResource(self, request):  # noqa: N802 (gRPC method name)
        """A read of an existing resource (e.g. a StackReference): recorded like a registration, with no inputs."""
        response = super().ReadResource(request)
        record = RegisteredResource(
            urn=response.urn,
            id=request.id,
            type=request.type,
            name=request.name,
            parent=request.parent,
            custom=True,
            remote=False,
            inputs=_plain(json_format.MessageToDict(request.properties)),
            outputs=dict(self.resources[response.urn].state),
            provider=request.provider,
        )
        with self._lock:
            self.records.append(record)
        return response


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
    stack_outputs: Mapping[str, Mapping[str, Any]] | None = None,
) -> OfflineRun:
    """Run `program` under PlatformMocks with `config` installed as the stack's config.

    `program` may return a mapping of outputs to resolve (e.g. the stack's exports);
    `stack_outputs` answers the StackReferences the program makes, by stack name.
    """
    pulumi.runtime.reset_options(project=project, stack=stack)
    pulumi.runtime.set_all_config(dict(config or {}), list(secret_keys))
    monitor = RecordingMonitor(PlatformMocks({k: dict(v) for k, v in (stack_outputs or {}).items()}))
    pulumi.runtime.set_mocks(
        monitor.mocks, project=project, stack=stack, preview=False, monitor=monitor, organization=OFFLINE_ORGANIZATION
    )
    resolved: dict[str, Any] = {}

    def run() -> pulumi.Output:
        outputs = program() or {}
        return pulumi.Output.all(**outputs).apply(resolved.update)

    pulumi.runtime.test(run)()
    stack_urn = f"urn:pulumi:{stack}::{project}::pulumi:pulumi:Stack::{project}-{stack}"
    return OfflineRun(project, stack, stack_urn, list(monitor.records), resolved)


def find_project_dir(start: Path | None = None) -> Path:
    """The nearest directory at or above `start` (default: cwd) holding the platform's `Pulumi.yaml`."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "Pulumi.yaml").is_file() and (candidate / SERVICE_DIR / "Pulumi.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"no retail-mlops Pulumi project in {here} or its parents; run from the repository")


def _run_program(
    directory: Path, stack: str, extra_config: Mapping[str, str] | None = None, **kwargs: Any
) -> OfflineRun:
    stack_file = read_stack_file(directory, stack)
    config = dict(stack_file.config)
    for key in stack_file.secret_keys:
        config.setdefault(key, OFFLINE_SECRET)
    config.update(extra_config or {})

    def program() -> Mapping[str, Any]:
        runpy.run_path(str(directory / "__main__.py"), run_name="__pulumi_program__")
        return dict(pulumi.runtime.get_root_resource().outputs)

    return run_offline(
        program, project=stack_file.project, stack=stack, config=config, secret_keys=sorted(stack_file.secret_keys),
        **kwargs,
    )


def preview_stack(stack: str, project_dir: Path | None = None) -> OfflineRun:
    """Run the platform's `__main__.py` with `Pulumi.<stack>.yaml`, under the mocks.

    Encrypted config values are replaced by `OFFLINE_SECRET`.
    """
    return _run_program(project_dir or find_project_dir(), stack)


def platform_stack_name(stack: str, organization: str = OFFLINE_ORGANIZATION) -> str:
    """The fully qualified name the service stack's StackReference uses by default."""
    return f"{organization}/{PLATFORM_PROJECT}/{stack}"


def deploy_time_placeholders(platform: OfflineRun) -> dict[str, str]:
    """Offline stand-ins for the release a deploy passes: an image digest and a model package version."""
    outputs = platform.stack_outputs
    region = outputs["region"]
    placeholders = {
        f"{NAMESPACE}:image": f"{outputs['repositoryUrls']['inference']}@sha256:{OFFLINE_DIGEST}",
        f"{NAMESPACE}:modelPackageArn": (
            f"arn:aws:sagemaker:{region}:{ACCOUNT_ID}:model-package/{outputs['modelPackageGroupName']}/1"
        ),
    }
    assert set(placeholders) == set(DEPLOY_TIME_KEYS)
    return placeholders


def preview_service(stack: str, project_dir: Path | None = None, platform: OfflineRun | None = None) -> OfflineRun:
    """Run the service's `__main__.py` with `service/Pulumi.<stack>.yaml`, under the mocks.

    Its StackReference is answered with the platform stack's offline outputs (run here
    unless given), and the release keys a deploy sets (`DEPLOY_TIME_KEYS`) get
    placeholders derived from them.
    """
    project_dir = project_dir or find_project_dir()
    platform = platform or preview_stack(stack, project_dir)
    return _run_program(
        project_dir / SERVICE_DIR,
        stack,
        extra_config=deploy_time_placeholders(platform),
        stack_outputs={platform_stack_name(stack): platform.stack_outputs},
    )


def preview_deployment(stack: str, project_dir: Path | None = None) -> list[OfflineRun]:
    """Every project a deployment of `stack` runs, offline: the platform, the service, the training stack and, when
    the platform has the lake engine, the lake stack."""
    from infra.providers.lake_program import lake_offline_run
    from infra.providers.program import training_offline_run

    project_dir = project_dir or find_project_dir()
    platform = preview_stack(stack, project_dir)
    service = preview_service(stack, project_dir, platform)
    training = training_offline_run(stack, platform.stack_outputs, project_dir=project_dir)
    if not platform.stack_outputs.get("lakeJobRoleArn"):
        return [platform, service, training]
    return [platform, service, training, lake_offline_run(stack, platform.stack_outputs, project_dir=project_dir)]
