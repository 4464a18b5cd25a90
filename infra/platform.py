"""The platform stack from one typed config: what `__main__.py` and the offline preview run.

The platform holds everything created through AWS's APIs alone (network, keys, audit,
lake, the lake's Glue catalog and Athena workgroup, registries, observability, the EKS cluster,
SageMaker). It creates no Kubernetes objects, so it can be deployed from anywhere that reaches AWS, including before any
network can reach a private Kubernetes API; what runs on the cluster is the service
stack's (`infra/service.py`), which reads these outputs through a StackReference, among them
what its weekly jobs share with the platform's alarms: `batchTimeZone` (the CronJobs' zone, the
missed-run alarms' weeks) and `thresholds` (what the monitoring job and alarms judge by).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.audit import AuditTrail, AuditTrailArgs
from infra.cluster import Cluster, ClusterArgs
from infra.config import PlatformConfig
from infra.data_lake import DataLake, DataLakeArgs
from infra.encryption import Encryption, EncryptionArgs
from infra.lake_catalog import LakeCatalog, LakeCatalogArgs
from infra.lake_engine import LakeEngine, LakeEngineArgs
from infra.ml_platform import MlPlatform, MlPlatformArgs
from infra.network import Network, NetworkArgs
from infra.observability import Observability, ObservabilityArgs
from infra.registry import ContainerRegistry, ContainerRegistryArgs
from infra.s3_access import s3_uri
from ml.lake_queries import LAKE_QUERIES


@dataclass
class Platform:
    """The composed components, for stack outputs and for tests."""

    config: PlatformConfig
    encryption: Encryption
    network: Network
    audit: AuditTrail | None
    data_lake: DataLake
    registry: ContainerRegistry
    observability: Observability
    cluster: Cluster
    ml: MlPlatform
    lake_catalog: LakeCatalog | None = None
    """None when `retail:lakeCatalog.enabled` is false."""
    lake_engine: LakeEngine | None = None
    """None when `retail:lakeEngine.enabled` is false."""

    def outputs(self) -> dict[str, pulumi.Input]:
        """What the stack exports: what operators, CI, training and the service stack read."""
        return {
            "environment": self.config.environment,
            "region": self.config.region,
            "defaultTags": self.config.default_tags,
            "vpcId": self.network.vpc_id,
            "vpcCidr": self.config.network.cidr,
            "privateSubnetIds": self.network.private_subnet_ids,
            "publicSubnetIds": self.network.public_subnet_ids,
            "publicSubnetCidrs": self.network.public_subnet_cidrs,
            "clusterName": self.cluster.cluster_name,
            "kubeconfig": self.cluster.kubeconfig,
            "oidcProviderArn": self.cluster.oidc_provider_arn,
            "oidcIssuer": self.cluster.oidc_issuer,
            "serviceNodeLabels": self.cluster.service_node_labels,
            "batchNodeLabels": self.cluster.batch_node_labels,
            "batchNodeTaints": self.cluster.batch_node_taints,
            "lakeBuckets": self.data_lake.bucket_names,
            "lakeBucketArns": self.data_lake.bucket_arns,
            "dataKeyArn": self.encryption.data_key_arn,
            "logsKeyArn": self.encryption.logs_key_arn,
            "repositoryUrls": self.registry.repository_urls,
            "sagemakerExecutionRoleArn": self.ml.execution_role_arn,
            "modelPackageGroupName": self.ml.model_package_group_name,
            "inferenceLogGroupName": self.observability.log_group_name,
            "alertTopicArn": self.observability.alert_topic_arn,
            "rollbackAlarmNames": self.observability.rollback_alarm_names,
            "dashboardName": self.observability.dashboard_name,
            "auditTrailArn": self.audit.trail_arn if self.audit else "",
            **self._lake_catalog_outputs(),
            **self._lake_engine_outputs(),
            "batchTimeZone": self.config.observability.batch_time_zone,
            "thresholds": self.config.thresholds.model_dump(by_alias=True),
        }

    def _lake_catalog_outputs(self) -> dict[str, pulumi.Input]:
        """Where operators run the saved queries: the database, the workgroup, the role to assume (empty without)."""
        catalog = self.lake_catalog
        return {
            "lakeDatabase": catalog.database_name if catalog else "",
            "lakeWorkgroup": catalog.workgroup_name if catalog else "",
            "lakeQueryRoleArn": catalog.query_role_arn if catalog else "",
            "lakeQueryPolicyArn": catalog.query_policy_arn if catalog else "",
            "lakeQueryResults": catalog.results_location if catalog else "",
        }

    def _lake_engine_outputs(self) -> dict[str, pulumi.Input]:
        """What `retail lake build --cloud` runs the lake job with (empty without the engine)."""
        engine, lake = self.lake_engine, self.config.lake_catalog
        return {
            "lakeRoot": s3_uri(self.data_lake.bucket_names[lake.lake_zone], lake.lake_prefix) if engine else "",
            "lakeJobRoleArn": engine.job_role_arn if engine else "",
            "lakeEngineSecurityGroupId": engine.security_group_id if engine else "",
            "lakeEngineLogGroupName": engine.log_group_name if engine else "",
        }


def aws_provider(name: str, region: str, tags: dict[str, str]) -> aws.Provider:
    """The region's provider; every AWS resource it creates carries the stack's tags."""
    return aws.Provider(name, region=region, default_tags={"tags": tags})


def build_platform(cfg: PlatformConfig) -> Platform:
    """Create every component for `cfg`; the caller exports `Platform.outputs()`."""
    prefix = cfg.name_prefix
    provider = aws_provider("aws", cfg.region, cfg.default_tags)
    opts = pulumi.ResourceOptions(providers={"aws": provider})
    account_id = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(provider=provider)).account_id
    encryption = Encryption(
        f"{prefix}-kms",
        EncryptionArgs(
            account_id,
            cfg.region,
            cfg.encryption.key_deletion_window_days,
            trail_name=f"{prefix}-audit-trail" if cfg.audit.trail else None,
        ),
        opts,
    )
    retention = cfg.observability.log_retention_days
    network = Network(
        f"{prefix}-net",
        NetworkArgs(
            account_id=account_id,
            region=cfg.region,
            logs_kms_key_arn=encryption.logs_key_arn,
            cidr=cfg.network.cidr,
            az_count=cfg.network.az_count,
            nat_per_az=cfg.network.nat_per_az,
            flow_log_retention_days=retention,
        ),
        opts,
    )
    audit = None
    if cfg.audit.trail:
        audit = AuditTrail(
            f"{prefix}-audit",
            AuditTrailArgs(
                account_id=account_id,
                region=cfg.region,
                kms_key_arn=encryption.audit_key_arn,
                retention_days=cfg.audit.retention_days,
                object_lock_days=cfg.audit.object_lock_days,
            ),
            opts,
        )
    lake = DataLake(
        f"{prefix}-lake",
        DataLakeArgs(
            kms_key_arn=encryption.data_key_arn,
            intelligent_tiering_after_days=cfg.data_lake.intelligent_tiering_after_days,
            noncurrent_version_expiry_days=cfg.data_lake.noncurrent_version_expiry_days,
            force_destroy=cfg.data_lake.force_destroy,
        ),
        opts,
    )
    registry = ContainerRegistry(
        f"{prefix}-registry",
        ContainerRegistryArgs(
            kms_key_arn=encryption.data_key_arn,
            repositories=cfg.registry.repositories,
            keep_tagged_images=cfg.registry.keep_tagged_images,
            untagged_expiry_days=cfg.registry.untagged_expiry_days,
            force_delete=cfg.registry.force_delete,
        ),
        opts,
    )
    obs = cfg.observability
    observability = Observability(
        f"{prefix}-obs",
        ObservabilityArgs(
            environment=cfg.environment,
            region=cfg.region,
            account_id=account_id,
            logs_kms_key_arn=encryption.logs_key_arn,
            log_retention_days=retention,
            latency_p95_threshold_ms=obs.latency_p95_threshold_ms,
            error_rate_threshold_percent=obs.error_rate_threshold_percent,
            drift_threshold=obs.drift_threshold,
            heartbeat_missing_breaches=obs.heartbeat_missing_breaches,
            batch_time_zone=obs.batch_time_zone,
            monthly_budget_usd=obs.monthly_budget_usd,
            budget_alert_percents=obs.budget_alert_percents,
            alert_emails=obs.alert_emails,
            thresholds=cfg.thresholds,
        ),
        opts,
    )
    cluster = Cluster(
        f"{prefix}-cluster",
        ClusterArgs(
            cluster_name=cfg.cluster_name,
            vpc_id=network.vpc_id,
            private_subnet_ids=network.private_subnet_ids,
            public_subnet_ids=network.public_subnet_ids,
            secrets_kms_key_arn=encryption.cluster_key_arn,
            logs_kms_key_arn=encryption.logs_key_arn,
            log_retention_days=retention,
            version=cfg.cluster.version,
            public_access_cidrs=cfg.cluster.public_access_cidrs,
            private_access_cidrs=cfg.cluster.private_access_cidrs,
            admin_principal_arns=cfg.cluster.admin_principal_arns,
            service_nodes=cfg.cluster.service_nodes,
            batch_nodes=cfg.cluster.batch_nodes,
        ),
        opts,
    )
    ml = MlPlatform(
        f"{prefix}-ml",
        MlPlatformArgs(
            account_id=account_id,
            region=cfg.region,
            bucket_arns=lake.bucket_arns,
            data_kms_key_arn=encryption.data_key_arn,
            training_repository_arn=registry.repository_arns["training"],
            model_package_group_name=f"{prefix}-price-sensitivity",
        ),
        opts,
    )
    return Platform(cfg, encryption, network, audit, lake, registry, observability, cluster, ml,
                    lake_catalog(cfg, account_id, encryption, lake, opts),
                    lake_engine(cfg, account_id, encryption, network, lake, registry, opts))


def lake_catalog(cfg: PlatformConfig, account_id: pulumi.Input[str], encryption: Encryption, lake: DataLake,
                 opts: pulumi.ResourceOptions) -> LakeCatalog | None:
    """The lake's Glue tables, Athena workgroup and saved queries, unless the stack turns them off."""
    settings = cfg.lake_catalog
    if not settings.enabled:
        return None
    return LakeCatalog(
        f"{cfg.name_prefix}-lake-catalog",
        LakeCatalogArgs(
            environment=cfg.environment,
            account_id=account_id,
            region=cfg.region,
            lake_bucket=lake.bucket_names[settings.lake_zone],
            lake_bucket_arn=lake.bucket_arns[settings.lake_zone],
            data_kms_key_arn=encryption.data_key_arn,
            queries=LAKE_QUERIES,
            settings=settings,
        ),
        opts,
    )


def lake_engine(cfg: PlatformConfig, account_id: pulumi.Input[str], encryption: Encryption, network: Network,
                lake: DataLake, registry: ContainerRegistry, opts: pulumi.ResourceOptions) -> LakeEngine | None:
    """The lake job's role, security group and logs over the lake root the catalog reads, unless turned off."""
    if not cfg.lake_engine.enabled:
        return None
    if "lake" not in registry.repositories:
        raise ValueError("retail:lakeEngine is enabled but retail:registry.repositories has no `lake` repository for "
                         "Dockerfile.lake's image: add it, or set retail:lakeEngine.enabled to false")
    root = cfg.lake_catalog
    return LakeEngine(
        f"{cfg.name_prefix}-lake-engine",
        LakeEngineArgs(
            account_id=account_id,
            region=cfg.region,
            vpc_id=network.vpc_id,
            lake_bucket_arn=lake.bucket_arns[root.lake_zone],
            lake_prefix=root.lake_prefix,
            data_kms_key_arn=encryption.data_key_arn,
            logs_kms_key_arn=encryption.logs_key_arn,
            log_retention_days=cfg.observability.log_retention_days,
            repository_name=registry.repositories["lake"].name,
            log_group_name=f"/aws/emr-serverless/{cfg.name_prefix}-lake",
        ),
        opts,
    )
