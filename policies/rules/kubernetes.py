"""Kubernetes: workloads (resource limits, non-root, read-only root filesystem, probes, pinned images), batch
workloads (on the batch node group, bounded in time and retries) and Ingresses (TLS)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
JOB = "kubernetes:batch/v1:Job"
CRON_JOB = "kubernetes:batch/v1:CronJob"
BATCH = frozenset({JOB, CRON_JOB})
WORKLOADS = LONG_RUNNING | BATCH
BATCH_NODE_LABEL = ("retail.io/workload", "batch")
"""The batch node group's label, also its NoSchedule taint (infra/cluster.py: WORKLOAD_LABEL, BATCH_WORKLOAD)."""
NO_OVERLAP = frozenset({"Forbid", "Replace"})
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


def env_of(container: Mapping[str, Any]) -> dict[str, Any]:
    """A container's literal environment variables (name -> value); those set from a secret or field are left out."""
    return {e.get("name"): e.get("value") for e in as_list(container.get("env")) if "value" in e}


def option_values(container: Mapping[str, Any], options: Sequence[str]) -> list[str]:
    """The values a container's args give these options (`--bundle s3://...`), in the order given."""
    arguments = [str(a) for a in as_list(container.get("args"))]
    return [arguments[i + 1] for i, a in enumerate(arguments[:-1]) if a in options]


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


def job_spec(resource: Resource) -> dict[str, Any]:
    """The Job spec of a Job, or of the Jobs a CronJob creates."""
    if resource.type == CRON_JOB:
        return resource.get("spec", "jobTemplate", "spec", default={})
    return resource.get("spec", default={})


def on_batch_nodes(resource: Resource) -> list[str]:
    """Batch pods select the batch node group and tolerate its taint, so they never land on the service nodes.

    The taint keeps other pods off the batch nodes; only the nodeSelector keeps a batch pod off the
    service nodes, where a memory-hungry run would compete with the API
    (https://kubernetes.io/docs/concepts/scheduling-eviction/taint-and-toleration/).
    """
    key, value = BATCH_NODE_LABEL
    spec = pod_spec(resource)
    problems = []
    if (spec.get("nodeSelector") or {}).get(key) != value:
        problems.append(f"its pods do not select the batch nodes (nodeSelector {key}={value})")
    if not any(_tolerates_batch(t) for t in as_list(spec.get("tolerations"))):
        problems.append(f"its pods do not tolerate the batch nodes' taint {key}={value}:NoSchedule")
    return problems


def _tolerates_batch(toleration: dict[str, Any]) -> bool:
    key, value = BATCH_NODE_LABEL
    if toleration.get("key") != key or toleration.get("effect") not in (None, "", "NoSchedule"):
        return False
    return toleration.get("operator") == "Exists" or toleration.get("value") == value


def bounded(resource: Resource) -> list[str]:
    """A run ends, is retried a bounded number of times and is cleaned up; a CronJob's runs never pile up.

    Job fields: https://kubernetes.io/docs/concepts/workloads/controllers/job/ (activeDeadlineSeconds,
    backoffLimit, ttlSecondsAfterFinished); CronJob fields:
    https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ (concurrencyPolicy defaults to
    Allow, so a slow run overlaps the next; startingDeadlineSeconds bounds late starts).
    """
    spec = job_spec(resource)
    problems = [
        f"has no {field} ({why})"
        for field, why in (
            ("activeDeadlineSeconds", "a hung run is never stopped"),
            ("backoffLimit", "retries default to 6"),
            ("ttlSecondsAfterFinished", "finished Jobs and their pods are never deleted"),
        )
        if spec.get(field) is None
    ]
    if resource.type == CRON_JOB:
        policy = resource.get("spec", "concurrencyPolicy", default="Allow")
        if policy not in NO_OVERLAP:
            problems.append(f"has concurrencyPolicy {policy!r}, so a slow run overlaps the next")
        if resource.get("spec", "startingDeadlineSeconds") is None:
            problems.append("has no startingDeadlineSeconds (missed runs start late and count towards 100 misses)")
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
        "k8s-batch-on-batch-nodes",
        "Run Jobs and CronJobs on the batch node group: nodeSelector retail.io/workload=batch and a toleration "
        "of its NoSchedule taint (the platform's batchNodeLabels and batchNodeTaints outputs).",
        BATCH,
        on_batch_nodes,
    ),
    ResourceRule(
        "k8s-batch-bounded",
        "Bound every Job: activeDeadlineSeconds, backoffLimit and ttlSecondsAfterFinished; CronJobs also "
        "concurrencyPolicy Forbid (or Replace) and startingDeadlineSeconds.",
        BATCH,
        bounded,
    ),
    ResourceRule(
        "ingress-tls",
        "Serve the Ingress over HTTPS: set retail:inference.hostname with hostedZoneId (or certificateArn).",
        frozenset({INGRESS}),
        ingress_tls,
        Enforcement.advisory,
    ),
]
