"""Kubernetes: workloads (resource limits, non-root, read-only root filesystem, probes, pinned images) and
Ingresses (TLS)."""

from __future__ import annotations

from typing import Any

from policies.model import Enforcement, Resource, ResourceRule, as_json, as_list

LONG_RUNNING = frozenset(
    {
        "kubernetes:apps/v1:Deployment",
        "kubernetes:apps/v1:StatefulSet",
        "kubernetes:apps/v1:DaemonSet",
        "kubernetes:core/v1:Pod",
    }
)
WORKLOADS = LONG_RUNNING | {"kubernetes:batch/v1:Job", "kubernetes:batch/v1:CronJob"}
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
ALB_PREFIX = "alb.ingress.kubernetes.io/"
ALB_CERTIFICATE = f"{ALB_PREFIX}certificate-arn"
ALB_LISTEN_PORTS = f"{ALB_PREFIX}listen-ports"


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


def ingress_tls(resource: Resource) -> list[str]:
    """Whether the Ingress serves HTTPS.

    For the AWS Load Balancer Controller (class `alb` or `alb.ingress.kubernetes.io/*`
    annotations) an HTTPS listener needs both a listener and a certificate: `listen-ports`
    defaults to HTTPS:443 only when `certificate-arn` is set, else to HTTP:80, and a
    certificate comes from that annotation or is discovered from `spec.tls` hosts and rule
    hosts once an HTTPS listener is asked for
    (https://kubernetes-sigs.github.io/aws-load-balancer-controller/latest/guide/ingress/annotations/#listen-ports,
    https://kubernetes-sigs.github.io/aws-load-balancer-controller/latest/guide/ingress/cert_discovery/).
    For other controllers, `spec.tls` is the standard way
    (https://kubernetes.io/docs/concepts/services-networking/ingress/#tls).
    """
    annotations = resource.get("metadata", "annotations", default={}) or {}
    tls = as_list(resource.get("spec", "tls"))
    alb = resource.get("spec", "ingressClassName") == "alb" or any(k.startswith(ALB_PREFIX) for k in annotations)
    if not alb:
        return [] if tls else ["has no TLS section, so it serves plain HTTP"]
    certificate = annotations.get(ALB_CERTIFICATE)
    default_ports = '[{"HTTPS": 443}]' if certificate else '[{"HTTP": 80}]'
    ports = as_json(annotations.get(ALB_LISTEN_PORTS) or default_ports)
    if not any("HTTPS" in entry for entry in as_list(ports) if isinstance(entry, dict)):
        return [
            "listens only on HTTP (no HTTPS entry in alb.ingress.kubernetes.io/listen-ports), so it serves plain HTTP"
        ]
    hosts = [h for t in tls for h in as_list(t.get("hosts"))] + [
        r.get("host") for r in as_list(resource.get("spec", "rules")) if r.get("host")
    ]
    if not certificate and not hosts:
        return [
            "has an HTTPS listener but no certificate: no certificate-arn annotation and no host to discover one for"
        ]
    return []


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
        "Pin images to a digest (retail:image) or a version tag, never ':latest' or no tag.",
        WORKLOADS,
        pinned_image,
    ),
    ResourceRule(
        "ingress-tls",
        "Serve the Ingress over HTTPS: set retail:inference.hostname with hostedZoneId (or certificateArn).",
        frozenset({INGRESS}),
        ingress_tls,
        Enforcement.advisory,
    ),
]
