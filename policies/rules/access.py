"""Network and identity: no world-open ingress (except a load balancer's 80/443), no admin-on-everything IAM."""

from __future__ import annotations

from policies.model import Resource, ResourceRule, as_json, as_list

SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SECURITY_GROUP_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
WORLD = {"0.0.0.0/0", "::/0"}
LOAD_BALANCER_TAG = "retail.io/load-balancer"
"""Tag a security group (or ingress rule) with `retail.io/load-balancer: "true"` to allow 80/443 from anywhere."""
LOAD_BALANCER_PORTS = {80, 443}
IAM_POLICY_TYPES = frozenset(
    {
        "aws:iam/policy:Policy",
        "aws:iam/rolePolicy:RolePolicy",
        "aws:iam/userPolicy:UserPolicy",
        "aws:iam/groupPolicy:GroupPolicy",
    }
)


def _ingress_entries(resource: Resource) -> list[dict]:
    """Each ingress entry as (fromPort, toPort, cidrs), whatever resource type states it."""
    if resource.type == SECURITY_GROUP:
        return [
            {**e, "cidrs": as_list(e.get("cidrBlocks")) + as_list(e.get("ipv6CidrBlocks"))}
            for e in as_list(resource.get("ingress"))
        ]
    if resource.type == SECURITY_GROUP_RULE:
        if resource.get("type") != "ingress":
            return []
        cidrs = as_list(resource.get("cidrBlocks")) + as_list(resource.get("ipv6CidrBlocks"))
        return [{**resource.props, "cidrs": cidrs}]
    cidrs = [c for c in (resource.get("cidrIpv4"), resource.get("cidrIpv6")) if c]
    return [{**resource.props, "cidrs": cidrs}]


def no_world_ingress(resource: Resource) -> list[str]:
    is_load_balancer = str((resource.get("tags") or {}).get(LOAD_BALANCER_TAG, "")).lower() == "true"
    problems = []
    for entry in _ingress_entries(resource):
        if not WORLD & set(entry["cidrs"]):
            continue
        low, high = entry.get("fromPort"), entry.get("toPort")
        ports = {int(low)} if low is not None and low == high else set()
        if is_load_balancer and ports and ports <= LOAD_BALANCER_PORTS:
            continue
        problems.append(f"allows ingress from anywhere on ports {low}-{high}")
    return problems


def no_admin_statement(resource: Resource) -> list[str]:
    document = as_json(resource.get("policy"))
    if not isinstance(document, dict):
        return []  # computed at deploy time: cannot be judged before
    problems = []
    for statement in as_list(document.get("Statement")):
        actions = set(as_list(statement.get("Action")))
        if statement.get("Effect") == "Allow" and actions & {"*", "*:*"} and "*" in as_list(statement.get("Resource")):
            problems.append(f"allows every action on every resource (statement {statement.get('Sid', '<no Sid>')!r})")
    return problems


RULES = [
    ResourceRule(
        "sg-no-world-ingress",
        f"Allow ingress only from known CIDRs or security groups; only a group tagged {LOAD_BALANCER_TAG}=true "
        "may take 80/443 from 0.0.0.0/0.",
        frozenset({SECURITY_GROUP, SECURITY_GROUP_RULE, INGRESS_RULE}),
        no_world_ingress,
    ),
    ResourceRule(
        "iam-no-wildcard-admin",
        "Replace Action '*' on Resource '*' with the actions and ARNs the role needs.",
        IAM_POLICY_TYPES,
        no_admin_statement,
    ),
]
