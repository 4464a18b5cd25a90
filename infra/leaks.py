"""The leak scan: what of a stack still exists in its AWS account after a destroy, and how to remove each.

Where leftovers are looked for:

- the Resource Groups Tagging API, by the stack's tags: every AWS resource the platform
  and service programs create carries the provider's default tags
  (`infra.config.StackIdentity.default_tags`), `environment=<stack>` and `project` one of
  the two projects;
- what runs in the cluster made on its own, tagged for the cluster instead of the stack:
  the AWS Load Balancer Controller's load balancers, target groups and security groups
  (`elbv2.k8s.aws/cluster: <cluster>`), the in-tree cloud provider's
  (`kubernetes.io/cluster/<cluster>`), the VPC CNI's network interfaces tagged
  `cluster.k8s.amazonaws.com/name: <cluster>`, and any network interface or security
  group left in a VPC of the stack (the CNI's among them, told by its node tag or its
  `aws-K8S-` description: the cluster tag needs the CNI's CLUSTER_NAME, which pulumi-eks
  does not set); each interface with the command its kind needs
  (`interface_remove_command`);
- SageMaker models, endpoints and endpoint configs named and tagged for the stack
  (`retail-<stack>-…`, `environment=<stack>`), IAM roles and customer-managed policies so
  named and tagged and the OIDC provider tagged for it (IAM is global: a regional tagging
  scan misses them), and the AWS Budgets so named;
- the cluster's control plane log group `/aws/eks/<cluster>/cluster`, which EKS recreates
  (untagged) when the cluster logs after a destroy deleted it.

The tagging API lists "tagged or previously tagged" resources, and may list one deleted
minutes ago, so each hit of a kind known to linger is checked against its service: a
bucket or key that is gone is dropped; a KMS key pending deletion, a finished training
job (SageMaker keeps its history) and what the program keeps on purpose
(`retain_on_delete`: the audit bucket and its key, see docs/deploy.md) are listed as
expected, not counted. Everything else found is a leftover; the scan is clean only when
there is none and every source could be asked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from infra.config import PLATFORM_PROJECT, SERVICE_PROJECT

Clients = Callable[[str], Any]
"""boto3 client for a service name, in the scan's region."""

LBC_CLUSTER_TAG = "elbv2.k8s.aws/cluster"
"""On everything the AWS Load Balancer Controller creates: load balancers, target groups, security groups."""
CNI_CLUSTER_TAG = "cluster.k8s.amazonaws.com/name"
"""On the network interfaces the VPC CNI creates for a node's pods, when the CNI is told its cluster's name."""
CNI_NODE_TAG = "node.k8s.amazonaws.com/instance_id"
CNI_DESCRIPTION_PREFIX = "aws-K8S-"
"""The VPC CNI tags each network interface it creates with its node's instance id (`CNI_NODE_TAG`) and describes it
`aws-K8S-<instance id>`; the cluster tag it adds only when its CLUSTER_NAME is set, which pulumi-eks's
VpcCniAddon does not set (aws/amazon-vpc-cni-k8s, pkg/awsutils/awsutils.go: `eniNodeTagKey`, `eniDescriptionPrefix`,
`tagENI`; pulumi/pulumi-eks, nodejs/eks/addons/cni-addon.ts: `computeEnv`)."""
LINGERING_JOB_STATES = {"InProgress", "Stopping"}
NAME_CONTAINS = re.compile(r"[a-zA-Z0-9-]{1,63}")
"""SageMaker's NameContains pattern (botocore's service model)."""
ELBV2_PREFIXES = ("app/", "net/", "gwy/")
MARKDOWN_ROWS = 100
"""Leftovers listed in the Markdown report (a pull request comment holds at most 65,536 characters)."""


def name_prefix(stack: str) -> str:
    """`retail-<stack>`: how every name of the stack starts (`StackIdentity.name_prefix`)."""
    return f"retail-{stack}"


def cluster_name(stack: str) -> str:
    """The stack's EKS cluster name (`PlatformConfig.cluster_name`), for a stack whose outputs are gone."""
    return f"{name_prefix(stack)}-eks"


def in_tree_cluster_tag(cluster: str) -> str:
    """The tag key Kubernetes' in-tree AWS cloud provider puts on what it creates for `cluster`."""
    return f"kubernetes.io/cluster/{cluster}"


def stack_tag_filters(stack: str) -> list[dict[str, Any]]:
    """GetResources TagFilters matching the default tags of both projects' stacks named `stack`."""
    return [
        {"Key": "environment", "Values": [stack]},
        {"Key": "project", "Values": [PLATFORM_PROJECT, SERVICE_PROJECT]},
    ]


@dataclass(frozen=True)
class LeakScope:
    """What to scan for: the stack, its region, its cluster and the VPCs it is known to have had."""

    stack: str
    region: str
    cluster: str
    vpc_ids: tuple[str, ...] = ()

    @classmethod
    def of(cls, stack: str, region: str, platform_outputs: Mapping[str, Any] | None = None) -> LeakScope:
        """The scope from the platform stack's outputs when known, else from the naming rules alone."""
        outputs = platform_outputs or {}
        vpc = outputs.get("vpcId")
        return cls(stack, outputs.get("region") or region, outputs.get("clusterName") or cluster_name(stack),
                   (vpc,) if vpc else ())


@dataclass(frozen=True)
class Finding:
    """One resource found: its kind (`service:type`), id or ARN, what it is, and the command that removes it."""

    kind: str
    ident: str
    detail: str
    remove: str
    expected: str = ""
    """Why it is meant to remain (kept by design, pending deletion, history); empty for a leftover."""


@dataclass
class LeakReport:
    """The scan's result: leftovers (a failure), resources expected to remain, and sources that could not be asked."""

    scope: LeakScope
    leftovers: list[Finding] = field(default_factory=list)
    expected: list[Finding] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.leftovers and not self.errors

    def status(self) -> str:
        """`clean`, or how many leftovers and unchecked sources."""
        if self.clean:
            return "clean"
        unchecked = [f"{len(self.errors)} source(s) not checked"] if self.errors else []
        return ", ".join([f"{len(self.leftovers)} leftover(s)", *unchecked])

    def summary(self) -> str:
        where = f"stack {self.scope.stack} in {self.scope.region} (cluster {self.scope.cluster})"
        return f"Leak scan of {where}: {self.status()}" + (", nothing of it remains" if self.clean else "")

    def lines(self) -> list[str]:
        """The report as console lines."""
        lines = [self.summary()]
        for finding in self.leftovers:
            lines += [f"  LEFT  {finding.kind}  {finding.ident}  ({finding.detail})",
                      f"        remove: {finding.remove}"]
        lines += [f"  could not check {error}" for error in self.errors]
        lines += [f"  expected  {f.kind}  {f.ident}  ({f.expected})" for f in self.expected]
        if self.leftovers:
            lines.append(self._finish_hint())
        return lines

    def markdown(self) -> str:
        """The report as Markdown, for a pull request comment."""
        status = "clean" if self.clean else f"**{self.status()}**"
        lines = [f"### Leak scan of `{self.scope.stack}` after its destroy: {status}", "",
                 f"Region `{self.scope.region}`, cluster `{self.scope.cluster}`.", ""]
        if self.leftovers:
            shown = self.leftovers[:MARKDOWN_ROWS]
            lines += ["| Kind | Id or ARN | What | Remove with |", "|---|---|---|---|"]
            lines += [f"| {f.kind} | `{f.ident}` | {_cell(f.detail)} | `{_cell(f.remove)}` |" for f in shown]
            if len(self.leftovers) > len(shown):
                lines.append(f"\n... and {len(self.leftovers) - len(shown)} more: see the job's log.")
            lines += ["", self._finish_hint(), ""]
        if self.errors:
            lines += ["Not checked:", *[f"- {_cell(error)}" for error in self.errors], ""]
        if self.expected:
            lines += ["Expected to remain (not counted):", *[f"- {f.kind} `{f.ident}`: {f.expected}"
                                                            for f in self.expected], ""]
        return "\n".join(lines).rstrip() + "\n"

    def _finish_hint(self) -> str:
        return (f"If the stacks still exist, `pulumi destroy` of train-{self.scope.stack} (project "
                f"retail-mlops-training, when `retail train --cloud` ran), then of {self.scope.stack} in the service "
                "project, then in the platform project removes what they hold; the rest needs the commands above.")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def scan(scope: LeakScope, clients: Clients) -> LeakReport:
    """Ask every source; a source that fails is recorded in `errors` (and makes the scan not clean)."""
    report = LeakReport(scope)
    seen: set[str] = set()
    for source, probe in PROBES:
        try:
            findings = list(probe(scope, clients))
        except Exception as error:  # noqa: BLE001 (botocore's errors, credentials, endpoints: all mean "not checked")
            report.errors.append(f"{source}: {type(error).__name__}: {error}")
            continue
        for finding in findings:
            key = _key(finding.ident)
            if key in seen:
                continue
            seen.add(key)
            (report.expected if finding.expected else report.leftovers).append(finding)
    return report


def aws_clients(region: str) -> Clients:
    """boto3 clients for `region`, one per service."""
    import boto3

    session = boto3.session.Session(region_name=region)
    made: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in made:
            made[service] = session.client(service)
        return made[service]

    return client


def _key(ident: str) -> str:
    """The same resource's key whether named by id or ARN (`sg-1` and `arn:...:security-group/sg-1`)."""
    if ident.startswith("arn:") and ident.split(":")[2] == "ec2":
        return ident.rsplit("/", 1)[-1]
    return ident


# --- what the controllers in the cluster made ---------------------------------------------------------------------


@dataclass(frozen=True)
class TaggedLoadBalancer:
    """A load balancer made for the cluster: its ARN (or a classic one's name), its API and its tags."""

    ident: str
    api: str
    """`elbv2` or `elb` (classic)."""
    tags: Mapping[str, str]


def cluster_load_balancers(clients: Clients, cluster: str) -> list[TaggedLoadBalancer]:
    """Load balancers tagged for `cluster` by the Load Balancer Controller or the in-tree cloud provider."""
    elbv2 = clients("elbv2")
    arns = [lb["LoadBalancerArn"] for page in elbv2.get_paginator("describe_load_balancers").paginate()
            for lb in page["LoadBalancers"]]
    found = [TaggedLoadBalancer(arn, "elbv2", tags) for arn, tags in _elbv2_tags(elbv2, arns)
             if _made_for(tags, cluster)]
    elb = clients("elb")
    names = [lb["LoadBalancerName"] for page in elb.get_paginator("describe_load_balancers").paginate()
             for lb in page["LoadBalancerDescriptions"]]
    for start in range(0, len(names), 20):
        for description in elb.describe_tags(LoadBalancerNames=names[start:start + 20])["TagDescriptions"]:
            tags = _tag_map(description.get("Tags"))
            if _made_for(tags, cluster):
                found.append(TaggedLoadBalancer(description["LoadBalancerName"], "elb", tags))
    return found


GONE_ELBV2 = {"LoadBalancerNotFound", "TargetGroupNotFound"}
"""DescribeTags' errors for an ARN deleted since it was listed (botocore's elbv2 model): another environment's
teardown in the same account, between the listing and the tags."""


def _elbv2_tags(elbv2: Any, arns: list[str]) -> Iterator[tuple[str, dict[str, str]]]:
    for start in range(0, len(arns), 20):  # DescribeTags: up to 20 resources a call
        for description in _elbv2_descriptions(elbv2, arns[start:start + 20]):
            yield description["ResourceArn"], _tag_map(description.get("Tags"))


def _elbv2_descriptions(elbv2: Any, arns: list[str]) -> list[dict[str, Any]]:
    """DescribeTags of `arns`; when one was deleted since it was listed, the others asked for one by one."""
    from botocore.exceptions import ClientError

    try:
        return list(elbv2.describe_tags(ResourceArns=arns)["TagDescriptions"])
    except ClientError as error:
        if error.response["Error"].get("Code") not in GONE_ELBV2:
            raise
        return [] if len(arns) == 1 else [found for arn in arns for found in _elbv2_descriptions(elbv2, [arn])]


def _made_for(tags: Mapping[str, str], cluster: str) -> bool:
    return tags.get(LBC_CLUSTER_TAG) == cluster or in_tree_cluster_tag(cluster) in tags


def _tag_map(tags: Iterable[Mapping[str, str]] | None) -> dict[str, str]:
    return {tag["Key"]: tag.get("Value", "") for tag in tags or []}


def _load_balancer_findings(scope: LeakScope, clients: Clients) -> Iterator[Finding]:
    for lb in cluster_load_balancers(clients, scope.cluster):
        owner = _owner(lb.tags)
        if lb.api == "elbv2":
            yield Finding("elasticloadbalancing:loadbalancer", lb.ident, f"made for {owner or 'the cluster'}",
                          f"aws elbv2 delete-load-balancer --load-balancer-arn {lb.ident} --region {scope.region}")
        else:
            yield Finding("elasticloadbalancing:loadbalancer", lb.ident, f"classic, made for {owner or 'the cluster'}",
                          f"aws elb delete-load-balancer --load-balancer-name {lb.ident} --region {scope.region}")


def _owner(tags: Mapping[str, str]) -> str:
    """Which Kubernetes object a controller made a resource for, from its tags ("" when none says)."""
    for key, what in (("ingress.k8s.aws/stack", "Ingress"), ("service.k8s.aws/stack", "Service"),
                      ("kubernetes.io/service-name", "Service")):
        if key in tags:
            return f"{what} {tags[key]}"
    return ""


def _target_group_findings(scope: LeakScope, clients: Clients) -> Iterator[Finding]:
    elbv2 = clients("elbv2")
    arns = [group["TargetGroupArn"] for page in elbv2.get_paginator("describe_target_groups").paginate()
            for group in page["TargetGroups"]]
    for arn, tags in _elbv2_tags(elbv2, arns):
        if _made_for(tags, scope.cluster):
            yield Finding("elasticloadbalancing:targetgroup", arn, f"made for {_owner(tags) or 'the cluster'}",
                          f"aws elbv2 delete-target-group --target-group-arn {arn} --region {scope.region}")


def _stack_vpcs(scope: LeakScope, ec2: Any) -> list[str]:
    """The scope's VPCs and any VPC still tagged for the stack."""
    filters = [{"Name": f"tag:{f['Key']}", "Values": f["Values"]} for f in stack_tag_filters(scope.stack)]
    tagged = [vpc["VpcId"] for page in ec2.get_paginator("describe_vpcs").paginate(Filters=filters)
              for vpc in page["Vpcs"]]
    return sorted(set(scope.vpc_ids) | set(tagged))


def _security_group_findings(scope: LeakScope, clients: Clients) -> Iterator[Finding]:
    ec2 = clients("ec2")
    searches = [
        [{"Name": f"tag:{LBC_CLUSTER_TAG}", "Values": [scope.cluster]}],
        [{"Name": "tag-key", "Values": [in_tree_cluster_tag(scope.cluster)]}],
    ]
    vpcs = _stack_vpcs(scope, ec2)
    if vpcs:
        searches.append([{"Name": "vpc-id", "Values": vpcs}])
    for filters in searches:
        for page in ec2.get_paginator("describe_security_groups").paginate(Filters=filters):
            for group in page["SecurityGroups"]:
                if group["GroupName"] == "default":  # goes with its VPC
                    continue
                owner = _owner(_tag_map(group.get("Tags")))
                yield Finding("ec2:security-group", group["GroupId"],
                              f"{group['GroupName']} in {group.get('VpcId', '?')}"
                              + (f", made for {owner}" if owner else ""),
                              f"aws ec2 delete-security-group --group-id {group['GroupId']} --region {scope.region}")


def _network_interface_findings(scope: LeakScope, clients: Clients) -> Iterator[Finding]:
    ec2 = clients("ec2")
    searches = [[{"Name": f"tag:{CNI_CLUSTER_TAG}", "Values": [scope.cluster]}]]
    vpcs = _stack_vpcs(scope, ec2)
    if vpcs:  # every interface in them, the VPC CNI's included however it tagged them
        searches.append([{"Name": "vpc-id", "Values": vpcs}])
    for filters in searches:
        for page in ec2.get_paginator("describe_network_interfaces").paginate(Filters=filters):
            for interface in page["NetworkInterfaces"]:
                yield _interface_finding(scope, interface)


def made_by_the_cni(interface: Mapping[str, Any], cluster: str) -> bool:
    """Whether the VPC CNI made `interface` for a node: tagged for `cluster`, or (it always does this) tagged with its
    node's instance id or described `aws-K8S-<instance id>`. Only the first names the cluster, so the other two are
    asked only of interfaces in the stack's VPCs (`_network_interface_findings`)."""
    tags = _tag_map(interface.get("TagSet"))
    return (tags.get(CNI_CLUSTER_TAG) == cluster or CNI_NODE_TAG in tags
            or (interface.get("Description") or "").startswith(CNI_DESCRIPTION_PREFIX))


def _interface_finding(scope: LeakScope, interface: Mapping[str, Any]) -> Finding:
    ident = interface["NetworkInterfaceId"]
    tags = _tag_map(interface.get("TagSet"))
    description = interface.get("Description") or ""
    if made_by_the_cni(interface, scope.cluster):
        node = tags.get(CNI_NODE_TAG) or description.removeprefix(CNI_DESCRIPTION_PREFIX) or "?"
        made_by = f"made by the VPC CNI for node {node}"
    else:
        made_by = f"description {description or '(none)'!r}"
    detail = f"{interface.get('Status', '?')} in {interface.get('VpcId', '?')}, {made_by}"
    return Finding("ec2:network-interface", ident, detail, interface_remove_command(interface, scope.region))


def interface_remove_command(interface: Mapping[str, Any], region: str) -> str:
    """How to remove a network interface, by its kind: one an AWS service manages goes with what it belongs to, a
    primary one with its instance, a detached one is deleted, an attached secondary one detached first.

    Requester-managed interfaces cannot be detached; the service deletes them with their resource, and one it
    detached without deleting can be deleted (EC2 User Guide, "Requester-managed network interfaces").
    """
    ident = interface["NetworkInterfaceId"]
    delete = f"aws ec2 delete-network-interface --network-interface-id {ident} --region {region}"
    attachment = interface.get("Attachment") or {}
    attached = interface.get("Status") != "available" or bool(attachment.get("AttachmentId"))
    if interface.get("RequesterManaged") and attached:
        owner, command = interface_owner(interface, region)
        return f"none of its own: it is requester-managed and goes when {owner} is deleted ({command})"
    if not attachment.get("AttachmentId"):
        return delete
    instance = attachment.get("InstanceId") or attachment.get("InstanceOwnerId", "?")
    if attachment.get("DeviceIndex") == 0:
        terminate = (f"terminate its instance, a primary interface cannot be detached: aws ec2 terminate-instances "
                     f"--instance-ids {instance} --region {region}")
        return terminate if attachment.get("DeleteOnTermination", True) else f"{terminate}, then {delete}"
    return (f"aws ec2 detach-network-interface --attachment-id {attachment['AttachmentId']} --region {region} "
            f"(attached to {instance}), then {delete}")


def interface_owner(interface: Mapping[str, Any], region: str) -> tuple[str, str]:
    """What a requester-managed interface belongs to, from its description and type, and the command deleting it."""
    description = interface.get("Description") or ""
    kind = interface.get("InterfaceType") or ""
    nat = re.search(r"\bnat-[0-9a-f]+", description)
    endpoint = re.search(r"\bvpce-[0-9a-f]+", description)
    if nat:
        return (f"NAT gateway {nat[0]}", f"aws ec2 delete-nat-gateway --nat-gateway-id {nat[0]} --region {region}")
    if endpoint:
        return (f"VPC endpoint {endpoint[0]}",
                f"aws ec2 delete-vpc-endpoints --vpc-endpoint-ids {endpoint[0]} --region {region}")
    if description.startswith(("ELB app/", "ELB net/", "ELB gwy/")):
        name = description.split("/")[1]
        return (f"load balancer {description.removeprefix('ELB ')}",
                f"aws elbv2 delete-load-balancer --load-balancer-arn $(aws elbv2 describe-load-balancers --names "
                f"{name} --query 'LoadBalancers[0].LoadBalancerArn' --output text --region {region}) --region {region}")
    if description.startswith("ELB "):
        name = description.removeprefix("ELB ")
        return (f"classic load balancer {name}",
                f"aws elb delete-load-balancer --load-balancer-name {name} --region {region}")
    if description.startswith("Amazon EKS "):
        cluster = description.removeprefix("Amazon EKS ").split()[0]
        return (f"EKS cluster {cluster}", f"aws eks delete-cluster --name {cluster} --region {region} "
                                          "(after its node groups)")
    if kind == "lambda" or description.startswith("AWS Lambda VPC ENI"):
        return ("the Lambda function that uses it", "delete the function or remove it from the VPC; AWS deletes the "
                                                     "interface afterwards")
    what = f"the {kind or 'AWS service'} resource it was made for"
    return (what, f"find it by the interface's requester {interface.get('RequesterId', '?')} and description "
                  f"{description or '(none)'!r}, and delete it with its service")


# --- named for the stack ------------------------------------------------------------------------------------------

SAGEMAKER_LISTINGS = (
    # kind, list operation, result key, name key, ARN key, the command that deletes one by name
    ("sagemaker:endpoint", "list_endpoints", "Endpoints", "EndpointName", "EndpointArn",
     "delete-endpoint --endpoint-name"),
    ("sagemaker:endpoint-config", "list_endpoint_configs", "EndpointConfigs", "EndpointConfigName",
     "EndpointConfigArn", "delete-endpoint-config --endpoint-config-name"),
    ("sagemaker:model", "list_models", "Models", "ModelName", "ModelArn", "delete-model --model-name"),
)


def _sagemaker_findings(scope: LeakScope, clients: Clients) -> Iterator[Finding]:
    sagemaker = clients("sagemaker")
    prefix = f"{name_prefix(scope.stack)}-"
    query = {"NameContains": prefix} if NAME_CONTAINS.fullmatch(prefix) else {}
    for kind, operation, result, name_key, arn_key, delete in SAGEMAKER_LISTINGS:
        for page in sagemaker.get_paginator(operation).paginate(**query):
            for item in page[result]:
                name = item[name_key]
                if not name.startswith(prefix):
                    continue
                # `retail-dev-` also starts `retail-dev-fix-…`'s names: the stack's tag tells them apart.
                tags = _tag_map(sagemaker.list_tags(ResourceArn=item[arn_key]).get("Tags"))
                if tags.get("environment") != scope.stack:
                    continue
                yield Finding(kind, item[arn_key], f"named {name}, tagged environment={scope.stack}",
                              f"aws sagemaker {delete} {name} --region {scope.region}")


def _iam_role_findings(scope: LeakScope, clients: Clients) -> Iterator[Finding]:
    iam = clients("iam")
    prefix = f"{name_prefix(scope.stack)}-"
    for page in iam.get_paginator("list_roles").paginate():
        for role in page["Roles"]:
            name = role["RoleName"]
            if not name.startswith(prefix):
                continue
            if _tag_map(iam.list_role_tags(RoleName=name)["Tags"]).get("environment") != scope.stack:
                continue
            yield Finding("iam:role", role["Arn"], f"named {name}, tagged environment={scope.stack}",
                          f"detach its policies (aws iam list-attached-role-policies / list-role-policies), then "
                          f"aws iam delete-role --role-name {name}")


def _eks_log_group_findings(scope: LeakScope, clients: Clients) -> Iterator[Finding]:
    """`/aws/eks/<cluster>/cluster`: EKS recreates its control plane log group after a destroy deleted it (untagged,
    never expiring), while the cluster was still logging."""
    logs = clients("logs")
    for page in logs.get_paginator("describe_log_groups").paginate(logGroupNamePrefix=f"/aws/eks/{scope.cluster}/"):
        for group in page["logGroups"]:
            name = group["logGroupName"]
            # `logGroupArn` is the ARN the tagging scan names the group by; `arn` is the same with `:*` appended.
            arn = group.get("logGroupArn") or (group.get("arn") or name).removesuffix(":*")
            yield Finding("logs:log-group", arn,
                          f"{name}, recreated by EKS for the cluster's control plane logs",
                          f"aws logs delete-log-group --log-group-name {name} --region {scope.region}")


def _iam_global_findings(scope: LeakScope, clients: Clients) -> Iterator[Finding]:
    """IAM is global, out of the regional tagging scan: the cluster's OIDC provider and the stack's own policies."""
    from botocore.exceptions import ClientError

    iam = clients("iam")
    for provider in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]:
        arn = provider["Arn"]
        try:
            tags = _tag_map(iam.list_open_id_connect_provider_tags(OpenIDConnectProviderArn=arn)["Tags"])
        except ClientError as error:  # deleted since it was listed: another environment's teardown
            if error.response["Error"].get("Code") != "NoSuchEntity":
                raise
            continue
        if tags.get("environment") == scope.stack:
            yield Finding("iam:oidc-provider", arn, f"the cluster's OIDC provider, tagged environment={scope.stack}",
                          f"aws iam delete-open-id-connect-provider --open-id-connect-provider-arn {arn}")
    prefix = f"{name_prefix(scope.stack)}-"
    for page in iam.get_paginator("list_policies").paginate(Scope="Local"):
        for policy in page["Policies"]:
            name, arn = policy["PolicyName"], policy["Arn"]
            if not name.startswith(prefix):
                continue
            if _tag_map(iam.list_policy_tags(PolicyArn=arn)["Tags"]).get("environment") != scope.stack:
                continue
            yield Finding("iam:policy", arn, f"named {name}, tagged environment={scope.stack}",
                          f"detach it (aws iam list-entities-for-policy), delete its non-default versions, then "
                          f"aws iam delete-policy --policy-arn {arn}")


def _budget_findings(scope: LeakScope, clients: Clients) -> Iterator[Finding]:
    """AWS Budgets is global and untouched by the tagging API: the observability stack's monthly budget, by name."""
    account = clients("sts").get_caller_identity()["Account"]
    prefix = f"{name_prefix(scope.stack)}-"
    budgets = clients("budgets")
    for page in budgets.get_paginator("describe_budgets").paginate(AccountId=account):
        for budget in page.get("Budgets", []):
            name = budget["BudgetName"]
            if name.startswith(prefix):
                yield Finding("budgets:budget", name, f"the stack's budget {name}",
                              f"aws budgets delete-budget --account-id {account} --budget-name {name}")


# --- tagged for the stack -----------------------------------------------------------------------------------------

REMOVE_BY_KIND = {
    "s3:bucket": "delete every object version and delete marker (aws s3api list-object-versions, then "
                 "delete-objects), then aws s3api delete-bucket --bucket {id} --region {region}",
    "kms:key": "aws kms schedule-key-deletion --key-id {id} --pending-window-in-days 7 --region {region}",
    "ec2:vpc": "aws ec2 delete-vpc --vpc-id {id} --region {region} (after what is in it)",
    "ec2:subnet": "aws ec2 delete-subnet --subnet-id {id} --region {region}",
    "ec2:security-group": "aws ec2 delete-security-group --group-id {id} --region {region}",
    "ec2:network-interface": "aws ec2 delete-network-interface --network-interface-id {id} --region {region}",
    "ec2:route-table": "aws ec2 delete-route-table --route-table-id {id} --region {region}",
    "ec2:internet-gateway": "aws ec2 detach-internet-gateway, then aws ec2 delete-internet-gateway "
                            "--internet-gateway-id {id} --region {region}",
    "ec2:natgateway": "aws ec2 delete-nat-gateway --nat-gateway-id {id} --region {region}",
    "ec2:elastic-ip": "aws ec2 release-address --allocation-id {id} --region {region}",
    "ec2:vpc-endpoint": "aws ec2 delete-vpc-endpoints --vpc-endpoint-ids {id} --region {region}",
    "ec2:launch-template": "aws ec2 delete-launch-template --launch-template-id {id} --region {region}",
    "elasticloadbalancing:loadbalancer": "aws elbv2 delete-load-balancer --load-balancer-arn {arn} --region {region}",
    "elasticloadbalancing:targetgroup": "aws elbv2 delete-target-group --target-group-arn {arn} --region {region}",
    "eks:cluster": "aws eks delete-cluster --name {id} --region {region} (after its node groups)",
    "eks:nodegroup": "aws eks delete-nodegroup --cluster-name {cluster} --nodegroup-name {name} --region {region}",
    "ecr:repository": "aws ecr delete-repository --repository-name {id} --force --region {region}",
    "logs:log-group": "aws logs delete-log-group --log-group-name {id} --region {region}",
    "cloudwatch:alarm": "aws cloudwatch delete-alarms --alarm-names {id} --region {region}",
    "events:rule": "aws events remove-targets (all of them), then aws events delete-rule --name {id} "
                   "--region {region}",
    "sns": "aws sns delete-topic --topic-arn {arn} --region {region}",
    "sagemaker:model": "aws sagemaker delete-model --model-name {id} --region {region}",
    "sagemaker:endpoint": "aws sagemaker delete-endpoint --endpoint-name {id} --region {region}",
    "sagemaker:endpoint-config": "aws sagemaker delete-endpoint-config --endpoint-config-name {id} --region {region}",
    "sagemaker:model-package-group": "delete its versions (aws sagemaker delete-model-package), then aws sagemaker "
                                     "delete-model-package-group --model-package-group-name {id} --region {region}",
    "sagemaker:model-package": "aws sagemaker delete-model-package --model-package-name {arn} --region {region}",
    "sagemaker:training-job": "aws sagemaker stop-training-job --training-job-name {id} --region {region}",
    "glue:database": "aws glue delete-database --name {id} --region {region} (its tables go with it)",
    "athena:workgroup": "aws athena delete-work-group --work-group {id} --recursive-delete-option --region {region}",
}


def parse_arn(arn: str) -> tuple[str, str]:
    """`(kind, id)` of an ARN: kind `service:type` as the tagging API's resource type filters spell it."""
    service, resource = arn.split(":", 5)[2], arn.split(":", 5)[5]
    if service == "s3":
        return "s3:bucket", resource
    if service == "logs":
        return "logs:log-group", resource.split(":", 1)[1].removesuffix(":*")
    match = re.match(r"([^/:]+)[/:](.+)", resource)
    if match is None:
        return service, resource
    return f"{service}:{match[1]}", match[2]


def remove_command(kind: str, ident: str, arn: str, region: str) -> str:
    """How to remove a resource of `kind` by hand."""
    if kind == "elasticloadbalancing:loadbalancer" and not ident.startswith(ELBV2_PREFIXES):
        return f"aws elb delete-load-balancer --load-balancer-name {ident} --region {region}"
    template = REMOVE_BY_KIND.get(kind)
    if template is None:
        return f"delete it with its service's console or CLI ({arn}); nothing here knows this kind"
    cluster, _, name = ident.partition("/")
    return template.format(id=ident, arn=arn, region=region, cluster=cluster, name=name.split("/")[0])


def is_kept_by_design(stack: str, kind: str, ident: str, description: str = "") -> bool:
    """What the platform program keeps on destroy (`retain_on_delete`): the audit log bucket and its KMS key."""
    prefix = name_prefix(stack)
    if kind == "s3:bucket":
        return ident.startswith(f"{prefix}-audit-logs-bucket-")
    return kind == "kms:key" and description == f"{prefix}-kms: CloudTrail log files"


def _tagged_findings(scope: LeakScope, clients: Clients) -> Iterator[Finding]:
    pages = clients("resourcegroupstaggingapi").get_paginator("get_resources").paginate(
        TagFilters=stack_tag_filters(scope.stack))
    for page in pages:
        for mapping in page["ResourceTagMappingList"]:
            arn = mapping["ResourceARN"]
            kind, ident = parse_arn(arn)
            tags = _tag_map(mapping.get("Tags"))
            finding = Finding(kind, arn, f"tagged environment={scope.stack}, project={tags.get('project', '?')}",
                              remove_command(kind, ident, arn, scope.region))
            check = CHECKS.get(kind)
            if check is None:
                yield finding
                continue
            try:
                confirmed = check(scope, clients, finding, ident)
            except Exception as error:  # noqa: BLE001 (one unconfirmed resource still counts, the rest go on)
                confirmed = replace(finding, detail=f"{finding.detail}; could not confirm: {error}")
            if confirmed is not None:
                yield confirmed


def _missing(error: Exception) -> bool:
    code = str(getattr(error, "response", {}).get("Error", {}).get("Code", ""))
    return code in {"404", "NoSuchBucket"} or "NotFound" in code


def _check_bucket(scope: LeakScope, clients: Clients, finding: Finding, ident: str) -> Finding | None:
    from botocore.exceptions import ClientError

    try:
        clients("s3").head_bucket(Bucket=ident)
    except ClientError as error:
        if _missing(error):
            return None
        raise
    if is_kept_by_design(scope.stack, finding.kind, ident):
        return replace(finding, expected="kept by design: the audit log bucket is retain_on_delete (docs/deploy.md)")
    return finding


def _check_key(scope: LeakScope, clients: Clients, finding: Finding, ident: str) -> Finding | None:
    from botocore.exceptions import ClientError

    try:
        key = clients("kms").describe_key(KeyId=ident)["KeyMetadata"]
    except ClientError as error:
        if _missing(error):
            return None
        raise
    if key["KeyState"] in {"PendingDeletion", "PendingReplicaDeletion"}:
        when = key.get("DeletionDate")
        return replace(finding, expected=f"pending deletion{f' on {when:%Y-%m-%d}' if when else ''}")
    if is_kept_by_design(scope.stack, finding.kind, ident, key.get("Description", "")):
        return replace(finding, expected="kept by design: the audit logs' key is retain_on_delete (docs/deploy.md)")
    return finding


def _check_nat_gateway(scope: LeakScope, clients: Clients, finding: Finding, ident: str) -> Finding | None:
    from botocore.exceptions import ClientError

    try:
        gateways = clients("ec2").describe_nat_gateways(NatGatewayIds=[ident])["NatGateways"]
    except ClientError as error:
        if _missing(error):
            return None
        raise
    return finding if any(g.get("State") != "deleted" for g in gateways) else None


def _check_training_job(scope: LeakScope, clients: Clients, finding: Finding, ident: str) -> Finding | None:
    status = clients("sagemaker").describe_training_job(TrainingJobName=ident)["TrainingJobStatus"]
    if status in LINGERING_JOB_STATES:
        return replace(finding, detail=f"{finding.detail}; {status}")
    return replace(finding, expected=f"{status} training job: SageMaker keeps its history; it costs nothing")


CHECKS: dict[str, Callable[[LeakScope, Clients, Finding, str], Finding | None]] = {
    "s3:bucket": _check_bucket,
    "kms:key": _check_key,
    "ec2:natgateway": _check_nat_gateway,
    "sagemaker:training-job": _check_training_job,
}
"""Kinds the tagging API may list after they are gone (or that remain by nature): ask their service."""

PROBES: tuple[tuple[str, Callable[[LeakScope, Clients], Iterable[Finding]]], ...] = (
    ("load balancers made for the cluster (elbv2, elb)", _load_balancer_findings),
    ("target groups made for the cluster (elbv2)", _target_group_findings),
    ("security groups of the cluster or in the stack's VPCs (ec2)", _security_group_findings),
    ("network interfaces of the VPC CNI or in the stack's VPCs (ec2)", _network_interface_findings),
    ("SageMaker models, endpoints and endpoint configs named for the stack", _sagemaker_findings),
    ("IAM roles named and tagged for the stack", _iam_role_findings),
    ("IAM OIDC providers and policies tagged for the stack", _iam_global_findings),
    ("the cluster's EKS control plane log group (logs)", _eks_log_group_findings),
    ("AWS Budgets named for the stack", _budget_findings),
    ("resources tagged for the stack (Resource Groups Tagging API)", _tagged_findings),
)
"""Direct sources first: for a resource two sources find, the first one's finding (and command) is kept."""
