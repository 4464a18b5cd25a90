"""Every rule passes its compliant example and fails its non-compliant one, naming the rule."""

from __future__ import annotations

import pytest

from policies.catalog import BY_NAME, RULES
from policies.evaluate import evaluate
from policies.model import Resource, ResourceRule
from tests.policies.cases import (
    BUCKET_V2,
    BUDGET,
    CASES,
    CRON_JOB,
    DEPLOYMENT,
    EKS,
    GENERATION_CASES,
    IN_JOB,
    IN_JOB_POD,
    INGRESS,
    MODEL_VERSION_RESOURCE,
    SG,
    TRAINING,
    changed,
    res,
)


def run(rule_name: str, subject) -> list:
    rule = BY_NAME[rule_name]
    resources = subject if isinstance(subject, list) else [subject]
    return evaluate([rule], resources, {})


def test_the_pack_has_at_least_twenty_rules_with_unique_names():
    assert len(RULES) >= 20
    assert len(BY_NAME) == len(RULES)


def test_every_rule_has_a_compliant_and_a_non_compliant_example():
    assert set(CASES) == set(BY_NAME)


@pytest.mark.parametrize("rule_name", sorted(BY_NAME))
def test_every_rule_describes_its_fix_in_one_line(rule_name):
    description = BY_NAME[rule_name].description
    assert "\n" not in description and description.endswith(".")


@pytest.mark.parametrize("rule_name", sorted(CASES))
def test_compliant_example_passes(rule_name):
    compliant, _ = CASES[rule_name]
    assert run(rule_name, compliant) == []


@pytest.mark.parametrize("rule_name", sorted(CASES))
def test_non_compliant_example_fails_with_the_rule_name_and_its_fix(rule_name):
    _, non_compliant = CASES[rule_name]
    violations = run(rule_name, non_compliant)
    assert violations, f"{rule_name} let its non-compliant example through"
    assert {v.rule for v in violations} == {rule_name}
    assert all(v.fix == BY_NAME[rule_name].description for v in violations)


def test_resource_rules_name_the_offending_resource():
    _, non_compliant = CASES["ecr-immutable-tags"]
    (violation,) = run("ecr-immutable-tags", non_compliant)
    assert (violation.resource, violation.resource_type) == ("subject", "aws:ecr/repository:Repository")


def test_a_load_balancer_group_may_take_https_from_anywhere():
    lb = res(
        "aws:ec2/securityGroup:SecurityGroup",
        tags={"retail.io/load-balancer": "true"},
        ingress=[{"fromPort": 443, "toPort": 443, "cidrBlocks": ["0.0.0.0/0"]}],
    )
    assert run("sg-no-world-ingress", lb) == []


def test_a_load_balancer_group_may_not_take_other_ports_from_anywhere():
    lb = res(
        "aws:ec2/securityGroup:SecurityGroup",
        tags={"retail.io/load-balancer": "true"},
        ingress=[{"fromPort": 0, "toPort": 65535, "cidrBlocks": ["0.0.0.0/0"]}],
    )
    assert run("sg-no-world-ingress", lb)


def test_standalone_ingress_rules_from_anywhere_are_caught():
    rule = res(
        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", fromPort=22, toPort=22, cidrIpv4="0.0.0.0/0"
    )
    assert run("sg-no-world-ingress", rule)


def test_a_private_group_passes_the_ingress_rule():
    assert run("sg-no-world-ingress", SG) == []


def test_eks_rules_also_read_the_clusters_the_pulumi_eks_plugin_creates():
    cluster = res(
        "aws:eks/cluster:Cluster",
        vpcConfig={"endpointPublicAccess": True},
        encryptionConfig={"resources": ["secrets"], "provider": {"keyArn": "arn:key"}},
        enabledClusterLogTypes=["api", "audit", "authenticator"],
    )
    assert run("eks-endpoint-not-public", cluster), "no CIDR list means the endpoint is open to 0.0.0.0/0"
    assert run("eks-secrets-encryption", cluster) == []
    assert run("eks-control-plane-logs", cluster) == []


def test_a_private_only_eks_endpoint_passes():
    assert run("eks-endpoint-not-public", changed(EKS, "endpointPublicAccess", value=False)) == []


def test_training_rules_ignore_other_dynamic_resources():
    assert run("sagemaker-training-spot", MODEL_VERSION_RESOURCE) == []


def test_spot_training_without_checkpoints_fails():
    violations = run("sagemaker-training-spot", changed(TRAINING, "checkpoint_uri", value=None))
    assert "checkpoint" in violations[0].message


def test_network_isolation_satisfies_the_training_network_rule():
    isolated = changed(changed(TRAINING, "subnet_ids", value=[]), "enable_network_isolation", value=True)
    assert run("sagemaker-training-network", isolated) == []


def test_an_untagged_image_counts_as_latest():
    untagged = changed(DEPLOYMENT, "spec", "template", "spec", "containers", "0", "image", value="registry/inference")
    assert run("k8s-no-latest-image", untagged)


def test_a_digest_pinned_image_passes():
    pinned = changed(
        DEPLOYMENT, "spec", "template", "spec", "containers", "0", "image", value="registry/inference@sha256:abc"
    )
    assert run("k8s-no-latest-image", pinned) == []


def test_a_policy_document_unknown_before_deploy_is_not_judged():
    unknown = res("aws:iam/rolePolicy:RolePolicy", policy=None)
    assert run("iam-no-wildcard-admin", unknown) == []


def test_a_bucket_setting_is_matched_by_physical_name_when_no_dependency_is_known():
    bucket = res("aws:s3/bucket:Bucket", "raw", bucket="retail-raw")
    versioning = res(
        "aws:s3/bucketVersioning:BucketVersioning", bucket="retail-raw", versioningConfiguration={"status": "Enabled"}
    )
    assert run("s3-bucket-versioning", [bucket, versioning]) == []


def test_resource_rules_only_look_at_their_types():
    untagged_topic = Resource("aws:sns/topic:Topic", "topic", {})
    violations = evaluate([r for r in RULES if isinstance(r, ResourceRule)], [untagged_topic], {})
    assert {v.rule for v in violations} == {"aws-required-tags"}


S3_RULES = sorted(name for name in BY_NAME if name.startswith("s3-"))
GENERATIONS = [(rule, what, good, bad) for rule, cases in GENERATION_CASES.items() for what, good, bad in cases]


def test_every_s3_rule_and_the_tag_rule_have_examples_of_both_generations():
    assert set(GENERATION_CASES) == {*S3_RULES, "aws-required-tags"}


@pytest.mark.parametrize(("rule_name", "what", "compliant", "_"), GENERATIONS, ids=lambda v: str(v)[:40])
def test_compliant_example_of_either_generation_passes(rule_name, what, compliant, _):
    assert run(rule_name, compliant) == [], what


@pytest.mark.parametrize(("rule_name", "what", "_", "non_compliant"), GENERATIONS, ids=lambda v: str(v)[:40])
def test_non_compliant_example_of_either_generation_fails(rule_name, what, _, non_compliant):
    assert {v.rule for v in run(rule_name, non_compliant)} == {rule_name}, what


def test_a_bare_bucket_v2_breaks_every_bucket_rule_and_the_tag_rule():
    broken = {v.rule for v in evaluate(RULES, [BUCKET_V2], {})}
    bucket_rules = {r.name for r in RULES if r.name.startswith("s3-bucket") or r.name == "s3-tls-only"}
    assert bucket_rules | {"aws-required-tags"} <= broken


def urn(project: str, name: str) -> str:
    return f"urn:pulumi:dev::{project}::aws:cloudwatch/metricAlarm:MetricAlarm::{name}"


@pytest.mark.parametrize("rule_name", ["stack-has-budget", "stack-has-alarms"])
def test_platform_stack_rules_do_not_judge_the_service_project(rule_name):
    service_stack = [res("kubernetes:core/v1:Namespace", "ns", urn=urn("retail-mlops-service", "ns"))]
    assert run(rule_name, service_stack) == []


@pytest.mark.parametrize("rule_name", ["stack-has-budget", "stack-has-alarms"])
def test_platform_stack_rules_judge_the_platform_project(rule_name):
    platform_stack = [res("aws:kms/key:Key", "key", urn=urn("retail-mlops", "key"))]
    assert {v.rule for v in run(rule_name, platform_stack)} == {rule_name}


def test_a_stack_without_urns_is_judged_by_every_stack_rule():
    assert run("stack-has-alarms", [BUDGET])


def test_an_alb_ingress_discovering_its_certificate_from_tls_hosts_passes():
    discovering = changed(
        changed(
            INGRESS, "metadata", "annotations", value={"alb.ingress.kubernetes.io/listen-ports": '[{"HTTPS": 443}]'}
        ),
        "spec",
        "tls",
        value=[{"hosts": ["api.example.com"]}],
    )
    assert run("ingress-tls", discovering) == []


def test_an_alb_ingress_with_a_tls_section_but_only_an_http_listener_fails():
    http_only = changed(
        changed(INGRESS, "metadata", "annotations", value={"alb.ingress.kubernetes.io/listen-ports": '[{"HTTP": 80}]'}),
        "spec",
        "tls",
        value=[{"hosts": ["api.example.com"]}],
    )
    assert "listens only on HTTP" in run("ingress-tls", http_only)[0].message


def test_an_ingress_of_another_controller_needs_a_tls_section():
    nginx = changed(changed(INGRESS, "metadata", "annotations", value={}), "spec", "ingressClassName", value="nginx")
    assert run("ingress-tls", nginx)
    assert run("ingress-tls", changed(nginx, "spec", "tls", value=[{"hosts": ["a"], "secretName": "tls"}])) == []


def test_ingress_tls_is_advisory_by_default():
    assert BY_NAME["ingress-tls"].enforcement.value == "advisory"


def a_job() -> Resource:
    """The compliant CronJob's job, as a Job of its own."""
    return res("kubernetes:batch/v1:Job", spec=dict(CRON_JOB.props["spec"]["jobTemplate"]["spec"]))


def test_a_job_is_held_to_the_batch_rules_like_a_cron_job():
    assert run("k8s-batch-on-batch-nodes", a_job()) == []
    assert run("k8s-batch-bounded", a_job()) == []
    assert run("k8s-batch-bounded", changed(a_job(), "spec", "ttlSecondsAfterFinished", value=None))


def test_batch_pods_without_the_batch_node_selector_would_land_on_the_service_nodes():
    (violation,) = run("k8s-batch-on-batch-nodes", changed(CRON_JOB, *IN_JOB_POD, "nodeSelector", value={}))
    assert "nodeSelector retail.io/workload=batch" in violation.message


def test_tolerating_the_batch_taint_key_with_exists_is_enough():
    tolerate = [{"key": "retail.io/workload", "operator": "Exists", "effect": "NoSchedule"}]
    assert run("k8s-batch-on-batch-nodes", changed(CRON_JOB, *IN_JOB_POD, "tolerations", value=tolerate)) == []


def test_a_cron_job_allowed_to_overlap_itself_fails():
    (violation,) = run("k8s-batch-bounded", changed(CRON_JOB, "spec", "concurrencyPolicy", value=None))
    assert "concurrencyPolicy 'Allow'" in violation.message


def test_a_job_without_a_backoff_limit_fails_because_kubernetes_retries_six_times():
    (violation,) = run("k8s-batch-bounded", changed(CRON_JOB, *IN_JOB, "backoffLimit", value=None))
    assert "backoffLimit" in violation.message


def test_the_batch_rules_leave_long_running_workloads_alone():
    assert run("k8s-batch-on-batch-nodes", DEPLOYMENT) == []
    assert run("k8s-batch-bounded", DEPLOYMENT) == []


def test_the_rules_batch_label_is_the_platforms():
    from infra.cluster import BATCH_WORKLOAD, WORKLOAD_LABEL
    from policies.rules.kubernetes import BATCH_NODE_LABEL

    assert BATCH_NODE_LABEL == (WORKLOAD_LABEL, BATCH_WORKLOAD)
