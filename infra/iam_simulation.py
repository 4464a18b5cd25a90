"""The deploying principal's policies simulated on the deploy's actions (iam:SimulatePrincipalPolicy), in two passes.

A simulation without ResourceArns is on "*" (botocore's model of the API: "If this parameter is not provided, then
the value defaults to * (all resources)"), and a statement that allows an action only on named resources
(`arn:aws:s3:::retail-dev-*`) does not apply to "*": a least-privilege deploy role, scoped to the stack's resources by
their names, would read as denied. So:

1. every action is simulated on "*";
2. the actions not allowed there that require resource ARNs (the Service Authorization Reference, as parliament
   ships it) are simulated again on probe ARNs of those resource types, every name in them the stack's name prefix
   (`retail-dev-probe`), as the stack names its resources (`infra.config.name_prefix`), and every identifier AWS
   generates (`${VpcId}`, `${KeyId}`) PROBE_ID, which no grant on the stack's names matches. Explicit denies are
   tried again too: a guardrail such as `Deny ... NotResource: arn:aws:s3:::retail-*` denies "*" itself.

An action is allowed when every result for it is. It is denied (`Outcome.denied`) on an explicit deny (on the probes,
where it was tried on them), or when AWS authorizes it on "*" alone and "*" was not allowed: then the simulation is
exact. An action AWS authorizes on resource ARNs that neither pass allowed is unconfirmed, not denied: the probes are
one guess at the resources' ARNs (a Glue catalog, an ARN of generated identifiers, a resource Pulumi does not name
with the prefix), the actions whose resource types are all optional (tagging, EventBridge rules) are not probed, and
an action whose required types are alternatives (Athena's tagging: a workgroup or a data catalog or ...) is probed on
all of them. An action allowed on "*" is not probed: a deny aimed only at the stack's names is not seen. Not
simulated: resource policies (the API does not simulate them for roles), session policies and resource control
policies.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ALLOWED = "allowed"
EXPLICIT_DENY = "explicitDeny"


@dataclass(frozen=True)
class Outcome:
    """What the simulation decided for one action."""

    action: str
    allowed: bool
    explicit_deny: bool = False
    missing_context: tuple[str, ...] = ()
    """Condition keys the simulation had no values for: the decision may not be what a real call gets."""
    probes: tuple[str, ...] = ()
    """The probe ARNs of the second pass, when it decided the action."""

    @property
    def denied(self) -> bool:
        """Refused whatever resource the deploy names: an explicit deny, or no allow for an action that AWS
        authorizes on "*" alone."""
        return not self.allowed and not self.missing_context and (self.explicit_deny or not takes_resource_arns(
            self.action))

    @property
    def unconfirmed(self) -> bool:
        """Not allowed on "*" (nor on the probes, where the second pass tried them), for an action AWS authorizes on
        resource ARNs: a grant on resources named otherwise than the probes is not seen."""
        return not self.allowed and not self.missing_context and not self.denied


@dataclass(frozen=True)
class Probe:
    """Where the second pass simulates: the principal's partition and account, the region, the name in every ARN."""

    partition: str
    account: str
    region: str
    name: str


Simulate = Callable[[str, list[str], list[str] | None], list[dict[str, Any]]]
"""`simulate(region, actions, resource_arns)`: the API's EvaluationResults for `actions` requested in `region`, on
those resources (None: on "*")."""


def simulate_deploy_actions(simulate: Simulate, actions: Iterable[str], region_of: Mapping[str, str],
                            probe: Probe) -> list[Outcome]:
    """Each action's outcome; `region_of` gives the region each action is requested in."""
    first = _outcomes(_by_region(simulate, actions, region_of, None))
    again = [o.action for o in first.values()
             if not o.allowed and not o.missing_context and required_resource_types(o.action)]
    groups: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for action in again:
        arns = probe_arns(action, probe)
        if arns:
            groups.setdefault((region_of[action], arns), []).append(action)
    for (region, arns), names in sorted(groups.items()):
        for action, outcome in _outcomes(simulate(region, names, list(arns))).items():
            first[action] = Outcome(action, outcome.allowed, outcome.explicit_deny, outcome.missing_context, arns)
    return sorted(first.values(), key=lambda o: o.action)


def _by_region(simulate: Simulate, actions: Iterable[str], region_of: Mapping[str, str],
               arns: list[str] | None) -> list[dict[str, Any]]:
    regions: dict[str, list[str]] = {}
    for action in actions:
        regions.setdefault(region_of[action], []).append(action)
    return [result for region, names in sorted(regions.items()) for result in simulate(region, names, arns)]


def _outcomes(results: Iterable[Mapping[str, Any]]) -> dict[str, Outcome]:
    """The results by action: allowed only if every result (and every resource's result within it) is."""
    decisions: dict[str, list[str]] = {}
    missing: dict[str, set[str]] = {}
    for result in results:
        action = result["EvalActionName"]
        decisions.setdefault(action, []).append(result["EvalDecision"])
        missing.setdefault(action, set()).update(result.get("MissingContextValues") or ())
        for per_resource in result.get("ResourceSpecificResults") or ():
            decisions[action].append(per_resource["EvalResourceDecision"])
            missing[action].update(per_resource.get("MissingContextValues") or ())
    return {action: Outcome(action, all(d == ALLOWED for d in found), EXPLICIT_DENY in found,
                            tuple(sorted(missing[action])))
            for action, found in decisions.items()}


@functools.cache
def _reference() -> dict[str, Mapping[str, Any]]:
    """The Service Authorization Reference by service prefix: parliament's iam_definition.json, read as data
    (importing parliament would load pkg_resources for nothing)."""
    spec = importlib.util.find_spec("parliament")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("parliament (the infra extra) is not installed", name="parliament")
    services = json.loads((Path(spec.origin).parent / "iam_definition.json").read_text())
    return {service["prefix"]: service for service in services}


def _privilege(action: str) -> tuple[Mapping[str, Any], Mapping[str, Any]] | None:
    prefix, _, name = action.partition(":")
    service = _reference().get(prefix.lower())
    if service is None:
        return None
    found = next((p for p in service["privileges"] if p["privilege"].lower() == name.lower()), None)
    return None if found is None else (service, found)


def takes_resource_arns(action: str) -> bool:
    """Whether AWS authorizes `action` on resource ARNs (any resource type listed for it); an action the reference
    does not list counts as one authorized on "*" alone."""
    found = _privilege(action)
    return found is not None and any(t["resource_type"] for t in found[1]["resource_types"])


def required_resource_types(action: str) -> tuple[str, ...]:
    """The resource types the reference marks required for `action` (`bucket*`): every call names one of each."""
    found = _privilege(action)
    if found is None:
        return ()
    return tuple(t["resource_type"].rstrip("*") for t in found[1]["resource_types"] if t["resource_type"].endswith("*"))


GENERATED_ID = re.compile(r"(Id|ID|UUID)$")
"""A variable of an ARN format that AWS fills with an identifier it generates (`${VpcId}`, `${KeyId}`,
`${ApplicationId}`, `${UUID}`), never with a name the stack chooses."""
PROBE_ID = "probe-id"
"""What such a variable holds in a probe: not the stack's name prefix, so a grant on the stack's names does not
match it (the real resource's ARN holds an identifier, which such a grant does not match either)."""


def probe_arns(action: str, probe: Probe) -> tuple[str, ...]:
    """An ARN of each resource type `action` requires: every name in it `probe.name`, every generated identifier
    PROBE_ID."""
    found = _privilege(action)
    if found is None:
        return ()
    formats = {r["resource"]: r["arn"] for r in found[0]["resources"]}
    fixed = {"Partition": probe.partition, "Account": probe.account, "Region": probe.region}

    def value(variable: str) -> str:
        if variable in fixed:
            return fixed[variable]
        return PROBE_ID if GENERATED_ID.search(variable) else probe.name

    return tuple(re.sub(r"\$\{(\w+)\}", lambda m: value(m.group(1)), formats[t])
                 for t in required_resource_types(action) if t in formats)


def described(outcomes: Sequence[Outcome]) -> str:
    """`action (on <probe ARNs>)` for each outcome decided by the second pass, the bare action otherwise."""
    return ", ".join(f"{o.action} (on {', '.join(o.probes)})" if o.probes else o.action for o in outcomes)
