"""A project command as a CronJob on the spot batch nodes, with its own IRSA role: what batch jobs share.

Two jobs are built from it: batch scoring (`retail score`, infra/batch_scoring.py) and the monitoring
schedule (`retail monitor`, infra/monitoring_schedule.py). Each is a component resource; `BatchJob`
creates, as that component's children and named after it, its role and role policy, ServiceAccount,
NetworkPolicy and CronJob, in a namespace batch scoring creates.

Why a CronJob on the cluster (and not a SageMaker batch transform or processing job): the commands
are the project's own CLI reading and writing the lake, not an HTTP model container; the cluster
already has a tainted spot node group for batch work, the image, IRSA and the network policies; and
a CronJob gives the schedule, the no-overlap rule and the retries declaratively
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

What it may do: its own ServiceAccount, whose IRSA role trusts only that service account and allows
what the job's policy says (each job states its S3 prefixes; both use the data key only through S3).
A NetworkPolicy lets its pods reach only DNS, S3 and the VPC's interface endpoints (STS, KMS), and
nothing reach them. Pods run as the image's non-root user with a read-only root filesystem, a
size-limited emptyDir at /tmp (bundle cache and scratch; HOME too), no privilege escalation, no
capabilities, the RuntimeDefault seccomp profile and CPU/memory requests and limits from the job's
config section. With RETAIL_EMF_ENABLED=true and RETAIL_ENVIRONMENT=<environment> (both set here)
each command ends its run with one CloudWatch EMF line on stdout, which Fluent Bit (infra/addons.py
`LogShipping`, tailing the namespace and tolerating the batch nodes' taint) ships to the platform's
log group, where CloudWatch turns it into the metrics of the platform's alarms (infra/observability.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
from pulumi_kubernetes.meta.v1 import LabelSelectorArgs, ObjectMetaArgs

from infra.config import ScheduledJobConfig
from infra.iam import irsa_trust_policy
from infra.pod_egress import private_egress

RUN_AS = 10001
"""The inference image's user (Dockerfile: `ARG UID=10001`)."""
TMP = "/tmp"
WORK_DIR = f"{TMP}/work"
INPUT_ERROR_EXIT_CODE = 2
"""What the project's commands exit with when the input is unusable (a retry would fail the same way)."""
SAFE_TO_EVICT = "cluster-autoscaler.kubernetes.io/safe-to-evict"
SUCCESSFUL_JOBS_KEPT = 1
FAILED_JOBS_KEPT = 3


@dataclass(kw_only=True)
class BatchPlacement:
    """What every batch job gets from the platform and the service: its image, nodes, network and identity."""

    environment: str
    region: str
    image: str
    """`<repository>@sha256:<digest>`: the inference image the service runs."""
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
    time_zone: pulumi.Input[str] = "Etc/UTC"
    """The batch jobs' time zone, an IANA name (the platform's batchTimeZone output, the one its missed-run alarms
    count weeks in)."""


@dataclass
class BatchJobSpec:
    """One job: its names, command, environment, role and schedule."""

    app: str
    """The `app` label, the ServiceAccount's and the CronJob's name."""
    container: str
    command: Sequence[str]
    args: Sequence[pulumi.Input[str]]
    lake_root: pulumi.Input[str]
    """RETAIL_LAKE_ROOT: `s3://<bucket>/<prefix>`."""
    env: Mapping[str, pulumi.Input[str]]
    """The job's own variables, beside those every job gets (lake root, work dir, EMF, HOME, AWS region)."""
    role: str
    """The role's name suffix (`<component>-<role>`)."""
    role_description: str
    role_policy: pulumi.Input[str]
    namespace: str
    time_zone: pulumi.Input[str]
    sizing: ScheduledJobConfig
    fail_job_exit_codes: Sequence[int] = (INPUT_ERROR_EXIT_CODE,)
    """Exit codes on which the Job fails at once, without a retry (its pod failure policy's FailJob rule): the
    command's codes for unusable input, which a retry would read the same."""


class BatchJob:
    """The ServiceAccount, IRSA role and policy, NetworkPolicy and CronJob of one job, children of `parent`.

    `after`: what must exist first (the namespace); the CronJob also waits for the placement's autoscaler.
    """

    def __init__(
        self,
        parent: pulumi.ComponentResource,
        name: str,
        placement: BatchPlacement,
        spec: BatchJobSpec,
        after: Sequence[pulumi.Resource],
    ) -> None:
        self._name, self._placement, self._spec = name, placement, spec
        self.role = self._role(parent)
        in_ns = pulumi.ResourceOptions(parent=parent, depends_on=list(after))
        self.account = k8s.core.v1.ServiceAccount(
            f"{name}-service-account",
            metadata=self._meta(annotations={"eks.amazonaws.com/role-arn": self.role.arn}),
            automount_service_account_token=False,
            opts=in_ns,
        )
        self.network_policy = self._network_policy(in_ns)
        autoscaler = [placement.autoscaler] if placement.autoscaler else []
        self.cron_job = k8s.batch.v1.CronJob(
            f"{name}-cron-job",
            metadata=self._meta(),
            spec=self._cron_job_spec(),
            opts=pulumi.ResourceOptions(parent=parent, depends_on=[*after, self.network_policy, *autoscaler]),
        )

    # --- the role ------------------------------------------------------------------------------------------------
    def _role(self, parent: pulumi.ComponentResource) -> aws.iam.Role:
        spec, placement = self._spec, self._placement
        role = aws.iam.Role(
            f"{self._name}-{spec.role}",
            description=spec.role_description,
            assume_role_policy=irsa_trust_policy(
                placement.oidc_provider_arn, placement.oidc_issuer, spec.namespace, spec.app
            ),
            opts=pulumi.ResourceOptions(parent=parent),
        )
        aws.iam.RolePolicy(
            f"{self._name}-{spec.role}-access",
            role=role.id,
            policy=spec.role_policy,
            opts=pulumi.ResourceOptions(parent=parent),
        )
        return role

    # --- Kubernetes objects --------------------------------------------------------------------------------------
    def _meta(self, annotations: dict | None = None) -> ObjectMetaArgs:
        return ObjectMetaArgs(
            name=self._spec.app, namespace=self._spec.namespace, labels=self._labels(), annotations=annotations
        )

    def _labels(self) -> dict[str, str]:
        return {"app": self._spec.app, "environment": self._placement.environment}

    def _cron_job_spec(self) -> k8s.batch.v1.CronJobSpecArgs:
        sizing = self._spec.sizing
        return k8s.batch.v1.CronJobSpecArgs(
            schedule=sizing.schedule,
            time_zone=self._spec.time_zone,
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
                                    container_name=self._spec.container,
                                    operator="In",
                                    values=sorted(self._spec.fail_job_exit_codes),
                                ),
                            ),
                        ]
                    ),
                    template=self._pod_template(),
                ),
            ),
        )

    def _pod_template(self) -> k8s.core.v1.PodTemplateSpecArgs:
        placement = self._placement
        tolerations = pulumi.Output.from_input(placement.node_taints).apply(
            lambda taints: [
                {"key": t["key"], "operator": "Equal", "value": t["value"], "effect": t["effect"]} for t in taints
            ]
        )
        return k8s.core.v1.PodTemplateSpecArgs(
            metadata=ObjectMetaArgs(labels=self._labels(), annotations={SAFE_TO_EVICT: "false"}),
            spec=k8s.core.v1.PodSpecArgs(
                restart_policy="Never",
                service_account_name=self.account.metadata.name,
                automount_service_account_token=False,
                node_selector=placement.node_labels,
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
                        empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit=self._spec.sizing.scratch_size),
                    )
                ],
            ),
        )

    def _container(self) -> k8s.core.v1.ContainerArgs:
        spec, placement, sizing = self._spec, self._placement, self._spec.sizing
        env = {
            "RETAIL_LAKE_ROOT": spec.lake_root,
            **spec.env,
            "RETAIL_WORK_DIR": WORK_DIR,
            "RETAIL_ENVIRONMENT": placement.environment,
            "RETAIL_EMF_ENABLED": "true",
            "HOME": TMP,
            "AWS_REGION": placement.region,
            "AWS_DEFAULT_REGION": placement.region,
            "AWS_STS_REGIONAL_ENDPOINTS": "regional",
        }
        return k8s.core.v1.ContainerArgs(
            name=spec.container,
            image=placement.image,
            command=list(spec.command),
            args=list(spec.args),
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
        placement = self._placement
        return k8s.networking.v1.NetworkPolicy(
            f"{self._name}-network-policy",
            metadata=self._meta(),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=LabelSelectorArgs(match_labels={"app": self._spec.app}),
                policy_types=["Ingress", "Egress"],
                egress=private_egress(placement.vpc_cidr, placement.s3_cidrs),
            ),
            opts=opts,
        )
