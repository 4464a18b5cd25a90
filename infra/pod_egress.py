"""Where the platform's pods may connect to: the egress rules the inference Deployment and the batch CronJobs share.

DNS (kube-dns in kube-system, UDP and TCP), HTTPS inside the VPC (its interface endpoints:
STS for IRSA, KMS, ECR, CloudWatch Logs) and HTTPS to S3's address ranges (the gateway endpoint).
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.meta.v1 import LabelSelectorArgs

DNS_PORT = 53
HTTPS_PORT = 443


def ip_blocks(cidrs: pulumi.Input[Sequence[str]]) -> pulumi.Output[list[dict]]:
    """NetworkPolicy peers, one ipBlock per CIDR."""
    return pulumi.Output.from_input(cidrs).apply(lambda values: [{"ipBlock": {"cidr": cidr}} for cidr in values])


def private_egress(
    vpc_cidr: pulumi.Input[str], s3_cidrs: pulumi.Input[Sequence[str]]
) -> list[k8s.networking.v1.NetworkPolicyEgressRuleArgs]:
    """DNS, HTTPS within the VPC and HTTPS to S3, nothing else."""
    https = [k8s.networking.v1.NetworkPolicyPortArgs(protocol="TCP", port=HTTPS_PORT)]
    return [
        k8s.networking.v1.NetworkPolicyEgressRuleArgs(
            to=[
                k8s.networking.v1.NetworkPolicyPeerArgs(
                    namespace_selector=LabelSelectorArgs(match_labels={"kubernetes.io/metadata.name": "kube-system"}),
                    pod_selector=LabelSelectorArgs(match_labels={"k8s-app": "kube-dns"}),
                )
            ],
            ports=[k8s.networking.v1.NetworkPolicyPortArgs(protocol=protocol, port=DNS_PORT)
                   for protocol in ("UDP", "TCP")],
        ),
        k8s.networking.v1.NetworkPolicyEgressRuleArgs(
            to=[k8s.networking.v1.NetworkPolicyPeerArgs(ip_block={"cidr": vpc_cidr})], ports=https
        ),
        k8s.networking.v1.NetworkPolicyEgressRuleArgs(to=ip_blocks(s3_cidrs), ports=https),
    ]
