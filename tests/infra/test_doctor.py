"""`retail infra doctor`: the preflight checks against moto on 127.0.0.1, what they read from the offline
preview, the IAM action table, the Pulumi checks and the command's exit codes.

moto 5.2 answers Service Quotas for the `vpc` service only and has no
iam:SimulatePrincipalPolicy: against moto as it is, those checks must say "unknown" with
the reason (never pass). The fixtures `served_quotas` and `simulated_policies` add both to
the server with AWS's shapes (quotas from a table per test; decisions from the user's own
inline policies, with their conditions evaluated on the request's context entries), so a
planted quota or a denied action fails with its fix. Each test works in a region of its
own: the moto server is shared by the whole session.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import itertools
import json
import os
import re
import stat
import warnings
from importlib import metadata
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from typer.testing import CliRunner

from cli.main import app
from infra import aws_checks, doctor, iam_simulation, pulumi_checks, stack_credentials
from infra.automation import INSTALL_HINT
from infra.config import read_stack_file
from infra.deploy_actions import actions_table, required_actions
from infra.offline import OfflineRun, run_offline
from infra.preflight import Context, DeploymentPlan, Status, TrainingPlan, plan_from_runs
from infra.providers import kinds

from .conftest import PROJECT_DIR

REGIONS = iter(["eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1", "eu-north-1", "us-east-2", "us-west-2",
                "ap-northeast-1", "ap-northeast-2", "ap-south-1", "ap-southeast-2", "sa-east-1", "us-west-1",
                "ap-southeast-1", "us-east-1"])
"""Regions enabled in moto's account (no opt-in) for the tests that create or count things, one each."""
QUIET_REGION = "ca-central-1"
"""Where no test creates anything: for the checks that only read what a fresh account has."""
USERS = itertools.count()
DEV_REGION = read_stack_file(PROJECT_DIR, "dev").config["aws:region"]
ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


@pytest.fixture
def region() -> str:
    """A region no other test of the session touches (the moto server lives as long as the session)."""
    return next(REGIONS)


def clients(key: str = "testing", secret: str = "testing"):
    """A client factory for moto (AWS_ENDPOINT_URL, set by `moto_endpoint`), one attempt per call."""
    config = Config(retries={"max_attempts": 1})

    def make(service: str, region: str):
        return boto3.client(service, region_name=region, aws_access_key_id=key, aws_secret_access_key=secret,
                            config=config)

    return make


@pytest.fixture(scope="module")
def dev_plan(dev: OfflineRun, dev_service: OfflineRun) -> DeploymentPlan:
    """dev's platform and service, with a training job as `retail train --cloud` starts it."""
    return dataclasses.replace(plan_from_runs("dev", DEV_REGION, [dev, dev_service]),
                               training=TrainingPlan("ml.m5.xlarge", 1, spot=True))


def context(plan: DeploymentPlan | None, region: str, aws=None, env=None, project_dir: Path = PROJECT_DIR,
            stack: str = "dev") -> Context:
    config = read_stack_file(project_dir, stack).config
    plan = dataclasses.replace(plan, region=region) if plan else None
    return Context(stack, project_dir, region, config, plan, aws or clients(), dict(env or {}))


def quota(service: str, code: str, name: str, value: float) -> dict:
    return {"ServiceCode": service, "QuotaCode": code, "QuotaName": name, "Value": value, "Adjustable": True,
            "GlobalQuota": False, "QuotaArn": f"arn:aws:servicequotas:::{service}/{code}"}


def healthy_quotas(training: TrainingPlan) -> dict[str, list[dict]]:
    """Service Quotas as a fresh account has them (AWS's defaults), with room for the stack."""
    usage = "spot training job usage" if training.spot else "training job usage"
    return {
        "ec2": [quota("ec2", "L-0263D0A3", "EC2-VPC Elastic IPs", 5),
                quota("ec2", "L-34B43A08", "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests", 64),
                quota("ec2", "L-1216C47A", "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances", 64)],
        "cloudtrail": [quota("cloudtrail", "L-TRAILS01", "Trails per region", 5)],
        "sagemaker": [quota("sagemaker", "L-SMTRAIN1", f"{training.instance_type} for {usage}", 4)],
    }


@pytest.fixture
def served_quotas(moto_endpoint, monkeypatch) -> dict[str, list[dict]]:
    """Service Quotas for every service in the returned table (tests fill it), as AWS answers them.

    moto has GetServiceQuota and ListAWSDefaultServiceQuotas for `vpc` only and no
    GetAWSDefaultServiceQuota; the quotas here are both applied and default values.
    """
    from moto.servicequotas.models import ServiceQuotasBackend
    from moto.servicequotas.responses import ServiceQuotasResponse

    table: dict[str, list[dict]] = {}
    moto_get, moto_list = ServiceQuotasBackend.get_service_quota, ServiceQuotasBackend.list_aws_default_service_quotas

    def get_service_quota(self, service_code: str, quota_code: str) -> dict:
        listed = [q for q in table.get(service_code, []) if q["QuotaCode"] == quota_code]
        return listed[0] if listed else moto_get(self, service_code, quota_code)

    def list_defaults(self, service_code: str) -> list[dict]:
        return table[service_code] if service_code in table else moto_list(self, service_code)

    def get_default(self) -> str:
        params = json.loads(self.body)
        return json.dumps({"Quota": self.backend.get_service_quota(params["ServiceCode"], params["QuotaCode"])})

    monkeypatch.setattr(ServiceQuotasBackend, "get_service_quota", get_service_quota)
    monkeypatch.setattr(ServiceQuotasBackend, "list_aws_default_service_quotas", list_defaults)
    monkeypatch.setattr(ServiceQuotasResponse, "get_aws_default_service_quota", get_default, raising=False)
    return table


def simulated_decision(statements: list[dict], action: str, context: dict[str, list[str]], resource: str = "*") -> dict:
    """One EvaluationResult as IAM gives it: explicit deny over allow over implicit deny; a statement applies to the
    simulated resource when one of its Resource patterns matches it (the default resource "*" is matched only by a
    "*" pattern, not by one that names resources); a statement whose StringEquals/StringNotEquals condition names a
    key the request has no value for cannot apply, and the key is reported in MissingContextValues."""
    missing, allowed, denied = set(), False, False
    for statement in statements:
        patterns = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if not any(fnmatch.fnmatchcase(action.lower(), pattern.lower()) for pattern in patterns):
            continue
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if not any(fnmatch.fnmatchcase(resource, pattern) for pattern in resources):
            continue
        applies = True
        for operator, conditions in (statement.get("Condition") or {}).items():
            for key, wanted in conditions.items():
                if key not in context:
                    missing.add(key)
                    applies = False
                    continue
                equal = bool(set(context[key]) & set([wanted] if isinstance(wanted, str) else wanted))
                applies = applies and (equal if operator == "StringEquals" else not equal)
        if applies:
            denied, allowed = denied or statement["Effect"] == "Deny", allowed or statement["Effect"] == "Allow"
    decision = "explicitDeny" if denied else "allowed" if allowed else "implicitDeny"
    result = {"EvalActionName": action, "EvalResourceName": resource, "EvalDecision": decision}
    return {**result, "MissingContextValues": sorted(missing)} if missing else result


@pytest.fixture
def simulated_policies(moto_endpoint, monkeypatch) -> list[dict[str, list[str]]]:
    """iam:SimulatePrincipalPolicy for IAM users, deciding each action on each of the ResourceArns ("*" without them)
    by the user's inline policies (`simulated_decision`), a result per action and resource; returns the context each
    request carried (key -> values)."""
    from moto.core.responses import ActionResult
    from moto.iam.responses import IamResponse

    contexts: list[dict[str, list[str]]] = []

    def simulate_principal_policy(self) -> ActionResult:
        user = self._get_param("PolicySourceArn").rsplit("/", 1)[-1]
        statements = []
        for name in self.backend.list_user_policies(user):
            document = self.backend.get_user_policy(user, name)["policy_document"]
            statements += (json.loads(document) if isinstance(document, str) else document)["Statement"]
        context = {entry["ContextKeyName"]: list(entry["ContextKeyValues"])
                   for entry in self._get_param("ContextEntries", [])}
        contexts.append(context)
        results = [simulated_decision(statements, action, context, resource)
                   for action in self._get_param("ActionNames", [])
                   for resource in self._get_param("ResourceArns", ["*"])]
        return ActionResult({"EvaluationResults": results, "IsTruncated": False})

    monkeypatch.setattr(IamResponse, "simulate_principal_policy", simulate_principal_policy, raising=False)
    return contexts


def deployer(policy: dict) -> tuple[str, str]:
    """A new IAM user with `policy` inline: its access key and secret."""
    iam = clients()("iam", "us-east-1")
    name = f"doctor-deployer-{next(USERS)}"
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="deploy", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def key_owner(key: str) -> str:
    """The IAM user an access key belongs to."""
    return clients()("iam", "us-east-1").get_access_key_last_used(AccessKeyId=key)["UserName"]


def results_by_name(results) -> dict:
    return {result.name: result for result in results}


# ----------------------------------------------------------------------------- the plan


def test_the_plan_is_what_the_offline_preview_registers(dev: OfflineRun, dev_service: OfflineRun):
    plan = plan_from_runs("dev", DEV_REGION, [dev, dev_service])
    assert plan.az_count == len({s.inputs["availabilityZone"] for s in dev.of_type("aws:ec2/subnet:Subnet")})
    groups = {tuple(r.inputs["instanceTypes"]): r for r in dev.of_type("eks:index:ManagedNodeGroup")}
    assert {group.instance_types for group in plan.node_groups} == set(groups)
    for group in plan.node_groups:
        registered = groups[group.instance_types].inputs
        assert group.spot == (registered["capacityType"] == "SPOT")
        assert group.max_size == registered["scalingConfig"]["maxSize"]
    assert plan.cluster_version == dev.of_type("eks:index:Cluster")[0].inputs["version"]
    assert plan.count("aws:ec2/eip:Eip") == len(dev.of_type("aws:ec2/eip:Eip"))
    assert plan.count("aws:cloudtrail/trail:Trail") == 1
    assert kinds.SERVED_MODEL in plan.kinds and "retail:infra:Network" not in plan.kinds
    assert set(plan.plugins) == {"aws", "eks", "kubernetes", "random"}
    assert plan.plugins["aws"] == metadata.version("pulumi-aws")


def test_the_training_job_s_instance_type_and_capacity_come_from_its_registration():
    from infra.providers.training_job import TrainingJob

    def program():
        TrainingJob("train", region="eu-west-1", role_arn="arn:aws:iam::123456789012:role/r", image_uri="i",
                    train_uri="s3://b/t", output_uri="s3://b/o", checkpoint_uri="s3://b/c", data_hash="h",
                    code_version="v", hyperparameters={}, kms_key_id="k", subnet_ids=[], security_group_ids=[],
                    metric_definitions={}, instance_type="ml.c5.2xlarge", use_spot=False)

    run = run_offline(program, project="training", stack="train-dev", config={"aws:region": "eu-west-1"})
    assert plan_from_runs("dev", DEV_REGION, [run]).training == TrainingPlan("ml.c5.2xlarge", 1, spot=False)


def resource_types_in_code() -> set[str]:
    """The type token of every `aws.<module>.<Resource>(` the infra code creates, config-dependent ones included
    (pulumi-aws's tokens: `aws:<module>/<resource, first letter lower>:<Resource>`)."""
    calls = {m for path in (PROJECT_DIR / "infra").glob("*.py")
             for m in re.findall(r"\baws\.([a-z0-9]+)\.([A-Z][A-Za-z0-9]+)\(", path.read_text())}
    return {f"aws:{module}/{name[0].lower()}{name[1:]}:{name}" for module, name in calls if not name.endswith("Args")}


def every_listed_action() -> set[str]:
    """Every action infra/data/deploy-actions.json lists, for any resource type, dynamic kind or provider function."""
    table = actions_table()
    return {a for group in ("types", "dynamic", "invokes") for actions in table[group].values() for a in actions}


def test_every_type_the_stacks_register_has_its_iam_actions_and_every_action_exists(dev_plan):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # parliament's import-time pkg_resources and regex warnings
        import parliament

    dynamic = {value for name, value in vars(kinds).items() if name.isupper() and value != kinds.DYNAMIC_TYPE}
    required = required_actions(dev_plan.kinds | resource_types_in_code() | dynamic)
    assert required.unmapped == ()
    assert "aws:route53/record:Record" in resource_types_in_code()  # the scan finds what dev does not register
    known = {s["prefix"]: {p["privilege"] for p in s["privileges"]} for s in parliament.iam_definition}
    listed = every_listed_action()
    assert sorted(a for a in listed if a.split(":")[1] not in known.get(a.split(":")[0], set())) == []
    assert {"ec2:CreateVpc", "eks:CreateCluster", "iam:PassRole", "sagemaker:DescribeModelPackage"} <= set(
        required.actions)


PROVIDER_CALLS = {
    "aws:ec2/eip:Eip": {"ec2:DescribeAddressesAttribute"},
    "aws:ec2/vpcEndpoint:VpcEndpoint": {"route53:AssociateVPCWithHostedZone"},  # private DNS (infra/network.py)
    "aws:ec2/subnet:Subnet": {"ec2:DescribeNetworkInterfaces"},  # delete looks for lingering ENIs
    "aws:ec2/securityGroup:SecurityGroup": {"ec2:DescribeNetworkInterfaces"},
    "aws:eks/addon:Addon": {"eks:DescribeUpdate"},
    "aws:s3/bucket:Bucket": {"s3:ListBucketVersions", "s3:DeleteObjectVersion", "s3:BypassGovernanceRetention"},
    "eks:index:Cluster": {"eks:DescribeUpdate", "eks:DeleteAccessEntry", "eks:DisassociateAccessPolicy"},
    "eks:index:ManagedNodeGroup": {"eks:DescribeUpdate", "ec2:CreateLaunchTemplateVersion"},
}
"""Calls the provider makes beyond create/read/delete, once missing from the table: awaiting EKS updates, a
launch template's new version, emptying a forceDestroy bucket's versions under GOVERNANCE object lock, ..."""


@pytest.mark.parametrize("type_", sorted(PROVIDER_CALLS))
def test_the_table_lists_the_calls_the_provider_makes_around_a_resource(type_: str):
    assert PROVIDER_CALLS[type_] <= set(actions_table()["types"][type_])


def test_a_type_missing_from_the_table_is_reported_not_ignored():
    required = required_actions({"aws:ec2/vpc:Vpc", "aws:rds/instance:Instance", "kubernetes:core/v1:Namespace"})
    assert required.unmapped == ("aws:rds/instance:Instance",)
    assert "ec2:CreateVpc" in required.actions


# ----------------------------------------------------------------------------- AWS, as moto has it


def test_a_healthy_account_passes_what_moto_answers_and_the_rest_is_unknown(moto_endpoint, dev_plan, region):
    aws = clients(*deployer(ALLOW_ALL))
    results = results_by_name(doctor.run_doctor("dev", PROJECT_DIR, aws, {},
                                                load_plan=lambda *_: dataclasses.replace(dev_plan, region=region)))
    for name in ("stack config", "credentials", "region", "availability zones", "instance types", "eks",
                 "sagemaker", "quota: vpcs", "quota: cloudtrail trails"):
        assert results[name].status == Status.OK, results[name]
    assert "WhatIsCloudTrail-Limits" in results["quota: cloudtrail trails"].detail  # the documented fixed quota
    # moto has no quota values for these, no DescribeClusterVersions and no SimulatePrincipalPolicy:
    for name in ("eks version", "quota: elastic ips", "quota: spot vcpus",
                 "quota: sagemaker training", "permissions"):
        assert results[name].status == Status.UNKNOWN, results[name]
        assert results[name].detail
    assert "L-0263D0A3" in results["quota: elastic ips"].detail
    assert "SimulatePrincipalPolicy" in results["permissions"].detail
    assert ":user/doctor-deployer-" in results["credentials"].detail


def test_a_region_the_account_has_not_enabled_fails(moto_endpoint):
    verdict = aws_checks.region(context(None, "ap-east-1"))  # an opt-in region, not enabled in moto's account
    assert verdict.status == Status.FAIL
    assert "enable-region --region-name ap-east-1" in verdict.fix


def test_a_region_describe_regions_does_not_list_is_unknown_not_ok():
    from botocore.stub import Stubber

    ec2 = boto3.client("ec2", region_name=QUIET_REGION, aws_access_key_id="k", aws_secret_access_key="s")
    with Stubber(ec2) as stub:
        stub.add_response("describe_regions", {"Regions": []}, {"RegionNames": [QUIET_REGION], "AllRegions": True})
        verdict = aws_checks.region(context(None, QUIET_REGION, aws=lambda *_: ec2))
    assert verdict.status == Status.UNKNOWN and QUIET_REGION in verdict.detail


def test_the_doctor_s_zones_are_availability_zones_not_local_zones(dev_plan):
    """An opted-in Local Zone (ca-central-1-lax-1a... sorts before ca-central-1a) must not be taken: AWS is asked for
    zones that need no opt-in. moto ignores that filter, so botocore's Stubber checks the request."""
    from botocore.stub import Stubber

    ec2 = boto3.client("ec2", region_name=QUIET_REGION, aws_access_key_id="k", aws_secret_access_key="s")
    regular = [{"ZoneName": f"{QUIET_REGION}{letter}", "State": "available", "OptInStatus": "opt-in-not-required"}
               for letter in "dba"]
    filters = [{"Name": "state", "Values": ["available"]},
               {"Name": "opt-in-status", "Values": ["opt-in-not-required"]}]
    with Stubber(ec2) as stub:
        stub.add_response("describe_availability_zones", {"AvailabilityZones": regular}, {"Filters": filters})
        names, chosen = aws_checks.chosen_zones(context(dev_plan, QUIET_REGION, aws=lambda *_: ec2))
    assert names == [f"{QUIET_REGION}{letter}" for letter in "abd"] and chosen == names[: dev_plan.az_count]


def test_the_network_asks_for_availability_zones_with_the_doctor_s_filter(monkeypatch):
    from infra.mocks import PlatformMocks
    from infra.network import Network, NetworkArgs

    asked = []
    answer = PlatformMocks.call

    def recording(self, args):
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            asked.append(args.args)
        return answer(self, args)

    monkeypatch.setattr(PlatformMocks, "call", recording)
    def program() -> None:
        Network("n", NetworkArgs(account_id="123456789012", region="eu-west-1",
                                 logs_kms_key_arn="arn:aws:kms:eu-west-1:123456789012:key/k"))

    run_offline(program, project="network", stack="test", config={"aws:region": "eu-west-1"})
    (request,) = asked
    assert request["state"] == "available"
    assert request["filters"] == [{"name": "opt-in-status", "values": ["opt-in-not-required"]}]


def test_the_doctor_uses_the_stack_s_assumed_role(moto_endpoint, dev_plan):
    iam = clients()("iam", "us-east-1")
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "sts:AssumeRole"}]}
    role = iam.create_role(RoleName="deployer-role", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    config = {"aws:region": QUIET_REGION,
              "aws:assumeRoles": json.dumps([{"roleArn": role, "sessionName": "ci", "externalId": "ext-id"}])}
    ctx = Context("dev", PROJECT_DIR, QUIET_REGION, config, dev_plan, stack_credentials.stack_clients(config), {})
    verdict = aws_checks.credentials(ctx)
    assert verdict.status == Status.OK, verdict
    assert ":assumed-role/deployer-role/ci" in ctx.caller_arn and f"aws:assumeRoles {role}" in verdict.detail


def test_the_doctor_uses_the_stack_s_profile_and_fails_naming_it_when_missing(
    moto_endpoint, dev_plan, monkeypatch, tmp_path
):
    key, secret = deployer(ALLOW_ALL)
    (tmp_path / "credentials").write_text(f"[deploy]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    for profile, expected in (("deploy", Status.OK), ("nowhere", Status.FAIL)):
        config = {"aws:region": QUIET_REGION, "aws:profile": profile}
        ctx = Context("dev", PROJECT_DIR, QUIET_REGION, config, dev_plan, stack_credentials.stack_clients(config), {})
        verdict = aws_checks.credentials(ctx)
        assert verdict.status == expected, verdict
        assert f"aws:profile {profile}" in verdict.detail
        assert (f"/{key_owner(key)}" in ctx.caller_arn) == (expected == Status.OK)


def test_credentials_the_doctor_does_not_read_fail_by_name(moto_endpoint, dev_plan):
    config = {"aws:region": QUIET_REGION, "aws:sharedCredentialsFiles": json.dumps(["/somewhere"])}
    ctx = Context("dev", PROJECT_DIR, QUIET_REGION, config, dev_plan,
                  stack_credentials.stack_clients(config, secret_keys=("aws:secretKey",)), {})
    verdict = aws_checks.credentials(ctx)
    assert verdict.status == Status.FAIL
    assert "aws:secretKey, aws:sharedCredentialsFiles" in verdict.detail


def test_a_kubernetes_version_eks_does_not_offer_fails_and_one_in_extended_support_warns(dev_plan):
    """moto has no DescribeClusterVersions: botocore's Stubber answers it, checking each request against the model."""
    from botocore.stub import Stubber

    eks = boto3.client("eks", region_name=QUIET_REGION, aws_access_key_id="k", aws_secret_access_key="s")
    version = dev_plan.cluster_version
    offered = [{"clusterVersion": "1.33", "versionStatus": "EXTENDED_SUPPORT"},
               {"clusterVersion": "1.34", "versionStatus": "STANDARD_SUPPORT"}]
    every = {"includeAll": True, "clusterType": "eks"}  # extended support included, not EKS Anywhere's versions
    with Stubber(eks) as stub:
        stub.add_response("describe_cluster_versions", {"clusterVersions": []}, {**every, "clusterVersions": [version]})
        stub.add_response("describe_cluster_versions", {"clusterVersions": offered[:1], "nextToken": "2"}, every)
        stub.add_response("describe_cluster_versions", {"clusterVersions": offered[1:]}, {**every, "nextToken": "2"})
        stub.add_response("describe_cluster_versions", {"clusterVersions": offered[:1]},
                          {**every, "clusterVersions": ["1.33"]})
        ctx = context(dev_plan, QUIET_REGION, aws=lambda *_: eks)
        verdict = aws_checks.eks_version(ctx)
        assert verdict.status == Status.FAIL and verdict.fix.endswith("1.33, 1.34")
        ctx.plan = dataclasses.replace(ctx.plan, cluster_version="1.33")
        assert aws_checks.eks_version(ctx).status == Status.WARN


def test_with_the_quotas_and_the_simulation_served_every_aws_check_passes(
    dev_plan, region, served_quotas, simulated_policies
):
    served_quotas.update(healthy_quotas(dev_plan.training))
    aws = clients(*deployer(ALLOW_ALL))
    results = results_by_name(doctor.run_doctor("dev", PROJECT_DIR, aws, {},
                                                load_plan=lambda *_: dataclasses.replace(dev_plan, region=region)))
    for name in ("quota: vpcs", "quota: elastic ips", "quota: cloudtrail trails", "quota: spot vcpus",
                 "quota: on-demand vcpus", "quota: sagemaker training", "permissions"):
        assert results[name].status == Status.OK, results[name]
    spot_vcpus = sum(g.max_size * {"t3.large": 2, "m6i.xlarge": 4}[g.instance_types[0]] for g in dev_plan.node_groups)
    assert f"0 spot vCPUs in use + {spot_vcpus} for the stack" in results["quota: spot vcpus"].detail
    assert "are allowed" in results["permissions"].detail


def test_vpcs_at_their_quota_fail_with_the_increase_to_request(moto_endpoint, dev_plan, region):
    ec2 = clients()("ec2", region)
    for i in range(4):  # the default VPC and four more: moto's "VPCs per Region" is 5
        ec2.create_vpc(CidrBlock=f"10.{i}.0.0/16")
    verdict = aws_checks.vpc_quota(context(dev_plan, region))
    assert verdict.status == Status.FAIL
    assert "5 VPCs in use + 1 for the stack = 6 > VPCs per Region (vpc L-F678F1CE) = 5" in verdict.detail
    assert "--service-code vpc --quota-code L-F678F1CE --desired-value 6" in verdict.fix


def test_an_instance_type_not_offered_in_an_az_the_network_takes_fails(moto_endpoint, dev_plan):
    plan = dataclasses.replace(dev_plan, node_groups=(dataclasses.replace(dev_plan.node_groups[0],
                                                                          instance_types=("a1.large",)),))
    verdict = aws_checks.instance_offerings(context(plan, "ap-northeast-1"))
    zones = aws_checks.chosen_zones(context(plan, "ap-northeast-1"))[1]
    ec2 = clients()("ec2", "ap-northeast-1")
    offered = {o["Location"] for o in ec2.describe_instance_type_offerings(
        LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": ["a1.large"]}])[
        "InstanceTypeOfferings"]}
    assert not set(zones) <= offered  # the planted gap: a1.large is missing from an AZ the network takes
    assert verdict.status == Status.FAIL
    for zone in set(zones) - offered:
        assert f"a1.large in {zone}" in verdict.detail
    assert "instanceTypes" in verdict.fix and "describe-instance-type-offerings" in verdict.fix


def test_an_elastic_ip_quota_in_use_fails(dev_plan, region, served_quotas):
    served_quotas.update(healthy_quotas(dev_plan.training))
    served_quotas["ec2"][0] = quota("ec2", "L-0263D0A3", "EC2-VPC Elastic IPs", 2)
    ec2 = clients()("ec2", region)
    for _ in range(2):
        ec2.allocate_address(Domain="vpc")
    verdict = aws_checks.elastic_ip_quota(context(dev_plan, region))
    assert verdict.status == Status.FAIL
    assert "2 Elastic IPs in use + 1 for the stack = 3 > EC2-VPC Elastic IPs (ec2 L-0263D0A3) = 2" in verdict.detail
    assert "--desired-value 3" in verdict.fix


def test_node_groups_beyond_the_spot_vcpu_quota_fail(dev_plan, served_quotas):
    served_quotas.update(healthy_quotas(dev_plan.training))
    served_quotas["ec2"][1] = quota("ec2", "L-34B43A08", "All Standard Spot Instance Requests", 5)
    verdict = aws_checks.spot_vcpu_quota(context(dev_plan, QUIET_REGION))
    assert verdict.status == Status.FAIL
    assert "> All Standard Spot Instance Requests (ec2 L-34B43A08) = 5" in verdict.detail


def test_a_full_region_of_trails_fails_and_the_quota_cannot_be_raised(dev_plan, region, served_quotas):
    served_quotas.update(healthy_quotas(dev_plan.training))
    served_quotas["cloudtrail"] = [quota("cloudtrail", "L-TRAILS01", "Trails per region", 1)]
    s3, trails = clients()("s3", region), clients()("cloudtrail", region)
    s3.create_bucket(Bucket=f"trail-logs-{region}", CreateBucketConfiguration={"LocationConstraint": region})
    trails.create_trail(Name="existing", S3BucketName=f"trail-logs-{region}")
    verdict = aws_checks.trail_quota(context(dev_plan, region))
    assert verdict.status == Status.FAIL
    assert "cannot be raised" in verdict.fix and "existing" in verdict.fix


def test_a_stack_without_a_trail_warns_when_the_account_has_no_multi_region_trail(moto_endpoint, dev_plan, region):
    counts = {type_: n for type_, n in dev_plan.counts.items() if type_ != "aws:cloudtrail/trail:Trail"}
    plan = dataclasses.replace(dev_plan, counts=counts)  # as retail:audit.trail false (ephemeral) registers it
    verdict = aws_checks.trail_quota(context(plan, region))
    assert verdict.status == Status.WARN
    assert "retail:audit.trail" in verdict.fix
    s3, trails = clients()("s3", region), clients()("cloudtrail", region)
    s3.create_bucket(Bucket=f"org-trail-{region}", CreateBucketConfiguration={"LocationConstraint": region})
    trails.create_trail(Name="organization", S3BucketName=f"org-trail-{region}", IsMultiRegionTrail=True)
    stopped = aws_checks.trail_quota(context(plan, region))
    assert stopped.status == Status.WARN and "organization exist but are not logging" in stopped.detail
    trails.start_logging(Name="organization")
    try:
        assert aws_checks.trail_quota(context(plan, region)).status == Status.OK
    finally:
        trails.delete_trail(Name="organization")  # it would log in every region of the shared moto account


def test_other_regions_multi_region_trails_count_against_this_region_s_quota(dev_plan, served_quotas):
    home, here = next(REGIONS), next(REGIONS)
    served_quotas["cloudtrail"] = [quota("cloudtrail", "L-TRAILS01", "Trails per region", 1)]
    s3, elsewhere = clients()("s3", home), clients()("cloudtrail", home)
    s3.create_bucket(Bucket=f"trail-logs-{home}", CreateBucketConfiguration={"LocationConstraint": home})
    elsewhere.create_trail(Name="everywhere", S3BucketName=f"trail-logs-{home}", IsMultiRegionTrail=True)
    try:
        verdict = aws_checks.trail_quota(context(dev_plan, here))
    finally:
        elsewhere.delete_trail(Name="everywhere")
    # moto's session-wide account may hold other tests' multi-region trails too: at least this one counts here
    assert verdict.status == Status.FAIL, verdict
    assert f"everywhere (multi-region, home {home})" in verdict.fix


def test_without_a_cloudtrail_quota_in_service_quotas_the_documented_five_applies(dev_plan, served_quotas):
    served_quotas["cloudtrail"] = []  # Service Quotas lists no CloudTrail quota by that name
    here = next(REGIONS)
    s3, trails = clients()("s3", here), clients()("cloudtrail", here)
    s3.create_bucket(Bucket=f"five-trails-{here}", CreateBucketConfiguration={"LocationConstraint": here})
    for i in range(5):
        trails.create_trail(Name=f"trail-{i}", S3BucketName=f"five-trails-{here}")
    verdict = aws_checks.trail_quota(context(dev_plan, here))
    assert verdict.status == Status.FAIL
    assert "Trails per Region = 5 (fixed" in verdict.detail and "WhatIsCloudTrail-Limits" in verdict.detail


def test_a_training_instance_type_sagemaker_does_not_offer_here_fails(dev_plan, served_quotas):
    served_quotas["sagemaker"] = [quota("sagemaker", "L-OTHER001", "ml.c5.xlarge for spot training job usage", 4)]
    verdict = aws_checks.sagemaker_training_quota(context(dev_plan, QUIET_REGION))
    assert verdict.status == Status.FAIL
    assert f"{dev_plan.training.instance_type} is not offered for training" in verdict.detail


def test_a_denied_action_fails_naming_it(dev_plan, simulated_policies):
    denied = {"Version": "2012-10-17", "Statement": [
        *ALLOW_ALL["Statement"], {"Effect": "Deny", "Action": ["eks:CreateCluster", "iam:PassRole"], "Resource": "*"}]}
    aws = clients(*deployer(denied))
    ctx = context(dev_plan, QUIET_REGION, aws=aws)
    assert aws_checks.credentials(ctx).status == Status.OK
    verdict = aws_checks.permissions(ctx)
    assert verdict.status == Status.FAIL
    assert "2 of" in verdict.detail and "eks:CreateCluster, iam:PassRole" in verdict.detail
    assert ctx.caller_arn in verdict.fix


def test_an_allowed_action_that_depends_on_a_missing_context_value_is_undecided(dev_plan, simulated_policies):
    conditional = {"Version": "2012-10-17", "Statement": [
        *ALLOW_ALL["Statement"],
        {"Effect": "Deny", "Action": "eks:*", "Resource": "*", "Condition": {"StringEquals": {"aws:SourceVpc": "v"}}}]}
    ctx = context(dev_plan, QUIET_REGION, aws=clients(*deployer(conditional)))
    aws_checks.credentials(ctx)
    verdict = aws_checks.permissions(ctx)
    assert verdict.status == Status.WARN, verdict  # "allowed", but the Deny could not be evaluated
    assert "eks:CreateCluster" in verdict.detail and "aws:SourceVpc" in verdict.detail


def test_the_simulation_knows_the_region_and_principal_so_a_region_restriction_is_evaluated(
    dev_plan, simulated_policies
):
    only_elsewhere = {"Version": "2012-10-17", "Statement": [
        *ALLOW_ALL["Statement"],
        {"Effect": "Deny", "Action": "*", "Resource": "*",
         "Condition": {"StringNotEquals": {"aws:RequestedRegion": ["us-east-1", "eu-west-1"]}}}]}
    ctx = context(dev_plan, QUIET_REGION, aws=clients(*deployer(only_elsewhere)))
    aws_checks.credentials(ctx)
    verdict = aws_checks.permissions(ctx)
    assert verdict.status == Status.FAIL, verdict
    assert "eks:CreateCluster" in verdict.detail and "iam:PassRole" not in verdict.detail  # IAM is us-east-1
    assert {tuple(c["aws:RequestedRegion"]) for c in simulated_policies} == {(QUIET_REGION,), ("us-east-1",)}
    assert all(c["aws:PrincipalArn"] == [ctx.caller_arn] for c in simulated_policies)


def test_an_action_no_policy_allows_fails_too(dev_plan, simulated_policies):
    only_ec2 = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}]}
    ctx = context(dev_plan, QUIET_REGION, aws=clients(*deployer(only_ec2)))
    aws_checks.credentials(ctx)
    verdict = aws_checks.permissions(ctx)
    assert verdict.status == Status.FAIL
    assert "eks:CreateCluster" in verdict.detail and "ec2:CreateVpc" not in verdict.detail


def scoped_to(names: str) -> dict:
    """A least-privilege deploy policy: the actions AWS authorizes on resource ARNs allowed only on resources whose
    ARN ends in a name matching `names`, the others (Describe*, List*, ...) on "*"."""
    on_star = sorted(a for a in every_listed_action() if not iam_simulation.takes_resource_arns(a))
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": [f"arn:aws:*{names}", f"arn:aws:*{names}/*"]},
        {"Effect": "Allow", "Action": "glue:*", "Resource": "arn:aws:glue:*:*:catalog"},
        {"Effect": "Allow", "Action": on_star, "Resource": "*"}]}


def test_a_role_scoped_to_the_stack_s_names_passes_where_it_can_be_probed_though_denied_on_star(
    dev_plan, simulated_policies
):
    """The actions that require resource ARNs are allowed on the probes named as the stack names its resources; those
    whose resource is optional (tagging, mostly) cannot be probed, and are a warning, never a failure."""
    ctx = context(dev_plan, QUIET_REGION, aws=clients(*deployer(scoped_to("retail-dev-*"))))
    aws_checks.credentials(ctx)
    verdict = aws_checks.permissions(ctx)
    assert verdict.status == Status.WARN, verdict
    assert "allowed only on the probes named as the stack names its resources, retail-dev-..." in verdict.detail
    listed = verdict.detail.split("nor where tried on the probes: ")[1]
    unconfirmed = dict(re.findall(r"([\w-]+:\w+)(?: \(on ([^)]*)\))?", listed))
    assert not {"s3:CreateBucket", "s3:PutObject", "iam:PassRole", "logs:CreateLogGroup"} & set(unconfirmed)
    assert any(unconfirmed.values()) and not all(unconfirmed.values()), listed  # probed and unprobed ones
    for action, probes in unconfirmed.items():
        if not probes:  # not probed: no resource type is required
            assert not iam_simulation.required_resource_types(action), action
        else:  # probed on an ARN the stack does not name (a generated ID, the Glue catalog)
            assert any("retail-dev-probe" not in arn for arn in probes.split(", ")), (action, probes)


def test_a_role_scoped_to_another_stack_s_names_is_warned_of_naming_the_resources_it_was_asked_about(
    dev_plan, simulated_policies
):
    ctx = context(dev_plan, QUIET_REGION, aws=clients(*deployer(scoped_to("retail-prod-*"))))
    aws_checks.credentials(ctx)
    verdict = aws_checks.permissions(ctx)
    assert verdict.status == Status.WARN, verdict  # the probes are a guess at the names: not a denial
    assert "s3:CreateBucket (on arn:aws:s3:::retail-dev-probe)" in verdict.detail
    assert "named otherwise than the probes" in verdict.fix


def test_without_credentials_the_aws_checks_are_not_run(moto_endpoint, dev_plan, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    no_keys = boto3.session.Session()

    def aws(service, region_):
        return no_keys.client(service, region_name=region_, config=Config(retries={"max_attempts": 1}))

    plan = dataclasses.replace(dev_plan, region=QUIET_REGION)
    results = results_by_name(doctor.run_doctor("dev", PROJECT_DIR, aws, {}, load_plan=lambda *_: plan))
    assert results["credentials"].status == Status.FAIL
    assert "AWS_PROFILE" in results["credentials"].fix
    assert results["quota: vpcs"].status == Status.UNKNOWN
    assert "no working AWS credentials" in results["quota: vpcs"].detail


def test_a_config_that_does_not_load_stops_the_checks_that_need_it(moto_endpoint):
    def broken(stack, _):
        raise ValueError("retail:network.azCount: Input should be less than or equal to 3 (got 4)")

    results = results_by_name(doctor.run_doctor("dev", PROJECT_DIR, clients(), {}, load_plan=broken))
    assert results["stack config"].status == Status.FAIL and "azCount" in results["stack config"].detail
    assert results["instance types"].status == Status.UNKNOWN
    assert results["credentials"].status == Status.OK


# ----------------------------------------------------------------------------- Pulumi


def fake_pulumi(folder: Path, version: str, plugins: dict[str, str], whoami_url: str = "") -> Path:
    """A `pulumi` on PATH answering `version`, `plugin ls --json` and `whoami --json` as the real CLI does."""
    listed = json.dumps([{"name": n, "kind": "resource", "version": v, "size": 1, "installTime": "2026-01-01T00:00:00Z",
                          "lastUsedTime": "2026-01-01T00:00:00Z"} for n, v in plugins.items()])
    not_logged_in = "echo 'error: PULUMI_ACCESS_TOKEN must be set for login during non-interactive CLI sessions' >&2"
    whoami = f"echo '{json.dumps({'user': 'me', 'url': whoami_url})}'" if whoami_url else f"{not_logged_in}; exit 255"
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "pulumi"
    script.write_text(f"""#!/bin/sh
case "$1" in
  version) echo v{version} ;;
  plugin) echo '{listed}' ;;
  whoami) {whoami} ;;
  *) exit 2 ;;
esac
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return folder


def test_without_the_pulumi_cli_its_check_fails_with_how_to_install_it(dev_plan, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    ctx = context(dev_plan, "eu-west-1", env=os.environ)
    verdict = pulumi_checks.cli(ctx)
    assert verdict.status == Status.FAIL and verdict.fix == INSTALL_HINT
    assert pulumi_checks.plugins(ctx).status == Status.UNKNOWN


def test_a_current_cli_with_the_stacks_plugins_passes(dev_plan, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", f"{fake_pulumi(tmp_path, metadata.version('pulumi'), dev_plan.plugins)}:/usr/bin:/bin")
    ctx = context(dev_plan, "eu-west-1", env=os.environ)
    assert pulumi_checks.cli(ctx).status == Status.OK
    assert pulumi_checks.plugins(ctx).status == Status.OK


def test_an_old_cli_and_a_missing_plugin_warn_with_what_to_install(dev_plan, monkeypatch, tmp_path):
    plugins = {name: version for name, version in dev_plan.plugins.items() if name != "eks"}
    monkeypatch.setenv("PATH", f"{fake_pulumi(tmp_path, '3.100.0', plugins)}:/usr/bin:/bin")
    ctx = context(dev_plan, "eu-west-1", env=os.environ)
    assert pulumi_checks.cli(ctx).status == Status.WARN
    verdict = pulumi_checks.plugins(ctx)
    assert verdict.status == Status.WARN
    assert f"`pulumi plugin install resource eks {dev_plan.plugins['eks']}`" in verdict.fix


def test_an_s3_backend_whose_bucket_is_missing_fails_then_passes_once_it_exists(moto_endpoint, region):
    bucket = f"pulumi-state-{region}"
    ctx = context(None, region, env={"PULUMI_BACKEND_URL": f"s3://{bucket}"})
    verdict = pulumi_checks.backend(ctx)
    assert verdict.status == Status.FAIL and f"create-bucket --bucket {bucket}" in verdict.fix
    clients()("s3", region).create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    assert pulumi_checks.backend(ctx).status == Status.OK


def test_a_self_managed_backend_needs_a_passphrase_for_every_stack(moto_endpoint):
    ctx = context(None, QUIET_REGION, env={"PULUMI_BACKEND_URL": "file:///tmp"})
    assert pulumi_checks.backend(ctx).status == Status.OK
    verdict = pulumi_checks.secrets_provider(ctx)
    assert verdict.status == Status.FAIL and "PULUMI_CONFIG_PASSPHRASE" in verdict.fix
    assert "training train-dev" in verdict.detail
    ctx.env["PULUMI_CONFIG_PASSPHRASE"] = "x"
    assert pulumi_checks.secrets_provider(ctx).status == Status.OK


def test_pulumi_cloud_is_asked_whoami_rather_than_trusted_because_a_token_is_set(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "no-cli"))
    ctx = context(None, QUIET_REGION, env={"PULUMI_BACKEND_URL": "https://api.pulumi.com", "PULUMI_ACCESS_TOKEN": "x"})
    assert pulumi_checks.backend(ctx).status == Status.UNKNOWN  # without the CLI the token cannot be tried
    assert pulumi_checks.secrets_provider(ctx).status == Status.OK
    monkeypatch.setenv("PATH", f"{fake_pulumi(tmp_path / 'out', metadata.version('pulumi'), {})}:/usr/bin:/bin")
    refused = pulumi_checks.backend(ctx)
    assert refused.status == Status.FAIL and "PULUMI_ACCESS_TOKEN is set" in refused.detail
    cli_dir = fake_pulumi(tmp_path / "in", metadata.version("pulumi"), {}, whoami_url="https://api.pulumi.com")
    monkeypatch.setenv("PATH", f"{cli_dir}:/usr/bin:/bin")
    assert pulumi_checks.backend(ctx).detail.endswith("logged in as me")


def test_the_backend_pulumi_login_chose_is_read_with_the_cli(dev_plan, monkeypatch, tmp_path):
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    cli_dir = fake_pulumi(tmp_path / "in", metadata.version("pulumi"), {}, whoami_url="https://api.pulumi.com")
    monkeypatch.setenv("PATH", f"{cli_dir}:/usr/bin:/bin")
    assert pulumi_checks.backend(context(dev_plan, "eu-west-1", env=os.environ)).detail.endswith("(from pulumi whoami)")
    monkeypatch.setenv("PATH", f"{fake_pulumi(tmp_path / 'out', metadata.version('pulumi'), {})}:/usr/bin:/bin")
    verdict = pulumi_checks.backend(context(dev_plan, "eu-west-1", env=os.environ))
    assert verdict.status == Status.FAIL and "pulumi login" in verdict.fix


def test_a_kms_secrets_provider_needs_its_key(moto_endpoint, region, tmp_path):
    for folder in (tmp_path, tmp_path / "service"):
        folder.mkdir(exist_ok=True)
        source = PROJECT_DIR / folder.relative_to(tmp_path)
        (folder / "Pulumi.yaml").write_text((source / "Pulumi.yaml").read_text())
        settings = (source / "Pulumi.dev.yaml").read_text()
        (folder / "Pulumi.dev.yaml").write_text(f"secretsprovider: awskms://alias/pulumi-dev?region={region}\n"
                                                + settings)
    ctx = context(None, region, env={"PULUMI_BACKEND_URL": "file:///tmp"}, project_dir=tmp_path)
    pulumi_checks.backend(ctx)
    ctx.env["PULUMI_CONFIG_PASSPHRASE"] = "for the training stack"
    verdict = pulumi_checks.secrets_provider(ctx)
    assert verdict.status == Status.FAIL and "alias/pulumi-dev" in verdict.fix
    kms = clients()("kms", region)
    kms.create_alias(AliasName="alias/pulumi-dev", TargetKeyId=kms.create_key()["KeyMetadata"]["KeyId"])
    assert pulumi_checks.secrets_provider(ctx).status == Status.OK


# ----------------------------------------------------------------------------- the command


def invoke_doctor(monkeypatch, plan: DeploymentPlan, *options: str):
    monkeypatch.setattr(doctor, "deployment_plan", lambda *_: plan)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    return CliRunner().invoke(app, ["infra", "doctor", "--stack", "dev", "--project-dir", str(PROJECT_DIR), *options])


def test_the_command_exits_1_when_a_check_fails_and_prints_each_fix(moto_endpoint, dev_plan, region, monkeypatch,
                                                                     tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no Pulumi CLI
    result = invoke_doctor(monkeypatch, dataclasses.replace(dev_plan, region=region))
    assert result.exit_code == 1, result.output
    assert "pulumi cli" in result.output and f"fix pulumi cli: {INSTALL_HINT}" in result.output
    assert "unknown checks could not be evaluated" in result.output


def test_the_command_exits_0_when_nothing_fails_and_1_with_strict_while_a_check_is_unknown(
    dev_plan, region, served_quotas, simulated_policies, monkeypatch, tmp_path
):
    served_quotas.update(healthy_quotas(dev_plan.training))
    key, secret = deployer(ALLOW_ALL)
    bucket = f"pulumi-state-{region}"
    clients()("s3", region).create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    for name, value in {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret,
                        "PULUMI_BACKEND_URL": f"s3://{bucket}", "PULUMI_CONFIG_PASSPHRASE": "x",
                        "PATH": f"{fake_pulumi(tmp_path, metadata.version('pulumi'), dev_plan.plugins)}:/usr/bin:/bin",
                        }.items():
        monkeypatch.setenv(name, value)
    plan = dataclasses.replace(dev_plan, region=region)
    result = invoke_doctor(monkeypatch, plan, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    statuses = {check["name"]: check["status"] for check in report["checks"]}
    assert report["passed"] and "fail" not in statuses.values()
    assert statuses["eks version"] == "unknown"  # moto has no DescribeClusterVersions
    assert invoke_doctor(monkeypatch, plan, "--strict").exit_code == 1
