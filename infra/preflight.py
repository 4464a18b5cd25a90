"""What `retail infra doctor`'s checks read and return: the deployment plan, the context and a check's result.

The plan is what a stack's deployment would create, read from its offline preview
(`infra.offline.preview_deployment`: the platform, the service and the training program
under the mock runtime), so the checks restate neither the config nor the programs' logic:
the AZ count, the EKS version and node groups, the training job's instance type, how many
resources of each type, and which resource plugins are used; the region is the stack
file's `aws:region`, as `infra.config` reads it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from infra.offline import OfflineRun
from infra.providers.kinds import DYNAMIC_TYPE, TRAINING_JOB


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    UNKNOWN = "unknown"
    """Could not be evaluated (an API the endpoint lacks, a check that did not run): never a pass."""


@dataclass(frozen=True)
class Verdict:
    """What one check found: its status, what it saw, and what to do about a failure or warning."""

    status: Status
    detail: str
    fix: str = ""


def ok(detail: str) -> Verdict:
    return Verdict(Status.OK, detail)


def warn(detail: str, fix: str) -> Verdict:
    return Verdict(Status.WARN, detail, fix)


def fail(detail: str, fix: str) -> Verdict:
    return Verdict(Status.FAIL, detail, fix)


def unknown(detail: str, fix: str = "") -> Verdict:
    return Verdict(Status.UNKNOWN, detail, fix)


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    detail: str
    fix: str = ""
    """What to do about a failure or warning; empty when there is nothing to do."""


@dataclass(frozen=True)
class NodeGroup:
    name: str
    instance_types: tuple[str, ...]
    spot: bool
    max_size: int


@dataclass(frozen=True)
class TrainingPlan:
    """The SageMaker training job `retail train --cloud` starts for the stack."""

    instance_type: str
    instance_count: int
    spot: bool


@dataclass(frozen=True)
class DeploymentPlan:
    stack: str
    region: str
    az_count: int
    """Distinct AZs of the network's subnets."""
    cluster_version: str | None
    node_groups: tuple[NodeGroup, ...]
    training: TrainingPlan | None
    counts: Mapping[str, int]
    """Resources of each type the stacks register, e.g. `aws:ec2/eip:Eip`."""
    kinds: frozenset[str]
    """Every resource type registered (remote components included, local ones not), with dynamic resources
    by their `kind` (infra/providers/kinds.py)."""
    plugins: Mapping[str, str]
    """Resource plugins the programs use (name -> version of the installed SDK package)."""

    def count(self, type_: str) -> int:
        return self.counts.get(type_, 0)


PLUGIN_PACKAGES = {
    "aws": "pulumi_aws",
    "eks": "pulumi_eks",
    "kubernetes": "pulumi_kubernetes",
    "random": "pulumi_random",
}
"""Pulumi package of each type token prefix; each ships `pulumi-plugin.json` naming its plugin version."""


def plan_from_runs(stack: str, region: str, runs: Iterable[OfflineRun]) -> DeploymentPlan:
    """The plan of a deployment in `region` (the stack file's aws:region) from its offline runs."""
    resources_ = [resource for run in runs for resource in run.resources]
    zones = {r.inputs.get("availabilityZone") for r in resources_ if r.type == "aws:ec2/subnet:Subnet"}
    clusters = [r for r in resources_ if r.type == "eks:index:Cluster"]
    node_groups = tuple(
        NodeGroup(
            name=r.name,
            instance_types=tuple(r.inputs.get("instanceTypes") or ()),
            spot=r.inputs.get("capacityType") == "SPOT",
            max_size=int(r.inputs["scalingConfig"]["maxSize"]),
        )
        for r in resources_
        if r.type == "eks:index:ManagedNodeGroup"
    )
    jobs = [r for r in resources_ if r.type == DYNAMIC_TYPE and r.inputs.get("kind") == TRAINING_JOB]
    job = jobs[0].inputs if jobs else None
    training = TrainingPlan(job["instance_type"], int(job["instance_count"]), bool(job["use_spot"])) if job else None
    kinds = frozenset(
        r.inputs.get("kind", r.type) if r.type == DYNAMIC_TYPE else r.type for r in resources_ if r.custom or r.remote
    )
    return DeploymentPlan(
        stack=stack,
        region=region,
        az_count=len(zones - {None}),
        cluster_version=str(clusters[0].inputs["version"]) if clusters else None,
        node_groups=node_groups,
        training=training,
        counts=dict(Counter(r.type for r in resources_ if r.custom)),
        kinds=kinds,
        plugins=plugin_versions(r.type for r in resources_),
    )


def plugin_versions(types: Iterable[str]) -> dict[str, str]:
    """Plugin name -> version for the providers behind `types` (their Python package's pulumi-plugin.json)."""
    names = {type_.removeprefix("pulumi:providers:").split(":")[0] for type_ in types}
    versions = {}
    for name in sorted(names & set(PLUGIN_PACKAGES)):
        manifest = json.loads(resources.files(PLUGIN_PACKAGES[name]).joinpath("pulumi-plugin.json").read_text())
        versions[name] = str(manifest["version"])
    return versions


ClientFactory = Callable[[str, str], Any]
"""(service, region) -> a boto3 client; tests point it at moto."""


@dataclass
class Context:
    """Everything the checks read: the stack, its plan (None when its config did not load), AWS and the env."""

    stack: str
    project_dir: Path
    region: str
    config: Mapping[str, str]
    """The platform's stack file as the CLI hands it to the program (`infra.config.read_stack_file`)."""
    plan: DeploymentPlan | None
    aws: ClientFactory
    env: Mapping[str, str]
    caller_arn: str = ""
    """Set by the credentials check."""
    backend_url: str = ""
    """Set by the backend check: the Pulumi backend the stacks' state goes to."""
    _clients: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False)

    def client(self, service: str, region: str | None = None) -> Any:
        """One client per service and region, made on first use."""
        key = (service, region or self.region)
        if key not in self._clients:
            self._clients[key] = self.aws(*key)
        return self._clients[key]

    def require_plan(self) -> DeploymentPlan:
        if self.plan is None:
            raise RuntimeError("this check needs the deployment plan")
        return self.plan


AWS_ERRORS = (ClientError, BotoCoreError, ResponseParserError)
"""What a boto3 call raises when AWS (or the endpoint) refuses or fails to answer."""


def error_code(error: BaseException) -> str:
    """The AWS error code of a botocore ClientError (its HTTP status when the body had none), else ""."""
    response = getattr(error, "response", None) or {}
    return str((response.get("Error") or {}).get("Code") or "")


def error_text(error: BaseException) -> str:
    """One line: the AWS error code and message, or the exception's own text."""
    response = getattr(error, "response", None) or {}
    details = response.get("Error") or {}
    if details:
        message = str(details.get("Message") or "").strip().splitlines()
        return f"{details.get('Code', '')}: {message[0] if message else ''}".strip(": ")
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
