"""EKS control plane and ECR repositories.

EKS rules read both the pulumi-eks component's inputs (`eks:index:Cluster`, what the
offline run sees) and the `aws:eks/cluster:Cluster` its plugin creates (what a real
`pulumi preview` also sends to the pack), so either view is enough to catch a problem.
"""

from __future__ import annotations

from policies.model import Resource, ResourceRule, as_list

EKS_COMPONENT = "eks:index:Cluster"
EKS_CLUSTER = "aws:eks/cluster:Cluster"
EKS_TYPES = frozenset({EKS_COMPONENT, EKS_CLUSTER})
ECR_REPOSITORY = "aws:ecr/repository:Repository"
WORLD = {"0.0.0.0/0", "::/0"}
REQUIRED_LOG_TYPES = ("api", "audit", "authenticator")


def endpoint_not_open_to_world(resource: Resource) -> list[str]:
    if resource.type == EKS_COMPONENT:
        public, cidrs = resource.get("endpointPublicAccess", default=True), resource.get("publicAccessCidrs")
    else:
        public = resource.get("vpcConfig", "endpointPublicAccess", default=True)
        cidrs = resource.get("vpcConfig", "publicAccessCidrs")
    if not public:
        return []
    if not cidrs:
        return ["has a public API endpoint with no CIDR allow-list (AWS then allows 0.0.0.0/0)"]
    open_ = sorted(WORLD & set(cidrs))
    return [f"allows the public API endpoint from {', '.join(open_)}"] if open_ else []


def secrets_encrypted(resource: Resource) -> list[str]:
    if resource.type == EKS_COMPONENT:
        return [] if resource.get("encryptionConfigKeyArn") else ["does not encrypt Kubernetes secrets with KMS"]
    configs = as_list(resource.get("encryptionConfig"))
    covered = any("secrets" in as_list(c.get("resources")) and (c.get("provider") or {}).get("keyArn") for c in configs)
    return [] if covered else ["does not encrypt Kubernetes secrets with KMS"]


def control_plane_logs(resource: Resource) -> list[str]:
    enabled = set(as_list(resource.get("enabledClusterLogTypes")))
    missing = [t for t in REQUIRED_LOG_TYPES if t not in enabled]
    return [f"does not ship control-plane logs: {', '.join(missing)}"] if missing else []


def scan_on_push(resource: Resource) -> list[str]:
    scanning = resource.get("imageScanningConfiguration", "scanOnPush")
    return [] if scanning is True else ["does not scan images on push"]


def immutable_tags(resource: Resource) -> list[str]:
    mutability = resource.get("imageTagMutability", default="MUTABLE")
    return [] if mutability.startswith("IMMUTABLE") else ["lets a pushed tag be overwritten"]


def ecr_kms(resource: Resource) -> list[str]:
    configs = as_list(resource.get("encryptionConfigurations"))
    ok = any(c.get("encryptionType") in {"KMS", "KMS_DSSE"} and c.get("kmsKey") for c in configs)
    return [] if ok else ["does not encrypt images with the platform's KMS key"]


RULES = [
    ResourceRule(
        "eks-endpoint-not-public",
        "Keep the EKS API endpoint private or list trusted CIDRs in retail:cluster.publicAccessCidrs, never 0.0.0.0/0.",
        EKS_TYPES,
        endpoint_not_open_to_world,
    ),
    ResourceRule(
        "eks-secrets-encryption",
        "Encrypt Kubernetes secrets with a KMS key (pulumi-eks encryption_config_key_arn=...).",
        EKS_TYPES,
        secrets_encrypted,
    ),
    ResourceRule(
        "eks-control-plane-logs",
        "Enable the api, audit and authenticator control-plane log types (enabled_cluster_log_types=[...]).",
        EKS_TYPES,
        control_plane_logs,
    ),
    ResourceRule(
        "ecr-scan-on-push",
        "Scan images on push (image_scanning_configuration={'scan_on_push': True}).",
        frozenset({ECR_REPOSITORY}),
        scan_on_push,
    ),
    ResourceRule(
        "ecr-immutable-tags",
        "Make image tags immutable (image_tag_mutability='IMMUTABLE'); deploy new versions under new tags.",
        frozenset({ECR_REPOSITORY}),
        immutable_tags,
    ),
    ResourceRule(
        "ecr-kms-encryption",
        "Encrypt the repository with the platform's KMS key (encryption_type='KMS', kms_key=...).",
        frozenset({ECR_REPOSITORY}),
        ecr_kms,
    ),
]
