"""The service stack: add-ons before what needs them, the served model before the pods, from the platform's outputs."""

import json

import pulumi
import pytest

from infra.addons import CONTROLLER_POLICY
from infra.offline import deploy_time_placeholders, platform_stack_name, preview_service, run_offline
from infra.providers.kinds import SERVED_MODEL

from .conftest import PROJECT_DIR


def one(run, type_):
    (resource,) = run.of_type(type_)
    return resource


def named_like(run, type_, fragment):
    (resource,) = [r for r in run.of_type(type_) if fragment in r.name]
    return resource


def test_the_ingress_gets_its_class_from_the_controller_and_waits_for_its_release(dev_service):
    ingress = one(dev_service, "kubernetes:networking.k8s.io/v1:Ingress")
    controller = named_like(dev_service, "kubernetes:helm.sh/v3:Release", "lb-controller")
    assert ingress.inputs["spec"]["ingressClassName"] == "alb"
    assert controller.urn in ingress.dependencies
    assert controller.urn in ingress.property_dependencies["spec"]


def test_the_controller_runs_with_its_documented_policy_through_irsa(dev, dev_service):
    policy = named_like(dev_service, "aws:iam/policy:Policy", "lb-controller")
    assert json.loads(policy.inputs["policy"]) == json.loads(CONTROLLER_POLICY.read_text())
    role = named_like(dev_service, "aws:iam/role:Role", "lb-controller")
    (trust,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    issuer = dev.stack_outputs["oidcIssuer"]
    assert trust["Condition"]["StringEquals"][f"{issuer}:sub"] == (
        "system:serviceaccount:kube-system:aws-load-balancer-controller"
    )
    values = named_like(dev_service, "kubernetes:helm.sh/v3:Release", "lb-controller").inputs["values"]
    assert values["clusterName"] == dev.stack_outputs["clusterName"]
    assert values["serviceAccount"]["annotations"] == {"eks.amazonaws.com/role-arn": role.outputs["arn"]}


def test_fluent_bit_ships_the_inference_lines_unchanged_as_emf_to_the_alarms_log_group(dev, dev_service):
    values = named_like(dev_service, "kubernetes:helm.sh/v3:Release", "log-shipping").inputs["values"]
    output = values["cloudWatchLogs"]
    assert output["logGroupName"] == dev.stack_outputs["inferenceLogGroupName"]
    assert (output["logKey"], output["logFormat"], output["autoCreateGroup"]) == ("log", "json/emf", False)
    assert values["filter"] == {"enabled": False}


def test_fluent_bit_tails_the_inference_and_batch_scoring_namespaces(dev_service):
    values = named_like(dev_service, "kubernetes:helm.sh/v3:Release", "log-shipping").inputs["values"]
    assert values["input"]["path"] == (
        "/var/log/containers/*_retail-inference_*.log,/var/log/containers/*_retail-batch_*.log"
    )  # Fluent Bit's tail input takes comma-separated patterns
    assert dev_service.stack_outputs["batchScoringNamespace"] == "retail-batch"


def test_fluent_bit_runs_on_the_tainted_batch_nodes_too(dev, dev_service):
    values = named_like(dev_service, "kubernetes:helm.sh/v3:Release", "log-shipping").inputs["values"]
    (taint,) = dev.stack_outputs["batchNodeTaints"]
    assert values["tolerations"] == [{**taint, "operator": "Equal"}]
    cron_job = named_like(dev_service, "kubernetes:batch/v1:CronJob", "batch-scoring")
    pod = cron_job.inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert values["tolerations"] == pod["tolerations"]  # wherever a scoring pod may run, so does Fluent Bit


def test_the_pods_are_pinned_to_the_bundle_the_served_model_published(dev_service):
    (served,) = [r for r in dev_service.resources if r.inputs.get("kind") == SERVED_MODEL]
    deployment = one(dev_service, "kubernetes:apps/v1:Deployment")
    env = {e["name"]: e["value"] for e in deployment.inputs["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["RETAIL_MODEL_SHA256"] == served.outputs["manifest_sha256"]
    assert env["RETAIL_MODEL_URI"] == served.outputs["model_uri"]  # the bundle's own folder, which no publish rewrites
    assert served.urn in deployment.property_dependencies["spec"]


def test_the_served_model_is_the_configured_package_published_into_the_platforms_artifacts_bucket(dev, dev_service):
    (served,) = [r for r in dev_service.resources if r.inputs.get("kind") == SERVED_MODEL]
    artifacts = dev.stack_outputs["lakeBuckets"]["artifacts"]
    assert served.inputs["target_uri"] == f"s3://{artifacts}/models/price-sensitivity/serving/dev/"
    assert served.inputs["model_package_arn"] == deploy_time_placeholders(dev)["retail:modelPackageArn"]


def test_the_api_key_file_holds_the_generated_deploy_key(dev_service):
    secret = one(dev_service, "kubernetes:core/v1:Secret")
    assert secret.inputs["stringData"]["api-keys"] == dev_service.stack_outputs["deployApiKey"] + "\n"


def test_the_pods_run_on_the_platforms_service_nodes(dev, dev_service):
    deployment = one(dev_service, "kubernetes:apps/v1:Deployment")
    assert deployment.inputs["spec"]["template"]["spec"]["nodeSelector"] == dev.stack_outputs["serviceNodeLabels"]


def test_a_service_whose_region_differs_from_its_platform_is_refused(dev):
    outputs = {**dev.stack_outputs, "region": "eu-west-1"}
    with pytest.raises(Exception, match="differs from its platform stack's eu-west-1"):
        _service_with(dev, outputs)
    pulumi.runtime.reset_options()


def test_a_domain_in_a_hosted_zone_gets_a_validated_certificate_and_an_alias(dev):
    run = _service_with(dev, dev.stack_outputs, {"hostname": "api.example.org", "hostedZoneId": "Z123"})
    pulumi.runtime.reset_options()
    validation = one(run, "aws:acm/certificateValidation:CertificateValidation")
    ingress = one(run, "kubernetes:networking.k8s.io/v1:Ingress")
    assert validation.urn in ingress.property_dependencies["metadata"]
    records = run.of_type("aws:route53/record:Record")
    assert {r.inputs["type"] for r in records} >= {"A"}
    assert run.stack_outputs["endpoint"] == "https://api.example.org"


def _service_with(platform, outputs, inference=None):
    from infra.config import read_stack_file

    stack_file = read_stack_file(PROJECT_DIR / "service", "dev")
    config = {**stack_file.config, **deploy_time_placeholders(platform)}
    if inference:
        config["retail:inference"] = json.dumps({**json.loads(config["retail:inference"]), **inference})

    def program():
        from infra.config import load_service_config
        from infra.service import build_service

        return build_service(load_service_config()).outputs()

    return run_offline(
        program, project="retail-mlops-service", stack="dev", config=config,
        stack_outputs={platform_stack_name("dev"): outputs},
    )


def test_the_offline_preview_answers_the_reference_with_the_platforms_outputs(dev):
    run = preview_service("dev", PROJECT_DIR, dev)
    pulumi.runtime.reset_options()
    (reference,) = run.of_type("pulumi:pulumi:StackReference")
    assert reference.inputs["name"] == platform_stack_name("dev")


# --- batch scoring and the autoscaler -----------------------------------------------------------------------------
def cron_job(run):
    return named_like(run, "kubernetes:batch/v1:CronJob", "batch-scoring")


def scoring_container(run):
    (container,) = cron_job(run).inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    return container


def test_batch_scoring_runs_the_image_the_service_runs(dev_service):
    deployment = one(dev_service, "kubernetes:apps/v1:Deployment")
    (api,) = deployment.inputs["spec"]["template"]["spec"]["containers"]
    assert scoring_container(dev_service)["image"] == api["image"] == dev_service.stack_outputs["image"]


def test_batch_scoring_scores_with_the_bundle_the_service_serves(dev_service):
    (served,) = [r for r in dev_service.resources if r.inputs.get("kind") == SERVED_MODEL]
    container = scoring_container(dev_service)
    env = {e["name"]: e["value"] for e in container["env"]}
    assert container["args"][container["args"].index("--bundle") + 1] == served.outputs["model_uri"]
    assert env["RETAIL_MODEL_SHA256"] == served.outputs["manifest_sha256"]
    assert served.urn in cron_job(dev_service).property_dependencies["spec"]


def test_batch_scoring_reads_and_writes_the_lake_the_datasets_readme_documents(dev, dev_service):
    """RETAIL_LAKE_ROOT=s3://<raw bucket>/lake: every zone of a `retail pipeline run` lives there."""
    raw = dev.stack_outputs["lakeBuckets"]["raw"]
    container = scoring_container(dev_service)
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["RETAIL_LAKE_ROOT"] == f"s3://{raw}/lake"
    assert container["args"][:2] == ["--input", f"s3://{raw}/lake/silver/latest/"]
    assert dev_service.stack_outputs["predictionsUri"] == f"s3://{raw}/lake/predictions/"


def test_batch_pods_are_placed_by_the_platforms_batch_node_labels_and_taints(dev, dev_service):
    pod = cron_job(dev_service).inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == dev.stack_outputs["batchNodeLabels"]
    assert [{k: t[k] for k in ("key", "value", "effect")} for t in pod["tolerations"]] == dev.stack_outputs[
        "batchNodeTaints"
    ]


def test_the_cron_job_waits_for_the_cluster_autoscaler(dev_service):
    release = named_like(dev_service, "kubernetes:helm.sh/v3:Release", "cluster-autoscaler")
    assert release.urn in cron_job(dev_service).dependencies


def test_the_autoscaler_discovers_the_platforms_cluster_and_runs_on_its_service_nodes(dev, dev_service):
    values = named_like(dev_service, "kubernetes:helm.sh/v3:Release", "cluster-autoscaler").inputs["values"]
    assert values["autoDiscovery"]["clusterName"] == dev.stack_outputs["clusterName"]
    assert values["nodeSelector"] == dev.stack_outputs["serviceNodeLabels"]


def test_the_scorer_role_is_scoped_to_the_platforms_buckets_and_data_key(dev, dev_service):
    policy = json.loads(named_like(dev_service, "aws:iam/rolePolicy:RolePolicy", "batch-scoring").inputs["policy"])
    resources = {s["Sid"]: s["Resource"] for s in policy["Statement"]}
    raw, artifacts = (dev.stack_outputs["lakeBucketArns"][zone] for zone in ("raw", "artifacts"))
    assert resources["WritePredictions"] == f"{raw}/lake/predictions/*"
    assert resources["ReadServedBundle"] == f"{artifacts}/models/price-sensitivity/serving/dev/*"
    assert resources["UseDataKeyThroughS3"] == dev.stack_outputs["dataKeyArn"]


def test_only_the_ephemeral_service_suspends_batch_scoring(dev_service, prod_service, ephemeral_service):
    runs = (dev_service, prod_service, ephemeral_service)
    suspended = {run.stack: cron_job(run).inputs["spec"]["suspend"] for run in runs}
    assert suspended == {"dev": False, "prod": False, "ephemeral": True}
