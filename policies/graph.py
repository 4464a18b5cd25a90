"""The deploy-graph check: what must exist before what, across every project of a deployment.

Two parts, both over `policies.deployment.DeploymentView` (which states exactly when a
resource counts as created after another, within a run and across a StackReference):

1. `ORDERS`: documented "X before Y" pairs. Each row selects its dependents, finds each
   dependent's own prerequisites by their inputs (the NAT gateway's VPC's internet gateway,
   not any gateway), and reports every prerequisite the dependent is not ordered after.
   A row marked `required` also reports a dependent that has no such prerequisite at all.

2. `awaited_findings`: every Kubernetes object Pulumi waits for has what it waits on in
   its own run or a run it reads through a StackReference, or carries
   `pulumi.com/skipAwait: "true"` with a reason in `retail.io/skip-await-reason`.
   pulumi-kubernetes awaits these kinds (`awaiters` in provider/pkg/await/awaiters.go,
   https://github.com/pulumi/pulumi-kubernetes/blob/master/provider/pkg/await/awaiters.go,
   read at pulumi/pulumi-kubernetes@94977969; research note R2 §1), each for 10 minutes by
   default:

   - Deployment, StatefulSet (waits until the rollout is Available), Pod (ready), Job
     (`Complete=True`): a node group its pods fit (nodeSelector, taints) that starts with
     nodes, its ServiceAccount, Secrets, ConfigMaps and PVCs in its namespace, images
     pinned to a digest, and for the inference API the served model with the hash its
     pods accept (plus the `ORDERS` rows on the ServedModel and NetworkPolicy).
   - DaemonSet (its scheduled pods are ready): its ServiceAccount, Secrets, ConfigMaps and
     PVCs; no node group, as zero scheduled pods already counts as ready.
   - Service with a selector (Endpoints seen, no address pending): a workload in its
     namespace whose pod labels match the selector and that names the target port.
   - Ingress (`.status.loadBalancer.ingress` written by the controller): a controller
     release whose IngressClass is its `ingressClassName` (the `ORDERS` row) and the
     backend Services.
   - PersistentVolumeClaim (Bound): a StorageClass by that name in the deployment.
   - Helm Release (Helm's own `--wait` for the chart's pods unless `skipAwait`): a node
     group its pods fit (values `nodeSelector`, `tolerations`) that starts with nodes.

   Not awaited (ready once accepted): Namespace on create, ConfigMap, most Secrets, HPA
   v2, PodDisruptionBudget, NetworkPolicy. `pulumi.com/skipAwait` is read by
   `IsAnnotationTrue` (provider/pkg/metadata/overrides.go), so only the string "true" skips.

Node groups count as having nodes for an awaited workload when their `desiredSize` is at
least 1: Pulumi's 10-minute await should not hinge on a scale-up, so a workload that only
fits a group that starts at zero is reported even where Cluster Autoscaler runs.

3. `scheduled_findings`: CronJobs are not awaited (Pulumi creates them and moves on), so
   nothing in `pulumi up` notices a CronJob whose pods can never start. Each CronJob's pods
   must fit a node group that can have nodes (`maxSize` >= 1), its ServiceAccount, Secrets
   and ConfigMaps must exist in its namespace, and its images must be pinned to a digest;
   when every group its pods fit starts at zero nodes, the `ORDERS` row on CronJobs asks for
   the Cluster Autoscaler release that discovers that group's cluster, created before it
   (a group at zero stays at zero unless something scales it), and one of those groups'
   Auto Scaling groups must carry the autoscaler's node-template tags for its labels and
   taints (without a node to look at, that is how the autoscaler knows a new node would fit).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from infra.config import IMAGE_DIGEST
from infra.offline import OfflineRun
from infra.providers.kinds import DYNAMIC_TYPE, SERVED_MODEL
from policies.deployment import EKS_COMPONENT, ROLE, DeploymentView, Node, NodeGroup
from policies.findings import Finding
from policies.model import as_list
from policies.rules import s3
from policies.rules.kubernetes import containers, env_of, option_values, pod_spec

CHECK = "deploy-graph"
SKIP_AWAIT = "pulumi.com/skipAwait"
SKIP_AWAIT_REASON = "retail.io/skip-await-reason"
"""Annotation that must say why an object skips Pulumi's await (e.g. "the controller that readies it is installed
later by hand")."""

NAT_GATEWAY = "aws:ec2/natGateway:NatGateway"
INTERNET_GATEWAY = "aws:ec2/internetGateway:InternetGateway"
INTERNET_GATEWAY_ATTACHMENT = "aws:ec2/internetGatewayAttachment:InternetGatewayAttachment"
SUBNET = "aws:ec2/subnet:Subnet"
TRAIL = "aws:cloudtrail/trail:Trail"
ADDON = "aws:eks/addon:Addon"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
NAMESPACE = "kubernetes:core/v1:Namespace"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
STATEFUL_SET = "kubernetes:apps/v1:StatefulSet"
DAEMON_SET = "kubernetes:apps/v1:DaemonSet"
POD = "kubernetes:core/v1:Pod"
JOB = "kubernetes:batch/v1:Job"
CRON_JOB = "kubernetes:batch/v1:CronJob"
SERVICE = "kubernetes:core/v1:Service"
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
PVC = "kubernetes:core/v1:PersistentVolumeClaim"
STORAGE_CLASS = "kubernetes:storage.k8s.io/v1:StorageClass"
SERVICE_ACCOUNT = "kubernetes:core/v1:ServiceAccount"
SECRET = "kubernetes:core/v1:Secret"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"

POD_WORKLOADS = frozenset({DEPLOYMENT, STATEFUL_SET, DAEMON_SET, POD, JOB})
NEEDS_NODES = POD_WORKLOADS - {DAEMON_SET}
BUILTIN_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})
"""Namespaces every EKS cluster has (https://kubernetes.io/docs/concepts/overview/working-with-objects/namespaces/)."""
POD_ADDONS = frozenset({"coredns", "metrics-server", "aws-ebs-csi-driver", "aws-efs-csi-driver"})
"""EKS add-ons that run a Deployment, so they stay DEGRADED until a node can run its pods."""
MODEL_URI_ENV = "RETAIL_MODEL_URI"
MODEL_SHA_ENV = "RETAIL_MODEL_SHA256"
ROLE_ARN_ANNOTATION = "eks.amazonaws.com/role-arn"
INGRESS_CONTROLLER_CHARTS: dict[str, Callable[[Mapping[str, Any]], str | None]] = {
    # values.yaml of aws/eks-charts stable/aws-load-balancer-controller: ingressClass "alb", created unless
    # createIngressClassResource is false (https://github.com/aws/eks-charts/tree/master/stable/aws-load-balancer-controller)
    "aws-load-balancer-controller": lambda values: (
        values.get("ingressClass") or "alb" if values.get("createIngressClassResource", True) is not False else None
    ),
    # values.yaml of kubernetes/ingress-nginx: controller.ingressClassResource.name "nginx", enabled by default
    "ingress-nginx": lambda values: (
        ((values.get("controller") or {}).get("ingressClassResource") or {}).get("name") or "nginx"
    ),
}
"""Ingress controller charts -> the IngressClass their release creates, from its values."""
AUTOSCALING_TAG = "aws:autoscaling/tag:Tag"
NODE_TEMPLATE_TAG = "k8s.io/cluster-autoscaler/node-template"
CLUSTER_AUTOSCALER_CHART = "cluster-autoscaler"
"""kubernetes/autoscaler's chart: `autoDiscovery.clusterName` names the cluster whose node groups it scales."""
CLUSTER_AUTOSCALER_DOCS = (
    "https://github.com/kubernetes/autoscaler/blob/master/cluster-autoscaler/cloudprovider/aws/README.md; "
    "https://github.com/kubernetes/autoscaler/blob/master/cluster-autoscaler/FAQ.md"
)


@dataclass(frozen=True)
class Order:
    """One documented "prerequisite before dependent" pair."""

    dependent: str
    prerequisite: str
    why: str
    url: str
    selects: Callable[[Node], bool]
    prerequisites: Callable[[DeploymentView, Node], list[Node] | None]
    """The dependent's own prerequisites; None when they cannot be known here (e.g. outside the stacks)."""
    required: bool = False
    """A dependent with no prerequisite at all is a finding."""
    any_of: bool = False
    """Being after one of the prerequisites is enough (e.g. one schedulable node group)."""


# --- how each row finds a dependent's prerequisites -----------------------------------------------------------
def _annotations(node: Node) -> Mapping[str, Any]:
    return node.get("metadata", "annotations", default={}) or {}


def _namespace(node: Node) -> str:
    if node.type == HELM_RELEASE:
        return str(node.get("namespace", default="default"))
    return str(node.get("metadata", "namespace", default="default"))


def _k8s_name(node: Node) -> str:
    return str(node.get("metadata", "name", default="") or node.outputs.get("metadata", {}).get("name", ""))


def _same_namespace(view: DeploymentView, node: Node, types: str | Iterable[str]) -> list[Node]:
    return [n for n in view.of_type(types, [node.run]) if _namespace(n) == _namespace(node)]


def _internet_gateways(view: DeploymentView, nat: Node) -> list[Node] | None:
    if nat.get("connectivityType", default="public") == "private":
        return None
    subnet = view.referenced(nat, "subnetId", SUBNET)
    if subnet is None:
        return None
    gateways = view.of_type({INTERNET_GATEWAY, INTERNET_GATEWAY_ATTACHMENT}, view.visible_runs(nat.run))
    return [g for g in gateways if _same_vpc(view, g, subnet)]


def _same_vpc(view: DeploymentView, a: Node, b: Node) -> bool:
    vpc_a, vpc_b = a.inputs.get("vpcId"), b.inputs.get("vpcId")
    shared = set(a.record.property_dependencies.get("vpcId", ())) & set(b.record.property_dependencies.get("vpcId", ()))
    return bool(shared) or (isinstance(vpc_a, str) and vpc_a == vpc_b)


def _node_role_policies(view: DeploymentView, group: Node) -> list[Node] | None:
    role = view.referenced(group, "nodeRole", ROLE) or view.referenced(group, "nodeRoleArn", ROLE)
    return view.role_policies(role) if role else None


def _trail_bucket_policies(view: DeploymentView, trail: Node) -> list[Node] | None:
    bucket = view.referenced(trail, "s3BucketName", s3.BUCKETS)
    if bucket is None:
        return None
    policies = view.of_type(s3.BUCKET_POLICIES, view.visible_runs(trail.run))
    return [p for p in policies if view.refers(p, "bucket", bucket)]


def _schedulable_groups(view: DeploymentView, addon: Node) -> list[Node]:
    cluster = addon.get("clusterName")
    return [
        g.node
        for g in view.node_groups(view.visible_runs(addon.run))
        if g.cluster_name == cluster and g.desired_size >= 1 and g.admits({}, [])
    ]


def _irsa_policies(view: DeploymentView, release: Node) -> list[Node] | None:
    roles = _roles_with_arn(view, set(_values_with_key(release.get("values", default={}), ROLE_ARN_ANNOTATION)))
    if not roles:
        return None
    return [p for role in roles for p in view.role_policies(role)]


def _pod_irsa_policies(view: DeploymentView, workload: Node) -> list[Node] | None:
    """The policies of the IAM role the workload's service account names (eks.amazonaws.com/role-arn); None when
    its pods run as no role of these stacks, or as one without policies here."""
    account = _service_account(pod_spec(workload.resource))
    if not account:
        return None
    accounts = [a for a in _same_namespace(view, workload, SERVICE_ACCOUNT) if _k8s_name(a) == account]
    arns = {_annotations(a).get(ROLE_ARN_ANNOTATION) for a in accounts} - {None}
    policies = [p for role in _roles_with_arn(view, arns) for p in view.role_policies(role)]
    return policies or None


def _roles_with_arn(view: DeploymentView, arns: set[Any]) -> list[Node]:
    return [r for r in view.of_type(ROLE) if r.outputs.get("arn") in arns]


def _service_account(spec: Mapping[str, Any]) -> str | None:
    """The service account a pod spec names (serviceAccount is its deprecated alias)."""
    return spec.get("serviceAccountName") or spec.get("serviceAccount")


def _values_with_key(value: Any, key: str) -> list[Any]:
    """Every value stored under `key` anywhere in nested Helm values."""
    if isinstance(value, Mapping):
        return [v for k, item in value.items() for v in ([item] if k == key else _values_with_key(item, key))]
    if isinstance(value, list):
        return [v for item in value for v in _values_with_key(item, key)]
    return []


def _bucket_versioning(view: DeploymentView, setting: Node) -> list[Node] | None:
    bucket = view.referenced(setting, "bucket", s3.BUCKETS)
    if bucket is None:
        return None
    versionings = view.of_type(s3.VERSIONING_TYPES, view.visible_runs(setting.run))
    return [v for v in versionings if view.refers(v, "bucket", bucket)]


def _model_uri(node: Node) -> str | None:
    """Where the workload's pods read their model: RETAIL_MODEL_URI (the service), else a `--bundle` argument (the
    batch jobs' `retail score` and `retail monitor`)."""
    for container in containers(node.resource):
        if MODEL_URI_ENV in (env := env_of(container)):
            return str(env[MODEL_URI_ENV])
        if bundles := option_values(container, ("--bundle",)):
            return bundles[0]
    return None


def _served_models(view: DeploymentView, workload: Node) -> list[Node]:
    """The ServedModels publishing where `workload` reads its model: their bundle's folder (`model_uri`), or any
    folder below where they publish (`target_uri`)."""
    uri = _model_uri(workload)
    return [
        m
        for m in view.of_type(DYNAMIC_TYPE, view.visible_runs(workload.run))
        if m.inputs.get("kind") == SERVED_MODEL and uri is not None and (
            uri == m.outputs.get("model_uri")
            or any(isinstance(t, str) and t and uri.startswith(t)
                   for t in (m.inputs.get("target_uri"), m.outputs.get("target_uri"))))
    ]


def pod_labels(node: Node) -> Mapping[str, str]:
    if node.type == POD:
        return node.get("metadata", "labels", default={})
    if node.type == CRON_JOB:
        return node.get("spec", "jobTemplate", "spec", "template", "metadata", "labels", default={})
    return node.get("spec", "template", "metadata", "labels", default={})


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A LabelSelector (matchLabels and matchExpressions) matches `labels`."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in as_list(selector.get("matchExpressions")):
        key, operator, values = expression.get("key"), expression.get("operator"), as_list(expression.get("values"))
        present = key in labels
        if (
            (operator == "In" and labels.get(key) not in values)
            or (operator == "NotIn" and present and labels[key] in values)
            or (operator == "Exists" and not present)
            or (operator == "DoesNotExist" and present)
        ):
            return False
    return True


def _network_policies(view: DeploymentView, workload: Node) -> list[Node]:
    labels = pod_labels(workload)
    return [
        p
        for p in _same_namespace(view, workload, NETWORK_POLICY)
        if selects(p.get("spec", "podSelector", default={}), labels)
    ]


def _pod_placement(node: Node) -> tuple[Mapping[str, str], list[Mapping[str, Any]]]:
    spec = pod_spec(node.resource)
    return spec.get("nodeSelector") or {}, as_list(spec.get("tolerations"))


def _autoscalers_for_empty_groups(view: DeploymentView, cron_job: Node) -> list[Node] | None:
    """The Cluster Autoscaler releases that discover the cluster of the groups a CronJob's pods fit.

    None (the row does not apply) when the pods fit no group (`scheduled_findings` reports that) or
    fit a group that starts with nodes.
    """
    fit, with_nodes = _fitting_groups(view, cron_job, *_pod_placement(cron_job))
    if not fit or with_nodes:
        return None
    clusters = {g.cluster_name for g in fit}
    releases = view.of_type(HELM_RELEASE, view.visible_runs(cron_job.run))
    return [
        r
        for r in releases
        if str(r.get("chart", default="")).rsplit("/", 1)[-1] == CLUSTER_AUTOSCALER_CHART
        and r.get("values", "autoDiscovery", "clusterName") in clusters
    ]


def ingress_class(ingress: Node) -> str | None:
    return ingress.get("spec", "ingressClassName") or _annotations(ingress).get("kubernetes.io/ingress.class")


def controller_class(release: Node) -> str | None:
    chart = str(release.get("chart", default="")).rsplit("/", 1)[-1]
    reader = INGRESS_CONTROLLER_CHARTS.get(chart)
    return reader(release.get("values", default={}) or {}) if reader else None


def _ingress_controllers(view: DeploymentView, ingress: Node) -> list[Node]:
    wanted = ingress_class(ingress)
    releases = view.of_type(HELM_RELEASE, view.visible_runs(ingress.run))
    return [r for r in releases if wanted and controller_class(r) == wanted]


def _namespaces(view: DeploymentView, node: Node) -> list[Node] | None:
    namespace = _namespace(node)
    if namespace in BUILTIN_NAMESPACES or (node.type == HELM_RELEASE and node.get("createNamespace") is True):
        return None
    return [n for n in view.of_type(NAMESPACE, view.visible_runs(node.run)) if _k8s_name(n) == namespace]


def _is_namespaced_object(node: Node) -> bool:
    if node.type == HELM_RELEASE:
        return True
    return (
        node.type.startswith("kubernetes:")
        and not node.type.startswith("pulumi:providers:")
        and node.type != NAMESPACE
        and bool(node.get("metadata", "namespace"))
    )


ORDERS: list[Order] = [
    Order(
        "aws:ec2/natGateway:NatGateway (public)",
        "the internet gateway of its subnet's VPC",
        "a public NAT gateway routes through the VPC's internet gateway; created first it fails or has no route out",
        "https://www.pulumi.com/registry/packages/aws/api-docs/ec2/natgateway/ (Public NAT: depends_on the gateway)",
        lambda n: n.type == NAT_GATEWAY,
        _internet_gateways,
        required=True,
    ),
    Order(
        "eks:index:ManagedNodeGroup, aws:eks/nodeGroup:NodeGroup",
        "its node role's policy attachments",
        "nodes join only with the worker, CNI and ECR policies; deleted first, EKS cannot clean up instances and ENIs",
        "https://www.pulumi.com/registry/packages/aws/api-docs/eks/nodegroup/ (depends_on the role's attachments)",
        lambda n: n.type in {"eks:index:ManagedNodeGroup", "aws:eks/nodeGroup:NodeGroup"},
        _node_role_policies,
        required=True,
    ),
    Order(
        "aws:cloudtrail/trail:Trail",
        "the bucket policy of its S3 bucket",
        "CreateTrail checks that the bucket policy lets CloudTrail write (InsufficientS3BucketPolicyException)",
        "https://www.pulumi.com/registry/packages/aws/api-docs/cloudtrail/trail/ (depends_on the bucket policy); "
        "https://docs.aws.amazon.com/awscloudtrail/latest/userguide/create-s3-bucket-policy-for-cloudtrail.html",
        lambda n: n.type == TRAIL,
        _trail_bucket_policies,
        required=True,
    ),
    Order(
        f"aws:eks/addon:Addon ({', '.join(sorted(POD_ADDONS))})",
        "a node group of its cluster that starts with nodes and no taint",
        "the add-on's Deployment needs a node; without one the add-on stays DEGRADED and its creation times out",
        "https://docs.aws.amazon.com/eks/latest/userguide/managing-coredns.html; "
        "https://github.com/eksctl-io/eksctl/issues/6954",
        lambda n: n.type == ADDON and n.get("addonName") in POD_ADDONS,
        _schedulable_groups,
        required=True,
        any_of=True,
    ),
    Order(
        "kubernetes:helm.sh/v3:Release with an IRSA service account",
        "the policies of the IAM role its eks.amazonaws.com/role-arn annotation names",
        "the chart's pods call AWS as that role from their first start (Helm waits for them to be ready)",
        "https://kubernetes-sigs.github.io/aws-load-balancer-controller/latest/deploy/installation/; "
        "https://docs.aws.amazon.com/eks/latest/userguide/associate-service-account-role.html",
        lambda n: n.type == HELM_RELEASE and bool(_values_with_key(n.get("values", default={}), ROLE_ARN_ANNOTATION)),
        _irsa_policies,
        required=True,
    ),
    Order(
        "Deployment, StatefulSet, DaemonSet, Job, Pod whose service account names an IAM role (IRSA)",
        "the policies of that role",
        "the pods call AWS as that role from their first start, and Pulumi waits for the workload to be ready; "
        "created first, they start denied until the policies exist",
        "https://docs.aws.amazon.com/eks/latest/userguide/associate-service-account-role.html; "
        "https://www.pulumi.com/registry/packages/kubernetes/api-docs/apps/v1/deployment/ (await: Available)",
        lambda n: n.type in POD_WORKLOADS,
        _pod_irsa_policies,
    ),
    Order(
        "aws:s3/bucketLifecycleConfiguration (and V2)",
        "the versioning of the same bucket",
        "noncurrent-version rules act on versions; the provider's example waits for versioning first",
        "https://www.pulumi.com/registry/packages/aws/api-docs/s3/bucketlifecycleconfiguration/ "
        "(depends_on versioning)",
        lambda n: n.type in s3.LIFECYCLE_TYPES,
        _bucket_versioning,
    ),
    Order(
        "aws:s3/bucketObjectLockConfiguration (and V2)",
        "the versioning of the same bucket",
        "to enable Object Lock on an existing bucket, versioning must be enabled first",
        "https://www.pulumi.com/registry/packages/aws/api-docs/s3/bucketobjectlockconfiguration/; "
        "https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-lock-configure.html",
        lambda n: n.type in s3.OBJECT_LOCK_TYPES,
        _bucket_versioning,
    ),
    Order(
        f"Deployment setting {MODEL_URI_ENV}",
        f"the ServedModel ({DYNAMIC_TYPE}, kind {SERVED_MODEL}) publishing to that URI",
        "the pods load the bundle there and report ready only once it matches RETAIL_MODEL_SHA256; "
        "Pulumi waits for the rollout to become Available",
        "https://www.pulumi.com/registry/packages/kubernetes/api-docs/apps/v1/deployment/ (await: Available)",
        lambda n: n.type == DEPLOYMENT and _model_uri(n) is not None,
        _served_models,
        required=True,
    ),
    Order(
        "Deployment, StatefulSet, DaemonSet, Job, CronJob, Pod",
        "the NetworkPolicies of its namespace that select its pods",
        "with the VPC CNI in standard mode a new pod allows all traffic until its policies are applied",
        "https://docs.aws.amazon.com/eks/latest/userguide/cni-network-policy-configure.html; "
        "https://kubernetes.io/docs/concepts/services-networking/network-policies/",
        lambda n: n.type in POD_WORKLOADS | {CRON_JOB},
        _network_policies,
    ),
    Order(
        "kubernetes:batch/v1:CronJob whose pods fit only node groups starting with no nodes",
        "the Cluster Autoscaler release whose autoDiscovery.clusterName is those groups' cluster",
        "nothing else adds a node to a group at zero, so every run's pod would stay Pending (a CronJob is "
        "not awaited: `pulumi up` succeeds and no run ever starts); created first, the autoscaler is also "
        "removed last",
        CLUSTER_AUTOSCALER_DOCS,
        lambda n: n.type == CRON_JOB,
        _autoscalers_for_empty_groups,
        required=True,
        any_of=True,
    ),
    Order(
        "kubernetes:networking.k8s.io/v1:Ingress",
        "the ingress controller release whose IngressClass is its ingressClassName",
        "Pulumi waits until the controller writes .status.loadBalancer; deleted after the controller, "
        "the load balancer it made is left behind",
        "https://www.pulumi.com/registry/packages/kubernetes/api-docs/networking/v1/ingress/; "
        "https://kubernetes-sigs.github.io/aws-load-balancer-controller/latest/deploy/installation/",
        lambda n: n.type == INGRESS,
        _ingress_controllers,
        required=True,
        any_of=True,
    ),
    Order(
        "namespaced Kubernetes objects and Helm releases",
        "their Namespace",
        "the API server rejects an object in a namespace that does not exist",
        "https://kubernetes.io/docs/concepts/overview/working-with-objects/namespaces/",
        _is_namespaced_object,
        _namespaces,
        required=True,
    ),
]
"""The deploy-graph table: dependent, prerequisite, why, where it is documented."""


def order_findings(view: DeploymentView, orders: Sequence[Order] = ORDERS) -> list[Finding]:
    findings = []
    for order in orders:
        for node in view.nodes:
            if order.selects(node):
                findings.extend(_order_findings(view, order, node))
    return findings


def _order_findings(view: DeploymentView, order: Order, node: Node) -> list[Finding]:
    prerequisites = order.prerequisites(view, node)
    if prerequisites is None:
        return []
    if not prerequisites:
        if not order.required:
            return []
        message = f"{node.type} has no prerequisite in the deployment: {order.prerequisite} ({order.why})"
        fix = f"Create {order.prerequisite} and order {node.name} after it; see {order.url}"
        return [Finding(CHECK, node.name, message, fix)]
    missing = [p for p in prerequisites if not view.is_after(node, p)]
    if not missing or (order.any_of and len(missing) < len(prerequisites)):
        return []
    if order.any_of:
        missing_names = " or ".join(p.name for p in missing)
        return [_not_after(node, f"{order.prerequisite} ({missing_names})", missing_names, order)]
    return [_not_after(node, f"{p.label}, {order.prerequisite}", p.name, order) for p in missing]


def _not_after(node: Node, prerequisite: str, target: str, order: Order) -> Finding:
    return Finding(
        CHECK,
        node.name,
        f"{node.type} is not created after {prerequisite}: {order.why}",
        f"Make {node.name} wait for {target} (ResourceOptions(depends_on=[...]) or an input taken from it); "
        f"see {order.url}",
    )


# --- (b) what awaited Kubernetes objects wait on ------------------------------------------------------------
AWAITED = frozenset({*POD_WORKLOADS, SERVICE, INGRESS, PVC, HELM_RELEASE})
AWAIT_TABLE_URL = "https://github.com/pulumi/pulumi-kubernetes/blob/master/provider/pkg/await/awaiters.go"


def awaited_findings(view: DeploymentView) -> list[Finding]:
    findings = []
    for node in view.of_type(AWAITED):
        skip = _skip_await(node)
        if skip is not None:
            findings.extend(skip)
            continue
        problems = _await_problems(view, node)
        findings.extend(Finding(CHECK, node.name, f"{node.type} {message}", fix) for message, fix in problems)
    return findings


def _skip_await(node: Node) -> list[Finding] | None:
    """None when the object is awaited; else the findings about its opt-out (none when it says why)."""
    if node.type == HELM_RELEASE:
        return [] if node.get("skipAwait") is True else None
    annotations = _annotations(node)
    if str(annotations.get(SKIP_AWAIT, "")) != "true":
        return None
    if str(annotations.get(SKIP_AWAIT_REASON, "")).strip():
        return []
    return [
        Finding(
            CHECK,
            node.name,
            f'{node.type} sets {SKIP_AWAIT}: "true" without saying why',
            f"Add the annotation {SKIP_AWAIT_REASON} with the reason Pulumi must not wait for it, or drop "
            f"{SKIP_AWAIT} and give it its prerequisites; see {AWAIT_TABLE_URL}",
        )
    ]


Problem = tuple[str, str]
"""(message, fix)."""


def _await_problems(view: DeploymentView, node: Node) -> list[Problem]:
    if node.type in POD_WORKLOADS:
        return [
            *_node_problems(view, node),
            *_reference_problems(view, node),
            *_image_problems(node),
            *_model_problems(view, node),
        ]
    if node.type == HELM_RELEASE:
        return _release_node_problems(view, node)
    if node.type == SERVICE:
        return _service_problems(view, node)
    if node.type == INGRESS:
        return _ingress_problems(view, node)
    return _claim_problems(view, node)


def _fitting_groups(
    view: DeploymentView, node: Node, selector: Mapping[str, str], tolerations: Sequence[Mapping[str, Any]]
) -> tuple[list[NodeGroup], list[NodeGroup]]:
    """(groups the pods fit, those of them that start with nodes) among the visible runs' node groups."""
    fit = [g for g in view.node_groups(view.visible_runs(node.run)) if g.admits(selector, tolerations)]
    return fit, [g for g in fit if g.desired_size >= 1]


def _schedule_problems(
    view: DeploymentView, node: Node, selector: Mapping[str, str], tolerations: Sequence[Mapping[str, Any]]
) -> list[Problem]:
    fit, with_nodes = _fitting_groups(view, node, selector, tolerations)
    where = f"nodeSelector {dict(selector)}" if selector else "no nodeSelector"
    if not fit:
        return [
            (
                f"has pods ({where}) that fit no node group in its project or the projects it references, "
                "so they stay Pending and Pulumi's await times out",
                "Point the nodeSelector at a node group's labels (the platform's serviceNodeLabels output) and "
                f"tolerate its taints; see {AWAIT_TABLE_URL}",
            )
        ]
    if not with_nodes:
        names = ", ".join(g.node.name for g in fit)
        return [
            (
                f"has pods ({where}) that fit only node groups starting with no nodes ({names}); "
                "nothing scales them up",
                "Give one of those node groups desiredSize >= 1, or schedule the pods elsewhere; "
                f"see {AWAIT_TABLE_URL}",
            )
        ]
    if not any(view.is_after(node, g.node) for g in with_nodes):
        names = " or ".join(g.node.name for g in with_nodes)
        return [
            (
                f"is not created after the node groups its pods fit ({names})",
                f"Take the node labels from the platform stack's outputs (StackReference) or depend on the node group; "
                f"see {AWAIT_TABLE_URL}",
            )
        ]
    return []


def _node_problems(view: DeploymentView, node: Node) -> list[Problem]:
    if node.type not in NEEDS_NODES:
        return []
    spec = pod_spec(node.resource)
    return _schedule_problems(view, node, spec.get("nodeSelector") or {}, as_list(spec.get("tolerations")))


def _release_node_problems(view: DeploymentView, release: Node) -> list[Problem]:
    values = release.get("values", default={}) or {}
    return _schedule_problems(view, release, values.get("nodeSelector") or {}, as_list(values.get("tolerations")))


def _references(node: Node) -> list[tuple[str, str]]:
    """(type, name) of the namespaced objects a pod spec needs before its containers start."""
    spec = pod_spec(node.resource)
    wanted = []
    account = _service_account(spec)
    if account and account != "default":
        wanted.append((SERVICE_ACCOUNT, account))
    for volume in as_list(spec.get("volumes")):
        if (volume.get("secret") or {}).get("secretName") and not volume["secret"].get("optional"):
            wanted.append((SECRET, volume["secret"]["secretName"]))
        if (volume.get("configMap") or {}).get("name") and not volume["configMap"].get("optional"):
            wanted.append((CONFIG_MAP, volume["configMap"]["name"]))
        if (volume.get("persistentVolumeClaim") or {}).get("claimName"):
            wanted.append((PVC, volume["persistentVolumeClaim"]["claimName"]))
    for container in containers(node.resource):
        for source in as_list(container.get("envFrom")):
            for key, type_ in (("secretRef", SECRET), ("configMapRef", CONFIG_MAP)):
                ref = source.get(key) or {}
                if ref.get("name") and not ref.get("optional"):
                    wanted.append((type_, ref["name"]))
        for variable in as_list(container.get("env")):
            for key, type_ in (("secretKeyRef", SECRET), ("configMapKeyRef", CONFIG_MAP)):
                ref = (variable.get("valueFrom") or {}).get(key) or {}
                if ref.get("name") and not ref.get("optional"):
                    wanted.append((type_, ref["name"]))
    return sorted(set(wanted))


def _reference_problems(view: DeploymentView, node: Node) -> list[Problem]:
    problems = []
    for type_, name in _references(node):
        found = [n for n in _same_namespace(view, node, type_) if _k8s_name(n) == name]
        kind = type_.rsplit(":", 1)[-1]
        if not found:
            problems.append(
                (
                    f"needs {kind} {name!r} in namespace {_namespace(node)!r}, "
                    "which no resource of its project creates",
                    f"Create the {kind} in the same project and make {node.name} depend on it; see {AWAIT_TABLE_URL}",
                )
            )
        elif not any(view.is_after(node, n) for n in found):
            problems.append(
                (
                    f"is not created after {kind} {name!r} ({found[0].name}) that its pods need",
                    f"Reference {found[0].name}'s metadata.name (or depends_on it); see {AWAIT_TABLE_URL}",
                )
            )
    return problems


def _image_problems(node: Node) -> list[Problem]:
    return [
        (
            f"runs image {c.get('image')!r} in container {c.get('name')!r}, which is not pinned to a digest",
            "Deploy the digest CI pushed (<repository>@sha256:<digest>, retail:image); a tag can move between the "
            "preview and the rollout",
        )
        for c in containers(node.resource)
        if not IMAGE_DIGEST.match(str(c.get("image", "")))
    ]


def _model_problems(view: DeploymentView, node: Node) -> list[Problem]:
    """The pods read the served bundle's own folder, and the manifest hash they are told to accept is the one the
    ServedModel published there."""
    served = _served_models(view, node)
    expected = {str(m.outputs.get("manifest_sha256")) for m in served if m.outputs.get("manifest_sha256")}
    folders = {str(m.outputs.get("model_uri")) for m in served if m.outputs.get("model_uri")}
    problems = []
    if folders and (uri := _model_uri(node)) not in folders:
        problems.append(
            (
                f"reads its model from {uri}, not from the folder the ServedModel published its bundle to "
                f"({', '.join(sorted(folders))}): a later publish may rewrite what it reads, or nothing is there",
                f"Set {MODEL_URI_ENV} (a batch job's --bundle) from the ServedModel's model_uri output",
            )
        )
    for container in containers(node.resource):
        sha = env_of(container).get(MODEL_SHA_ENV)
        if served and expected and sha not in expected:
            problems.append(
                (
                    f"tells container {container.get('name')!r} to accept model manifest {sha!r}, but the ServedModel "
                    f"publishes {', '.join(sorted(expected))}, so its pods never become ready",
                    f"Set {MODEL_SHA_ENV} from the ServedModel's manifest_sha256 output",
                )
            )
    return problems


def _service_problems(view: DeploymentView, service: Node) -> list[Problem]:
    spec = service.get("spec", default={}) or {}
    selector = spec.get("selector") or {}
    if not selector or spec.get("type") == "ExternalName" or spec.get("clusterIP") == "None":
        return []  # Pulumi waits only for the object itself (shouldWaitForPods in await/service.go)
    workloads = [
        w for w in _same_namespace(view, service, POD_WORKLOADS) if selects({"matchLabels": selector}, pod_labels(w))
    ]
    if not workloads:
        return [
            (
                f"selects pods labelled {dict(selector)} that no workload in namespace "
                f"{_namespace(service)!r} runs, so its Endpoints stay empty",
                f"Match the selector to a Deployment's pod template labels in the same project; see {AWAIT_TABLE_URL}",
            )
        ]
    problems = []
    for port in as_list(spec.get("ports")):
        target = port.get("targetPort")
        if isinstance(target, str) and not any(_has_port(w, target) for w in workloads):
            problems.append(
                (
                    f"targets port {target!r}, which no container of {', '.join(w.name for w in workloads)} names",
                    "Name the container port (ports[].name) as the Service's targetPort",
                )
            )
    return problems


def _has_port(workload: Node, name: str) -> bool:
    return any(p.get("name") == name for c in containers(workload.resource) for p in as_list(c.get("ports")))


def _ingress_problems(view: DeploymentView, ingress: Node) -> list[Problem]:
    problems = []
    if not ingress_class(ingress):
        problems.append(
            (
                "names no ingressClassName, so no controller is bound to write its load balancer status",
                "Set spec.ingressClassName to the controller's IngressClass (the controller component's ingress_class)",
            )
        )
    services = {_k8s_name(s) for s in _same_namespace(view, ingress, SERVICE)}
    backends = {
        path.get("backend", {}).get("service", {}).get("name")
        for rule in as_list(ingress.get("spec", "rules"))
        for path in as_list((rule.get("http") or {}).get("paths"))
    } | {ingress.get("spec", "defaultBackend", "service", "name")}
    for name in sorted(b for b in backends - {None} if b not in services):
        problems.append(
            (
                f"routes to Service {name!r}, which no resource of its project creates in namespace "
                f"{_namespace(ingress)!r}",
                "Create the Service in the same project and take its name from metadata.name",
            )
        )
    return problems


def _claim_problems(view: DeploymentView, claim: Node) -> list[Problem]:
    name = claim.get("spec", "storageClassName")
    classes = [c for c in view.of_type(STORAGE_CLASS, view.visible_runs(claim.run)) if _k8s_name(c) == name]
    if name and classes:
        return []
    what = f"StorageClass {name!r}" if name else "the cluster's default StorageClass"
    return [
        (
            f"needs {what}, which no project of the deployment creates, so it may never be Bound",
            "Create the StorageClass (and its CSI driver add-on) in the platform or the same project and name it in "
            f"spec.storageClassName; see {AWAIT_TABLE_URL}",
        )
    ]


# --- (c) CronJobs, which Pulumi does not await -------------------------------------------------------------------
def scheduled_findings(view: DeploymentView) -> list[Finding]:
    """Each CronJob's pods can be scheduled at all, find their references, run a pinned image, and read the served
    bundle's folder with its digest pinned."""
    findings = []
    for node in view.of_type(CRON_JOB):
        problems = [*_cron_node_problems(view, node), *_reference_problems(view, node), *_image_problems(node),
                    *_model_problems(view, node)]
        findings.extend(Finding(CHECK, node.name, f"{node.type} {message}", fix) for message, fix in problems)
    return findings


def _cron_node_problems(view: DeploymentView, node: Node) -> list[Problem]:
    selector, tolerations = _pod_placement(node)
    fit, _ = _fitting_groups(view, node, selector, tolerations)
    where = f"nodeSelector {dict(selector)}" if selector else "no nodeSelector"
    if not fit:
        return [
            (
                f"has pods ({where}) that fit no node group in its project or the projects it references, "
                "so every run stays Pending",
                "Point the nodeSelector at the batch node group's labels (the platform's batchNodeLabels output) "
                "and tolerate its taints (batchNodeTaints)",
            )
        ]
    if all(g.max_size < 1 for g in fit):
        names = ", ".join(g.node.name for g in fit)
        return [
            (
                f"has pods ({where}) that fit only node groups whose maxSize is 0 ({names}), so every run stays "
                "Pending",
                "Give the batch node group maxSize >= 1 (retail:cluster.batchNodes)",
            )
        ]
    if any(g.desired_size >= 1 for g in fit):
        return []
    untagged = [(g, missing) for g in fit if (missing := _missing_node_template_tags(view, g))]
    if len(untagged) < len(fit):
        return []
    return [
        (
            f"has pods ({where}) that fit only node groups starting at zero whose Auto Scaling groups lack the "
            f"node-template tags {', '.join(missing)} ({g.node.name}): Cluster Autoscaler cannot tell that a new "
            "node would fit them",
            f"Tag the node group's Auto Scaling group with {NODE_TEMPLATE_TAG}/label/<label>: <value> and "
            f"{NODE_TEMPLATE_TAG}/taint/<key>: <value>:<effect> (infra/cluster.py); see {CLUSTER_AUTOSCALER_DOCS}",
        )
        for g, missing in untagged
    ]


def _missing_node_template_tags(view: DeploymentView, group: NodeGroup) -> list[str]:
    """The node-template tags (label and taint) the group's Auto Scaling group should carry and does not.

    A tag counts as the group's when it was created from the group (its Auto Scaling group name came from it).
    """
    wanted = {f"{NODE_TEMPLATE_TAG}/label/{k}": v for k, v in group.labels.items()}
    wanted |= {f"{NODE_TEMPLATE_TAG}/taint/{key}": f"{value}:{effect}" for key, value, effect in group.taints}
    tags = [t for t in view.of_type(AUTOSCALING_TAG, [group.node.run]) if group.node.urn in view.before(t)]
    present = {(t.get("tag", "key"), t.get("tag", "value")) for t in tags}
    return [f"{k}: {v}" for k, v in sorted(wanted.items()) if (k, v) not in present]


AUTOSCALER_CHART = "cluster-autoscaler"
AUTOSCALER_VERSIONS = "https://github.com/kubernetes/autoscaler/tree/master/cluster-autoscaler#releases"


def autoscaler_version_findings(view: DeploymentView) -> list[Finding]:
    """Each Cluster Autoscaler release runs the cluster's Kubernetes minor version: the autoscaler is released per
    minor, and its README (Releases) recommends the release meant for the control plane's version, as releases are
    not tested across versions. The cluster and the release are in different stacks, each with its own setting."""
    findings = []
    for release in view.of_type(HELM_RELEASE):
        if release.get("chart") != AUTOSCALER_CHART:
            continue
        tag = str(release.get("values", "image", "tag", default=""))
        if not tag:
            findings.append(Finding(
                CHECK, release.name,
                f"{release.type} runs the chart's default image, whose version cannot be held to the cluster's here",
                f"Set the chart's image.tag (retail:addons.clusterAutoscalerVersion); see {AUTOSCALER_VERSIONS}"))
            continue
        minor = ".".join(tag.removeprefix("v").split(".")[:2])
        for cluster in view.of_type(EKS_COMPONENT, view.visible_runs(release.run)):
            version = str(cluster.get("version", default=""))
            if minor != version:
                findings.append(Finding(
                    CHECK, release.name,
                    f"{release.type} runs Cluster Autoscaler {tag} on a Kubernetes {version} cluster ({cluster.name})",
                    f"Run the autoscaler of the cluster's minor version: retail:addons.clusterAutoscalerVersion "
                    f"{version}.x with retail:cluster.version {version}, moved together; see {AUTOSCALER_VERSIONS}"))
    return findings


def graph_findings(runs: Sequence[OfflineRun]) -> list[Finding]:
    """The deploy-graph check over every run of a deployment: `ORDERS`, what awaited objects wait on, CronJobs, the
    autoscaler's version against the cluster's."""
    view = DeploymentView(runs)
    return [*order_findings(view), *awaited_findings(view), *scheduled_findings(view),
            *autoscaler_version_findings(view)]


def table_lines(orders: Sequence[Order] = ORDERS) -> list[str]:
    """The table as Markdown, for docs and reviews."""
    lines = ["| Dependent | After | Why | Documented at |", "|---|---|---|---|"]
    lines += [f"| {o.dependent} | {o.prerequisite} | {o.why} | {o.url} |" for o in orders]
    return lines
