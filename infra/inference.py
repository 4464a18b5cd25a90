"""The inference API on EKS: IRSA role, Secret, Deployment, Service, HPA, PDB, ALB Ingress, NetworkPolicy."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
from pulumi_kubernetes.apps.v1 import DeploymentSpecArgs, RollingUpdateDeploymentArgs
from pulumi_kubernetes.core.v1 import (
    ContainerArgs,
    HTTPGetActionArgs,
    ProbeArgs,
    SecurityContextArgs,
)
from pulumi_kubernetes.meta.v1 import LabelSelectorArgs, ObjectMetaArgs

from infra.config import InferenceConfig
from infra.iam import irsa_trust_policy, policy_document
from infra.pod_egress import ip_blocks, private_egress
from infra.prediction_log import PredictionLogTarget, prediction_log_policy

APP = "retail-inference"
PORT = 8000
LIVE_PATH = "/health/live"
READY_PATH = "/health/ready"
PUBLIC_PATHS = (("/v1", "Prefix"), (READY_PATH, "Exact"))
"""What the load balancer routes: the API and its readiness (for smoke tests); /metrics stays in-cluster."""
API_KEYS_DIR = "/var/run/secrets/retail"
API_KEYS_FILE = f"{API_KEYS_DIR}/api-keys"
RUN_AS = 10001
DRAIN_SECONDS = 15
"""A stopping pod keeps serving this long, while the ALB deregisters it (no requests cut off mid-rollout)."""
READINESS_GATE_LABEL = "elbv2.k8s.aws/pod-readiness-gate-inject"


@dataclass
class InferenceServiceArgs:
    environment: str
    region: str
    image: str
    """`<repository>@sha256:<digest>`: the exact image CI pushed."""
    model_uri: pulumi.Input[str]
    """The served bundle's own folder (`s3://bucket/prefix/<manifest sha256>/`: the ServedModel's `model_uri`)."""
    model_sha256: pulumi.Input[str]
    """SHA-256 of the published bundle's manifest; the pods serve only that bundle."""
    model_bucket_arn: pulumi.Input[str]
    model_prefix: str
    data_kms_key_arn: pulumi.Input[str]
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer: pulumi.Input[str]
    node_labels: pulumi.Input[dict]
    """Labels of the node group the pods run on."""
    api_keys_file: pulumi.Input[str]
    """Written verbatim to the mounted key file the API reads (RETAIL_API_KEYS_FILE), one key per line."""
    ingress_class: pulumi.Input[str]
    """IngressClass of the load balancer controller that turns the Ingress into an ALB."""
    load_balancer_cidrs: pulumi.Input[Sequence[str]]
    """Subnets the internet-facing ALB's nodes live in: the only sources the pods accept traffic from."""
    vpc_cidr: pulumi.Input[str]
    """Where the VPC's interface endpoints (STS, KMS, ...) answer."""
    s3_cidrs: pulumi.Input[Sequence[str]]
    """The region's S3 address ranges (the S3 gateway endpoint's prefix list)."""
    controller: pulumi.Resource | None = None
    """The load balancer controller's release: the Ingress is created after it and deleted before it."""
    certificate_arn: pulumi.Input[str] = ""
    """ACM certificate for `sizing.hostname`; empty: plain HTTP on the ALB's own DNS name."""
    sizing: InferenceConfig = field(default_factory=InferenceConfig)
    """Namespace, replicas, resources, hostname: the service stack's `retail:inference` config."""
    prediction_log: PredictionLogTarget | None = None
    """Where the pods write their prediction log (infra/prediction_log.py); None: they keep none."""


class InferenceService(pulumi.ComponentResource):
    """The API as a hardened Deployment behind an internet-facing ALB.

    The namespace enforces the `restricted` Pod Security Standard. Pods run as a
    non-root user with a read-only root filesystem (writable /tmp is an emptyDir), no
    capabilities and no service-account token; they assume, through IRSA, a role that
    can only read objects under the model prefix in the artifacts bucket (and, with
    `prediction_log`, put objects under the lake's predictions/service/: infra/prediction_log.py),
    and they serve only the bundle whose manifest hash is `model_sha256`. API keys come from a Secret
    mounted as a file. The HPA (CPU and memory) owns the replica count, the rollout never
    removes a ready pod before its replacement is ready, and the PDB keeps node drains to
    one pod at a time. Every request and a heartbeat become CloudWatch metrics through
    EMF lines on stdout. A NetworkPolicy admits traffic only from the load balancer's
    subnets and lets the pods reach only DNS, S3 and the VPC's interface endpoints.

    With a hostname the ALB listens on HTTPS with `certificate_arn` (HTTP redirects to
    it); without one it listens on HTTP and `endpoint` is its own DNS name.
    """

    namespace: pulumi.Output[str]
    role_arn: pulumi.Output[str]
    load_balancer_hostname: pulumi.Output[str]
    endpoint: pulumi.Output[str]

    def __init__(self, name: str, args: InferenceServiceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("retail:infra:InferenceService", name, None, opts)
        self._name, self._args = name, args
        self.role, model_read = self._model_reader_role()
        ns = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=ObjectMetaArgs(
                name=args.sizing.namespace,
                labels={
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                    # The controller gates each pod's readiness on its ALB target being healthy, so a
                    # rolling update never leaves the target group with only initial/draining targets.
                    READINESS_GATE_LABEL: "enabled",
                },
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[ns])
        account = k8s.core.v1.ServiceAccount(
            f"{name}-service-account",
            metadata=self._meta(annotations={"eks.amazonaws.com/role-arn": self.role.arn}),
            automount_service_account_token=False,
            opts=in_ns,
        )
        secret = k8s.core.v1.Secret(
            f"{name}-api-keys",
            metadata=self._meta(name=f"{APP}-api-keys"),
            type="Opaque",
            string_data={"api-keys": pulumi.Output.secret(args.api_keys_file)},
            opts=in_ns,
        )
        policy = self._network_policy(in_ns)
        writes = [] if args.prediction_log is None else [prediction_log_policy(
            name, self.role.id, args.prediction_log, args.data_kms_key_arn, args.region,
            pulumi.ResourceOptions(parent=self))]
        deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=self._meta(),
            spec=self._deployment_spec(account, secret),
            # after its role's policies: the pods read the model as that role from their first start
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ns, policy, model_read, *writes]),
        )
        controller = [args.controller] if args.controller else []
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=self._meta(),
            spec=k8s.core.v1.ServiceSpecArgs(
                type="ClusterIP",
                selector={"app": APP},
                # The same port as the container's: the VPC CNI's network policies require it.
                ports=[k8s.core.v1.ServicePortArgs(name="http", port=PORT, target_port="http")],
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ns, deployment, *controller]),
        )
        self._autoscaling(deployment, in_ns)
        ingress = self._ingress(service, pulumi.ResourceOptions(parent=self, depends_on=[ns, *controller]))
        self.namespace = ns.metadata.name
        self.role_arn = self.role.arn
        self.load_balancer_hostname = ingress.status.apply(_load_balancer_hostname)
        hostname = args.sizing.hostname
        self.endpoint = (
            pulumi.Output.from_input(f"https://{hostname}")
            if hostname
            else self.load_balancer_hostname.apply(lambda host: f"http://{host}" if host else "")
        )
        self.register_outputs(
            {
                "namespace": self.namespace,
                "role_arn": self.role_arn,
                "load_balancer_hostname": self.load_balancer_hostname,
                "endpoint": self.endpoint,
            }
        )

    def _meta(self, name: str = APP, annotations: dict | None = None) -> ObjectMetaArgs:
        return ObjectMetaArgs(
            name=name,
            namespace=self._args.sizing.namespace,
            labels={"app": APP, "environment": self._args.environment},
            annotations=annotations,
        )

    def _model_reader_role(self) -> tuple[aws.iam.Role, aws.iam.RolePolicy]:
        """The pods' IRSA role and its policy: read the served bundles' objects and decrypt them through S3. No
        listing: the service opens the manifest and the files it names, and nothing else (api/model_source.py).
        A missing file is then S3's 403 rather than 404, which the service logs and counts as a failed load,
        staying live but not ready."""
        args = self._args
        role = aws.iam.Role(
            f"{self._name}-model-reader",
            description="Inference pods: read model artifacts (and write the prediction log when it is on)",
            assume_role_policy=irsa_trust_policy(args.oidc_provider_arn, args.oidc_issuer, args.sizing.namespace, APP),
            opts=pulumi.ResourceOptions(parent=self),
        )
        policy = aws.iam.RolePolicy(
            f"{self._name}-model-read",
            role=role.id,
            policy=policy_document(
                [
                    {
                        "Sid": "ReadModelObjects",
                        "Effect": "Allow",
                        "Action": "s3:GetObject",
                        "Resource": pulumi.Output.format("{0}/{1}/*", args.model_bucket_arn, args.model_prefix),
                    },
                    {
                        "Sid": "DecryptThroughS3",
                        "Effect": "Allow",
                        "Action": "kms:Decrypt",
                        "Resource": args.data_kms_key_arn,
                        "Condition": {"StringEquals": {"kms:ViaService": f"s3.{args.region}.amazonaws.com"}},
                    },
                ]
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        return role, policy

    def _deployment_spec(self, account: k8s.core.v1.ServiceAccount, secret: k8s.core.v1.Secret) -> DeploymentSpecArgs:
        labels = {"app": APP, "environment": self._args.environment}
        return DeploymentSpecArgs(
            selector=LabelSelectorArgs(match_labels={"app": APP}),
            strategy=k8s.apps.v1.DeploymentStrategyArgs(
                type="RollingUpdate",
                rolling_update=RollingUpdateDeploymentArgs(max_unavailable=0, max_surge=1),
            ),
            template=k8s.core.v1.PodTemplateSpecArgs(
                metadata=ObjectMetaArgs(labels=labels),
                spec=k8s.core.v1.PodSpecArgs(
                    termination_grace_period_seconds=DRAIN_SECONDS + 30,
                    service_account_name=account.metadata.name,
                    automount_service_account_token=False,
                    node_selector=self._args.node_labels,
                    security_context=k8s.core.v1.PodSecurityContextArgs(
                        run_as_non_root=True,
                        run_as_user=RUN_AS,
                        run_as_group=RUN_AS,
                        fs_group=RUN_AS,
                        seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
                    ),
                    topology_spread_constraints=[
                        k8s.core.v1.TopologySpreadConstraintArgs(
                            max_skew=1,
                            topology_key="topology.kubernetes.io/zone",
                            when_unsatisfiable="ScheduleAnyway",
                            label_selector=LabelSelectorArgs(match_labels={"app": APP}),
                        )
                    ],
                    containers=[self._container()],
                    volumes=[
                        k8s.core.v1.VolumeArgs(
                            name="tmp",
                            empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit="256Mi"),
                        ),
                        k8s.core.v1.VolumeArgs(
                            name="api-keys",
                            secret=k8s.core.v1.SecretVolumeSourceArgs(
                                secret_name=secret.metadata.name, default_mode=0o440
                            ),
                        ),
                    ],
                ),
            ),
        )

    def _container(self) -> ContainerArgs:
        args = self._args
        env = {
            "RETAIL_MODEL_URI": args.model_uri,
            "RETAIL_MODEL_SHA256": args.model_sha256,
            "RETAIL_API_KEYS_FILE": API_KEYS_FILE,
            "RETAIL_ENVIRONMENT": args.environment,
            "RETAIL_EMF_ENABLED": "true",
            "AWS_REGION": args.region,
            "AWS_DEFAULT_REGION": args.region,
            "AWS_STS_REGIONAL_ENDPOINTS": "regional",
        }
        if args.prediction_log is not None:
            env.update(RETAIL_PREDICTION_LOG_ENABLED="true", RETAIL_PREDICTION_LOG_URI=args.prediction_log.uri)
        return ContainerArgs(
            name="api",
            image=args.image,
            ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=PORT)],
            env=[k8s.core.v1.EnvVarArgs(name=k, value=v) for k, v in env.items()],
            resources=k8s.core.v1.ResourceRequirementsArgs(
                requests={"cpu": args.sizing.cpu_request, "memory": args.sizing.memory_request},
                limits={"cpu": args.sizing.cpu_limit, "memory": args.sizing.memory_limit},
            ),
            startup_probe=_http_probe(LIVE_PATH, period=2, failures=30),
            liveness_probe=_http_probe(LIVE_PATH, period=10, failures=3),
            readiness_probe=_http_probe(READY_PATH, period=5, failures=2),
            lifecycle=k8s.core.v1.LifecycleArgs(
                pre_stop=k8s.core.v1.LifecycleHandlerArgs(sleep=k8s.core.v1.SleepActionArgs(seconds=DRAIN_SECONDS))
            ),
            security_context=SecurityContextArgs(
                run_as_non_root=True,
                allow_privilege_escalation=False,
                read_only_root_filesystem=True,
                capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
            ),
            volume_mounts=[
                k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp"),
                k8s.core.v1.VolumeMountArgs(name="api-keys", mount_path=API_KEYS_DIR, read_only=True),
            ],
        )

    def _network_policy(self, opts: pulumi.ResourceOptions) -> k8s.networking.v1.NetworkPolicy:
        """Ingress from the ALB's subnets on the API port; egress to DNS, S3 and the VPC's endpoints."""
        args = self._args
        tcp = "TCP"
        from_load_balancer = ip_blocks(args.load_balancer_cidrs)
        return k8s.networking.v1.NetworkPolicy(
            f"{self._name}-network-policy",
            metadata=self._meta(),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=LabelSelectorArgs(match_labels={"app": APP}),
                policy_types=["Ingress", "Egress"],
                ingress=[
                    k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                        from_=from_load_balancer,
                        ports=[k8s.networking.v1.NetworkPolicyPortArgs(protocol=tcp, port=PORT)],
                    )
                ],
                egress=private_egress(args.vpc_cidr, args.s3_cidrs),
            ),
            opts=opts,
        )

    def _autoscaling(self, deployment: k8s.apps.v1.Deployment, opts: pulumi.ResourceOptions) -> None:
        args = self._args
        k8s.autoscaling.v2.HorizontalPodAutoscaler(
            f"{self._name}-hpa",
            metadata=self._meta(),
            spec=k8s.autoscaling.v2.HorizontalPodAutoscalerSpecArgs(
                scale_target_ref=k8s.autoscaling.v2.CrossVersionObjectReferenceArgs(
                    api_version="apps/v1", kind="Deployment", name=deployment.metadata.name
                ),
                min_replicas=args.sizing.min_replicas,
                max_replicas=args.sizing.max_replicas,
                metrics=[
                    _utilisation("cpu", args.sizing.target_cpu_percent),
                    _utilisation("memory", args.sizing.target_memory_percent),
                ],
            ),
            opts=opts,
        )
        k8s.policy.v1.PodDisruptionBudget(
            f"{self._name}-pdb",
            metadata=self._meta(),
            spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                max_unavailable=1,
                selector=LabelSelectorArgs(match_labels={"app": APP}),
            ),
            opts=opts,
        )

    def _ingress(self, service: k8s.core.v1.Service, opts: pulumi.ResourceOptions) -> k8s.networking.v1.Ingress:
        args = self._args
        hostname = args.sizing.hostname
        listen = [{"HTTP": 80}, {"HTTPS": 443}] if hostname else [{"HTTP": 80}]
        annotations = pulumi.Output.from_input(args.certificate_arn).apply(
            lambda certificate: _alb_annotations(listen, args.sizing.allowed_cidrs, certificate if hostname else "")
        )
        backend = k8s.networking.v1.IngressBackendArgs(
            service=k8s.networking.v1.IngressServiceBackendArgs(
                name=service.metadata.name,
                port=k8s.networking.v1.ServiceBackendPortArgs(name="http"),
            )
        )
        rule = k8s.networking.v1.IngressRuleArgs(
            host=hostname or None,
            http=k8s.networking.v1.HTTPIngressRuleValueArgs(
                paths=[
                    k8s.networking.v1.HTTPIngressPathArgs(path=path, path_type=kind, backend=backend)
                    for path, kind in PUBLIC_PATHS
                ]
            ),
        )
        return k8s.networking.v1.Ingress(
            f"{self._name}-ingress",
            metadata=ObjectMetaArgs(
                name=APP,
                namespace=args.sizing.namespace,
                labels={"app": APP, "environment": args.environment},
                annotations=annotations,
            ),
            spec=k8s.networking.v1.IngressSpecArgs(
                ingress_class_name=args.ingress_class,
                tls=[k8s.networking.v1.IngressTLSArgs(hosts=[hostname])] if hostname else None,
                rules=[rule],
            ),
            opts=opts,
        )


def _alb_annotations(listen: list[dict], allowed_cidrs: Sequence[str], certificate_arn: str) -> dict[str, str]:
    """The AWS Load Balancer Controller's annotations for an internet-facing ALB in front of pod IPs."""
    annotations = {
        "alb.ingress.kubernetes.io/scheme": "internet-facing",
        "alb.ingress.kubernetes.io/target-type": "ip",
        "alb.ingress.kubernetes.io/listen-ports": json.dumps(listen),
        "alb.ingress.kubernetes.io/inbound-cidrs": ",".join(allowed_cidrs),
        "alb.ingress.kubernetes.io/healthcheck-path": READY_PATH,
        "alb.ingress.kubernetes.io/success-codes": "200",
        "alb.ingress.kubernetes.io/load-balancer-attributes": "routing.http.drop_invalid_header_fields.enabled=true",
    }
    if certificate_arn:
        annotations["alb.ingress.kubernetes.io/certificate-arn"] = certificate_arn
        annotations["alb.ingress.kubernetes.io/ssl-policy"] = "ELBSecurityPolicy-TLS13-1-2-2021-06"
        annotations["alb.ingress.kubernetes.io/ssl-redirect"] = "443"
    return annotations


def _load_balancer_hostname(status: k8s.networking.v1.outputs.IngressStatus | None) -> str:
    """The ALB's DNS name once the controller has written it, else an empty string."""
    entries = (status and status.load_balancer and status.load_balancer.ingress) or []
    return (entries[0].hostname or "") if entries else ""


def _http_probe(path: str, *, period: int, failures: int) -> ProbeArgs:
    return ProbeArgs(
        http_get=HTTPGetActionArgs(path=path, port="http"),
        period_seconds=period,
        failure_threshold=failures,
        timeout_seconds=2,
    )


def _utilisation(resource: str, percent: int) -> k8s.autoscaling.v2.MetricSpecArgs:
    return k8s.autoscaling.v2.MetricSpecArgs(
        type="Resource",
        resource=k8s.autoscaling.v2.ResourceMetricSourceArgs(
            name=resource,
            target=k8s.autoscaling.v2.MetricTargetArgs(type="Utilization", average_utilization=percent),
        ),
    )
