"""IAM policy documents as JSON outputs, so tests and policy checks can parse them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi

Statement = dict[str, Any]


def policy_document(statements: Sequence[Statement]) -> pulumi.Output[str]:
    """A policy document whose statements may hold Outputs (ARNs of other resources)."""
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": list(statements)})


def service_trust_policy(service: str, account_id: pulumi.Input[str]) -> pulumi.Output[str]:
    """Trust `service` (e.g. sagemaker.amazonaws.com) when acting for this account only."""
    return policy_document(
        [
            {
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
            }
        ]
    )


def ec2_trust_policy() -> pulumi.Output[str]:
    """Trust EC2 instances (EKS worker nodes)."""
    return policy_document(
        [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ]
    )


def irsa_trust_policy(
    oidc_provider_arn: pulumi.Input[str],
    oidc_issuer: pulumi.Input[str],
    namespace: str,
    service_account: str,
) -> pulumi.Output[str]:
    """Trust exactly one Kubernetes service account through the cluster's OIDC provider.

    `oidc_issuer` is the issuer host and path without scheme, as pulumi-eks outputs it.
    """
    subject = f"system:serviceaccount:{namespace}:{service_account}"
    condition = pulumi.Output.from_input(oidc_issuer).apply(
        lambda issuer: {"StringEquals": {f"{issuer}:sub": subject, f"{issuer}:aud": "sts.amazonaws.com"}}
    )
    return policy_document(
        [
            {
                "Effect": "Allow",
                "Principal": {"Federated": oidc_provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": condition,
            }
        ]
    )
