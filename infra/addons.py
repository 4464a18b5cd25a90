"""Cluster add-ons the service needs, installed with Helm from AWS's eks-charts repository.

- `LoadBalancerController`: the AWS Load Balancer Controller, which turns the inference
  Ingress into an ALB. Chosen over EKS Auto Mode because Auto Mode charges a management
  fee on every node's EC2 price and replaces the managed node groups this platform sizes
  itself; the controller runs in the cluster for the cost of its two small pods.
- `LogShipping`: Fluent Bit (aws-for-fluent-bit), which sends the stdout of the inference
  and batch-scoring containers to the platform's log group, each line as it was written
  (`log_key log`) with the `json/emf` format, so CloudWatch turns the API's and the
  scorer's EMF lines into the metrics the alarms watch. Its DaemonSet tolerates the batch
  nodes' taint: without that it never runs on those nodes and the scorer's lines stay there.
  Chosen over the `amazon-cloudwatch-observability` add-on because that add-on wraps
  every line in Kubernetes metadata (EMF needs `_aws` at the root of the event) and bills
  Container Insights metrics this platform does not use.

Each component owns its IRSA role (trusting only its service account) and its release;
the releases wait for their pods (Helm's own wait), so what depends on them starts
after the controller or shipper is running.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.iam import irsa_trust_policy, policy_document

EKS_CHARTS = "https://aws.github.io/eks-charts"
SYSTEM_NAMESPACE = "kube-system"
INGRESS_CLASS = "alb"
CONTROLLER_POLICY = Path(__file__).parent / "data" / "aws-load-balancer-controller-iam-policy.json"
CONTROLLER_ACCOUNT = "aws-load-balancer-controller"
SHIPPER_ACCOUNT = "aws-for-fluent-bit"
HELM_TIMEOUT_SECONDS = 600


@dataclass
class LoadBalancerControllerArgs:
    cluster_name: pulumi.Input[str]
    region: str
    vpc_id: pulumi.Input[str]
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer: pulumi.Input[str]
    node_labels: pulumi.Input[dict]
    chart_version: str


class LoadBalancerController(pulumi.ComponentResource):
    """The AWS Load Balancer Controller with the IAM policy its installation guide documents.

    `ingress_class` is the IngressClass the chart creates (`alb`); an Ingress that names it
    gets an ALB. `release` is what Ingresses must depend on: they are then created after
    the controller (and its webhooks) answer, and deleted before it, so the controller
    removes the ALB it made instead of leaving it behind.
    """

    role_arn: pulumi.Output[str]
    ingress_class: pulumi.Output[str]
    release: k8s.helm.v3.Release

    def __init__(
        self, name: str, args: LoadBalancerControllerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("retail:infra:LoadBalancerController", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        role = _irsa_role(
            name, "AWS Load Balancer Controller (IRSA)", args.oidc_provider_arn, args.oidc_issuer,
            CONTROLLER_ACCOUNT, self,
        )
        policy = aws.iam.Policy(
            f"{name}-policy",
            description="The AWS Load Balancer Controller's documented IAM policy",
            policy=controller_policy_document(),
            opts=child,
        )
        attachment = aws.iam.RolePolicyAttachment(
            f"{name}-policy-attachment", role=role.name, policy_arn=policy.arn, opts=child
        )
        values = {
            "clusterName": args.cluster_name,
            "region": args.region,
            "vpcId": args.vpc_id,
            "serviceAccount": {
                "create": True,
                "name": CONTROLLER_ACCOUNT,
                "annotations": {"eks.amazonaws.com/role-arn": role.arn},
            },
            "createIngressClassResource": True,
            "ingressClass": INGRESS_CLASS,
            "nodeSelector": args.node_labels,
            # The Service mutator only defaults loadBalancerClass on `type: LoadBalancer` Services, which
            # this platform never creates; with failurePolicy Fail it would refuse every new Service in
            # the cluster while the controller's pods are not ready (aws-load-balancer-controller#4140).
            "enableServiceMutatorWebhook": False,
        }
        self.release = _release(
            name, "aws-load-balancer-controller", args.chart_version, values, self, depends_on=[attachment]
        )
        self.role_arn = role.arn
        self.ingress_class = self.release.status.apply(lambda _: INGRESS_CLASS)
        self.register_outputs({"role_arn": self.role_arn, "ingress_class": self.ingress_class})


def _irsa_role(name: str, description: str, oidc_provider_arn, oidc_issuer, account: str, parent) -> aws.iam.Role:
    """A role only `kube-system/<account>`'s service account may assume, through the cluster's OIDC provider."""
    return aws.iam.Role(
        f"{name}-role",
        description=description,
        assume_role_policy=irsa_trust_policy(oidc_provider_arn, oidc_issuer, SYSTEM_NAMESPACE, account),
        opts=pulumi.ResourceOptions(parent=parent),
    )


def _release(
    name: str, chart: str, version: str, values: dict, parent, depends_on: list[pulumi.Resource]
) -> k8s.helm.v3.Release:
    """An eks-charts release in kube-system, named after its chart's service account, waited for by Helm."""
    return k8s.helm.v3.Release(
        f"{name}-release",
        name=values["serviceAccount"]["name"],
        chart=chart,
        version=version,
        repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=EKS_CHARTS),
        namespace=SYSTEM_NAMESPACE,
        timeout=HELM_TIMEOUT_SECONDS,
        values=values,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=depends_on),
    )


def controller_policy_document() -> str:
    """The controller's IAM policy as its installation guide publishes it (infra/data/README.md)."""
    return json.dumps(json.loads(CONTROLLER_POLICY.read_text()))


@dataclass
class LogShippingArgs:
    region: str
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer: pulumi.Input[str]
    log_group_name: pulumi.Input[str]
    logs_kms_key_arn: pulumi.Input[str]
    account_id: pulumi.Input[str]
    namespaces: Sequence[str]
    """Only these namespaces' containers are shipped (the inference API's and batch scoring's)."""
    chart_version: str
    node_taints: pulumi.Input[Sequence[dict]] = field(default_factory=list)
    """Taints (Kubernetes spelling: key, value, effect) of node groups whose pods must be shipped too: the
    DaemonSet tolerates each, or it never runs on those nodes (the platform's batchNodeTaints output)."""


class LogShipping(pulumi.ComponentResource):
    """Fluent Bit as a DaemonSet tailing some namespaces' containers into one CloudWatch log group.

    Each container line is sent unchanged (`logKey: log`) with `logFormat: json/emf`, so
    CloudWatch extracts metrics from EMF lines and stores the other lines as log events.
    The tail input's `Path` lists one pattern per namespace, comma-separated, which Fluent Bit's
    tail input accepts (https://docs.fluentbit.io/manual/dev-4.0/pipeline/inputs/tail: "Multiple patterns
    separated by commas are also allowed"); the chart writes `input.path` into `Path` as is.
    The DaemonSet's pods tolerate `node_taints` (the chart's `tolerations` value, empty by
    default), so Fluent Bit also runs on the tainted batch nodes where the scoring pods write.
    The role may only write streams of that log group (and use the logs key through
    CloudWatch Logs, which the encrypted group needs): the batch lines go to the same group,
    so the policy is the same.
    """

    role_arn: pulumi.Output[str]
    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: LogShippingArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("retail:infra:LogShipping", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        role = _irsa_role(
            name, "Fluent Bit: ship the inference and batch-scoring containers' logs (IRSA)", args.oidc_provider_arn,
            args.oidc_issuer, SHIPPER_ACCOUNT, self,
        )
        group_arn = pulumi.Output.concat(
            "arn:aws:logs:", args.region, ":", args.account_id, ":log-group:", args.log_group_name
        )
        policy = aws.iam.RolePolicy(
            f"{name}-write-logs",
            role=role.id,
            policy=policy_document(
                [
                    {
                        "Sid": "WriteInferenceLogStreams",
                        "Effect": "Allow",
                        "Action": ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
                        "Resource": [group_arn, pulumi.Output.concat(group_arn, ":*")],
                    },
                    {
                        "Sid": "UseLogsKeyThroughCloudWatchLogs",
                        "Effect": "Allow",
                        "Action": [
                            "kms:Encrypt", "kms:ReEncrypt*", "kms:Decrypt", "kms:GenerateDataKey*", "kms:DescribeKey"
                        ],
                        "Resource": args.logs_kms_key_arn,
                        "Condition": {"StringEquals": {"kms:ViaService": f"logs.{args.region}.amazonaws.com"}},
                    },
                ]
            ),
            opts=child,
        )
        self.release = _release(
            name, "aws-for-fluent-bit", args.chart_version, shipper_values(args, role.arn), self, depends_on=[policy]
        )
        self.role_arn = role.arn
        self.register_outputs({"role_arn": self.role_arn})


READ_FROM_HEAD = "Read_from_Head On"
"""Fluent Bit tail option: a file found when Fluent Bit starts is read from its first line, not its end."""


def tail_path(namespaces: Sequence[str]) -> str:
    """Fluent Bit's tail `Path`: the container log files of each namespace, comma-separated."""
    if not namespaces:
        raise ValueError("LogShipping needs at least one namespace to tail")
    return ",".join(f"/var/log/containers/*_{namespace}_*.log" for namespace in namespaces)


def tolerations(taints: Sequence[dict]) -> list[dict]:
    """A toleration of each taint (key, value, effect), as the batch pods tolerate it."""
    return [{"key": t["key"], "operator": "Equal", "value": t["value"], "effect": t["effect"]} for t in taints]


def shipper_values(args: LogShippingArgs, role_arn: pulumi.Input[str]) -> dict:
    """aws-for-fluent-bit values: tail the namespaces on every node they run on, send raw lines as EMF events."""
    return {
        "serviceAccount": {
            "create": True,
            "name": SHIPPER_ACCOUNT,
            "annotations": {"eks.amazonaws.com/role-arn": role_arn},
        },
        # New files are read from their start (chart value `extraInputs`, lines added to the tail input): a batch
        # node starts with the job, and the job's log file can exist before Fluent Bit does; read from its end (the
        # default), a run that fails within seconds would lose its only metric line. The chart's DB keeps offsets.
        "input": {"path": tail_path(args.namespaces), "tag": "kube.*", "extraInputs": READ_FROM_HEAD},
        "filter": {"enabled": False},
        "tolerations": pulumi.Output.from_input(args.node_taints).apply(tolerations),
        "cloudWatchLogs": {
            "enabled": True,
            "match": "kube.*",
            "region": args.region,
            "logGroupName": args.log_group_name,
            "logStreamPrefix": "containers-",
            "logKey": "log",
            "logFormat": "json/emf",
            "autoCreateGroup": False,
        },
        "cloudWatch": {"enabled": False},
        "firehose": {"enabled": False},
        "kinesis": {"enabled": False},
        "elasticsearch": {"enabled": False},
    }
