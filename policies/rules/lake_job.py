"""The lake job on EMR Serverless: its application stays in the VPC within a capacity ceiling, and the role its runs
assume writes only below prefixes of the lake.

An EMR Serverless application without a network configuration runs its workers outside the VPC, with whatever
outbound access EMR Serverless gives them; with one, they run in the stack's private subnets behind its security
group (https://docs.aws.amazon.com/emr/latest/EMR-Serverless-UserGuide/vpc-access.html). Its maximum capacity is
the only bound on what a runaway job may use, and auto-stop what keeps an idle application from billing.

The job role is recognised by its trust policy (`emr-serverless.amazonaws.com` may assume it). Every policy it gets
is judged: its own `inlinePolicies`, RolePolicy resources whose `role` input was computed from it or names it (by its
`name` input or logical name), and customer managed policies (aws.iam.Policy of the stack) attached through
`managedPolicyArns`, a RolePolicyAttachment, a PolicyAttachment (`roles`) or RolePolicyAttachmentsExclusive
(`roleName`, `policyArns`). Each attached ARN must be a Policy of the stack (its `arn`, or its name); any other (an AWS
managed policy, another account's or one made outside the stack) cannot be read here and is reported, even next to
stack policies. A write action (s3:Put*, s3:Delete*, s3:AbortMultipartUpload, s3:Replicate*, s3:Restore*, the same
through s3-object-lambda, any action with a `*` or `?` wildcard, or any NotAction, which allows everything it does not
name) must name objects below one of the lake's write zones in a bucket of this stack
(`arn:aws:s3:::<bucket>/<lake prefix>/{silver,gold,manifests}/...`, infra.lake_engine's WRITE_ZONES), not `*`, a
bucket, every object of a bucket, the lake root (which holds raw/), or another bucket. A bucket of the stack is named
by its `bucket` input or, auto-named, its logical name and Pulumi's 7-hex suffix; which of the stack's buckets holds
the lake root is stack config (retail:lakeCatalog.lakeZone), so any of them is taken.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fnmatch import fnmatchcase

from policies.model import Resource, ResourceRule, StackRule, as_json, as_list

APPLICATION = "aws:emrserverless/application:Application"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
MANAGED_POLICY = "aws:iam/policy:Policy"
BUCKET = "aws:s3/bucket:Bucket"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
POLICY_ATTACHMENT = "aws:iam/policyAttachment:PolicyAttachment"
EXCLUSIVE_ATTACHMENTS = "aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive"
SERVICE = "emr-serverless.amazonaws.com"
WRITE_SERVICES = ("s3", "s3-object-lambda")
WRITE_PREFIXES = ("put", "delete", "abortmultipartupload", "replicate", "restore")
WRITE_ZONES = ("silver", "gold", "manifests")
"""The lake zones the job writes (infra/lake_engine.py WRITE_ZONES; tests/policies keeps them equal)."""
LAKE_ZONES = ("raw", *WRITE_ZONES, "predictions", "reports")
ZONE_OBJECTS = re.compile(
    rf"^arn:aws[a-z-]*:s3:::(?P<bucket>[^/*?]+)/(?P<root>(?:[^/*?]+/)*?)(?:{'|'.join(WRITE_ZONES)})/")
"""Objects below a write zone: the bucket, the lake root's whole segments (no wildcard), then the zone's segment."""
AUTONAME_SUFFIX = r"-[0-9a-f]{7}"
"""What Pulumi appends to a logical name to name an auto-named resource."""


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


def _is_write(action: str) -> bool:
    """An S3 (or S3 Object Lambda) write action, or any action with a wildcard (`*` or `?`) its service matches."""
    service, _, name = action.lower().partition(":")
    return any(fnmatchcase(known, service) for known in WRITE_SERVICES) and (
        "*" in action or "?" in action or name.startswith(WRITE_PREFIXES))


def _writes(statement: dict) -> list[str]:
    """The write actions a statement allows; a NotAction allows every action it does not name, so it counts whole."""
    if "NotAction" in statement:
        return [f"every action but {', '.join(map(str, as_list(statement['NotAction'])))}"]
    return [a for a in map(str, as_list(statement.get("Action"))) if _is_write(a)]


def _is_named(name: str, resource: Resource, physical: str) -> bool:
    """Whether `name` is `resource`'s physical name: its `physical` input, else its logical name, auto-named or not."""
    given = resource.get(physical)
    if isinstance(given, str):
        return name == given
    return re.fullmatch(f"{re.escape(resource.name)}(?:{AUTONAME_SUFFIX})?", name) is not None


def _in_a_write_zone(resource: str, buckets: Sequence[Resource]) -> bool:
    match = ZONE_OBJECTS.match(resource)
    return (match is not None and not set(match["root"].split("/")) & set(LAKE_ZONES)
            and any(_is_named(match["bucket"], bucket, "bucket") for bucket in buckets))


def _wide_writes(document: object, source: str, buckets: Sequence[Resource]) -> list[str]:
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
        wide = [str(r) for r in as_list(statement.get("Resource")) if not _in_a_write_zone(str(r), buckets)]
        if wide:
            problems.append(f"{source} allows {', '.join(writes)} on {', '.join(wide)}, not below the lake's "
                            f"{'/, '.join(WRITE_ZONES)}/ in a bucket of this stack (statement {sid!r})")
    return problems


def _is_policy_arn(arn: str, policy: Resource) -> bool:
    """Whether `arn` is the stack Policy `policy`'s: its `arn` output when known, else its name (after any path)."""
    known = policy.get("arn")
    if isinstance(known, str):
        return arn == known
    return re.match(r"^arn:aws[a-z-]*:iam::\d{12}:policy/", arn) is not None and _is_named(
        arn.rsplit("/", 1)[-1], policy, "name")


def _attached(resources: Sequence[Resource], attaching: Resource, prop: str) -> list[tuple[str, object]]:
    """(what, document) of each policy `prop` of `attaching` names: a Policy of the stack (the input computed from it,
    or an ARN that is its) by its document; every other ARN (AWS managed, another account's, made outside the stack)
    as None."""
    stack_policies = [p for p in resources if p.type == MANAGED_POLICY]
    arns = [arn for arn in as_list(attaching.get(prop)) if isinstance(arn, str)]
    policies = [p for p in stack_policies
                if attaching.depends_on(prop, p) or any(_is_policy_arn(arn, p) for arn in arns)]
    found: list[tuple[str, object]] = [(f"policy {p.name}", as_json(p.get("policy"))) for p in policies]
    found += [(f"policy {arn}", None) for arn in arns if not any(_is_policy_arn(arn, p) for p in stack_policies)]
    return found


def _names_role(other: Resource, prop: str, role: Resource) -> bool:
    """Whether `prop` of `other` (one role or a list of them) was computed from `role` or names it."""
    return other.depends_on(prop, role) or any(
        isinstance(name, str) and _is_named(name, role, "name") for name in as_list(other.get(prop)))


ATTACHING = {ROLE_POLICY: ("role", None), ATTACHMENT: ("role", "policyArn"), POLICY_ATTACHMENT: ("roles", "policyArn"),
             EXCLUSIVE_ATTACHMENTS: ("roleName", "policyArns")}
"""Resources that give a role a policy: (the input naming the role, the input naming attached policies; None for the
RolePolicy, whose own `policy` is the document)."""


def _role_documents(resources: Sequence[Resource], role: Resource) -> list[tuple[str, object]]:
    """(what, document) of every policy the role gets."""
    documents = [(f"inline policy {inline.get('name') or '<unnamed>'}", as_json(inline.get("policy")))
                 for inline in as_list(role.get("inlinePolicies"))]
    documents += _attached(resources, role, "managedPolicyArns")
    for other in resources:
        if other.type not in ATTACHING or not _names_role(other, ATTACHING[other.type][0], role):
            continue
        if (policies := ATTACHING[other.type][1]) is None:
            documents.append((f"role policy {other.name}", as_json(other.get("policy"))))
        else:
            documents += _attached(resources, other, policies)
    return documents


def job_role_writes_prefixes(resources: Sequence[Resource]) -> list[tuple[str, str]]:
    problems = []
    buckets = [r for r in resources if r.type == BUCKET]
    for role in (r for r in resources if r.type == ROLE and _trusts_emr_serverless(r)):
        for source, document in _role_documents(resources, role):
            if document is None:
                problems.append((role.name, f"{source} is attached, which the stack does not declare and cannot be "
                                            "judged: give the job role its access as an inline policy"))
            else:
                problems += [(role.name, problem) for problem in _wide_writes(document, source, buckets)]
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
        "Let the EMR Serverless job role write (s3:Put*, s3:Delete*, multipart, wildcards, NotAction) only objects "
        "below the lake's silver/, gold/ and manifests/ zones in a bucket of the stack (infra.lake_engine "
        "job_statements) in every policy it gets (inline, role policies, attached ones, each a Policy of the stack), "
        "never *, a bucket, the lake root, raw/ or another bucket.",
        job_role_writes_prefixes,
    ),
]
