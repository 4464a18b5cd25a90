"""A proven teardown: load-balanced Kubernetes objects removed before a destroy, the leak scan after it.

Before `pulumi destroy`: every Ingress and every Service of type LoadBalancer in the
service stack's namespaces is deleted through kubectl (the stack's kubeconfig, in a
private temporary file), then the objects themselves are awaited until they are gone,
then the AWS load balancers made for them (both bounded together: `wait_seconds`). The
objects are the better signal: the AWS Load Balancer Controller puts a finalizer on each
(`ingress.k8s.aws/resources`, `group.ingress.k8s.aws/<group>` for an Ingress group,
`service.k8s.aws/resources` for a Service; `pkg/ingress/finalizer.go` and
`controllers/service/service_controller.go` in kubernetes-sigs/aws-load-balancer-controller)
and removes it only after its reconcile has deleted the load balancer, its target groups
and the security groups it made (`controllers/ingress/group_controller.go`: the model is
deployed, then the finalizer of the inactive members removed), so an object gone means
all of those are gone, not just the load balancer. Done while the controller still runs,
this leaves nothing for a destroyed cluster to orphan. Anything that goes wrong here is
reported and the destroy goes on: the leak scan afterwards says what remains. The
kubernetes Python client is not a dependency of this project, so kubectl it is
(`kubectl_session`); tests hand `ProvenTeardown` a recording stand-in.

After the destroy: `infra.leaks.scan`, in the stack's own region: the `region` output of
its platform stack when there is one, else the region its stack config names (the
`region` `ProvenTeardown` is given). The tagging API can list a resource for a while
after its deletion, so while the scan finds leftovers it is repeated, for up to
`settle_seconds`: a leftover is what is still there then. The last report is printed and
kept in `report`. `ProvenTeardown` is what `retail infra destroy|ephemeral` give
`infra.automation`.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.leaks import Clients, LeakReport, LeakScope, TaggedLoadBalancer, aws_clients, cluster_load_balancers, scan

LOAD_BALANCER_WAIT_SECONDS = 300.0
"""How long to wait for the deleted objects to go and the controller to delete their load balancers."""
POLL_SECONDS = 10.0
SETTLE_SECONDS = 180.0
"""How long leftovers are scanned for again before they count (deletions reach the tagging API late)."""
SETTLE_POLL_SECONDS = 30.0
KUBECTL_TIMEOUT_SECONDS = 120
INGRESS_GROUP_ANNOTATION = "alb.ingress.kubernetes.io/group.name"
"""Ingresses of one group share one ALB, whose `ingress.k8s.aws/stack` tag is the group's name."""
SERVICE_NAMESPACE_OUTPUTS = ("namespace", "batchScoringNamespace")
"""The service stack's outputs naming its namespaces."""

Kubectl = Callable[[Sequence[str]], str]
"""Runs `kubectl ARGS` against the stack's cluster and returns its standard output."""
KubectlSession = Callable[[str], contextlib.AbstractContextManager[Kubectl]]
"""Given a kubeconfig, a context in which a `Kubectl` can be used."""


class KubectlFailed(RuntimeError):
    """kubectl is missing or a command of it failed; the message holds what it wrote."""


@contextlib.contextmanager
def kubectl_session(kubeconfig: str) -> Iterator[Kubectl]:
    """kubectl with `kubeconfig` written to a file only this user can read, removed afterwards."""
    executable = shutil.which("kubectl")
    if executable is None:
        raise KubectlFailed("kubectl is not on PATH")
    with tempfile.TemporaryDirectory(prefix="retail-kubeconfig-") as scratch:
        path = Path(scratch) / "kubeconfig"
        path.touch(mode=0o600)
        path.write_text(kubeconfig)

        def run(args: Sequence[str]) -> str:
            argv = [executable, "--kubeconfig", str(path), "--request-timeout=30s", *args]
            result = subprocess.run(argv, capture_output=True, text=True, timeout=KUBECTL_TIMEOUT_SECONDS, check=False)
            if result.returncode != 0:
                raise KubectlFailed(f"kubectl {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
            return result.stdout

        yield run


@dataclass(frozen=True)
class LoadBalancedObject:
    """An Ingress or a Service of type LoadBalancer: a Kubernetes object a controller gives an AWS load balancer."""

    kind: str
    namespace: str
    name: str
    group: str = ""
    """The Ingress group it belongs to (`alb.ingress.kubernetes.io/group.name`), if any."""

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    @property
    def owner_tags(self) -> set[tuple[str, str]]:
        """The tags by which a load balancer made for this object names it (Load Balancer Controller, in-tree)."""
        if self.kind == "Ingress":
            return {("ingress.k8s.aws/stack", self.group or f"{self.namespace}/{self.name}")}
        ident = f"{self.namespace}/{self.name}"
        return {("service.k8s.aws/stack", ident), ("kubernetes.io/service-name", ident)}


def load_balanced_objects(kubectl: Kubectl, namespaces: Sequence[str]) -> list[LoadBalancedObject]:
    """The Ingresses and LoadBalancer Services in `namespaces`."""
    found = []
    for namespace in namespaces:
        listing = json.loads(kubectl(["get", "ingress,service", "--namespace", namespace, "--output", "json"]))
        for item in listing.get("items", []):
            metadata = item.get("metadata", {})
            kind = item.get("kind")
            if kind == "Service" and item.get("spec", {}).get("type") != "LoadBalancer":
                continue
            if kind not in {"Ingress", "Service"}:
                continue
            group = (metadata.get("annotations") or {}).get(INGRESS_GROUP_ANNOTATION, "") if kind == "Ingress" else ""
            found.append(LoadBalancedObject(kind, metadata.get("namespace", namespace), metadata["name"], group))
    return found


def delete_objects(kubectl: Kubectl, objects: Sequence[LoadBalancedObject]) -> None:
    """Delete each object without waiting: its controller deletes the load balancer, then lets the object go."""
    for item in objects:
        kubectl(["delete", item.kind.lower(), item.name, "--namespace", item.namespace, "--wait=false",
                 "--ignore-not-found"])


def remaining_objects(kubectl: Kubectl, objects: Sequence[LoadBalancedObject]) -> list[LoadBalancedObject]:
    """Which of `objects` still exist (terminating while their controller holds its finalizer)."""
    left = []
    for namespace in sorted({item.namespace for item in objects}):
        here = [item for item in objects if item.namespace == namespace]
        names = kubectl(["get", *(f"{item.kind.lower()}/{item.name}" for item in here), "--namespace", namespace,
                         "--ignore-not-found", "--output", "name"]).split()
        # `--output name` prints `<resource>.<group>/<name>` (`ingress.networking.k8s.io/web`, `service/web`).
        found = {(line.split("/", 1)[0].split(".", 1)[0], line.split("/", 1)[1]) for line in names if "/" in line}
        left += [item for item in here if (item.kind.lower(), item.name) in found]
    return left


def wait_for_objects(
    kubectl: Kubectl,
    objects: Sequence[LoadBalancedObject],
    timeout: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[LoadBalancedObject]:
    """Poll until none of the deleted `objects` exists or `timeout` seconds have passed; which are left.

    What `kubectl wait --for=delete` does, polled here so that the wait shares the teardown's
    clock and each kubectl call stays within the session's per-call timeout.
    """
    deadline = clock() + timeout
    while True:
        left = remaining_objects(kubectl, objects)
        if not left or clock() >= deadline:
            return left
        sleep(min(POLL_SECONDS, max(deadline - clock(), 0.0)))


def load_balancers_of(
    clients: Clients, cluster: str, objects: Sequence[LoadBalancedObject]
) -> list[TaggedLoadBalancer]:
    """The cluster's load balancers that were made for one of `objects`."""
    owners = set().union(*(item.owner_tags for item in objects)) if objects else set()
    return [lb for lb in cluster_load_balancers(clients, cluster) if set(lb.tags.items()) & owners]


def wait_for_load_balancers(
    clients: Clients,
    cluster: str,
    objects: Sequence[LoadBalancedObject],
    timeout: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[TaggedLoadBalancer]:
    """Poll until no load balancer of `objects` is left or `timeout` seconds have passed; what is left."""
    deadline = clock() + timeout
    while True:
        left = load_balancers_of(clients, cluster, objects)
        if not left or clock() >= deadline:
            return left
        sleep(min(POLL_SECONDS, max(deadline - clock(), 0.0)))


def service_namespaces(service_outputs: Mapping[str, Any]) -> list[str]:
    """The service stack's namespaces: its outputs, or the config defaults when it never came up (a failed up
    may still have created an Ingress)."""
    named = [service_outputs[key] for key in SERVICE_NAMESPACE_OUTPUTS if service_outputs.get(key)]
    if named:
        return named
    from infra.config import BatchScoringConfig, InferenceConfig

    return [InferenceConfig().namespace, BatchScoringConfig().namespace]


@dataclass
class ProvenTeardown:
    """Around a destroy of one deployment: `before_destroy` removes load-balanced objects, `after_destroy` scans."""

    region: str
    """The region the stack's config names: used when its platform stack has no `region` output."""
    echo: Callable[[str], None] = print
    clients_for: Callable[[str], Clients] = aws_clients
    """boto3 clients for a region (made once per region)."""
    kubectl: KubectlSession = kubectl_session
    wait_seconds: float = LOAD_BALANCER_WAIT_SECONDS
    settle_seconds: float = SETTLE_SECONDS
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    report: LeakReport | None = None
    """The last leak scan's report."""
    _clients: dict[str, Clients] = field(default_factory=dict, init=False, repr=False)

    def scope(self, stack: str, platform: Mapping[str, Any]) -> LeakScope:
        """The stack's scope, in its own region: the platform's `region` output, else `self.region`."""
        return LeakScope.of(stack, self.region, platform)

    def clients(self, region: str) -> Clients:
        if region not in self._clients:
            self._clients[region] = self.clients_for(region)
        return self._clients[region]

    def before_destroy(self, stack: str, platform: Mapping[str, Any], service: Mapping[str, Any]) -> None:
        """Delete the service's Ingresses and LoadBalancer Services; wait for them and their load balancers to go."""
        kubeconfig = platform.get("kubeconfig")
        if not kubeconfig:
            self.echo(f"pre-destroy: platform stack {stack} has no kubeconfig output (no cluster came up); "
                      "no Kubernetes objects to remove first")
            return
        namespaces = service_namespaces(service)
        text = kubeconfig if isinstance(kubeconfig, str) else json.dumps(kubeconfig)
        deadline = self.clock() + self.wait_seconds
        try:
            with self.kubectl(text) as kubectl:
                objects = load_balanced_objects(kubectl, namespaces)
                delete_objects(kubectl, objects)
                if objects:
                    self.echo(f"pre-destroy: deleted {', '.join(map(str, objects))}; waiting up to "
                              f"{self.wait_seconds:.0f}s for them and their load balancers to go")
                    self._await_objects(kubectl, objects, deadline)
        except Exception as error:  # noqa: BLE001 (kubectl missing, refused, timed out, or answered nonsense)
            self.echo(f"pre-destroy: could not remove Ingresses and LoadBalancer Services ({error}); "
                      "destroying anyway, the leak scan will show what remains")
            return
        if not objects:
            self.echo(f"pre-destroy: no Ingress or LoadBalancer Service in {', '.join(namespaces)}")
            return
        scope = self.scope(stack, platform)
        try:
            left = wait_for_load_balancers(self.clients(scope.region), scope.cluster, objects,
                                           max(deadline - self.clock(), 0.0), self.sleep, self.clock)
        except Exception as error:  # noqa: BLE001 (AWS unreachable or refusing: the scan after the destroy tells)
            self.echo(f"pre-destroy: could not list the load balancers ({type(error).__name__}: {error})")
            return
        if left:
            self.echo(f"pre-destroy: {len(left)} load balancer(s) still there after {self.wait_seconds:.0f}s: "
                      f"{', '.join(lb.ident for lb in left)}")
        else:
            self.echo("pre-destroy: their load balancers are gone")

    def _await_objects(self, kubectl: Kubectl, objects: Sequence[LoadBalancedObject], deadline: float) -> None:
        """Wait for the deleted objects to go: their controller lets them go once it deleted what it made for them."""
        try:
            left = wait_for_objects(kubectl, objects, max(deadline - self.clock(), 0.0), self.sleep, self.clock)
        except KubectlFailed as error:
            self.echo(f"pre-destroy: could not tell whether they are gone ({error})")
            return
        if left:
            self.echo(f"pre-destroy: still terminating after {self.wait_seconds:.0f}s: {', '.join(map(str, left))} "
                      "(the Load Balancer Controller keeps its finalizer until it has deleted their load balancer, "
                      "target groups and security groups)")
        else:
            self.echo("pre-destroy: the objects are gone (their controller finalized them)")

    def after_destroy(self, stack: str, platform: Mapping[str, Any]) -> None:
        """Scan for leftovers of `stack` until none are left or `settle_seconds` passed; print and keep the report."""
        scope = self.scope(stack, platform)
        clients = self.clients(scope.region)
        deadline = self.clock() + self.settle_seconds
        report = scan(scope, clients)
        while report.leftovers and self.clock() < deadline:
            pause = min(SETTLE_POLL_SECONDS, deadline - self.clock())
            self.echo(f"leak scan: {len(report.leftovers)} leftover(s) of {stack}; deletions reach the tagging API "
                      f"late, scanning again in {pause:.0f}s")
            self.sleep(pause)
            report = scan(scope, clients)
        self.report = report
        for line in report.lines():
            self.echo(line)
