"""The lake job on EMR Serverless: its application stays in the VPC within a capacity ceiling, and the role its runs
assume writes only below prefixes of the lake.

An EMR Serverless application without a network configuration runs its workers outside the VPC, with whatever
outbound access EMR Serverless gives them; with one, they run in the stack's private subnets behind its security
group (https://docs.aws.amazon.com/emr/latest/EMR-Serverless-UserGuide/vpc-access.html). Its maximum capacity is
the only bound on what a runaway job may use, and auto-stop what keeps an idle application from billing.

The job role is recognised by its trust policy (`emr-serverless.amazonaws.com` may assume it); its inline policies
are those whose `role` input was computed from it. A write action (s3:Put*, s3:Delete*, s3:AbortMultipartUpload, a
wildcard action) must name objects below a key prefix (`arn:aws:s3:::<bucket>/<prefix>/...`), not `*`, a bucket, or
every object of a bucket.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from policies.model import Resource, ResourceRule, StackRule, as_json, as_list

APPLICATION = "aws:emrserverless/application:Application"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
SERVICE = "emr-serverless.amazonaws.com"
WRITE_PREFIXES = ("s3:put", "s3:delete", "s3:abortmultipartupload", "s3:replicate", "s3:restore")
PREFIXED_OBJECTS = re.compile(r"^arn:aws[a-z-]*:s3:::[^/*?]+/[^*?]+/")
"""Objects below a key prefix: the bucket, then at least one whole path segment before any wildcard."""


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


def _writes(actions: Sequence[str]) -> list[str]:
    return [a for a in actions if a in {"*", "*:*"} or (a.lower().startswith("s3:") and (
        "*" in a or a.lower().startswith(WRITE_PREFIXES)))]


def _wide_writes(policy: Resource) -> list[str]:
    document = as_json(policy.get("policy"))
    if not isinstance(document, dict):
        return []  # computed at deploy time: cannot be judged before
    problems = []
    for statement in as_list(document.get("Statement")):
        writes = _writes([str(a) for a in as_list(statement.get("Action"))])
        if statement.get("Effect") != "Allow" or not writes:
            continue
        if "NotResource" in statement:
            problems.append(f"allows {', '.join(writes)} on everything but {statement['NotResource']}")
        wide = [str(r) for r in as_list(statement.get("Resource")) if not PREFIXED_OBJECTS.match(str(r))]
        if wide:
            problems.append(f"allows {', '.join(writes)} on {', '.join(wide)}, not below a prefix of the lake "
                            f"(statement {statement.get('Sid', '<no Sid>')!r})")
    return problems


def job_role_writes_prefixes(resources: Sequence[Resource]) -> list[tuple[str, str]]:
    roles = [r for r in resources if r.type == ROLE and _trusts_emr_serverless(r)]
    return [
        (policy.name, problem)
        for policy in resources
        if policy.type == ROLE_POLICY and any(policy.depends_on("role", role) for role in roles)
        for problem in _wide_writes(policy)
    ]


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
        "Let the EMR Serverless job role write (s3:Put*, s3:Delete*, multipart) only objects below a key prefix of "
        "the lake, naming each prefix (infra.lake_engine job_statements), never *, a bucket or a whole bucket's "
        "objects.",
        job_role_writes_prefixes,
    ),
]
