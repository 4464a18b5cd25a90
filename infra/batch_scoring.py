"""Batch scoring on EKS: `retail score` as a weekly CronJob on the spot batch nodes, with its own IRSA role.

What runs: once a week (`retail:batchScoring.schedule`, after the week has landed in the silver
zone) a Job runs, in the inference image the service deploys (the same digest), `retail score` as
the image ships it (`python -m cli.score`, the same command without the rest of the CLI):

    python -m cli.score --input s3://<lake>/<prefix>/silver/<inputPath>/ --bundle s3://<artifacts>/<serving prefix>/

with RETAIL_LAKE_ROOT=s3://<lake>/<prefix> (ml/settings.py, prefix RETAIL_), so the predictions and
their manifest land under `<lake root>/predictions/<run id>/`. `inputPath` is a silver run folder
(default `latest`: the newest pipeline run under `<lake root>/silver/` holding lines, as
`retail pipeline run` writes them; see ml/score.py `input_at`). The bundle is the one the service serves (the
ServedModel's prefix), and RETAIL_MODEL_SHA256 carries its manifest hash.

Why a CronJob on the cluster (and not a SageMaker batch transform or processing job): the command
is the project's own CLI reading the silver zone and writing Parquet, not an HTTP model container;
the cluster already has a tainted spot node group for batch work, the image, IRSA and the network
policies; and a CronJob gives the schedule, the no-overlap rule and the retries declaratively
(https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/):

- `concurrencyPolicy: Forbid`: a run still going when the next is due makes the next one skip;
- `startingDeadlineSeconds`: a run that cannot start within that window (controller down, ...) is
  skipped and counted as missed, instead of piling up; it also bounds the controller's count of
  missed schedules (more than 100 missed and it stops scheduling);
- `timeZone`: the schedule's zone, not the controller's (stable since Kubernetes 1.27);
- `suspend`: a stack can keep the CronJob and start nothing (ephemeral stacks);
- per Job (https://kubernetes.io/docs/concepts/workloads/controllers/job/): `activeDeadlineSeconds`
  ends a run that hangs (counted from the Job's start, so it includes waiting for a node),
  `backoffLimit` bounds the retries, `ttlSecondsAfterFinished` deletes finished Jobs (and their
  pods) after a while, and `podFailurePolicy` ignores pod failures caused by a disruption
  (`DisruptionTarget`: a spot interruption or a node drain does not use up a retry) and fails the
  Job at once on exit code 2, the project's "your input is wrong" code, which a retry cannot fix.
  `podFailurePolicy` needs `restartPolicy: Never`.

Where it runs: on the batch node group only (nodeSelector `retail.io/workload=batch` and a
toleration of its `NoSchedule` taint, both from the platform's outputs). That group starts at zero
nodes; Cluster Autoscaler (infra/cluster_autoscaler.py) adds a node for the pending pod and
removes it afterwards, and the CronJob is created after the autoscaler's release. The pod carries
`cluster-autoscaler.kubernetes.io/safe-to-evict: "false"`, so the autoscaler never removes the
node under a running job (https://github.com/kubernetes/autoscaler/blob/master/cluster-autoscaler/FAQ.md).

What it may do: its own namespace (`restricted` Pod Security Standard) and ServiceAccount, whose
IRSA role trusts only that service account and allows only
- s3:ListBucket (with an `s3:prefix` condition) and s3:GetObject under `<lake prefix>/silver/` and
  under the serving bundle's prefix;
- s3:PutObject under `<lake prefix>/predictions/`;
- kms:Decrypt and kms:GenerateDataKey on the data key, only through S3 (`kms:ViaService`), as the
  other roles of the platform do. S3 needs both for SSE-KMS objects: Decrypt to read, GenerateDataKey
  to write, and Decrypt again to complete a multipart upload, which is how pyarrow writes
  (https://docs.aws.amazon.com/AmazonS3/latest/userguide/mpuoverview.html#mpuAndPermissions).
A NetworkPolicy lets its pods reach only DNS, S3 and the VPC's interface endpoints (STS, KMS), and
nothing reach them. Pods run as the image's non-root user with a read-only root filesystem, a
size-limited emptyDir at /tmp (bundle cache and scratch), no privilege escalation, no capabilities,
the RuntimeDefault seccomp profile and CPU/memory requests and limits from `retail:batchScoring`.

The contract with `retail score` (cli/score.py, ml/score.py) this relies on:
- `--input <folder>` reads `<folder>/lines.parquet` of a silver run; `--bundle` with
  RETAIL_MODEL_SHA256 (its `--bundle-sha256` envvar) refuses any other bundle; RETAIL_MODEL_CACHE_DIR
  and RETAIL_WORK_DIR put the bundle copy and the week spill under /tmp;
- it writes only with s3:PutObject under predictions/: `ml.score.RunOutput` opens each file directly.
  pyarrow's `create_dir` on S3 (what `ml.lake.Lake.write_parquet`, `write_partitioned` and
  `write_json` call) first sends HeadBucket, which needs s3:ListBucket on the whole bucket, and writes
  an empty marker object for every parent "directory" (`lake/`, `lake/predictions/`, ...); this role
  grants neither, so the job would fail with AccessDenied on HeadBucket;
- it exits 2 when the input or the bundle cannot be used, which fails the Job without retries;
- with RETAIL_EMF_ENABLED=true and RETAIL_ENVIRONMENT=<environment> (both set here) every run ends with
  one CloudWatch EMF line on stdout (`ScoringRunFailed` 0/1, `BasketsScored`; cli/score.py). Fluent Bit
  (infra/addons.py `LogShipping`) tails this namespace and tolerates the batch nodes' taint, so the line
  reaches the platform's log group, where CloudWatch turns it into the metrics of the platform's
  scoring alarms (infra/observability.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
from pulumi_kubernetes.meta.v1 import LabelSelectorArgs, ObjectMetaArgs

from infra.config import BatchScoringConfig
from infra.iam import irsa_trust_policy, policy_document

APP = "retail-batch-scoring"
CONTAINER = "score"
COMMAND = ("python", "-m", "cli.score")
"""`retail score`, run as the inference image offers it: the image copies cli/score.py and runs it as a module
(Dockerfile), not the whole `retail` CLI, whose cli/main.py imports the Pulumi side the image does not install."""
RUN_AS = 10001
"""The inference image's user (Dockerfile: `ARG UID=10001`)."""
TMP = "/tmp"
BUNDLE_CACHE = f"{TMP}/retail-models"
WORK_DIR = f"{TMP}/work"
INPUT_ERROR_EXIT_CODE = 2
"""What the project's commands exit with when the input is unusable (a retry would fail the same way)."""
SAFE_TO_EVICT = "cluster-autoscaler.kubernetes.io/safe-to-evict"
SUCCESSFUL_JOBS_KEPT = 1
FAILED_JOBS_KEPT = 3
DNS_PORT = 53
HTTPS_PORT = 443


@dataclass
class BatchScoringArgs:
    environment: str
    region: str
    image: str
    """`<repository>@sha256:<digest>`: the inference image the service runs."""
    lake_bucket: pulumi.Input[str]
    """Name of the bucket holding the lake root (`sizing.lake_zone` of the platform's lakeBuckets)."""
    lake_bucket_arn: pulumi.Input[str]
    bundle_bucket: pulumi.Input[str]
    """Name of the artifacts bucket the served bundle is published to."""
    bundle_bucket_arn: pulumi.Input[str]
    bundle_prefix: str
    """The served bundle's prefix in that bucket (no trailing slash)."""
    bundle_sha256: pulumi.Input[str]
    """SHA-256 of the served bundle's manifest (the ServedModel's output)."""
    data_kms_key_arn: pulumi.Input[str]
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer: pulumi.Input[str]
    node_labels: pulumi.Input[dict]
    """Labels of the batch node group (the platform's batchNodeLabels output)."""
    node_taints: pulumi.Input[Sequence[dict]]
    """Taints of the batch node group in Kubernetes spelling (the platform's batchNodeTaints output)."""
    vpc_cidr: pulumi.Input[str]
    """Where the VPC's interface endpoints (STS, KMS) answer."""
    s3_cidrs: pulumi.Input[Sequence[str]]
    """The region's S3 address ranges (the S3 gateway endpoint's prefix list)."""
    autoscaler: pulumi.Resource | None = None
    """What scales the batch node group up from zero; the CronJob is created after it and deleted before it."""
    sizing: BatchScoringConfig = field(default_factory=BatchScoringConfig)


class BatchScoring(pulumi.ComponentResource):
    """The weekly `retail score` CronJob, its namespace, ServiceAccount, IRSA role and NetworkPolicy."""

    namespace: pulumi.Output[str]
    role_arn: pulumi.Output[str]
    lake_root: pulumi.Output[str]
    predictions_uri: pulumi.Output[str]
    cron_job_name: pulumi.Output[str]

    def __init__(self, name: str, args: BatchScoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("retail:infra:BatchScoring", name, None, opts)
        self._name, self._args = name, args
        sizing = args.sizing
        self.lake_root = _s3_uri(args.lake_bucket, sizing.lake_prefix)
        self.role = self._scorer_role()
        ns = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=ObjectMetaArgs(
                name=sizing.namespace,
                labels={
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
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
        policy = self._network_policy(in_ns)
        autoscaler = [args.autoscaler] if args.autoscaler else []
        cron_job = k8s.batch.v1.CronJob(
            f"{name}-cron-job",
            metadata=self._meta(),
            spec=self._cron_job_spec(account),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ns, policy, *autoscaler]),
        )
        self.namespace = ns.metadata.name
        self.role_arn = self.role.arn
        self.predictions_uri = self.lake_root.apply(lambda root: f"{root}/predictions/")
        self.cron_job_name = cron_job.metadata.name
        self.register_outputs(
            {
                "namespace": self.namespace,
                "role_arn": self.role_arn,
                "lake_root": self.lake_root,
                "predictions_uri": self.predictions_uri,
                "cron_job_name": self.cron_job_name,
            }
        )

    # --- the role ------------------------------------------------------------------------------------------------
    def _scorer_role(self) -> aws.iam.Role:
        args = self._args
        role = aws.iam.Role(
            f"{self._name}-scorer",
            description="Batch scoring pods: read the silver zone and the served bundle, write predictions",
            assume_role_policy=irsa_trust_policy(
                args.oidc_provider_arn, args.oidc_issuer, args.sizing.namespace, APP
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.iam.RolePolicy(
            f"{self._name}-scorer-access",
            role=role.id,
            policy=scorer_policy(args),
            opts=pulumi.ResourceOptions(parent=self),
        )
        return role

    # --- Kubernetes objects --------------------------------------------------------------------------------------
    def _meta(self, name: str = APP, annotations: dict | None = None) -> ObjectMetaArgs:
        return ObjectMetaArgs(
            name=name,
            namespace=self._args.sizing.namespace,
            labels=self._labels(),
            annotations=annotations,
        )

    def _labels(self) -> dict[str, str]:
        return {"app": APP, "environment": self._args.environment}

    def _cron_job_spec(self, account: k8s.core.v1.ServiceAccount) -> k8s.batch.v1.CronJobSpecArgs:
        sizing = self._args.sizing
        return k8s.batch.v1.CronJobSpecArgs(
            schedule=sizing.schedule,
            time_zone=sizing.time_zone,
            concurrency_policy="Forbid",
            starting_deadline_seconds=sizing.starting_deadline_seconds,
            suspend=sizing.suspend,
            successful_jobs_history_limit=SUCCESSFUL_JOBS_KEPT,
            failed_jobs_history_limit=FAILED_JOBS_KEPT,
            job_template=k8s.batch.v1.JobTemplateSpecArgs(
                metadata=ObjectMetaArgs(labels=self._labels()),
                spec=k8s.batch.v1.JobSpecArgs(
                    backoff_limit=sizing.backoff_limit,
                    active_deadline_seconds=sizing.active_deadline_seconds,
                    ttl_seconds_after_finished=sizing.ttl_seconds_after_finished,
                    pod_failure_policy=k8s.batch.v1.PodFailurePolicyArgs(
                        rules=[
                            k8s.batch.v1.PodFailurePolicyRuleArgs(
                                action="Ignore",
                                on_pod_conditions=[
                                    k8s.batch.v1.PodFailurePolicyOnPodConditionsPatternArgs(
                                        type="DisruptionTarget", status="True"
                                    )
                                ],
                            ),
                            k8s.batch.v1.PodFailurePolicyRuleArgs(
                                action="FailJob",
                                on_exit_codes=k8s.batch.v1.PodFailurePolicyOnExitCodesRequirementArgs(
                                    container_name=CONTAINER, operator="In", values=[INPUT_ERROR_EXIT_CODE]
                                ),
                            ),
                        ]
                    ),
                    template=self._pod_template(account),
                ),
            ),
        )

    def _pod_template(self, account: k8s.core.v1.ServiceAccount) -> k8s.core.v1.PodTemplateSpecArgs:
        args = self._args
        tolerations = pulumi.Output.from_input(args.node_taints).apply(
            lambda taints: [
                {"key": t["key"], "operator": "Equal", "value": t["value"], "effect": t["effect"]} for t in taints
            ]
        )
        return k8s.core.v1.PodTemplateSpecArgs(
            metadata=ObjectMetaArgs(labels=self._labels(), annotations={SAFE_TO_EVICT: "false"}),
            spec=k8s.core.v1.PodSpecArgs(
                restart_policy="Never",
                service_account_name=account.metadata.name,
                automount_service_account_token=False,
                node_selector=args.node_labels,
                tolerations=tolerations,
                security_context=k8s.core.v1.PodSecurityContextArgs(
                    run_as_non_root=True,
                    run_as_user=RUN_AS,
                    run_as_group=RUN_AS,
                    fs_group=RUN_AS,
                    seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
                ),
                containers=[self._container()],
                volumes=[
                    k8s.core.v1.VolumeArgs(
                        name="tmp",
                        empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit=args.sizing.scratch_size),
                    )
                ],
            ),
        )

    def _container(self) -> k8s.core.v1.ContainerArgs:
        args, sizing = self._args, self._args.sizing
        silver = self.lake_root.apply(lambda root: _join(f"{root}/silver", sizing.input_path) + "/")
        bundle = _s3_uri(args.bundle_bucket, args.bundle_prefix).apply(lambda uri: f"{uri}/")
        env = {
            "RETAIL_LAKE_ROOT": self.lake_root,
            "RETAIL_MODEL_SHA256": args.bundle_sha256,
            "RETAIL_MODEL_CACHE_DIR": BUNDLE_CACHE,
            "RETAIL_WORK_DIR": WORK_DIR,
            "RETAIL_ENVIRONMENT": args.environment,
            "RETAIL_EMF_ENABLED": "true",
            "HOME": TMP,
            "AWS_REGION": args.region,
            "AWS_DEFAULT_REGION": args.region,
            "AWS_STS_REGIONAL_ENDPOINTS": "regional",
        }
        return k8s.core.v1.ContainerArgs(
            name=CONTAINER,
            image=args.image,
            command=list(COMMAND),
            args=["--input", silver, "--bundle", bundle],
            env=[k8s.core.v1.EnvVarArgs(name=k, value=v) for k, v in env.items()],
            resources=k8s.core.v1.ResourceRequirementsArgs(
                requests={"cpu": sizing.cpu_request, "memory": sizing.memory_request},
                limits={"cpu": sizing.cpu_limit, "memory": sizing.memory_limit},
            ),
            security_context=k8s.core.v1.SecurityContextArgs(
                run_as_non_root=True,
                allow_privilege_escalation=False,
                read_only_root_filesystem=True,
                capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
            ),
            volume_mounts=[k8s.core.v1.VolumeMountArgs(name="tmp", mount_path=TMP)],
        )

    def _network_policy(self, opts: pulumi.ResourceOptions) -> k8s.networking.v1.NetworkPolicy:
        """No ingress; egress to DNS, S3 and the VPC's interface endpoints (STS for IRSA, KMS)."""
        args = self._args
        to_s3 = pulumi.Output.from_input(args.s3_cidrs).apply(
            lambda cidrs: [{"ipBlock": {"cidr": cidr}} for cidr in cidrs]
        )
        https = [k8s.networking.v1.NetworkPolicyPortArgs(protocol="TCP", port=HTTPS_PORT)]
        return k8s.networking.v1.NetworkPolicy(
            f"{self._name}-network-policy",
            metadata=self._meta(),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=LabelSelectorArgs(match_labels={"app": APP}),
                policy_types=["Ingress", "Egress"],
                egress=[
                    k8s.networking.v1.NetworkPolicyEgressRuleArgs(
                        to=[
                            k8s.networking.v1.NetworkPolicyPeerArgs(
                                namespace_selector=LabelSelectorArgs(
                                    match_labels={"kubernetes.io/metadata.name": "kube-system"}
                                ),
                                pod_selector=LabelSelectorArgs(match_labels={"k8s-app": "kube-dns"}),
                            )
                        ],
                        ports=[
                            k8s.networking.v1.NetworkPolicyPortArgs(protocol=protocol, port=DNS_PORT)
                            for protocol in ("UDP", "TCP")
                        ],
                    ),
                    k8s.networking.v1.NetworkPolicyEgressRuleArgs(
                        to=[k8s.networking.v1.NetworkPolicyPeerArgs(ip_block={"cidr": args.vpc_cidr})], ports=https
                    ),
                    k8s.networking.v1.NetworkPolicyEgressRuleArgs(to=to_s3, ports=https),
                ],
            ),
            opts=opts,
        )


def scorer_policy(args: BatchScoringArgs) -> pulumi.Output[str]:
    """Read the silver zone and the served bundle, write predictions, use the data key through S3: nothing else."""
    lake_prefix = args.sizing.lake_prefix
    silver, predictions = _join(lake_prefix, "silver"), _join(lake_prefix, "predictions")
    return policy_document(
        [
            {
                "Sid": "ListSilverZone",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": args.lake_bucket_arn,
                "Condition": {"StringLike": {"s3:prefix": f"{silver}/*"}},
            },
            {
                "Sid": "ReadSilverZone",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": pulumi.Output.format("{0}/{1}/*", args.lake_bucket_arn, silver),
            },
            {
                "Sid": "ListServedBundle",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": args.bundle_bucket_arn,
                "Condition": {"StringLike": {"s3:prefix": f"{args.bundle_prefix}/*"}},
            },
            {
                "Sid": "ReadServedBundle",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": pulumi.Output.format("{0}/{1}/*", args.bundle_bucket_arn, args.bundle_prefix),
            },
            {
                "Sid": "WritePredictions",
                "Effect": "Allow",
                "Action": "s3:PutObject",
                "Resource": pulumi.Output.format("{0}/{1}/*", args.lake_bucket_arn, predictions),
            },
            {
                "Sid": "UseDataKeyThroughS3",
                "Effect": "Allow",
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": args.data_kms_key_arn,
                "Condition": {"StringEquals": {"kms:ViaService": f"s3.{args.region}.amazonaws.com"}},
            },
        ]
    )


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


def _s3_uri(bucket: pulumi.Input[str], prefix: str) -> pulumi.Output[str]:
    return pulumi.Output.from_input(bucket).apply(lambda name: "s3://" + _join(name, prefix))
