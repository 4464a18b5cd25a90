"""The lake job on EMR Serverless: its application stays in the VPC within a capacity ceiling, and the role its runs
assume writes only below prefixes of the lake.

An EMR Serverless application without a network configuration runs its workers outside the VPC, with whatever
outbound access EMR Serverless gives them; with one, they run in the stack's private subnets behind its security
group (https://docs.aws.amazon.com/emr/latest/EMR-Serverless-UserGuide/vpc-access.html). Its maximum capacity is
the only bound on what a runaway job may use, and auto-stop what keeps an idle application from billing.

The job role is recognised by its trust policy (`emr-serverless.amazonaws.com` may assume it). Every policy it gets
is judged: its own `inlinePolicies`, RolePolicy resources whose `role` input was computed from it, and customer
managed policies (aws.iam.Policy of the stack) attached through `managedPolicyArns` or a RolePolicyAttachment; a
policy attached by ARN that the stack does not declare (an AWS managed one) cannot be read here and is reported. A
write action (s3:Put*, s3:Delete*, s3:AbortMultipartUpload, a wildcard action, or any NotAction, which allows
everything it does not name) must name objects below one of the lake's write zones
(`arn:aws:s3:::<bucket>/<lake prefix>/{silver,gold,manifests}/...`, infra.lake_engine's WRITE_ZONES), not `*`, a
bucket, every object of a bucket, or the lake root (which holds raw/).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from policies.model import Resource, ResourceRule, StackRule, as_json, as_list

APPLICATION = "aws:emrserverless/application:Application"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
MANAGED_POLICY = "aws:iam/policy:Policy"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
AWS_MANAGED = re.compile(r"^arn:aws[a-z-]*:iam::aws:policy/")
SERVICE = "emr-serverless.amazonaws.com"
WRITE_PREFIXES = ("s3:put", "s3:delete", "s3:abortmultipartupload", "s3:replicate", "s3:restore")
WRITE_ZONES = ("silver", "gold", "manifests")
"""The lake zones the job writes (infra/lake_engine.py WRITE_ZONES; tests/policies keeps them equal)."""
LAKE_ZONES = ("raw", *WRITE_ZONES, "predictions", "reports")
ZONE_OBJECTS = re.compile(rf"^arn:aws[a-z-]*:s3:::[^/*?]+/(?P<root>(?:[^/*?]+/)*?)(?:{'|'.join(WRITE_ZONES)})/")
"""Objects below a write zone: the bucket, the lake root's whole segments (no wildcard), then the zone's segment."""


def in_the_vpc(resource: Resource) -> list[str]:
    network = resource.get("networkConfiguration", default={})
    missing = [name for key, name in (("subnetIds", "subnets"), ("securityGroupIds", "security group"))
               if not as_list(network.get(key))]
    return [f"runs its workers outside the VPC (no {' and no '.join(missing)})"] if missing else []


def capacity_bounded(resource: Resource) -> list[str]:
    problems = []
    ceiling = resource.get("maximumCapacity", default={})
    if not ceiling.get("cpu") or not ceiling.get("memory"):
        problems.append("has no maximum capacity (cpu and memory), so a job may grow without bound")
    if resource.get("autoStopConfiguration", "enabled", default=True) is not True:
        problems.append("does not stop when idle")
    return problems


def _trusts_emr_serverless(role: Resource) -> bool:
    document = as_json(role.get("assumeRolePolicy"))
    if not isinstance(document, dict):
        return False
    return any(SERVICE in as_list((statement.get("Principal") or {}).get("Service"))
               for statement in as_list(document.get("Statement")) if statement.get("Effect") == "Allow")


def _writes(statement: dict) -> list[str]:
    """The write actions a statement allows; a NotAction allows every action it does not name, so it counts whole."""
    if "NotAction" in statement:
        return [f"every action but {', '.join(map(str, as_list(statement['NotAction'])))}"]
    actions = [str(a) for a in as_list(statement.get("Action"))]
    return [a for a in actions if a in {"*", "*:*"} or (a.lower().startswith("s3:") and (
        "*" in a or a.lower().startswith(WRITE_PREFIXES)))]


def _in_a_write_zone(resource: str) -> bool:
    match = ZONE_OBJECTS.match(resource)
    return match is not None and not set(match["root"].split("/")) & set(LAKE_ZONES)


def _wide_writes(document: object, source: str) -> list[str]:
    if not isinstance(document, dict):
        return []  # computed at deploy time: cannot be judged before
    problems = []
    for statement in as_list(document.get("Statement")):
        writes = _writes(statement)
        if statement.get("Effect") != "Allow" or not writes:
            continue
        sid = statement.get("Sid", "<no Sid>")
        if "NotResource" in statement:
            problems.append(f"{source} allows {', '.join(writes)} on everything but {statement['NotResource']}")
        wide = [str(r) for r in as_list(statement.get("Resource")) if not _in_a_write_zone(str(r))]
        if wide:
            problems.append(f"{source} allows {', '.join(writes)} on {', '.join(wide)}, not below the lake's "
                            f"{'/, '.join(WRITE_ZONES)}/ (statement {sid!r})")
    return problems


def _attached(resources: Sequence[Resource], attaching: Resource, prop: str) -> list[tuple[str, object]]:
    """(what, document) of each policy `prop` of `attaching` names: a Policy of the stack (the input computed from it)
    by its document; an AWS managed policy, or any ARN when the input comes from no Policy of the stack, as None."""
    policies = [p for p in resources if p.type == MANAGED_POLICY and attaching.depends_on(prop, p)]
    found: list[tuple[str, object]] = [(f"policy {p.name}", as_json(p.get("policy"))) for p in policies]
    found += [(f"policy {arn}", None) for arn in as_list(attaching.get(prop))
              if isinstance(arn, str) and (AWS_MANAGED.match(arn) or not policies)]
    return found


def _role_documents(resources: Sequence[Resource], role: Resource) -> list[tuple[str, object]]:
    """(what, document) of every policy the role gets."""
    documents = [(f"inline policy {inline.get('name') or '<unnamed>'}", as_json(inline.get("policy")))
                 for inline in as_list(role.get("inlinePolicies"))]
    documents += _attached(resources, role, "managedPolicyArns")
    for other in resources:
        if other.type == ROLE_POLICY and other.depends_on("role", role):
            documents.append((f"role policy {other.name}", as_json(other.get("policy"))))
        elif other.type == ATTACHMENT and other.depends_on("role", role):
            documents += _attached(resources, other, "policyArn")
    return documents


def job_role_writes_prefixes(resources: Sequence[Resource]) -> list[tuple[str, str]]:
    problems = []
    for role in (r for r in resources if r.type == ROLE and _trusts_emr_serverless(r)):
        for source, document in _role_documents(resources, role):
            if document is None:
                problems.append((role.name, f"{source} is attached, which the stack does not declare and cannot be "
                                            "judged: give the job role its access as an inline policy"))
            else:
                problems += [(role.name, problem) for problem in _wide_writes(document, source)]
    return problems


RULES = [
    ResourceRule(
        "emr-serverless-in-vpc",
        "Run the EMR Serverless application in the platform's private subnets with its security group "
        "(network_configuration subnet_ids and security_group_ids, infra.lake_engine).",
        frozenset({APPLICATION}),
        in_the_vpc,
    ),
    ResourceRule(
        "emr-serverless-bounded",
        "Give the EMR Serverless application a maximum capacity (cpu, memory) and leave auto-stop on "
        "(retail:lakeEngine maxCpu, maxMemory, idleTimeoutMinutes).",
        frozenset({APPLICATION}),
        capacity_bounded,
    ),
    StackRule(
        "emr-serverless-role-writes-lake-prefixes",
        "Let the EMR Serverless job role write (s3:Put*, s3:Delete*, multipart, NotAction) only objects below the "
        "lake's silver/, gold/ and manifests/ zones (infra.lake_engine job_statements) in every policy it gets "
        "(inline, role policies, attached ones), never *, a bucket, the lake root or raw/.",
        job_role_writes_prefixes,
    ),
]
