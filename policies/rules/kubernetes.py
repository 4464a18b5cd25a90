"""Kubernetes workloads: resource limits, non-root, read-only root filesystem, probes, pinned images."""

from __future__ import annotations

from typing import Any

from policies.model import Resource, ResourceRule, as_list

LONG_RUNNING = frozenset(
    {
        "kubernetes:apps/v1:Deployment",
        "kubernetes:apps/v1:StatefulSet",
        "kubernetes:apps/v1:DaemonSet",
        "kubernetes:core/v1:Pod",
    }
)
WORKLOADS = LONG_RUNNING | {"kubernetes:batch/v1:Job", "kubernetes:batch/v1:CronJob"}


def pod_spec(resource: Resource) -> dict[str, Any]:
    """The pod spec inside any workload kind."""
    if resource.type == "kubernetes:core/v1:Pod":
        return resource.get("spec", default={})
    if resource.type == "kubernetes:batch/v1:CronJob":
        return resource.get("spec", "jobTemplate", "spec", "template", "spec", default={})
    return resource.get("spec", "template", "spec", default={})


def containers(resource: Resource) -> list[dict[str, Any]]:
    spec = pod_spec(resource)
    return as_list(spec.get("initContainers")) + as_list(spec.get("containers"))


def _name(container: dict[str, Any]) -> str:
    return f"container {container.get('name', '<unnamed>')!r}"


def limits(resource: Resource) -> list[str]:
    problems = []
    for c in containers(resource):
        missing = [k for k in ("cpu", "memory") if not ((c.get("resources") or {}).get("limits") or {}).get(k)]
        if missing:
            problems.append(f"{_name(c)} has no {' or '.join(missing)} limit")
    return problems


def non_root(resource: Resource) -> list[str]:
    pod = pod_spec(resource).get("securityContext") or {}
    problems = []
    for c in containers(resource):
        ctx = {**pod, **(c.get("securityContext") or {})}
        if ctx.get("runAsNonRoot") is not True or ctx.get("runAsUser") == 0:
            problems.append(f"{_name(c)} may run as root")
    return problems


def read_only_root(resource: Resource) -> list[str]:
    return [
        f"{_name(c)} has a writable root filesystem"
        for c in containers(resource)
        if (c.get("securityContext") or {}).get("readOnlyRootFilesystem") is not True
    ]


def probes(resource: Resource) -> list[str]:
    if resource.type not in LONG_RUNNING:
        return []
    problems = []
    for c in as_list(pod_spec(resource).get("containers")):
        missing = [p for p in ("readinessProbe", "livenessProbe") if not c.get(p)]
        if missing:
            problems.append(f"{_name(c)} has no {' or '.join(missing)}")
    return problems


def pinned_image(resource: Resource) -> list[str]:
    problems = []
    for c in containers(resource):
        image = str(c.get("image", ""))
        if "@sha256:" in image:
            continue
        tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
        if tag in {"", "latest"}:
            problems.append(f"{_name(c)} uses {image!r}, which is not a pinned version")
    return problems


RULES = [
    ResourceRule(
        "k8s-resource-limits",
        "Set CPU and memory limits on every container (retail:inference.cpuLimit / memoryLimit).",
        WORKLOADS,
        limits,
    ),
    ResourceRule(
        "k8s-non-root",
        "Run containers as a non-root user (securityContext.runAsNonRoot=true, runAsUser != 0).",
        WORKLOADS,
        non_root,
    ),
    ResourceRule(
        "k8s-read-only-root-filesystem",
        "Mount the root filesystem read-only (securityContext.readOnlyRootFilesystem=true; emptyDir for /tmp).",
        WORKLOADS,
        read_only_root,
    ),
    ResourceRule(
        "k8s-probes",
        "Give long-running containers a readinessProbe and a livenessProbe.",
        WORKLOADS,
        probes,
    ),
    ResourceRule(
        "k8s-no-latest-image",
        "Pin images to a version tag or digest (retail:inference.imageTag), never ':latest' or no tag.",
        WORKLOADS,
        pinned_image,
    ),
]
