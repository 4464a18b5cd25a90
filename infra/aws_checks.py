"""The AWS account checks of `retail infra doctor`: credentials, region, zones, services, quotas, permissions.

Each check takes the `Context` (boto3 clients from its factory, the deployment plan) and
returns a `Verdict`; a failure names its fix. What an endpoint cannot answer is unknown,
never a pass.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import partial
from typing import Any

from botocore.exceptions import ClientError, EndpointConnectionError

from infra import quotas, stack_credentials
from infra.config import name_prefix
from infra.deploy_actions import required_actions
from infra.iam_simulation import Probe, described, simulate_deploy_actions
from infra.network import REGULAR_ZONES
from infra.preflight import (
    AWS_ERRORS,
    Context,
    NodeGroup,
    Status,
    Verdict,
    error_code,
    error_text,
    fail,
    ok,
    unknown,
    warn,
)

CREDENTIALS_FIX = (
    "give this shell credentials for the target account: `aws sso login --profile <p>` then "
    "`export AWS_PROFILE=<p>`, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (CI: the deploy role, docs/cicd.md)"
)
NOT_IMPLEMENTED = {"404", "500", "501", "NotImplemented", "InvalidAction", "UnknownOperationException"}
"""What an endpoint answers for an operation it does not have (moto: 404 or 500)."""


def credentials(ctx: Context) -> Verdict:
    """Who the deploy would run as, in which account; the stack's allowed/forbidden accounts if it names any."""
    chosen = stack_credentials.describe(ctx.config)
    via = f" (the stack's {chosen})" if chosen else ""
    try:
        identity = ctx.client("sts").get_caller_identity()
    except AWS_ERRORS as error:
        fix = (f"make the stack's {chosen} usable from this shell (the profile configured, the roles assumable), "
               f"or {CREDENTIALS_FIX}") if chosen else CREDENTIALS_FIX
        return fail(f"no working AWS credentials{via}: {error_text(error)}", fix)
    ctx.caller_arn, account = identity["Arn"], identity["Account"]
    allowed = _account_list(ctx.config.get("aws:allowedAccountIds"))
    forbidden = _account_list(ctx.config.get("aws:forbiddenAccountIds"))
    if (allowed and account not in allowed) or account in forbidden:
        return fail(
            f"account {account} ({ctx.caller_arn}) is not one this stack may deploy to "
            f"(aws:allowedAccountIds {sorted(allowed)}, aws:forbiddenAccountIds {sorted(forbidden)})",
            CREDENTIALS_FIX,
        )
    if ctx.caller_arn.endswith(":root"):
        return warn(f"account {account} as its root user", "deploy with an IAM role or user, not the root user")
    return ok(f"account {account} as {ctx.caller_arn}{via}")


def _account_list(value: str | None) -> set[str]:
    return {str(account) for account in json.loads(value)} if value else set()


def region(ctx: Context) -> Verdict:
    try:
        found = ctx.client("ec2").describe_regions(RegionNames=[ctx.region], AllRegions=True)["Regions"]
    except ClientError as error:
        if error_code(error) != "InvalidParameterValue":
            raise
        return fail(f"{ctx.region} is not an EC2 region: {error_text(error)}", "correct aws:region in the stack file")
    if not found:
        return unknown(f"DescribeRegions does not list {ctx.region}: whether it is enabled is not known")
    status = found[0].get("OptInStatus", "opt-in-not-required")
    if status == "not-opted-in":
        return fail(
            f"{ctx.region} is not enabled for this account",
            f"enable it (Account settings, AWS Regions, or `aws account enable-region --region-name {ctx.region}`)",
        )
    return ok(f"{ctx.region} ({status})")


def chosen_zones(ctx: Context) -> tuple[list[str], list[str]]:
    """(available zones, the ones the network takes): the first `az_count` names, sorted, state available, as
    infra/network.py picks them (Availability Zones only: not Local or Wavelength Zones)."""
    filters = [{"Name": "state", "Values": ["available"]},
               {"Name": REGULAR_ZONES["name"], "Values": list(REGULAR_ZONES["values"])}]
    zones = ctx.client("ec2").describe_availability_zones(Filters=filters)
    names = sorted(zone["ZoneName"] for zone in zones["AvailabilityZones"])
    return names, names[: ctx.require_plan().az_count]


def availability_zones(ctx: Context) -> Verdict:
    names, chosen = chosen_zones(ctx)
    wanted = ctx.require_plan().az_count
    if len(chosen) < wanted:
        return fail(
            f"the network spans {wanted} AZs; {ctx.region} has {len(names)} available ({', '.join(names) or 'none'})",
            f"set retail:network.azCount to at most {len(names)}, or choose another region",
        )
    return ok(f"{', '.join(chosen)} of {len(names)} available")


def instance_offerings(ctx: Context) -> Verdict:
    """Every node group instance type is offered in every AZ the network takes."""
    _, zones = chosen_zones(ctx)
    types = sorted({type_ for group in ctx.require_plan().node_groups for type_ in group.instance_types})
    if not types:
        return ok("the stacks have no node groups")
    pages = ctx.client("ec2").get_paginator("describe_instance_type_offerings").paginate(
        LocationType="availability-zone",
        Filters=[{"Name": "location", "Values": zones}, {"Name": "instance-type", "Values": types}],
    )
    offered = {(o["InstanceType"], o["Location"]) for page in pages for o in page["InstanceTypeOfferings"]}
    missing = [f"{type_} in {zone}" for type_ in types for zone in zones if (type_, zone) not in offered]
    if missing:
        return fail(
            f"not offered: {', '.join(missing)}",
            "choose instance types offered in every one of "
            f"{', '.join(zones)} for retail:cluster.serviceNodes/batchNodes.instanceTypes (`aws ec2 "
            "describe-instance-type-offerings --location-type availability-zone` lists them), or another region",
        )
    return ok(f"{', '.join(types)} offered in {', '.join(zones)}")


def eks(ctx: Context) -> Verdict:
    return _service_answers(ctx, "eks", lambda client: client.list_clusters(maxResults=1))


def sagemaker(ctx: Context) -> Verdict:
    return _service_answers(ctx, "sagemaker", lambda client: client.list_training_jobs(MaxResults=1))


def _service_answers(ctx: Context, service: str, call: Any) -> Verdict:
    client = ctx.client(service)
    try:
        call(client)
    except EndpointConnectionError as error:
        return fail(
            f"{service} did not answer at {client.meta.endpoint_url} ({error_text(error)}): "
            f"it is not offered in {ctx.region}, or the network is down",
            f"deploy to a region that offers {service} (aws:region in the stack file)",
        )
    except ClientError as error:
        if error_code(error) in {"AccessDeniedException", "AccessDenied", "UnauthorizedOperation"}:
            return ok(f"{service} answers in {ctx.region} (the call was refused: see permissions)")
        raise
    return ok(f"{service} answers in {ctx.region}")


def eks_version(ctx: Context) -> Verdict:
    """The cluster's Kubernetes version is offered by EKS here, and in standard support."""
    version = ctx.require_plan().cluster_version
    if version is None:
        return ok("the stacks have no EKS cluster")
    client = ctx.client("eks")
    try:
        found = _cluster_versions(client, clusterVersions=[version])
    except ClientError as error:
        if error_code(error) in NOT_IMPLEMENTED:
            return unknown(f"this EKS endpoint does not answer DescribeClusterVersions ({error_text(error)})")
        raise
    if not found:
        offered = sorted(v["clusterVersion"] for v in _cluster_versions(client))
        return fail(
            f"EKS in {ctx.region} does not offer Kubernetes {version}",
            f"set retail:cluster.version to one it offers: {', '.join(offered)}",
        )
    status = found[0].get("versionStatus") or found[0].get("status") or ""
    if status.upper().replace("-", "_") == "EXTENDED_SUPPORT":
        return warn(
            f"Kubernetes {version} is in extended support: the cluster's upgrade policy (STANDARD) lets EKS "
            "upgrade it soon after creation",
            "set retail:cluster.version to a version in standard support",
        )
    if status.upper() == "UNSUPPORTED":
        return fail(f"Kubernetes {version} is no longer supported by EKS", "set retail:cluster.version to a newer one")
    return ok(f"Kubernetes {version} ({status or 'offered'})")


def _cluster_versions(client: Any, **filters: Any) -> list[dict[str, Any]]:
    """Every EKS (not EKS Anywhere) version DescribeClusterVersions knows, extended support included, all pages."""
    pages = client.get_paginator("describe_cluster_versions").paginate(includeAll=True, clusterType="eks", **filters)
    return [version for page in pages for version in page["clusterVersions"]]


# ----------------------------------------------------------------------------- quotas


def _capacity(ctx: Context, quota: quotas.Quota, in_use: float, needed: float, unit: str) -> Verdict:
    total = in_use + needed
    counted = f"{in_use:g} {unit} in use + {needed:g} for the stack = {total:g}"
    if total > quota.value:
        return fail(
            f"{counted} > {quota.describe()}",
            f"request an increase to at least {total:g}: `aws service-quotas request-service-quota-increase "
            f"--service-code {quota.service} --quota-code {quota.code} --desired-value {total:g} "
            f"--region {ctx.region}`, or free some of the {unit} in use",
        )
    return ok(f"{counted} of {quota.describe()}")


def _counted(ctx: Context, code: tuple[str, str], in_use: int, type_: str, unit: str) -> Verdict:
    needed = ctx.require_plan().count(type_)
    if not needed:
        return ok(f"the stacks create no {unit}")
    try:
        quota = quotas.quota_by_code(ctx.client("service-quotas"), *code)
    except quotas.QuotaUnavailable as why:
        return unknown(f"{needed} {unit} needed, {in_use} in use; the quota is not known: {why}")
    return _capacity(ctx, quota, in_use, needed, unit)


def vpc_quota(ctx: Context) -> Verdict:
    vpcs = [v for page in ctx.client("ec2").get_paginator("describe_vpcs").paginate() for v in page["Vpcs"]]
    return _counted(ctx, quotas.VPCS_PER_REGION, len(vpcs), "aws:ec2/vpc:Vpc", "VPCs")


def elastic_ip_quota(ctx: Context) -> Verdict:
    addresses = ctx.client("ec2").describe_addresses(Filters=[{"Name": "domain", "Values": ["vpc"]}])["Addresses"]
    return _counted(ctx, quotas.ELASTIC_IPS, len(addresses), "aws:ec2/eip:Eip", "Elastic IPs")


def trail_quota(ctx: Context) -> Verdict:
    """Trails that log in this region against CloudTrail's quota of trails per region (it cannot be raised).

    A multi-region trail counts once in every region ("A multi-Region trail counts as one trail per Region"),
    so the region's count is its own trails and the other regions' multi-region ones (shadow trails).
    """
    needed = ctx.require_plan().count("aws:cloudtrail/trail:Trail")
    if not needed:
        return _account_trail(ctx)
    trails = _trails_in_region(ctx)
    quota = _trail_quota(ctx)
    verdict = _capacity(ctx, quota, len(trails), needed, "trails")
    if verdict.status != Status.FAIL:
        return verdict
    own = [t["Name"] for t in trails if t.get("HomeRegion", ctx.region) == ctx.region]
    others = [f"{t['Name']} (multi-region, home {t['HomeRegion']})" for t in trails
              if t.get("HomeRegion", ctx.region) != ctx.region]
    return fail(
        verdict.detail,
        f"the quota cannot be raised: delete an unused trail that logs in {ctx.region} "
        f"({', '.join(own + others)}), or set retail:audit.trail to false and rely on the account's multi-region trail",
    )


def _trails_in_region(ctx: Context) -> list[dict[str, Any]]:
    """The region's own trails and every multi-region trail of the account (DescribeTrails with shadow trails)."""
    return list(ctx.client("cloudtrail").describe_trails(includeShadowTrails=True)["trailList"])


def _trail_quota(ctx: Context) -> quotas.Quota:
    """CloudTrail's quota as Service Quotas has it, else the documented fixed value (5 trails per region)."""
    service, name = quotas.TRAILS_PER_REGION
    try:
        found = quotas.quota_by_name(ctx.client("service-quotas"), service, name)
    except quotas.QuotaUnavailable:
        found = None
    return found or quotas.DOCUMENTED_TRAILS_PER_REGION


def _account_trail(ctx: Context) -> Verdict:
    """A stack without a trail of its own (retail:audit.trail false) relies on a multi-region trail of the account
    that is logging (GetTrailStatus IsLogging: a stopped trail records nothing)."""
    trails = _trails_in_region(ctx)
    multi_region = [t for t in trails if t.get("IsMultiRegionTrail")]
    cloudtrail = ctx.client("cloudtrail")
    logging = [t["Name"] for t in multi_region
               if cloudtrail.get_trail_status(Name=t.get("TrailARN") or t["Name"]).get("IsLogging")]
    if logging:
        return ok(f"no trail of its own; the account's multi-region trail {logging[0]} records it")
    stopped = f" ({', '.join(t['Name'] for t in multi_region)} exist but are not logging)" if multi_region else ""
    return warn(
        "no trail of its own (retail:audit.trail is false) and the account has no logging multi-region trail"
        f"{stopped}: nothing records this stack's API calls in {ctx.region}",
        "start logging the account's multi-region trail (`aws cloudtrail start-logging --name <trail>`), deploy a "
        "stack with a trail first (dev's is multi-region), or set retail:audit.trail to true",
    )


STANDARD_FAMILY_LETTERS = frozenset("acdhimrtz")
"""The families the standard vCPU quotas count: 'Standard (A, C, D, H, I, M, R, T, Z)'."""
OWN_QUOTA_FAMILIES = frozenset({"inf", "dl", "trn", "hpc", "mac"})
"""Families starting with one of those letters that have quotas of their own."""


def standard_family(instance_type: str) -> bool:
    """Counted by the standard vCPU quotas (m6i.large, t3.large: yes; g5.xlarge, inf2.xlarge: no)."""
    family = re.match(r"[a-z]+", instance_type)
    letters = family.group() if family else ""
    return bool(letters) and letters[0] in STANDARD_FAMILY_LETTERS and letters not in OWN_QUOTA_FAMILIES


def spot_vcpu_quota(ctx: Context) -> Verdict:
    return _vcpu_quota(ctx, spot=True)


def on_demand_vcpu_quota(ctx: Context) -> Verdict:
    return _vcpu_quota(ctx, spot=False)


def _vcpu_quota(ctx: Context, spot: bool) -> Verdict:
    """The node groups at their maximum size, in vCPUs, with what runs now, against the standard vCPU quota."""
    capacity = "spot" if spot else "on-demand"
    groups = [group for group in ctx.require_plan().node_groups if group.spot == spot]
    if not groups:
        return ok(f"the stacks have no {capacity} node groups")
    other = sorted({t for group in groups for t in group.instance_types if not standard_family(t)})
    if other:
        return unknown(f"{', '.join(other)} are not counted by the standard {capacity} vCPU quota: check their own")
    ec2 = ctx.client("ec2")
    needed = sum(_group_vcpus(ec2, group) for group in groups)
    in_use = _running_vcpus(ec2, spot)
    try:
        quota = quotas.quota_by_code(
            ctx.client("service-quotas"), *(quotas.STANDARD_SPOT_VCPUS if spot else quotas.STANDARD_ON_DEMAND_VCPUS)
        )
    except quotas.QuotaUnavailable as why:
        return unknown(f"{needed} {capacity} vCPUs needed at maximum size, {in_use} in use; quota not known: {why}")
    return _capacity(ctx, quota, in_use, needed, f"{capacity} vCPUs")


def _vcpus(ec2: Any, types: Iterable[str]) -> dict[str, int]:
    wanted = sorted(set(types))
    if not wanted:
        return {}
    found = ec2.describe_instance_types(InstanceTypes=wanted)["InstanceTypes"]
    return {t["InstanceType"]: int(t["VCpuInfo"]["DefaultVCpus"]) for t in found}


def _group_vcpus(ec2: Any, group: NodeGroup) -> int:
    """A group at its maximum size, each node of its largest instance type."""
    return group.max_size * max(_vcpus(ec2, group.instance_types).values())


def _running_vcpus(ec2: Any, spot: bool) -> int:
    """vCPUs of the pending and running standard-family instances of that capacity type (open spot requests
    that are not yet instances are not counted)."""
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    )
    types = [
        instance["InstanceType"]
        for page in pages
        for reservation in page["Reservations"]
        for instance in reservation["Instances"]
        if (instance.get("InstanceLifecycle") == "spot") == spot and standard_family(instance["InstanceType"])
    ]
    sizes = _vcpus(ec2, types)
    return sum(sizes[t] for t in types)


def sagemaker_training_quota(ctx: Context) -> Verdict:
    """The training job's instances against SageMaker's quota for its type (spot or on-demand training)."""
    training = ctx.require_plan().training
    if training is None:
        return unknown("the deployment plan has no training job to check")
    usage = "spot training job usage" if training.spot else "training job usage"
    name = f"{training.instance_type} for {usage}"
    try:
        quota = quotas.quota_by_name(ctx.client("service-quotas"), "sagemaker", name)
    except quotas.QuotaUnavailable as why:
        return unknown(f"{training.instance_count} x {training.instance_type} needed; the quota is not known: {why}")
    if quota is None:
        return fail(
            f"SageMaker lists no quota {name!r} in {ctx.region}: {training.instance_type} is not offered for "
            "training there",
            "train on an instance type SageMaker offers in this region (TrainingInputs.instance_type, "
            "infra/providers/program.py), or deploy to another region",
        )
    in_use = _training_instances(ctx.client("sagemaker"), training.instance_type, training.spot)
    return _capacity(ctx, quota, in_use, training.instance_count, f"{training.instance_type} instances")


def _training_instances(client: Any, instance_type: str, spot: bool) -> int:
    pages = client.get_paginator("list_training_jobs").paginate(StatusEquals="InProgress")
    count = 0
    for summary in (job for page in pages for job in page["TrainingJobSummaries"]):
        job = client.describe_training_job(TrainingJobName=summary["TrainingJobName"])
        config = job.get("ResourceConfig") or {}
        if config.get("InstanceType") == instance_type and bool(job.get("EnableManagedSpotTraining")) == spot:
            count += int(config.get("InstanceCount", 1))
    return count


# ----------------------------------------------------------------------------- permissions


GLOBAL_SERVICE_REGION = "us-east-1"
GLOBAL_SERVICES = frozenset({"iam", "route53", "budgets"})
"""Services with one global endpoint: their calls carry aws:RequestedRegion us-east-1, whatever the stack's region."""


def permissions(ctx: Context) -> Verdict:
    """iam:SimulatePrincipalPolicy of every action the stacks' resource types need, for the deploying principal.

    The simulation is given aws:RequestedRegion (the stack's region; us-east-1 for global services) and
    aws:PrincipalArn, so policies and SCPs that restrict regions or principals are evaluated. It runs on every
    resource ("*"), then once more, on probe ARNs named as the stack names its resources, for the actions that
    require resource ARNs and were not allowed on "*" (`infra.iam_simulation`): a role scoped to the stack's names
    is confirmed where the probes can tell, and warned of where they cannot. A result that still names missing
    context values is undecided, whatever its decision. Not simulated: session policies, resource control policies
    and resource policies (key policies, bucket policies).
    """
    plan = ctx.require_plan()
    required = required_actions(plan.kinds)
    unmapped = (
        f"; the actions of {', '.join(required.unmapped)} are not listed in infra/data/deploy-actions.json"
        if required.unmapped
        else ""
    )
    if ctx.caller_arn.endswith(":root"):
        return warn("the root user may do everything", "deploy with an IAM role or user, not the root user")
    principal = _principal(ctx)
    if principal is None:
        return unknown(f"policies cannot be simulated for {ctx.caller_arn} (not an IAM user or role){unmapped}")
    prefix = name_prefix(plan.stack)
    arn = principal.split(":")
    probe = Probe(partition=arn[1], account=arn[4], region=ctx.region, name=f"{prefix}-probe")
    region_of = {a: GLOBAL_SERVICE_REGION if a.split(":")[0] in GLOBAL_SERVICES else ctx.region
                 for a in required.actions}
    try:
        outcomes = simulate_deploy_actions(partial(_simulate, ctx, principal), required.actions, region_of, probe)
    except AWS_ERRORS as error:
        return unknown(
            f"iam:SimulatePrincipalPolicy for {principal} did not answer: {error_text(error)}{unmapped}",
            "let the principal call iam:SimulatePrincipalPolicy on itself, or run the doctor as an administrator",
        )
    denied = [o for o in outcomes if o.denied]
    unconfirmed = [o for o in outcomes if o.unconfirmed]
    undecided = [o.action for o in outcomes if o.missing_context]
    on_names = sum(1 for o in outcomes if o.allowed and o.probes)
    checked = f"{len(required.actions)} actions simulated for {principal} in {ctx.region}"
    if on_names:
        checked += f" ({on_names} allowed only on the probes named as the stack names its resources, {prefix}-...)"
    doubts = []
    if unconfirmed:
        doubts.append(f"{len(unconfirmed)} are not allowed on every resource, nor where tried on the probes: "
                      f"{described(unconfirmed)}")
    if undecided:
        missing = sorted({key for o in outcomes for key in o.missing_context})
        doubts.append(f"{', '.join(undecided)} depend on condition keys the simulation has no values for "
                      f"({', '.join(missing)})")
    if denied:
        return fail(
            f"{len(denied)} of {checked} are denied: {described(denied)}{unmapped}"
            + "".join(f"; {doubt}" for doubt in doubts),
            f"grant {principal} these actions (the full list per resource type: infra/data/deploy-actions.json)",
        )
    if required.unmapped:
        return unknown(f"all {checked} are allowed{unmapped}", "list their actions in infra/data/deploy-actions.json")
    if doubts:
        return warn(
            f"{checked}: " + "; ".join(doubts),
            "check that the policies deciding them allow these actions on the stack's resources (a grant on resources "
            "named otherwise than the probes, or under conditions, is not seen by the simulation)",
        )
    return ok(f"all {checked} are allowed")


def _simulate(ctx: Context, principal: str, region_: str, actions: list[str],
              resource_arns: list[str] | None) -> list[dict[str, Any]]:
    """The simulation's results for `actions` requested in `region_`, on those resources (None: on "*")."""
    context = [
        {"ContextKeyName": "aws:RequestedRegion", "ContextKeyValues": [region_], "ContextKeyType": "string"},
        {"ContextKeyName": "aws:PrincipalArn", "ContextKeyValues": [principal], "ContextKeyType": "string"},
    ]
    request: dict[str, Any] = {"PolicySourceArn": principal, "ActionNames": actions, "ContextEntries": context}
    if resource_arns is not None:
        request["ResourceArns"] = resource_arns
    pages = ctx.client("iam").get_paginator("simulate_principal_policy").paginate(**request)
    return [result for page in pages for result in page["EvaluationResults"]]


def _principal(ctx: Context) -> str | None:
    """The IAM user or role behind the caller: an assumed role's session becomes its role (path included)."""
    parts = ctx.caller_arn.split(":", 5)
    if len(parts) != 6:
        return None
    partition, service, account, resource = parts[1], parts[2], parts[4], parts[5]
    if service == "iam" and resource.startswith(("user/", "role/")):
        return ctx.caller_arn
    if service == "sts" and resource.startswith("assumed-role/"):
        role = resource.split("/")[1]
        try:
            return str(ctx.client("iam").get_role(RoleName=role)["Role"]["Arn"])
        except ClientError:
            return f"arn:{partition}:iam::{account}:role/{role}"
    return None
