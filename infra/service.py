"""The service stack: everything that runs on the platform's cluster, from one typed config.

Read from the platform stack through a StackReference: the cluster's kubeconfig and
OIDC provider, the node groups' labels and taints, the lake's buckets and data key, the
network's CIDRs, the log group the alarms read and the model registry. Created here, in
this order:

1. the cluster add-ons: the AWS Load Balancer Controller, Fluent Bit (shipping the
   inference and batch-scoring namespaces, on the service and the tainted batch nodes)
   and Cluster Autoscaler (which scales the node groups, the batch group up from zero);
2. the served model: the approved SageMaker package of `retail:modelPackageArn`,
   published to the serving prefix (`ServedModel`), with what the registry says about
   it (`RegisteredPackage`: approval, gate, champion comparison, lineage) and the
   platform's rollback alarms as inputs the policy pack judges before it is published;
3. the inference API, pinned to that bundle and to the image digest `retail:image`,
   behind an ALB Ingress that waits for the controller, logging what it answers under the
   predictions zone batch scoring writes to (infra/prediction_log.py);
4. batch scoring: the weekly `retail score` CronJob on the batch nodes, with the same
   image and bundle, after the autoscaler (`retail:batchScoring`), and beside it the
   weekly `retail monitor` CronJob that measures the week's predictions against its labels
   (`retail:monitoring`, infra/monitoring_schedule.py); both run in the platform's `batchTimeZone`
   and the monitor judges by the platform's `thresholds`, the values the platform's alarms use;
5. with `retail:inference.hostname` and `hostedZoneId`, a validated ACM certificate and
   the DNS alias of the ALB.

So every Kubernetes object Pulumi waits for has what it waits on inside this stack or
the referenced platform stack, and the whole service comes up in one `pulumi up`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_random as random

from infra.addons import LoadBalancerController, LoadBalancerControllerArgs, LogShipping, LogShippingArgs
from infra.batch_scoring import BatchScoring, BatchScoringArgs
from infra.cluster_autoscaler import ClusterAutoscaler, ClusterAutoscalerArgs
from infra.config import InferenceConfig, ServiceConfig, ThresholdsConfig, parse_section
from infra.inference import InferenceService, InferenceServiceArgs
from infra.monitoring_schedule import MonitoringSchedule, MonitoringScheduleArgs
from infra.platform import aws_provider
from infra.prediction_log import PredictionLogTarget
from infra.providers.registered_package import RegisteredPackage
from infra.providers.served_model import ServedModel

MODEL_PREFIX = "models/price-sensitivity/serving"
"""Where in the artifacts bucket the served bundles live: a folder per service stack below it, and in it a folder per
published bundle, named by its manifest SHA-256 (infra/providers/served_model.py)."""
DEPLOY_KEY_LENGTH = 40


@dataclass
class Service:
    """The composed service, for stack outputs and for tests."""

    config: ServiceConfig
    controller: LoadBalancerController
    log_shipping: LogShipping
    autoscaler: ClusterAutoscaler
    model: ServedModel
    inference: InferenceService
    batch_scoring: BatchScoring
    monitoring: MonitoringSchedule
    deploy_key: random.RandomPassword

    def outputs(self) -> dict[str, pulumi.Input]:
        """What the stack exports: where to call the API, with which key, and what it serves."""
        time_zone = self.batch_scoring.args.time_zone
        return {
            "endpoint": self.inference.endpoint,
            "loadBalancerHostname": self.inference.load_balancer_hostname,
            "deployApiKey": pulumi.Output.secret(self.deploy_key.result),
            "image": self.config.image,
            "modelPackageArn": self.config.model_package_arn,
            "modelManifestSha256": self.model.manifest_sha256,
            "modelPackageVersion": self.model.package_version,
            "namespace": self.inference.namespace,
            "batchScoringNamespace": self.batch_scoring.namespace,
            "batchScoringSchedule": pulumi.Output.format("{0} ({1})", self.config.batch_scoring.schedule, time_zone),
            "predictionsUri": self.batch_scoring.predictions_uri,
            "monitoringSchedule": pulumi.Output.format("{0} ({1})", self.config.monitoring.schedule, time_zone),
            "monitoringReportsUri": self.monitoring.reports_uri,
        }


class PlatformOutputs:
    """The platform stack's outputs this stack reads, by name (one StackReference)."""

    def __init__(self, stack_name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        self._ref = pulumi.StackReference(stack_name, opts=opts)

    def __getitem__(self, key: str) -> pulumi.Output:
        return self._ref.require_output(key)


def build_service(cfg: ServiceConfig) -> Service:
    """Create the add-ons, the served model and the inference API for `cfg`."""
    prefix = cfg.name_prefix
    platform = PlatformOutputs(cfg.platform_stack)
    region = platform["region"].apply(lambda region: _same_region(region, cfg.region))
    provider = aws_provider("aws", cfg.region, cfg.default_tags)
    kubernetes = k8s.Provider(f"{prefix}-k8s", kubeconfig=platform["kubeconfig"])
    aws_opts = pulumi.ResourceOptions(providers={"aws": provider})
    k8s_opts = pulumi.ResourceOptions(providers={"aws": provider, "kubernetes": kubernetes})
    invoke = pulumi.InvokeOutputOptions(provider=provider)
    account_id = aws.get_caller_identity_output(opts=invoke).account_id
    controller = LoadBalancerController(
        f"{prefix}-lb-controller",
        LoadBalancerControllerArgs(
            cluster_name=platform["clusterName"],
            region=cfg.region,
            vpc_id=platform["vpcId"],
            oidc_provider_arn=platform["oidcProviderArn"],
            oidc_issuer=platform["oidcIssuer"],
            node_labels=platform["serviceNodeLabels"],
            chart_version=cfg.addons.load_balancer_controller_chart,
        ),
        k8s_opts,
    )
    shipping = LogShipping(
        f"{prefix}-log-shipping",
        LogShippingArgs(
            region=cfg.region,
            oidc_provider_arn=platform["oidcProviderArn"],
            oidc_issuer=platform["oidcIssuer"],
            log_group_name=platform["inferenceLogGroupName"],
            logs_kms_key_arn=platform["logsKeyArn"],
            account_id=account_id,
            namespaces=[cfg.inference.namespace, cfg.batch_scoring.namespace],
            chart_version=cfg.addons.fluent_bit_chart,
            node_taints=platform["batchNodeTaints"],
        ),
        pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[controller.release])),
    )
    autoscaler = ClusterAutoscaler(
        f"{prefix}-cluster-autoscaler",
        ClusterAutoscalerArgs(
            cluster_name=platform["clusterName"],
            region=cfg.region,
            account_id=account_id,
            oidc_provider_arn=platform["oidcProviderArn"],
            oidc_issuer=platform["oidcIssuer"],
            node_labels=platform["serviceNodeLabels"],
            chart_version=cfg.addons.cluster_autoscaler_chart,
            version=cfg.addons.cluster_autoscaler_version,
        ),
        k8s_opts,
    )
    artifacts = platform["lakeBuckets"].apply(lambda buckets: buckets["artifacts"])
    artifacts_arn = platform["lakeBucketArns"].apply(lambda arns: arns["artifacts"])
    model_prefix = f"{MODEL_PREFIX}/{cfg.environment}"
    package = RegisteredPackage(
        f"{prefix}-model-package", region=region, model_package_arn=cfg.model_package_arn, opts=aws_opts
    )
    model = ServedModel(
        f"{prefix}-served-model",
        region=region,
        model_package_arn=cfg.model_package_arn,
        target_uri=pulumi.Output.format("s3://{0}/{1}/", artifacts, model_prefix),
        package=package.package,
        rollback_alarms=platform["rollbackAlarmNames"],
        opts=aws_opts,
    )
    deploy_key = random.RandomPassword(f"{prefix}-deploy-key", length=DEPLOY_KEY_LENGTH, special=False)
    s3_cidrs = aws.ec2.get_prefix_list_output(name=f"com.amazonaws.{cfg.region}.s3", opts=invoke).cidr_blocks
    lake_zone = cfg.batch_scoring.lake_zone
    lake_bucket = platform["lakeBuckets"].apply(lambda buckets: buckets[lake_zone])
    lake_bucket_arn = platform["lakeBucketArns"].apply(lambda arns: arns[lake_zone])
    prediction_log = (PredictionLogTarget(lake_bucket, lake_bucket_arn, cfg.batch_scoring.lake_prefix)
                      if cfg.inference.prediction_log else None)
    inference = InferenceService(
        f"{prefix}-inference",
        InferenceServiceArgs(
            environment=cfg.environment,
            region=cfg.region,
            image=cfg.image,
            model_uri=model.model_uri,
            model_sha256=model.manifest_sha256,
            model_bucket_arn=artifacts_arn,
            model_prefix=model_prefix,
            data_kms_key_arn=platform["dataKeyArn"],
            oidc_provider_arn=platform["oidcProviderArn"],
            oidc_issuer=platform["oidcIssuer"],
            node_labels=platform["serviceNodeLabels"],
            api_keys_file=pulumi.Output.all(deploy_key.result, cfg.api_keys).apply(lambda keys: _key_file(*keys)),
            ingress_class=controller.ingress_class,
            controller=controller.release,
            load_balancer_cidrs=platform["publicSubnetCidrs"],
            vpc_cidr=platform["vpcCidr"],
            s3_cidrs=s3_cidrs,
            certificate_arn=_certificate(prefix, cfg.inference, aws_opts),
            sizing=cfg.inference,
            prediction_log=prediction_log,
        ),
        k8s_opts,
    )
    batch = BatchScoring(
        f"{prefix}-batch-scoring",
        BatchScoringArgs(
            environment=cfg.environment,
            region=cfg.region,
            image=cfg.image,
            lake_bucket=lake_bucket,
            lake_bucket_arn=lake_bucket_arn,
            bundle_uri=model.model_uri,
            bundle_bucket_arn=artifacts_arn,
            bundle_prefix=model_prefix,
            bundle_sha256=model.manifest_sha256,
            data_kms_key_arn=platform["dataKeyArn"],
            oidc_provider_arn=platform["oidcProviderArn"],
            oidc_issuer=platform["oidcIssuer"],
            node_labels=platform["batchNodeLabels"],
            node_taints=platform["batchNodeTaints"],
            vpc_cidr=platform["vpcCidr"],
            s3_cidrs=s3_cidrs,
            autoscaler=autoscaler.release,
            time_zone=platform["batchTimeZone"],
            sizing=cfg.batch_scoring,
        ),
        k8s_opts,
    )
    thresholds = platform["thresholds"].apply(
        lambda raw: parse_section(ThresholdsConfig, raw, "the platform stack's output thresholds")
    )
    monitoring = MonitoringSchedule(
        f"{prefix}-monitoring",
        MonitoringScheduleArgs(beside=batch, sizing=cfg.monitoring, thresholds=thresholds),
        k8s_opts,
    )
    if cfg.inference.hosted_zone_id:
        _alias_record(prefix, cfg, inference, invoke, aws_opts)
    return Service(cfg, controller, shipping, autoscaler, model, inference, batch, monitoring, deploy_key)


def _same_region(platform_region: str, service_region: str) -> str:
    if platform_region != service_region:
        raise ValueError(
            f"the service stack's aws:region {service_region} differs from its platform stack's {platform_region}"
        )
    return service_region


def _key_file(deploy_key: str, client_keys: str | None) -> str:
    """The API's key file: the stack's generated deploy key, then each configured client key, one per line."""
    keys = [deploy_key, *(k.strip() for k in (client_keys or "").split(",") if k.strip())]
    return "\n".join(keys) + "\n"


def _certificate(prefix: str, sizing: InferenceConfig, opts: pulumi.ResourceOptions) -> pulumi.Input[str]:
    """The certificate ARN for the ALB: configured, issued and validated in the hosted zone, or none."""
    if not sizing.hostname or not sizing.hosted_zone_id:
        return sizing.certificate_arn
    certificate = aws.acm.Certificate(
        f"{prefix}-api-certificate", domain_name=sizing.hostname, validation_method="DNS", opts=opts
    )
    option = certificate.domain_validation_options[0]
    record = aws.route53.Record(
        f"{prefix}-api-certificate-validation",
        zone_id=sizing.hosted_zone_id,
        name=option.resource_record_name,
        type=option.resource_record_type,
        records=[option.resource_record_value],
        ttl=300,
        allow_overwrite=True,
        opts=opts,
    )
    validation = aws.acm.CertificateValidation(
        f"{prefix}-api-certificate-validated",
        certificate_arn=certificate.arn,
        validation_record_fqdns=[record.fqdn],
        opts=opts,
    )
    return validation.certificate_arn


def _alias_record(
    prefix: str,
    cfg: ServiceConfig,
    inference: InferenceService,
    invoke: pulumi.InvokeOutputOptions,
    opts: pulumi.ResourceOptions,
) -> None:
    """`hostname` -> the ALB, as a Route 53 alias in the configured zone."""
    zone = aws.lb.get_hosted_zone_id_output(load_balancer_type="application", region=cfg.region, opts=invoke)
    aws.route53.Record(
        f"{prefix}-api-alias",
        zone_id=cfg.inference.hosted_zone_id,
        name=cfg.inference.hostname,
        type="A",
        aliases=[{"name": inference.load_balancer_hostname, "zone_id": zone.id, "evaluate_target_health": True}],
        opts=opts,
    )
