"""Proven teardown: load-balanced Kubernetes objects go before a destroy, and the leak scan after it finds what remains.

The scan runs against moto (a real HTTP server on 127.0.0.1) with leftovers planted in
the account: resources tagged for the stack, what the cluster's controllers would have
made (a CNI network interface, a controller's load balancer, target group and security
group), SageMaker models and IAM roles named for the stack. kubectl is a recording
stand-in; the Pulumi operations are recording runners.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from infra import automation, leaks
from infra.automation import Release, Runners, TeardownFailed
from infra.config import PLATFORM_PROJECT, SERVICE_PROJECT, PlatformConfig, StackIdentity
from infra.leaks import LeakScope, aws_clients, parse_arn, remove_command, scan
from infra.teardown import KubectlFailed, LoadBalancedObject, ProvenTeardown, kubectl_session
from tests.automation.recording import Journal, PulumiFailed, RecordingRunner

REGION = "ap-southeast-1"
PROJECT_DIR = Path(__file__).resolve().parents[2]
RELEASE = Release("123456789012.dkr.ecr.ap-southeast-1.amazonaws.com/retail/inference@sha256:" + "d" * 64,
                  "arn:aws:sagemaker:ap-southeast-1:123456789012:model-package/retail-dev-price-sensitivity/7")


@functools.cache
def client(service: str):
    """One client per service for the module (all of them reach the session's moto server)."""
    return aws_clients(REGION)(service)


@pytest.fixture
def stack(moto_endpoint) -> str:
    """A stack name no other test uses, so moto's shared account holds only what this test plants for it."""
    return f"ephemeral-t{uuid.uuid4().hex[:8]}"


def stack_tags(stack: str, project: str = PLATFORM_PROJECT) -> list[dict[str, str]]:
    return [{"Key": "environment", "Value": stack}, {"Key": "project", "Value": project},
            {"Key": "managed-by", "Value": "pulumi"}]


def scan_of(stack: str) -> leaks.LeakReport:
    return scan(LeakScope.of(stack, REGION), client)


def kinds(findings) -> list[tuple[str, str]]:
    return sorted((f.kind, f.ident) for f in findings)


def plant_bucket(stack: str, name: str, project: str = PLATFORM_PROJECT) -> str:
    s3 = client("s3")
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": stack_tags(stack, project)})
    return name


def vpc_with_subnets() -> tuple[str, list[str]]:
    ec2 = client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.60.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.60.{i}.0/24", AvailabilityZone=f"{REGION}{zone}")
               ["Subnet"]["SubnetId"] for i, zone in enumerate("ab")]
    return vpc, subnets


def controller_load_balancer(cluster: str, subnets: list[str], owner: str = "retail-inference/inference") -> str:
    """An ALB as the Load Balancer Controller tags one it made for an Ingress."""
    tags = [{"Key": "elbv2.k8s.aws/cluster", "Value": cluster}, {"Key": "ingress.k8s.aws/stack", "Value": owner},
            {"Key": "ingress.k8s.aws/resource", "Value": "LoadBalancer"}]
    elbv2 = client("elbv2")
    return elbv2.create_load_balancer(Name=f"k8s-{uuid.uuid4().hex[:8]}", Subnets=subnets, Tags=tags)[
        "LoadBalancers"][0]["LoadBalancerArn"]


# --- the leak scan ------------------------------------------------------------------------------------------------


def test_a_clean_account_scans_clean_and_leaks_exits_0(stack):
    result = CliRunner().invoke(_app(), ["leaks", "--stack", stack, "--region", REGION])
    assert result.exit_code == 0, result.output
    assert f"Leak scan of stack {stack} in {REGION} (cluster retail-{stack}-eks): clean" in result.output


def test_planted_leftovers_are_each_reported_with_the_command_that_removes_them(stack, tmp_path):
    cluster = leaks.cluster_name(stack)
    bucket = plant_bucket(stack, f"retail-{stack}-lake-raw-bucket-1a2b3c4")
    vpc, subnets = vpc_with_subnets()
    ec2 = client("ec2")
    eni = ec2.create_network_interface(SubnetId=subnets[0], TagSpecifications=[{
        "ResourceType": "network-interface",
        "Tags": [{"Key": "cluster.k8s.amazonaws.com/name", "Value": cluster},
                 {"Key": "node.k8s.amazonaws.com/instance_id", "Value": "i-0123456789abcdef0"}]}],
    )["NetworkInterface"]["NetworkInterfaceId"]
    target_group = client("elbv2").create_target_group(
        Name=f"k8s-{uuid.uuid4().hex[:8]}", Protocol="HTTP", Port=8000, VpcId=vpc, TargetType="ip",
        Tags=[{"Key": "elbv2.k8s.aws/cluster", "Value": cluster}],
    )["TargetGroups"][0]["TargetGroupArn"]
    model = client("sagemaker").create_model(
        ModelName=f"retail-{stack}-price-sensitivity", PrimaryContainer={"Image": RELEASE.image},
        ExecutionRoleArn="arn:aws:iam::123456789012:role/retail-sagemaker", Tags=stack_tags(stack),
    )["ModelArn"]
    client("sagemaker").create_model(  # another stack whose name starts like this one's (`<stack>-fix`)
        ModelName=f"retail-{stack}-fix-price-sensitivity", PrimaryContainer={"Image": RELEASE.image},
        ExecutionRoleArn="arn:aws:iam::123456789012:role/retail-sagemaker", Tags=stack_tags(f"{stack}-fix"),
    )

    report = scan_of(stack)
    assert kinds(report.leftovers) == sorted([
        ("s3:bucket", f"arn:aws:s3:::{bucket}"),
        ("ec2:network-interface", eni),
        ("elasticloadbalancing:targetgroup", target_group),
        ("sagemaker:model", model),
    ])
    remove = {f.kind: f.remove for f in report.leftovers}
    assert remove["ec2:network-interface"] == f"aws ec2 delete-network-interface --network-interface-id {eni} " \
                                              f"--region {REGION}"
    assert remove["elasticloadbalancing:targetgroup"].startswith(
        f"aws elbv2 delete-target-group --target-group-arn {target_group}")
    assert remove["sagemaker:model"].startswith(f"aws sagemaker delete-model --model-name retail-{stack}-")
    assert f"aws s3api delete-bucket --bucket {bucket}" in remove["s3:bucket"]
    assert "node i-0123456789abcdef0" in next(f.detail for f in report.leftovers if f.ident == eni)

    markdown = tmp_path / "leaks.md"
    result = CliRunner().invoke(_app(), ["leaks", "--stack", stack, "--region", REGION, "--report", str(markdown)])
    assert result.exit_code == 1
    assert "4 leftover(s)" in result.output and f"LEFT  ec2:network-interface  {eni}" in result.output
    table = markdown.read_text()
    assert table.startswith(f"### Leak scan of `{stack}` after its destroy: **4 leftover(s)**")
    assert f"| ec2:network-interface | `{eni}` |" in table


def test_resources_of_other_stacks_and_other_projects_are_not_this_stack_s(stack):
    plant_bucket(f"{stack}x", f"retail-{stack}x-lake-raw-bucket-0000000")
    plant_bucket(stack, f"other-{stack}-bucket", project="someone-elses-project")
    plant_bucket(stack, f"retail-{stack}-svc-bucket-0000000", project=SERVICE_PROJECT)
    assert kinds(scan_of(stack).leftovers) == [("s3:bucket", f"arn:aws:s3:::retail-{stack}-svc-bucket-0000000")]


def test_a_controller_load_balancer_and_security_group_name_the_ingress_they_were_made_for(stack):
    cluster = leaks.cluster_name(stack)
    vpc, subnets = vpc_with_subnets()
    arn = controller_load_balancer(cluster, subnets)
    ec2 = client("ec2")
    group = ec2.create_security_group(
        GroupName=f"k8s-traffic-{stack}", Description="made by the controller", VpcId=vpc,
        TagSpecifications=[{"ResourceType": "security-group", "Tags": [
            {"Key": "elbv2.k8s.aws/cluster", "Value": cluster},
            {"Key": "ingress.k8s.aws/stack", "Value": "retail-inference/inference"}]}],
    )["GroupId"]
    report = scan_of(stack)
    found = {f.ident: f for f in report.leftovers}
    assert set(found) == {arn, group}
    assert found[arn].detail == "made for Ingress retail-inference/inference"
    assert found[arn].remove == f"aws elbv2 delete-load-balancer --load-balancer-arn {arn} --region {REGION}"
    assert found[group].remove == f"aws ec2 delete-security-group --group-id {group} --region {REGION}"


def test_everything_left_in_a_vpc_of_the_stack_counts_but_its_default_security_group_goes_with_it(stack):
    vpc, subnets = vpc_with_subnets()
    ec2 = client("ec2")
    ec2.create_tags(Resources=[vpc], Tags=stack_tags(stack))
    group = ec2.create_security_group(GroupName="lambda", Description="untagged", VpcId=vpc)["GroupId"]
    eni = ec2.create_network_interface(SubnetId=subnets[1], Description="ELB app/k8s-x")["NetworkInterface"][
        "NetworkInterfaceId"]
    report = scan_of(stack)
    assert kinds(report.leftovers) == sorted([
        ("ec2:network-interface", eni), ("ec2:security-group", group), ("ec2:vpc", f"arn:aws:ec2:{REGION}:"
                                                                                    f"123456789012:vpc/{vpc}")])


def test_what_remains_by_design_or_is_pending_deletion_is_listed_but_not_counted(stack):
    kms = client("kms")
    tags = [{"TagKey": t["Key"], "TagValue": t["Value"]} for t in stack_tags(stack)]
    pending_key = kms.create_key(Description=f"retail-{stack}-kms: EKS secrets", Tags=tags)["KeyMetadata"]
    kms.schedule_key_deletion(KeyId=pending_key["KeyId"], PendingWindowInDays=7)
    pending = pending_key["Arn"]
    audit_key = kms.create_key(Description=f"retail-{stack}-kms: CloudTrail log files", Tags=tags)["KeyMetadata"]["Arn"]
    audit_bucket = plant_bucket(stack, f"retail-{stack}-audit-logs-bucket-9f8e7d6")
    live_key = kms.create_key(Description=f"retail-{stack}-kms: S3, ECR and SageMaker data", Tags=tags)[
        "KeyMetadata"]["Arn"]

    report = scan_of(stack)
    assert kinds(report.leftovers) == [("kms:key", live_key)]
    expected = {f.ident: f.expected for f in report.expected}
    assert expected[pending].startswith("pending deletion on ")
    assert expected[audit_key].startswith("kept by design")
    assert expected[f"arn:aws:s3:::{audit_bucket}"].startswith("kept by design")
    assert any(line.startswith(f"  expected  kms:key  {pending}") for line in report.lines())


def test_a_deleted_nat_gateway_the_tagging_api_still_lists_is_not_a_leftover_a_live_one_is(stack):
    _, subnets = vpc_with_subnets()
    ec2 = client("ec2")
    tags = [{"ResourceType": "natgateway", "Tags": stack_tags(stack)}]
    gateways = [ec2.create_nat_gateway(SubnetId=subnets[0], AllocationId=ec2.allocate_address(Domain="vpc")[
        "AllocationId"], TagSpecifications=tags)["NatGateway"]["NatGatewayId"] for _ in range(2)]
    ec2.delete_nat_gateway(NatGatewayId=gateways[0])
    tagged = client("resourcegroupstaggingapi").get_resources(TagFilters=leaks.stack_tag_filters(stack))
    assert len(tagged["ResourceTagMappingList"]) == 2, "the tagging API still lists the deleted one"
    assert [f.ident.rsplit("/", 1)[-1] for f in scan_of(stack).leftovers] == [gateways[1]]


def test_iam_roles_count_when_named_and_tagged_for_the_stack(stack):
    iam = client("iam")
    trust = json.dumps({"Version": "2012-10-17", "Statement": []})
    role = iam.create_role(RoleName=f"retail-{stack}-eks-role-1a2b3c4", AssumeRolePolicyDocument=trust,
                           Tags=stack_tags(stack))["Role"]["Arn"]
    iam.create_role(RoleName=f"retail-{stack}-other-0000000", AssumeRolePolicyDocument=trust,
                    Tags=stack_tags(f"{stack}-other"))
    assert kinds(scan_of(stack).leftovers) == [("iam:role", role)]


def test_a_source_that_cannot_be_asked_makes_the_scan_fail_naming_it(stack):
    def clients(service: str):
        if service == "iam":
            raise PermissionError("no iam:ListRoles")
        return client(service)

    report = scan(LeakScope.of(stack, REGION), clients)
    assert not report.clean and report.leftovers == []
    assert report.errors == ["IAM roles named and tagged for the stack: PermissionError: no iam:ListRoles",
                             "IAM OIDC providers and policies tagged for the stack: PermissionError: no iam:ListRoles"]
    assert "2 source(s) not checked" in report.summary()


def test_the_scope_comes_from_the_platform_outputs_when_they_are_known():
    scope = LeakScope.of("dev", "us-east-1", {"clusterName": "c", "region": REGION, "vpcId": "vpc-1"})
    assert scope == LeakScope("dev", REGION, "c", ("vpc-1",))
    assert LeakScope.of("dev", REGION) == LeakScope("dev", REGION, "retail-dev-eks", ())


def test_the_naming_rules_are_the_programs():
    """Without outputs the scan names the cluster and the tags as infra.config does for the same stack."""
    identity = StackIdentity(project=PLATFORM_PROJECT, environment="ephemeral-pr-42", region=REGION, owner="o",
                             cost_center="c")
    assert leaks.name_prefix("ephemeral-pr-42") == identity.name_prefix
    assert leaks.cluster_name("ephemeral-pr-42") == PlatformConfig.model_construct(
        environment="ephemeral-pr-42").cluster_name
    for tag_filter in leaks.stack_tag_filters("ephemeral-pr-42"):
        assert identity.default_tags[tag_filter["Key"]] in tag_filter["Values"]


@pytest.mark.parametrize(("arn", "kind", "command"), [
    ("arn:aws:logs:ap-southeast-1:1:log-group:/aws/eks/retail-dev-eks/cluster:*", "logs:log-group",
     "aws logs delete-log-group --log-group-name /aws/eks/retail-dev-eks/cluster --region r"),
    ("arn:aws:elasticloadbalancing:ap-southeast-1:1:loadbalancer/a1b2", "elasticloadbalancing:loadbalancer",
     "aws elb delete-load-balancer --load-balancer-name a1b2 --region r"),
    ("arn:aws:eks:ap-southeast-1:1:nodegroup/retail-dev-eks/service/0a", "eks:nodegroup",
     "aws eks delete-nodegroup --cluster-name retail-dev-eks --nodegroup-name service --region r"),
    ("arn:aws:sns:ap-southeast-1:1:retail-dev-alerts", "sns",
     "aws sns delete-topic --topic-arn arn:aws:sns:ap-southeast-1:1:retail-dev-alerts --region r"),
    ("arn:aws:ec2:ap-southeast-1:1:elastic-ip/eipalloc-1", "ec2:elastic-ip",
     "aws ec2 release-address --allocation-id eipalloc-1 --region r"),
    ("arn:aws:glue:ap-southeast-1:1:database/retail_dev", "glue:database",
     "aws glue delete-database --name retail_dev --region r (its tables go with it)"),
    ("arn:aws:athena:ap-southeast-1:1:workgroup/retail-dev-lake", "athena:workgroup",
     "aws athena delete-work-group --work-group retail-dev-lake --recursive-delete-option --region r"),
])
def test_each_kind_gets_its_own_remove_command(arn, kind, command):
    parsed_kind, ident = parse_arn(arn)
    assert parsed_kind == kind
    assert remove_command(kind, ident, arn, "r") == command


def test_an_unknown_kind_is_still_reported_with_its_arn():
    arn = "arn:aws:airflow:ap-southeast-1:1:environment/x"
    assert remove_command(*parse_arn(arn), arn, "r").endswith(f"({arn}); nothing here knows this kind")


# --- before the destroy: Kubernetes objects, then their load balancers ----------------------------------------------


class RecordingKubectl:
    """kubectl as a test sees it: canned `get` answers per namespace; every call recorded.

    A deleted object is gone at once, unless it is `held` (`kind/name`): then it stays, as an object whose
    controller has not yet removed its finalizer, until the test calls `release`. `get kind/name ... --output
    name` answers as kubectl does, `<resource>.<group>/<name>` for each object still there.
    """

    def __init__(self, items_by_namespace: dict[str, list[dict]], fail: str = "", held: set[str] = frozenset()) -> None:
        self.items = items_by_namespace
        self.fail = fail
        self.held = set(held)
        self.calls: list[list[str]] = []
        self.kubeconfigs: list[str] = []

    def session(self, kubeconfig: str):
        self.kubeconfigs.append(kubeconfig)
        return contextlib.nullcontext(self)

    def release(self, name: str) -> None:
        self.held.discard(name)

    def __call__(self, args) -> str:
        self.calls.append(list(args))
        if self.fail and args[0] == self.fail:
            raise KubectlFailed(f"kubectl {args[0]}: Unauthorized")
        if args[0] == "get" and "/" in args[1]:
            names = [a for a in args[1:args.index("--namespace")] if a in self.held]
            return "".join(f"{'ingress.networking.k8s.io' if n.startswith('ingress/') else 'service'}/"
                           f"{n.split('/', 1)[1]}\n" for n in names)
        if args[0] == "get":
            return json.dumps({"kind": "List", "items": self.items.get(args[args.index("--namespace") + 1], [])})
        return ""


def k8s(kind: str, namespace: str, name: str, service_type: str = "", annotations: dict | None = None) -> dict:
    item = {"kind": kind, "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}}}
    if service_type:
        item["spec"] = {"type": service_type}
    return item


SERVICE_OUTPUTS = {"namespace": "retail-inference", "batchScoringNamespace": "retail-batch"}


class FakeTime:
    """A clock that moves only when slept on; `on_sleep` runs at each sleep (e.g. the controller deleting)."""

    def __init__(self, on_sleep=None) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep:
            self.on_sleep(len(self.sleeps))


def proven(kubectl: RecordingKubectl, time: FakeTime, lines: list[str], wait: float = 60) -> ProvenTeardown:
    return ProvenTeardown(REGION, echo=lines.append, clients_for=lambda _region: client, kubectl=kubectl.session,
                          wait_seconds=wait, sleep=time.sleep, clock=time.clock)


def test_ingresses_and_load_balancer_services_are_deleted_and_their_load_balancer_awaited(stack):
    cluster = leaks.cluster_name(stack)
    _, subnets = vpc_with_subnets()
    arn = controller_load_balancer(cluster, subnets)
    kubectl = RecordingKubectl({
        "retail-inference": [k8s("Ingress", "retail-inference", "inference"),
                             k8s("Service", "retail-inference", "inference", "ClusterIP")],
        "retail-batch": [k8s("Service", "retail-batch", "exposed", "LoadBalancer")],
    })
    elbv2 = client("elbv2")
    time = FakeTime(on_sleep=lambda n: n == 2 and elbv2.delete_load_balancer(LoadBalancerArn=arn))
    lines: list[str] = []
    proven(kubectl, time, lines).before_destroy(stack, {"kubeconfig": '{"apiVersion": "v1"}'}, SERVICE_OUTPUTS)

    assert kubectl.kubeconfigs == ['{"apiVersion": "v1"}']
    assert [c for c in kubectl.calls if c[0] == "delete"] == [
        ["delete", "ingress", "inference", "--namespace", "retail-inference", "--wait=false", "--ignore-not-found"],
        ["delete", "service", "exposed", "--namespace", "retail-batch", "--wait=false", "--ignore-not-found"],
    ]
    assert len(time.sleeps) == 2, "polled until the controller had deleted the ALB"
    assert lines[-1] == "pre-destroy: their load balancers are gone"


def test_the_wait_for_load_balancers_is_bounded_and_says_what_is_left(stack):
    cluster = leaks.cluster_name(stack)
    _, subnets = vpc_with_subnets()
    arn = controller_load_balancer(cluster, subnets, owner="shared-group")
    controller_load_balancer(cluster, subnets, owner="retail-other/unrelated")
    kubectl = RecordingKubectl({"retail-inference": [
        k8s("Ingress", "retail-inference", "inference", annotations={"alb.ingress.kubernetes.io/group.name":
                                                                    "shared-group"})]})
    time = FakeTime()
    lines: list[str] = []
    proven(kubectl, time, lines, wait=25).before_destroy(stack, {"kubeconfig": "k"}, SERVICE_OUTPUTS)
    assert sum(time.sleeps) == 25 and time.sleeps == [10, 10, 5]
    assert lines[-1] == f"pre-destroy: 1 load balancer(s) still there after 25s: {arn}"


def test_a_kubectl_failure_is_reported_and_the_destroy_goes_on(stack):
    kubectl = RecordingKubectl({"retail-inference": [k8s("Ingress", "retail-inference", "inference")]},
                               fail="delete")
    lines: list[str] = []
    proven(kubectl, FakeTime(), lines).before_destroy(stack, {"kubeconfig": "k"}, SERVICE_OUTPUTS)
    assert "could not remove Ingresses and LoadBalancer Services (kubectl delete: Unauthorized)" in lines[-1]


def test_without_a_cluster_nothing_is_asked_of_kubectl(stack):
    kubectl = RecordingKubectl({})
    lines: list[str] = []
    proven(kubectl, FakeTime(), lines).before_destroy(stack, {}, {})
    assert kubectl.calls == [] and "no kubeconfig output" in lines[-1]


def test_a_service_that_never_came_up_is_looked_for_in_the_default_namespaces(stack):
    kubectl = RecordingKubectl({})
    lines: list[str] = []
    proven(kubectl, FakeTime(), lines).before_destroy(stack, {"kubeconfig": "k"}, {})
    assert [c[c.index("--namespace") + 1] for c in kubectl.calls] == ["retail-inference", "retail-batch"]
    assert lines[-1] == "pre-destroy: no Ingress or LoadBalancer Service in retail-inference, retail-batch"


def test_the_deleted_objects_are_awaited_until_their_controller_lets_them_go(stack):
    """The ALB is gone early, but the controller keeps its finalizer until the target groups and security groups are
    deleted too: the teardown waits for the Ingress itself."""
    kubectl = RecordingKubectl({"retail-inference": [k8s("Ingress", "retail-inference", "inference"),
                                                     k8s("Service", "retail-inference", "web", "LoadBalancer")]},
                               held={"ingress/inference"})
    time = FakeTime(on_sleep=lambda n: n == 3 and kubectl.release("ingress/inference"))
    lines: list[str] = []
    proven(kubectl, time, lines).before_destroy(stack, {"kubeconfig": "k"}, SERVICE_OUTPUTS)

    polls = [c for c in kubectl.calls if c[0] == "get" and "/" in c[1]]
    assert polls[0] == ["get", "ingress/inference", "service/web", "--namespace", "retail-inference",
                        "--ignore-not-found", "--output", "name"]
    assert len(polls) == 4 and time.sleeps == [10, 10, 10]
    assert lines[-2:] == ["pre-destroy: the objects are gone (their controller finalized them)",
                          "pre-destroy: their load balancers are gone"]


def test_an_object_still_terminating_when_the_wait_ends_is_named_and_the_destroy_goes_on(stack):
    kubectl = RecordingKubectl({"retail-inference": [k8s("Ingress", "retail-inference", "inference")]},
                               held={"ingress/inference"})
    time = FakeTime()
    lines: list[str] = []
    proven(kubectl, time, lines, wait=25).before_destroy(stack, {"kubeconfig": "k"}, SERVICE_OUTPUTS)
    assert time.sleeps == [10, 10, 5], "one budget for the objects and their load balancers"
    assert lines[-2].startswith("pre-destroy: still terminating after 25s: Ingress retail-inference/inference (the "
                                "Load Balancer Controller keeps its finalizer until it has deleted their load "
                                "balancer, target groups and security groups)")


def test_the_teardown_asks_aws_in_the_region_of_the_platform_stack_not_the_one_it_was_given(stack):
    """A stack whose platform outputs say eu-west-1 is scanned there, and its load balancers awaited there, though
    the teardown was made with another region (the one a stack file names, used only without that output)."""
    ec2 = aws_clients("eu-west-1")("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.61.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.61.{i}.0/24", AvailabilityZone=f"eu-west-1{zone}")[
        "Subnet"]["SubnetId"] for i, zone in enumerate("ab")]
    ec2.create_tags(Resources=[vpc], Tags=stack_tags(stack))
    arn = aws_clients("eu-west-1")("elbv2").create_load_balancer(
        Name=f"k8s-{uuid.uuid4().hex[:8]}", Subnets=subnets,
        Tags=[{"Key": "elbv2.k8s.aws/cluster", "Value": leaks.cluster_name(stack)},
              {"Key": "ingress.k8s.aws/stack", "Value": "retail-inference/inference"}])["LoadBalancers"][0][
        "LoadBalancerArn"]
    asked: list[str] = []

    def clients_for(region: str):
        asked.append(region)
        return aws_clients(region)

    lines: list[str] = []
    time = FakeTime()
    checks = ProvenTeardown("ap-southeast-1", echo=lines.append, clients_for=clients_for,
                            kubectl=RecordingKubectl({"retail-inference": [
                                k8s("Ingress", "retail-inference", "inference")]}).session,
                            wait_seconds=10, sleep=time.sleep, clock=time.clock, settle_seconds=0)
    platform = {"region": "eu-west-1", "kubeconfig": "k"}
    checks.before_destroy(stack, platform, SERVICE_OUTPUTS)
    assert lines[-1] == f"pre-destroy: 1 load balancer(s) still there after 10s: {arn}"
    checks.after_destroy(stack, platform)
    assert asked == ["eu-west-1"]
    assert checks.report is not None and checks.report.scope.region == "eu-west-1"
    assert {f.ident for f in checks.report.leftovers} >= {arn, f"arn:aws:ec2:eu-west-1:123456789012:vpc/{vpc}"}


def test_a_leftover_the_tagging_api_still_lists_after_its_deletion_is_scanned_for_again_until_it_goes(stack):
    bucket = plant_bucket(stack, f"retail-{stack}-lake-raw-bucket-1a2b3c4")
    time = FakeTime(on_sleep=lambda n: n == 2 and client("s3").delete_bucket(Bucket=bucket))
    lines: list[str] = []
    checks = proven(RecordingKubectl({}), time, lines)
    checks.after_destroy(stack, {})
    assert time.sleeps == [30, 30] and checks.report is not None and checks.report.clean
    assert lines[0].startswith(f"leak scan: 1 leftover(s) of {stack}; deletions reach the tagging API late")
    assert lines[-1].endswith("clean, nothing of it remains")


def test_a_leftover_still_there_after_the_settle_time_counts(stack):
    plant_bucket(stack, f"retail-{stack}-lake-raw-bucket-1a2b3c4")
    time = FakeTime()
    lines: list[str] = []
    checks = proven(RecordingKubectl({}), time, lines)
    checks.settle_seconds = 45
    checks.after_destroy(stack, {})
    assert time.sleeps == [30, 15] and checks.report is not None and len(checks.report.leftovers) == 1
    assert lines[-1].startswith("If the stacks still exist, `pulumi destroy` of train-")


def test_an_ingress_group_or_a_service_is_matched_by_the_tags_its_controller_writes():
    assert LoadBalancedObject("Ingress", "ns", "web", group="g").owner_tags == {("ingress.k8s.aws/stack", "g")}
    assert LoadBalancedObject("Service", "ns", "web").owner_tags == {
        ("service.k8s.aws/stack", "ns/web"), ("kubernetes.io/service-name", "ns/web")}


def test_kubectl_runs_with_the_kubeconfig_in_a_private_file_that_is_removed_afterwards(tmp_path, monkeypatch):
    record = tmp_path / "record"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_in = bin_dir / "kubectl"
    stand_in.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > {record}\n'
                        f'stat -c %a "$2" >> {record}\ncat "$2" >> {record}\necho \'{{"items": []}}\'\n')
    stand_in.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with kubectl_session("apiVersion: v1\n") as kubectl:
        assert kubectl(["get", "ingress,service", "--namespace", "ns", "--output", "json"]) == '{"items": []}\n'
    args = record.read_text().splitlines()
    assert args[0] == "--kubeconfig" and args[2:8] == ["--request-timeout=30s", "get", "ingress,service",
                                                       "--namespace", "ns", "--output"]
    assert args[-2:] == ["600", "apiVersion: v1"]
    assert not Path(args[1]).exists()


def test_without_kubectl_the_session_says_so(monkeypatch):
    monkeypatch.setattr("infra.teardown.shutil.which", lambda _: None)
    with pytest.raises(KubectlFailed, match="kubectl is not on PATH"), kubectl_session("k"):
        pass


# --- wired into destroy and ephemeral -----------------------------------------------------------------------------


class RecordingChecks:
    """TeardownChecks that note when they ran, in the runners' journal."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.seen: list[tuple] = []

    def before_destroy(self, stack, platform, service) -> None:
        self.journal.calls.append(("checks", "before_destroy", stack))
        self.seen.append(("before", dict(platform), dict(service)))

    def after_destroy(self, stack, platform) -> None:
        self.journal.calls.append(("checks", "after_destroy", stack))
        self.seen.append(("after", dict(platform)))


PLATFORM = {"clusterName": "retail-dev-eks", "kubeconfig": "{}", "vpcId": "vpc-1"}
SERVICE = {"endpoint": "http://alb", "namespace": "retail-inference"}


def recording_runners(**platform_kwargs) -> Runners:
    journal = Journal()
    outputs = {"dev": PLATFORM, "ephemeral-pr-42": PLATFORM}
    return Runners(RecordingRunner("platform", journal, outputs_by_stack=outputs, **platform_kwargs),
                   RecordingRunner("service", journal, outputs_by_stack={k: SERVICE for k in outputs}))


def steps(pair: Runners) -> list[tuple]:
    return [c[:2] for c in pair.platform.journal.calls if c[1] in {"before_destroy", "after_destroy", "destroy",
                                                                     "remove_stack", "run_command"}]


def test_destroy_removes_load_balanced_objects_first_and_scans_last():
    pair = recording_runners()
    checks = RecordingChecks(pair.platform.journal)
    automation.destroy(pair, "dev", empty=lambda _: None, checks=checks, echo=lambda _: None)
    assert steps(pair) == [("checks", "before_destroy"), ("service", "destroy"), ("platform", "destroy"),
                           ("checks", "after_destroy")]
    assert checks.seen == [("before", PLATFORM, SERVICE), ("after", PLATFORM)]


def test_a_failing_pre_destroy_check_is_reported_and_the_destroy_still_runs():
    pair = recording_runners()
    checks = RecordingChecks(pair.platform.journal)

    def fail(*_args) -> None:
        raise RuntimeError("cluster unreachable")

    checks.before_destroy = fail
    lines: list[str] = []
    automation.destroy(pair, "dev", checks=checks, echo=lines.append)
    assert steps(pair) == [("service", "destroy"), ("platform", "destroy"), ("checks", "after_destroy")]
    assert lines == ["pre-destroy checks of dev failed (RuntimeError: cluster unreachable); destroying anyway"]


def test_the_scan_runs_even_when_the_destroy_fails():
    pair = recording_runners(fail_on={"destroy": 99})
    checks = RecordingChecks(pair.platform.journal)
    with pytest.raises(TeardownFailed):
        automation.destroy(pair, "dev", checks=checks, echo=lambda _: None)
    assert steps(pair)[-1] == ("checks", "after_destroy")


def test_ephemeral_runs_the_checks_around_the_teardown_with_the_outputs_of_the_ups():
    pair = recording_runners()
    checks = RecordingChecks(pair.platform.journal)
    code = automation.ephemeral(pair, "pr-42", ["true"], PROJECT_DIR, lambda _: RELEASE, checks=checks,
                                echo=lambda _: None)
    assert code == 0
    assert steps(pair) == [("service", "run_command"), ("checks", "before_destroy"), ("service", "destroy"),
                           ("service", "remove_stack"), ("platform", "destroy"), ("platform", "remove_stack"),
                           ("checks", "after_destroy")]
    assert checks.seen[0] == ("before", PLATFORM, SERVICE)


def test_an_ephemeral_platform_that_failed_to_come_up_is_still_scanned():
    pair = recording_runners(fail_on={"up": 1})
    checks = RecordingChecks(pair.platform.journal)
    with pytest.raises(PulumiFailed):
        automation.ephemeral(pair, "pr-42", ["true"], PROJECT_DIR, lambda _: RELEASE, checks=checks,
                             echo=lambda _: None)
    assert checks.seen == [("before", {}, {}), ("after", {})]


def _app():
    from cli.infra import app

    return app


def test_ephemeral_exits_1_when_the_command_passed_but_something_leaked_and_writes_the_report(
    stack, tmp_path, monkeypatch
):
    """The CLI up to the Pulumi CLI boundary: recording runners whose destroy deletes the stack's bucket, as
    `pulumi destroy` would, but not the network interface the VPC CNI left behind."""
    name = stack.removeprefix("ephemeral-")
    bucket = plant_bucket(stack, f"retail-{stack}-lake-raw-bucket-1a2b3c4")
    _, subnets = vpc_with_subnets()
    eni = client("ec2").create_network_interface(
        SubnetId=subnets[0], TagSpecifications=[{"ResourceType": "network-interface", "Tags": [
            {"Key": "cluster.k8s.amazonaws.com/name", "Value": leaks.cluster_name(stack)}]}],
    )["NetworkInterface"]["NetworkInterfaceId"]
    s3 = client("s3")

    def destroy_the_stack(_stack: str) -> None:
        if bucket in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
            s3.delete_bucket(Bucket=bucket)

    journal = Journal()
    platform = RecordingRunner("platform", journal, outputs_by_stack={stack: {"region": REGION}},
                               on_destroy=destroy_the_stack)
    pair = Runners(platform, RecordingRunner("service", journal))
    import cli.infra
    import infra.teardown

    monkeypatch.setattr(infra.teardown, "ProvenTeardown", functools.partial(ProvenTeardown, settle_seconds=0))
    monkeypatch.setattr(automation, "require_cli", lambda command: "/usr/bin/pulumi")
    monkeypatch.setattr(automation, "inline_runners", lambda *args, **kwargs: pair)
    monkeypatch.setattr(cli.infra, "release_resolver", lambda *args: lambda _: RELEASE)
    report = tmp_path / "leak-report.md"
    result = CliRunner().invoke(_app(), ["ephemeral", "--name", name, "--project-dir", str(PROJECT_DIR),
                                         "--leak-report", str(report), "--", "true"])
    assert result.exit_code == 1, result.output
    assert f"LEFT  ec2:network-interface  {eni}" in result.output and bucket not in result.output
    assert f"| ec2:network-interface | `{eni}` |" in report.read_text()

    client("ec2").delete_network_interface(NetworkInterfaceId=eni)
    result = CliRunner().invoke(_app(), ["ephemeral", "--name", name, "--project-dir", str(PROJECT_DIR),
                                         "--leak-report", str(report), "--", "true"])
    assert result.exit_code == 0, result.output
    assert report.read_text().startswith(f"### Leak scan of `{stack}` after its destroy: clean")


def project_with_regions(root: Path, **regions: str) -> Path:
    """A platform project folder whose stack files name these regions (`dev="us-west-2"`: Pulumi.dev.yaml)."""
    root.mkdir(exist_ok=True)
    (root / "Pulumi.yaml").write_text("name: retail-mlops\nruntime: python\n")
    for stack, region in regions.items():
        (root / f"Pulumi.{stack}.yaml").write_text(f"config:\n  aws:region: {region}\n")
    return root


def test_destroy_works_in_the_region_of_the_stack_it_destroys(tmp_path, monkeypatch, moto_endpoint):
    """`destroy --stack dev` empties and scans in dev's region, not in the ephemeral stacks' (the platform's outputs
    name no region here, as for a stack that never came up)."""
    project = project_with_regions(tmp_path / "project", dev="us-west-2", ephemeral="ap-southeast-1")
    journal = Journal()
    pair = Runners(RecordingRunner("platform", journal), RecordingRunner("service", journal))
    emptied: list[str] = []
    import infra.teardown

    monkeypatch.setattr(infra.teardown, "ProvenTeardown", functools.partial(ProvenTeardown, settle_seconds=0))
    monkeypatch.setattr(automation, "require_cli", lambda command: "/usr/bin/pulumi")
    monkeypatch.setattr(automation, "project_runners", lambda *args, **kwargs: contextlib.nullcontext(pair))
    monkeypatch.setattr(automation, "StackEmptier", lambda region: emptied.append(region) or (lambda _: None))
    result = CliRunner().invoke(_app(), ["destroy", "--stack", "dev", "--yes", "--project-dir", str(project)])
    assert "Leak scan of stack dev in us-west-2 (cluster retail-dev-eks)" in result.output, result.output
    assert emptied == ["us-west-2"]


def test_leaks_scans_in_the_stack_s_own_region_and_asks_for_one_it_cannot_tell(tmp_path, stack):
    project = project_with_regions(tmp_path / "project", dev="us-west-2", ephemeral="eu-west-1")
    result = CliRunner().invoke(_app(), ["leaks", "--stack", "dev", "--project-dir", str(project)])
    assert "Leak scan of stack dev in us-west-2 " in result.output, result.output
    result = CliRunner().invoke(_app(), ["leaks", "--stack", stack, "--project-dir", str(project)])
    assert f"Leak scan of stack {stack} in eu-west-1 " in result.output, result.output
    result = CliRunner().invoke(_app(), ["leaks", "--stack", "qa", "--project-dir", str(project)])
    assert result.exit_code == 2 and "no region for stack qa: " in result.output
    assert result.output.rstrip().endswith("; pass --region")


# --- the pull request workflow posts the report ------------------------------------------------------------------


@pytest.mark.parametrize(("exit_code", "writes_report"), [(1, True), (0, True), (3, False)])
def test_the_pr_environment_posts_the_leak_report_and_keeps_the_command_s_exit_code(
    tmp_path, exit_code, writes_report
):
    from tests.cicd.definitions import load, run_step, steps

    (deploy,) = [s for s in steps(load("pull-request.yml")["jobs"]["ephemeral"]) if "ephemeral" in s.get("run", "")]
    assert deploy["env"]["LEAK_REPORT"] == "${{ runner.temp }}/leak-report.md"
    report = tmp_path / "leak-report.md"
    written = 'echo "### Leak scan" > "$LEAK_REPORT"\n' if writes_report else ""
    uv = f'echo "$@" > {tmp_path}/uv-args\n{written}exit {exit_code}'
    gh = f'echo "$@" > {tmp_path}/gh-args'
    code, _, log = run_step(deploy["run"], tmp_path, {"LEAK_REPORT": str(report), "PR_NUMBER": "42", "NAME": "pr-42"},
                            {"uv": uv, "gh": gh})
    assert code == exit_code, log
    assert f"--leak-report {report} --" in (tmp_path / "uv-args").read_text()
    posted = tmp_path / "gh-args"
    if writes_report:
        assert posted.read_text().split() == ["pr", "comment", "42", "--edit-last", "--create-if-none",
                                              "--body-file", str(report)]
    else:
        assert not posted.exists()


GH_PR_COMMENT = r"""
# `gh pr comment` as cli/cli documents it: --edit-last replaces the caller's last comment on the pull request and
# fails when there is none, unless --create-if-none is given; without --edit-last a new comment is added.
body=""; prev=""
for arg in "$@"; do [ "$prev" = "--body-file" ] && body=$arg; prev=$arg; done
last=$(ls "$COMMENTS" | sort -n | tail -n 1)
case " $* " in *" --edit-last "*)
  if [ -n "$last" ]; then cp "$body" "$COMMENTS/$last"; exit 0; fi
  case " $* " in *" --create-if-none "*) ;; *) echo "no comments found for current user" >&2; exit 1 ;; esac ;;
esac
cp "$body" "$COMMENTS/$(( ${last:-0} + 1 ))"
"""


def test_each_run_of_the_pr_environment_updates_one_leak_report_comment(tmp_path):
    from tests.cicd.definitions import load, run_step, steps

    (deploy,) = [s for s in steps(load("pull-request.yml")["jobs"]["ephemeral"]) if "ephemeral" in s.get("run", "")]
    comments = tmp_path / "comments"
    comments.mkdir()
    for run in ("1", "2"):
        env = {"LEAK_REPORT": str(tmp_path / "leak-report.md"), "PR_NUMBER": "42", "NAME": "pr-42",
               "COMMENTS": str(comments), "RUN": run}
        code, _, log = run_step(deploy["run"], tmp_path, env, {
            "uv": 'echo "### Leak scan, run $RUN" > "$LEAK_REPORT"', "gh": GH_PR_COMMENT})
        assert code == 0, log
    assert [(c.name, c.read_text()) for c in comments.iterdir()] == [("1", "### Leak scan, run 2\n")]


def test_the_log_group_eks_recreates_after_the_destroy_is_a_leftover_with_its_delete_command(stack):
    cluster = leaks.cluster_name(stack)
    client("logs").create_log_group(logGroupName=f"/aws/eks/{cluster}/cluster")
    client("logs").create_log_group(logGroupName=f"/aws/eks/{cluster}-other/cluster")
    (finding,) = [f for f in scan_of(stack).leftovers if f.kind == "logs:log-group"]
    assert f"/aws/eks/{cluster}/cluster" in finding.ident
    assert finding.remove == f"aws logs delete-log-group --log-group-name /aws/eks/{cluster}/cluster --region {REGION}"


def test_the_global_iam_oidc_provider_policy_and_budget_of_the_stack_are_leftovers(stack):
    iam = client("iam")
    provider = iam.create_open_id_connect_provider(
        Url=f"https://oidc.eks.{REGION}.amazonaws.com/id/{stack.upper()}", ClientIDList=["sts.amazonaws.com"],
        ThumbprintList=["a" * 40], Tags=stack_tags(stack))["OpenIDConnectProviderArn"]
    document = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ec2:Describe*",
                                                                     "Resource": "*"}]})
    policy = iam.create_policy(PolicyName=f"retail-{stack}-lbc-policy-1a2b3c4", PolicyDocument=document,
                               Tags=stack_tags(stack))["Policy"]["Arn"]
    iam.create_policy(PolicyName=f"retail-{stack}-foreign-0000000", PolicyDocument=document,
                      Tags=stack_tags(f"{stack}-other"))
    account = client("sts").get_caller_identity()["Account"]
    client("budgets").create_budget(AccountId=account, Budget={
        "BudgetName": f"retail-{stack}-obs-monthly-budget-1a2b3c4", "BudgetLimit": {"Amount": "100", "Unit": "USD"},
        "TimeUnit": "MONTHLY", "BudgetType": "COST"})
    found = {(f.kind, f.ident) for f in scan_of(stack).leftovers}
    assert {("iam:oidc-provider", provider), ("iam:policy", policy),
            ("budgets:budget", f"retail-{stack}-obs-monthly-budget-1a2b3c4")} <= found
    assert not any(ident.endswith("foreign-0000000") for _, ident in found)


def test_destroy_removes_the_training_stack_first_its_security_group_would_keep_the_vpc():
    pair = recording_runners()
    training = RecordingRunner("training", pair.platform.journal)
    pair = Runners(pair.platform, pair.service, training)
    automation.destroy(pair, "dev", empty=lambda _: None, echo=lambda _: None)
    destroys = [c[:3] for c in pair.platform.journal.calls if c[1] in {"destroy", "remove_stack"}]
    assert destroys == [("training", "destroy", "train-dev"), ("training", "remove_stack", "train-dev"),
                        ("service", "destroy", "dev"), ("platform", "destroy", "dev")]


def test_destroy_goes_on_without_a_training_stack():
    pair = recording_runners()
    training = RecordingRunner("training", pair.platform.journal, fail_on={"select_stack": 1})
    lines: list[str] = []
    automation.destroy(Runners(pair.platform, pair.service, training), "dev", echo=lines.append)
    assert "no training stack train-dev to destroy" in lines
    assert [c[0] for c in pair.platform.journal.calls if c[1] == "destroy"] == ["service", "platform"]


def test_the_project_runners_include_the_training_project_in_a_work_folder_removed_after_use():
    with automation.project_runners(PROJECT_DIR, echo=lambda _: None) as runners:
        training = runners.training
        assert isinstance(training, automation.AutomationRunner) and training.work_dir.is_dir()
    assert training.project_name == "retail-mlops-training"
    assert not training.work_dir.exists()


def work_folders(runners: Runners) -> list[tuple[Path, bool]]:
    """The training and lake runners' work folders, and whether each exists now."""
    return [(runner.work_dir, runner.work_dir.is_dir()) for runner in (runners.training, runners.lake)]


@pytest.mark.parametrize("service_only", [False, True])
def test_up_deploys_with_the_runners_work_folders_in_place_and_removes_them_after(monkeypatch, service_only):
    """`retail infra up` hands its deploy the four runners while their work folders exist, and leaves none behind."""
    import cli.infra

    folders: list[tuple[Path, bool]] = []

    def deploy(runners, stack, directory, resolver):
        folders.extend(work_folders(runners))
        return {}, {"endpoint": None}

    monkeypatch.setattr(automation, "require_cli", lambda command: "/usr/bin/pulumi")
    monkeypatch.setattr(automation, "deploy_service" if service_only else "deploy", deploy)
    monkeypatch.setattr(cli.infra, "release_resolver", lambda *args: None)
    command = ["up", "--stack", "dev", "--no-smoke", "--project-dir", str(PROJECT_DIR)]
    result = CliRunner().invoke(_app(), command + ["--service-only"] * service_only)
    assert result.exit_code == 0, result.output
    assert [existed for _, existed in folders] == [True, True]
    assert not any(folder.exists() for folder, _ in folders)


def test_rollback_reads_the_current_release_and_deploys_with_the_runners_work_folders_in_place(monkeypatch):
    """`retail infra rollback` reads the release served now and deploys the one before it in one set of runners,
    whose work folders are gone afterwards."""
    folders: list[tuple[Path, bool]] = []
    deployed: list[object] = []

    def current_release(runner, stack):
        return Release("repo@sha256:" + "a" * 64, "arn:aws:sagemaker:ap-southeast-1:123456789012:model-package/g/2")

    def deploy_service(runners, stack, directory, resolve):
        folders.extend(work_folders(runners))
        deployed.append(resolve)
        return {}, {"endpoint": None}

    monkeypatch.setattr(automation, "require_cli", lambda command: "/usr/bin/pulumi")
    monkeypatch.setattr(automation, "current_release", current_release)
    monkeypatch.setattr(automation, "deploy_service", deploy_service)
    result = CliRunner().invoke(_app(), ["rollback", "--stack", "dev", "--no-smoke", "--project-dir", str(PROJECT_DIR)])
    assert result.exit_code == 0, result.output
    assert [existed for _, existed in folders] == [True, True]
    assert not any(folder.exists() for folder, _ in folders)
    assert len(deployed) == 1 and callable(deployed[0])
