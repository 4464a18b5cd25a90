"""The deploy-graph check: the real deployments pass; every documented order, broken, is reported.

Each table row has a test that deletes the ordering from the program (the component's
`depends_on`, or the input that carried it) and runs that project again under the mocks;
the awaited-object checks run on small programs made with `infra.offline.run_offline`.
"""

from __future__ import annotations

import dataclasses

import pulumi
import pulumi_aws
import pulumi_eks
import pulumi_kubernetes as k8s
import pytest

import infra.service
from infra.offline import OfflineRun, preview_service, preview_stack, run_offline
from policies.deployment import DeploymentView
from policies.graph import ORDERS, SKIP_AWAIT, SKIP_AWAIT_REASON, graph_findings, table_lines
from tests.policies.conftest import PROJECT_DIR
from tests.policies.programs import edited, without, without_depends_on

DIGEST = "123456789012.dkr.ecr.ap-southeast-1.amazonaws.com/api@sha256:" + "0" * 64


def messages(findings, subject: str) -> list[str]:
    return [f.message for f in findings if f.subject == subject]


def with_platform_rerun(deployment) -> list[OfflineRun]:
    """dev with the platform program run again (after a test changed it), the service as it was."""
    _, *rest = deployment("dev")
    return [preview_stack("dev", PROJECT_DIR), *rest]


def with_service_rerun(deployment) -> list[OfflineRun]:
    """dev with the service program run again (after a test changed it) on the unchanged platform."""
    platform, _, *rest = deployment("dev")
    return [platform, preview_service("dev", PROJECT_DIR, platform), *rest]


# --- the real deployments ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("stack", ["dev", "prod", "ephemeral"])
def test_the_real_deployment_has_no_graph_finding(deployment, stack):
    assert graph_findings(deployment(stack)) == []


@pytest.mark.parametrize("order", ORDERS, ids=lambda o: o.dependent)
def test_every_row_judges_something_in_the_dev_deployment(deployment, order):
    view = DeploymentView(deployment("dev"))
    judged = [n for n in view.nodes if order.selects(n) and order.prerequisites(view, n)]
    assert judged, f"no resource of dev is judged by the row {order.dependent!r}: the row would be vacuous"


def test_every_row_says_why_and_where_it_is_documented():
    for order in ORDERS:
        assert order.why and order.url.startswith("https://"), order.dependent
    assert len(table_lines()) == len(ORDERS) + 2


def test_a_service_resource_is_after_the_whole_platform_through_its_stack_reference(deployment):
    platform, service, *_ = deployment("dev")
    view = DeploymentView([platform, service])
    ingress = next(n for n in view.nodes if n.name == "retail-dev-inference-ingress")
    node_group = next(n for n in view.nodes if n.name == "retail-dev-cluster-inference-nodes")
    assert view.is_after(ingress, node_group)
    assert not view.is_after(node_group, ingress)
    assert [r.project for r in view.references(service)] == [platform.project]


def test_without_the_platform_run_the_stack_reference_leads_nowhere(deployment):
    _, service, *_ = deployment("dev")
    findings = graph_findings([service])
    assert any("fit no node group" in m for m in messages(findings, "retail-dev-inference-deployment"))


# --- one test per table row: delete the ordering, get the finding -----------------------------------------------
def test_nat_gateway_without_the_internet_gateway_dependency(monkeypatch, deployment):
    without_depends_on(monkeypatch, pulumi_aws.ec2, "NatGateway")
    (message,) = messages(graph_findings(with_platform_rerun(deployment)), "retail-dev-net-nat-0")
    assert "not created after retail-dev-net-igw" in message


def test_node_group_without_its_role_policy_attachments(monkeypatch, deployment):
    without_depends_on(monkeypatch, pulumi_eks, "ManagedNodeGroup")
    found = messages(graph_findings(with_platform_rerun(deployment)), "retail-dev-cluster-inference-nodes")
    assert len(found) == 3
    assert any("retail-dev-cluster-inference-AmazonEKSWorkerNodePolicy" in m for m in found)


def test_trail_without_the_bucket_policy_dependency(monkeypatch, deployment):
    without_depends_on(monkeypatch, pulumi_aws.cloudtrail, "Trail")
    (message,) = messages(graph_findings(with_platform_rerun(deployment)), "retail-dev-audit-trail")
    assert "not created after retail-dev-audit-logs-policy" in message


def test_addons_without_the_node_groups(monkeypatch, deployment):
    without_depends_on(monkeypatch, pulumi_aws.eks, "Addon")
    findings = graph_findings(with_platform_rerun(deployment))
    for addon in ("retail-dev-cluster-coredns", "retail-dev-cluster-metrics-server"):
        (message,) = messages(findings, addon)
        assert "a node group of its cluster" in message and "retail-dev-cluster-inference-nodes" in message


def test_helm_releases_without_their_irsa_policies(monkeypatch, deployment):
    without_depends_on(monkeypatch, k8s.helm.v3, "Release")
    findings = graph_findings(with_service_rerun(deployment))
    (controller,) = messages(findings, "retail-dev-lb-controller-release")
    assert "retail-dev-lb-controller-policy-attachment" in controller
    (shipper,) = messages(findings, "retail-dev-log-shipping-release")
    assert "retail-dev-log-shipping-write-logs" in shipper
    (autoscaler,) = messages(findings, "retail-dev-cluster-autoscaler-release")
    assert "retail-dev-cluster-autoscaler-scale-node-groups" in autoscaler


def test_lifecycle_configuration_without_versioning(monkeypatch, deployment):
    without_depends_on(monkeypatch, pulumi_aws.s3, "BucketLifecycleConfiguration")
    (message,) = messages(graph_findings(with_platform_rerun(deployment)), "retail-dev-lake-raw-lifecycle")
    assert "not created after retail-dev-lake-raw-versioning" in message


def test_object_lock_configuration_without_versioning(monkeypatch, deployment):
    without_depends_on(monkeypatch, pulumi_aws.s3, "BucketObjectLockConfiguration")
    (message,) = messages(graph_findings(with_platform_rerun(deployment)), "retail-dev-audit-logs-object-lock")
    assert "not created after retail-dev-audit-logs-versioning" in message


def _inference_with(monkeypatch, **changes):
    """The service's InferenceService built with some of its arguments replaced."""
    original = infra.service.InferenceService

    def build(name, args, opts=None):
        return original(name, dataclasses.replace(args, **changes), opts)

    monkeypatch.setattr(infra.service, "InferenceService", build)


def test_deployment_reading_the_model_location_without_the_served_model(monkeypatch, deployment):
    served = next(r for r in deployment("dev")[1].resources if r.name == "retail-dev-served-model")
    _inference_with(monkeypatch, model_uri=served.outputs["model_uri"], model_sha256=served.outputs["manifest_sha256"])
    (message,) = messages(graph_findings(with_service_rerun(deployment)), "retail-dev-inference-deployment")
    assert "not created after retail-dev-served-model" in message


def test_deployment_reading_the_serving_prefix_instead_of_the_published_bundles_folder(monkeypatch, deployment):
    served = next(r for r in deployment("dev")[1].resources if r.name == "retail-dev-served-model")
    _inference_with(monkeypatch, model_uri=served.outputs["target_uri"])
    found = messages(graph_findings(with_service_rerun(deployment)), "retail-dev-inference-deployment")
    assert any("not from the folder the ServedModel published its bundle to" in message for message in found), found


def test_batch_scoring_and_monitoring_reading_the_serving_prefix_instead_of_the_bundles_folder(monkeypatch, deployment):
    served = next(r for r in deployment("dev")[1].resources if r.name == "retail-dev-served-model")
    original = infra.service.BatchScoring

    def build(name, args, opts=None):
        return original(name, dataclasses.replace(args, bundle_uri=served.outputs["target_uri"]), opts)

    monkeypatch.setattr(infra.service, "BatchScoring", build)
    findings = graph_findings(with_service_rerun(deployment))
    for job in ("retail-dev-batch-scoring-cron-job", "retail-dev-monitoring-cron-job"):
        found = messages(findings, job)
        assert any("not from the folder the ServedModel published its bundle to" in m for m in found), (job, found)


def test_deployment_without_its_network_policy(monkeypatch, deployment):
    without_depends_on(
        monkeypatch, k8s.apps.v1, "Deployment", drop=lambda d: isinstance(d, k8s.networking.v1.NetworkPolicy)
    )
    (message,) = messages(graph_findings(with_service_rerun(deployment)), "retail-dev-inference-deployment")
    assert "not created after retail-dev-inference-network-policy" in message


def test_deployment_without_the_policy_of_the_role_its_pods_run_as(monkeypatch, deployment):
    without_depends_on(monkeypatch, k8s.apps.v1, "Deployment", drop=lambda d: isinstance(d, pulumi_aws.iam.RolePolicy))
    found = messages(graph_findings(with_service_rerun(deployment)), "retail-dev-inference-deployment")
    assert any("not created after retail-dev-inference-model-read" in message for message in found), found


def test_ingress_without_the_load_balancer_controller(monkeypatch, deployment):
    _inference_with(monkeypatch, controller=None, ingress_class="alb")
    (message,) = messages(graph_findings(with_service_rerun(deployment)), "retail-dev-inference-ingress")
    assert "ingress controller release" in message and "retail-dev-lb-controller-release" in message


def test_an_ingress_with_no_controller_at_all_is_reported(deployment):
    platform, service, *_ = deployment("dev")
    no_controller = without(service, lambda r: r.name != "retail-dev-lb-controller-release")
    (message,) = messages(graph_findings([platform, no_controller]), "retail-dev-inference-ingress")
    assert "has no prerequisite in the deployment: the ingress controller release" in message


def test_namespaced_object_without_its_namespace(monkeypatch, deployment):
    without_depends_on(monkeypatch, k8s.policy.v1, "PodDisruptionBudget")
    (message,) = messages(graph_findings(with_service_rerun(deployment)), "retail-dev-inference-pdb")
    assert "not created after retail-dev-inference-namespace" in message


# --- CronJobs, which Pulumi does not await -------------------------------------------------------------------------
CRON_JOB = "retail-dev-batch-scoring-cron-job"


def test_a_cron_job_created_before_the_autoscaler_it_needs_is_reported(monkeypatch, deployment):
    without_depends_on(monkeypatch, k8s.batch.v1, "CronJob", drop=lambda d: isinstance(d, k8s.helm.v3.Release))
    (message,) = messages(graph_findings(with_service_rerun(deployment)), CRON_JOB)
    assert "not created after the Cluster Autoscaler release" in message
    assert "retail-dev-cluster-autoscaler-release" in message


def test_a_cron_job_on_an_empty_group_with_no_autoscaler_at_all_is_reported(deployment):
    platform, service, *rest = deployment("dev")
    no_autoscaler = without(service, lambda r: r.name != "retail-dev-cluster-autoscaler-release")
    (message,) = messages(graph_findings([platform, no_autoscaler, *rest]), CRON_JOB)
    assert "has no prerequisite in the deployment: the Cluster Autoscaler release" in message


def test_an_autoscaler_of_another_cluster_does_not_count(deployment):
    platform, service, *rest = deployment("dev")
    elsewhere = edited(
        service, "retail-dev-cluster-autoscaler-release", ("values", "autoDiscovery", "clusterName"), "other-eks"
    )
    (message,) = messages(graph_findings([platform, elsewhere, *rest]), CRON_JOB)
    assert "has no prerequisite in the deployment: the Cluster Autoscaler release" in message


def test_a_cron_job_without_its_network_policy_is_reported(monkeypatch, deployment):
    without_depends_on(
        monkeypatch, k8s.batch.v1, "CronJob", drop=lambda d: isinstance(d, k8s.networking.v1.NetworkPolicy)
    )
    (message,) = messages(graph_findings(with_service_rerun(deployment)), CRON_JOB)
    assert "not created after retail-dev-batch-scoring-network-policy" in message


def test_a_cron_job_whose_pods_fit_no_node_group_is_reported(deployment):
    platform, service, *rest = deployment("dev")
    pod = ("spec", "jobTemplate", "spec", "template", "spec")
    untolerated = edited(service, CRON_JOB, (*pod, "tolerations"), [])
    (message,) = messages(graph_findings([platform, untolerated, *rest]), CRON_JOB)
    assert "fit no node group" in message and "every run stays Pending" in message


def test_a_cron_job_on_a_group_that_can_never_have_nodes_is_reported(deployment):
    platform, service, *rest = deployment("dev")
    capped = edited(platform, "retail-dev-cluster-batch-nodes", ("scalingConfig", "maxSize"), 0)
    (message,) = messages(graph_findings([capped, service, *rest]), CRON_JOB)
    assert "whose maxSize is 0" in message


def test_a_group_at_zero_without_the_node_template_taint_tag_is_reported(deployment):
    platform, service, *rest = deployment("dev")
    untagged = without(platform, lambda r: not (r.type == "aws:autoscaling/tag:Tag" and "-batch-" in r.name))
    (message,) = messages(graph_findings([untagged, service, *rest]), CRON_JOB)
    assert "lack the node-template tags" in message
    assert "k8s.io/cluster-autoscaler/node-template/taint/retail.io/workload: batch:NoSchedule" in message


def test_a_cron_job_running_an_unpinned_image_is_reported(deployment):
    platform, service, *rest = deployment("dev")
    container = ("spec", "jobTemplate", "spec", "template", "spec", "containers", 0, "image")
    tagged = edited(service, CRON_JOB, container, "registry/inference:1.0")
    (message,) = messages(graph_findings([platform, tagged, *rest]), CRON_JOB)
    assert "not pinned to a digest" in message


# --- what awaited objects wait on (small programs) ---------------------------------------------------------------
def platform_program(desired: int = 1, taint: bool = False):
    def program():
        pulumi_aws.eks.NodeGroup(
            "api-nodes",
            cluster_name="c",
            node_role_arn="arn:aws:iam::123456789012:role/nodes",
            subnet_ids=["subnet-1"],
            scaling_config={"desired_size": desired, "min_size": desired, "max_size": 2},
            labels={"pool": "api"},
            taints=[{"key": "pool", "value": "api", "effect": "NO_SCHEDULE"}] if taint else None,
        )
        return {"labels": {"pool": "api"}}

    return program


def small_deployment(**settings) -> list[OfflineRun]:
    """A platform with one node group and a service project whose Deployment reads its labels."""
    platform = run_offline(
        platform_program(settings.pop("desired", 1), settings.pop("taint", False)), project="platform", stack="dev"
    )
    service = run_offline(
        service_program(**settings),
        project="service",
        stack="dev",
        stack_outputs={"organization/platform/dev": platform.stack_outputs},
    )
    return [platform, service]


def service_program(
    image: str = DIGEST,
    annotations: dict | None = None,
    tolerations: list | None = None,
    secret: str | None = None,
    selector: dict | None = None,
    service_port: str = "http",
    reference: bool = True,
):
    def program():
        labels = pulumi.StackReference("organization/platform/dev").require_output("labels") if reference else {}
        volumes = [{"name": "keys", "secret": {"secret_name": secret}}] if secret else None
        k8s.apps.v1.Deployment(
            "api",
            metadata={"name": "api", "annotations": annotations},
            spec={
                "selector": {"match_labels": {"app": "api"}},
                "template": {
                    "metadata": {"labels": {"app": "api"}},
                    "spec": {
                        "node_selector": labels,
                        "tolerations": tolerations,
                        "volumes": volumes,
                        "containers": [
                            {"name": "api", "image": image, "ports": [{"name": "http", "container_port": 80}]}
                        ],
                    },
                },
            },
        )
        k8s.core.v1.Service(
            "api-service",
            metadata={"name": "api"},
            spec={"selector": selector or {"app": "api"}, "ports": [{"port": 80, "target_port": service_port}]},
        )

    return program


def service_findings(runs) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for f in graph_findings(runs):
        found.setdefault(f.subject, []).append(f.message)
    return found


def test_a_small_deployment_with_every_prerequisite_passes():
    assert graph_findings(small_deployment()) == []


def test_pods_that_fit_no_node_group_are_reported():
    (message,) = service_findings(small_deployment(reference=False))["api"]
    assert "fit no node group" in message


def test_pods_that_do_not_tolerate_the_only_node_group_are_reported():
    (message,) = service_findings(small_deployment(taint=True))["api"]
    assert "fit no node group" in message


def test_a_toleration_lets_pods_onto_a_tainted_group():
    tolerate = [{"key": "pool", "operator": "Equal", "value": "api", "effect": "NoSchedule"}]
    assert graph_findings(small_deployment(taint=True, tolerations=tolerate)) == []


def test_a_node_group_that_starts_empty_does_not_count():
    (message,) = service_findings(small_deployment(desired=0))["api"]
    assert "starting with no nodes" in message


def test_an_image_without_a_digest_is_reported():
    (message,) = service_findings(small_deployment(image="registry/api:1.0"))["api"]
    assert "not pinned to a digest" in message


def test_a_secret_no_project_creates_is_reported():
    (message,) = service_findings(small_deployment(secret="api-keys"))["api"]
    assert "needs Secret 'api-keys'" in message


def test_a_service_selecting_no_pods_is_reported():
    (message,) = service_findings(small_deployment(selector={"app": "other"}))["api-service"]
    assert "selects pods labelled {'app': 'other'}" in message


def test_a_service_targeting_a_port_no_container_names_is_reported():
    (message,) = service_findings(small_deployment(service_port="metrics"))["api-service"]
    assert "targets port 'metrics'" in message


def test_skip_await_with_a_reason_exempts_the_object():
    annotations = {SKIP_AWAIT: "true", SKIP_AWAIT_REASON: "nodes join after this stack"}
    assert "api" not in service_findings(small_deployment(reference=False, annotations=annotations))


def test_skip_await_without_a_reason_is_itself_a_finding():
    (message,) = service_findings(small_deployment(reference=False, annotations={SKIP_AWAIT: "true"}))["api"]
    assert f"sets {SKIP_AWAIT}" in message and "without saying why" in message


def test_a_claim_without_a_storage_class_is_reported():
    def program():
        k8s.core.v1.PersistentVolumeClaim(
            "data",
            metadata={"name": "data"},
            spec={"access_modes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        )

    run = run_offline(program, project="service", stack="dev")
    (finding,) = graph_findings([run])
    assert "default StorageClass" in finding.message


def test_an_ingress_routing_to_a_missing_service_is_reported(deployment):
    platform, service, *_ = deployment("dev")
    no_service = without(service, lambda r: r.name != "retail-dev-inference-service")
    found = messages(graph_findings([platform, no_service]), "retail-dev-inference-ingress")
    assert any("routes to Service 'retail-inference'" in m for m in found)


def test_a_model_hash_other_than_the_published_one_is_reported(monkeypatch, deployment):
    _inference_with(monkeypatch, model_sha256="f" * 64)
    found = messages(graph_findings(with_service_rerun(deployment)), "retail-dev-inference-deployment")
    assert any("accept model manifest" in m and "never become ready" in m for m in found)


# --- the autoscaler's version against the cluster's ---------------------------------------------------------------
AUTOSCALER = "retail-dev-cluster-autoscaler-release"


def test_an_autoscaler_of_another_minor_than_the_cluster_s_is_a_finding(deployment):
    platform, service, *rest = deployment("dev")
    assert {r.name for r in service.resources if r.type == "kubernetes:helm.sh/v3:Release"} >= {AUTOSCALER}
    older = edited(service, AUTOSCALER, ("values", "image", "tag"), "v1.34.2")
    (message,) = messages(graph_findings([platform, older, *rest]), AUTOSCALER)
    cluster = next(r for r in platform.resources if r.type == "eks:index:Cluster")
    assert f"runs Cluster Autoscaler v1.34.2 on a Kubernetes {cluster.inputs['version']} cluster" in message
    default_image = edited(service, AUTOSCALER, ("values", "image"), None)
    for runs in ([platform, default_image, *rest], [default_image]):  # with the platform's cluster or without it
        assert sum("runs the chart's default image" in m for m in messages(graph_findings(runs), AUTOSCALER)) == 1
