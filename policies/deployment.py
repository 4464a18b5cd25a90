"""Every project of one deployment as one graph: what exists, and what is created after what.

The deploy checks (`policies.graph`, `policies.producers`) judge the offline runs of all
projects of a stack at once (`infra.offline.preview_deployment`: the platform, the service,
later the training stack). This module indexes them and answers one question precisely:
is resource A created after resource B?

**Within a run**, A is after B when B's URN is reachable from A over the edges the Pulumi
engine orders by (https://www.pulumi.com/docs/iac/concepts/options/dependson/):

- A's `dependencies`: its explicit `depends_on` (local components expanded to their
  children, remote components such as pulumi-eks's kept as themselves) and the
  resources its inputs came from;
- A's `property_dependencies` (the same input dependencies, per input);
- A's provider (`provider`): the engine creates a provider before the resources that use
  it, so a Kubernetes object is after whatever its provider's kubeconfig came from.

**Across runs**, a run reads another project's outputs only through a StackReference
(`pulumi:pulumi:StackReference`, named `<organization>/<project>/<stack>`). When A's
closure reaches a StackReference, A counts as after *every* resource of the run that
reference names (matched by project and stack; the organization is ignored, offline runs
all share one), and after everything that run is itself after. This holds because
`infra.automation.deploy` runs the platform's `pulumi up` to completion before the
service's starts, and a StackReference reads the outputs of the referenced stack's last
completed update, in which every resource of its program exists. It is no stronger than
that: it does not say which platform output A read, so it cannot tell a prerequisite A
really needs from one that merely exists; the checks pair resources by their inputs
(names, ARNs, labels) for that. A StackReference that names no run of the deployment
leads nowhere. The reference itself may or may not be among a run's recorded resources
(it is a read, not a registration); both are handled, from its URN alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from infra.offline import OfflineRun, RegisteredResource
from policies.model import Resource, as_list, project_of

STACK_REFERENCE = "pulumi:pulumi:StackReference"
ROLE = "aws:iam/role:Role"
ROLE_POLICY_TYPES = frozenset(
    {
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
        "aws:iam/rolePolicy:RolePolicy",
    }
)
MANAGED_NODE_GROUP = "eks:index:ManagedNodeGroup"
AWS_NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
EKS_COMPONENT = "eks:index:Cluster"
NODE_GROUP_TYPES = frozenset({MANAGED_NODE_GROUP, AWS_NODE_GROUP})
TAINT_EFFECTS = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}
"""EKS node group taint effects (API spelling) -> the Kubernetes spelling tolerations use."""


def urn_type(urn: str) -> str:
    """`urn:pulumi:dev::proj::parent$aws:s3/bucket:Bucket::name` -> `aws:s3/bucket:Bucket`."""
    parts = urn.split("::")
    return parts[2].split("$")[-1] if len(parts) >= 4 else ""


def urn_name(urn: str) -> str:
    parts = urn.split("::", 3)
    return parts[3] if len(parts) == 4 else ""


@dataclass(frozen=True, eq=False)
class Node:
    """One recorded resource and the run (project) it belongs to."""

    run: OfflineRun
    record: RegisteredResource

    @cached_property
    def resource(self) -> Resource:
        return Resource(self.record.type, self.record.name, self.record.inputs, self.record.urn)

    @property
    def urn(self) -> str:
        return self.record.urn

    @property
    def type(self) -> str:
        return self.record.type

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def inputs(self) -> Mapping[str, Any]:
        return self.record.inputs

    @property
    def outputs(self) -> Mapping[str, Any]:
        return self.record.outputs

    @property
    def label(self) -> str:
        return f"{self.name} ({self.type}, project {self.run.project})"

    def get(self, *path: str, default: Any = None) -> Any:
        return self.resource.get(*path, default=default)

    def __repr__(self) -> str:
        return f"Node({self.label})"

    def identities(self) -> set[str]:
        """Strings other resources may hold to name this one: id, name, bucket, ARN, URN."""
        values = {self.record.id, self.urn, *(self.outputs.get(k) for k in ("name", "bucket", "arn", "id"))}
        return {v for v in values if isinstance(v, str) and v}


@dataclass(frozen=True)
class NodeGroup:
    """A node group as the scheduler sees it: its labels, taints and how many nodes it starts with."""

    node: Node
    cluster_name: str
    labels: Mapping[str, str]
    taints: tuple[tuple[str, str, str], ...]
    """(key, value, effect in Kubernetes spelling)."""
    desired_size: int
    max_size: int = 0

    def admits(self, node_selector: Mapping[str, str], tolerations: Sequence[Mapping[str, Any]]) -> bool:
        """Pods with this nodeSelector and these tolerations can be scheduled on its nodes."""
        if any(self.labels.get(k) != v for k, v in node_selector.items()):
            return False
        return all(
            effect == "PreferNoSchedule" or any(tolerates(t, key, value, effect) for t in tolerations)
            for key, value, effect in self.taints
        )


def tolerates(toleration: Mapping[str, Any], key: str, value: str, effect: str) -> bool:
    """Kubernetes' matching rule (https://kubernetes.io/docs/concepts/scheduling-eviction/taint-and-toleration/)."""
    if toleration.get("effect") not in (None, "", effect):
        return False
    if toleration.get("operator") == "Exists":
        return toleration.get("key") in (None, "", key)
    # Equal (the default operator): the keys and the values match; an omitted or null value is the empty value.
    return toleration.get("key") == key and (toleration.get("value") or "") == (value or "")


class DeploymentView:
    """The runs of one deployment, indexed: nodes by URN and type, StackReferences resolved, `is_after`."""

    def __init__(self, runs: Iterable[OfflineRun]) -> None:
        self.runs = list(runs)
        self.nodes = [Node(run, r) for run in self.runs for r in run.resources if r.type != STACK_REFERENCE]
        self.by_urn = {n.urn: n for n in self.nodes}
        self._before: dict[str, frozenset[str]] = {}
        self._references: dict[int, tuple[OfflineRun, tuple[OfflineRun, ...]]] = {}

    # --- lookups ---------------------------------------------------------------------------------------------
    def of_type(self, types: str | Iterable[str], runs: Iterable[OfflineRun] | None = None) -> list[Node]:
        wanted = {types} if isinstance(types, str) else set(types)
        in_runs = None if runs is None else {id(r) for r in runs}
        return [n for n in self.nodes if n.type in wanted and (in_runs is None or id(n.run) in in_runs)]

    def refers(self, node: Node, prop: str, target: Node) -> bool:
        """Input `prop` of `node` came from `target` (a property dependency) or holds one of its identities."""
        if target.urn in node.record.property_dependencies.get(prop, ()):
            return True
        value = node.inputs.get(prop)
        return isinstance(value, str) and value in target.identities()

    def referenced(self, node: Node, prop: str, types: str | Iterable[str]) -> Node | None:
        """The resource of `types` input `prop` of `node` names (by dependency, URN, id, name or ARN)."""
        candidates = self.of_type(types, self.visible_runs(node.run))
        value = node.inputs.get(prop)
        if isinstance(value, str) and value in self.by_urn and self.by_urn[value] in candidates:
            return self.by_urn[value]
        return next((c for c in candidates if self.refers(node, prop, c)), None)

    def role_policies(self, role: Node) -> list[Node]:
        """The policies attached to or inlined in `role`."""
        return [p for p in self.of_type(ROLE_POLICY_TYPES) if self.refers(p, "role", role)]

    def node_groups(self, runs: Iterable[OfflineRun] | None = None) -> list[NodeGroup]:
        groups = []
        for node in self.of_type(NODE_GROUP_TYPES, runs):
            if node.type == MANAGED_NODE_GROUP:
                cluster = self.referenced(node, "cluster", EKS_COMPONENT)
                cluster_name = str((cluster.inputs.get("name") or cluster.name) if cluster else node.get("clusterName"))
            else:
                cluster_name = str(node.get("clusterName", default=""))
            taints = tuple(
                (str(t.get("key", "")), str(t.get("value", "")), TAINT_EFFECTS.get(t.get("effect"), t.get("effect")))
                for t in as_list(node.get("taints"))
            )
            desired = node.get("scalingConfig", "desiredSize", default=0)
            maximum = node.get("scalingConfig", "maxSize", default=0)
            labels = dict(node.get("labels", default={}))
            groups.append(NodeGroup(node, cluster_name, labels, taints, int(desired), int(maximum)))
        return groups

    # --- projects --------------------------------------------------------------------------------------------
    def referenced_run(self, reference_urn: str) -> OfflineRun | None:
        """The run a StackReference names: `<org>/<project>/<stack>`, or `[<org>/]<stack>` of its own project."""
        parts = urn_name(reference_urn).split("/")
        project = parts[-2] if len(parts) >= 3 else project_of(reference_urn)
        stack = parts[-1]
        return next((r for r in self.runs if r.project == project and r.stack == stack), None)

    def references(self, run: OfflineRun) -> list[OfflineRun]:
        """The runs `run` reads through StackReferences, directly or through them (found once per run: the rules
        ask for every node's)."""
        cached = self._references.get(id(run))
        if cached is None or cached[0] is not run:  # the run is kept with its answer: its id is not reused meanwhile
            cached = self._references[id(run)] = (run, tuple(self._find_references(run)))
        return list(cached[1])

    def _find_references(self, run: OfflineRun) -> list[OfflineRun]:
        found: list[OfflineRun] = []
        frontier = [run]
        while frontier:
            current = frontier.pop()
            urns = {u for r in current.resources for u in (r.urn, *self._edges(r)) if urn_type(u) == STACK_REFERENCE}
            for urn in sorted(urns):
                target = self.referenced_run(urn)
                if target is not None and target is not run and all(target is not f for f in found):
                    found.append(target)
                    frontier.append(target)
        return found

    def visible_runs(self, run: OfflineRun) -> list[OfflineRun]:
        """The run itself and every run it reads through StackReferences: where its prerequisites may live."""
        return [run, *self.references(run)]

    # --- ordering --------------------------------------------------------------------------------------------
    @staticmethod
    def _edges(record: RegisteredResource) -> set[str]:
        edges = set(record.dependencies)
        for urns in record.property_dependencies.values():
            edges.update(urns)
        if record.provider:
            edges.add(record.provider.rsplit("::", 1)[0])
        return edges

    def before(self, node: Node) -> frozenset[str]:
        """URNs of every resource the engine creates before `node` (see the module docstring)."""
        if node.urn not in self._before:
            seen: set[str] = set()
            frontier = list(self._edges(node.record))
            while frontier:
                urn = frontier.pop()
                if urn in seen:
                    continue
                seen.add(urn)
                if urn_type(urn) == STACK_REFERENCE:
                    target = self.referenced_run(urn)
                    frontier.extend(r.urn for r in (target.resources if target else []))
                elif urn in self.by_urn:
                    frontier.extend(self._edges(self.by_urn[urn].record))
            self._before[node.urn] = frozenset(seen)
        return self._before[node.urn]

    def is_after(self, dependent: Node, prerequisite: Node) -> bool:
        return prerequisite.urn in self.before(dependent)
