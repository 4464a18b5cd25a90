"""InferenceService: hardened pods pinned to an image digest and a published bundle, IRSA read-only model access,
autoscaling, an ALB through the controller, a NetworkPolicy."""

import json

import pytest

from infra.config import InferenceConfig
from infra.inference import API_KEYS_FILE, PORT, InferenceService, InferenceServiceArgs
from infra.offline import OfflineRun

from .helpers import build, policy_of, statements

ISSUER = "oidc.eks.ap-southeast-1.amazonaws.com/id/EXAMPLE"
ARTIFACTS = "arn:aws:s3:::lake-artifacts"
DATA_KEY = "arn:aws:kms:ap-southeast-1:123456789012:key/data"
IMAGE = "123456789012.dkr.ecr.ap-southeast-1.amazonaws.com/reg/inference@sha256:" + "b" * 64
CERTIFICATE = "arn:aws:acm:ap-southeast-1:123456789012:certificate/abc"
PUBLIC_SUBNETS = ["10.40.128.0/20", "10.40.144.0/20"]
S3_RANGES = ["52.219.0.0/20"]


def service_args(**overrides) -> InferenceServiceArgs:
    """The service's arguments as a test stack passes them, with `overrides` (also used by test_prediction_log)."""
    values = dict(
        environment="test",
        region="ap-southeast-1",
        image=IMAGE,
        model_uri="s3://lake-artifacts/models/champion/",
        model_sha256="c" * 64,
        model_bucket_arn=ARTIFACTS,
        model_prefix="models/champion",
        data_kms_key_arn=DATA_KEY,
        oidc_provider_arn=f"arn:aws:iam::123456789012:oidc-provider/{ISSUER}",
        oidc_issuer=ISSUER,
        node_labels={"retail.io/workload": "inference"},
        api_keys_file="key-one\nkey-two\n",
        ingress_class="alb",
        load_balancer_cidrs=PUBLIC_SUBNETS,
        vpc_cidr="10.40.0.0/16",
        s3_cidrs=S3_RANGES,
    )
    return InferenceServiceArgs(**(values | overrides))


def service(hostname: str = "", certificate_arn: str = "") -> OfflineRun:
    sizing = {"hostname": hostname, "certificate_arn": certificate_arn} if hostname else {}
    args = service_args(
        certificate_arn=certificate_arn,
        sizing=InferenceConfig(namespace="serving", min_replicas=2, max_replicas=5, **sizing),
    )
    return build(lambda: InferenceService("svc", args))


@pytest.fixture(scope="module")
def run():
    return service(hostname="api.example.com", certificate_arn=CERTIFICATE)


@pytest.fixture(scope="module")
def no_domain():
    return service()


def spec_of(run, kind):
    (obj,) = [r for r in run.resources if r.type.endswith(f":{kind}")]
    return obj.inputs


@pytest.fixture(scope="module")
def pod(run):
    return spec_of(run, "Deployment")["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def container(pod):
    (only,) = pod["containers"]
    return only


def test_namespace_enforces_the_restricted_pod_security_standard(run):
    labels = spec_of(run, "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_service_account_is_bound_to_the_model_reader_role(run):
    (role,) = run.of_type("aws:iam/role:Role")
    annotations = spec_of(run, "ServiceAccount")["metadata"]["annotations"]
    assert annotations == {"eks.amazonaws.com/role-arn": role.outputs["arn"]}


def test_only_that_service_account_can_assume_the_role(run):
    (role,) = run.of_type("aws:iam/role:Role")
    (trust,) = policy_of(role, "assumeRolePolicy")["Statement"]
    assert trust["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert trust["Condition"]["StringEquals"] == {
        f"{ISSUER}:sub": "system:serviceaccount:serving:retail-inference",
        f"{ISSUER}:aud": "sts.amazonaws.com",
    }


def test_the_role_can_only_read_model_artifacts(run):
    (policy,) = run.of_type("aws:iam/rolePolicy:RolePolicy")
    actions = {s["Sid"]: s["Action"] for s in statements(policy)}
    resources = {s["Sid"]: s["Resource"] for s in statements(policy)}
    assert actions == {
        "ReadModelObjects": "s3:GetObject",
        "DecryptThroughS3": "kms:Decrypt",
    }
    assert resources["ReadModelObjects"] == f"{ARTIFACTS}/models/champion/*"


def test_pods_run_as_non_root_without_a_service_account_token(pod):
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False


def test_container_has_a_read_only_root_and_no_capabilities(container):
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}


def test_tmp_is_a_writable_empty_dir(pod, container):
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_container_has_requests_and_limits(container):
    resources = container["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    assert set(resources["limits"]) == {"cpu", "memory"}


def test_probes_use_the_api_health_routes_on_its_port(container):
    assert container["ports"] == [{"name": "http", "containerPort": PORT}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}


def test_the_pods_serve_only_the_published_bundle_from_the_image_digest(container):
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["RETAIL_MODEL_URI"] == "s3://lake-artifacts/models/champion/"
    assert env["RETAIL_MODEL_SHA256"] == "c" * 64
    assert container["image"] == IMAGE


def test_every_request_and_a_heartbeat_become_cloudwatch_metrics(container):
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["RETAIL_EMF_ENABLED"] == "true"
    assert env["RETAIL_ENVIRONMENT"] == "test"


def test_api_keys_come_from_a_secret_mounted_as_the_file_the_api_reads(run, pod, container):
    secret = spec_of(run, "Secret")
    env = {e["name"]: e["value"] for e in container["env"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "api-keys")
    assert secret["stringData"] == {"api-keys": "key-one\nkey-two\n"}
    assert volumes["api-keys"]["secret"]["secretName"] == secret["metadata"]["name"]
    assert env["RETAIL_API_KEYS_FILE"] == API_KEYS_FILE == f"{mount['mountPath']}/api-keys"
    assert mount["readOnly"] is True
    assert "RETAIL_API_KEYS" not in env


def test_rolling_update_never_removes_a_pod_before_its_replacement_is_ready(run):
    strategy = spec_of(run, "Deployment")["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0


def test_the_autoscaler_not_the_deployment_owns_the_replica_count(run):
    assert "replicas" not in spec_of(run, "Deployment")["spec"]
    hpa = spec_of(run, "HorizontalPodAutoscaler")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 5)


def test_the_autoscaler_follows_cpu_and_memory(run):
    metrics = spec_of(run, "HorizontalPodAutoscaler")["spec"]["metrics"]
    assert {m["resource"]["name"] for m in metrics} == {"cpu", "memory"}


def test_disruptions_take_at_most_one_pod_at_a_time(run):
    assert spec_of(run, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_with_a_domain_the_alb_serves_https_with_its_certificate_and_redirects_http(run):
    ingress = spec_of(run, "Ingress")
    annotations = ingress["metadata"]["annotations"]
    assert ingress["spec"]["ingressClassName"] == "alb"
    assert json.loads(annotations["alb.ingress.kubernetes.io/listen-ports"]) == [{"HTTP": 80}, {"HTTPS": 443}]
    assert annotations["alb.ingress.kubernetes.io/certificate-arn"] == CERTIFICATE
    assert annotations["alb.ingress.kubernetes.io/ssl-redirect"] == "443"
    assert annotations["alb.ingress.kubernetes.io/healthcheck-path"] == "/health/ready"
    assert ingress["spec"]["tls"] == [{"hosts": ["api.example.com"]}]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "api.example.com"


def test_without_a_domain_the_alb_answers_http_on_its_own_name_for_any_host(no_domain):
    ingress = spec_of(no_domain, "Ingress")
    annotations = ingress["metadata"]["annotations"]
    assert json.loads(annotations["alb.ingress.kubernetes.io/listen-ports"]) == [{"HTTP": 80}]
    assert "alb.ingress.kubernetes.io/certificate-arn" not in annotations
    assert "tls" not in ingress["spec"]
    (rule,) = ingress["spec"]["rules"]
    assert "host" not in rule


def test_the_alb_routes_the_api_and_its_readiness_but_not_metrics(run):
    (rule,) = spec_of(run, "Ingress")["spec"]["rules"]
    assert [(p["path"], p["pathType"]) for p in rule["http"]["paths"]] == [
        ("/v1", "Prefix"),
        ("/health/ready", "Exact"),
    ]


def test_pods_take_traffic_only_from_the_load_balancer_subnets_on_the_api_port(run):
    policy = spec_of(run, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["ingress"]
    assert [peer["ipBlock"]["cidr"] for peer in ingress["from"]] == PUBLIC_SUBNETS
    assert ingress["ports"] == [{"protocol": "TCP", "port": PORT}]


def test_pods_reach_only_dns_the_vpc_endpoints_and_s3(run):
    dns, endpoints, s3 = spec_of(run, "NetworkPolicy")["spec"]["egress"]
    assert dns["to"][0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    assert {p["port"] for p in dns["ports"]} == {53}
    assert endpoints["to"] == [{"ipBlock": {"cidr": "10.40.0.0/16"}}]
    assert [peer["ipBlock"]["cidr"] for peer in s3["to"]] == S3_RANGES
    assert {p["port"] for p in endpoints["ports"] + s3["ports"]} == {443}


def test_the_deployment_waits_for_its_network_policy(run):
    (deployment,) = [r for r in run.resources if r.type.endswith(":Deployment")]
    (policy,) = [r for r in run.resources if r.type.endswith(":NetworkPolicy")]
    assert policy.urn in deployment.dependencies
