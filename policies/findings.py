"""Findings of the deployment-wide checks: the deploy graph and the contracts with AWS and Kubernetes.

Policy rules judge one project's resources, as CrossGuard does during `pulumi preview`.
The checks here need what no single stack shows: both projects at once (an Ingress in
the service stack needs the controller, a platform alarm needs a producer in the
service stack), the documents rendered for AWS linted by independent tools, and the
requests the CLI would send checked against AWS's own service models. Each check
returns `Finding`s; `retail infra check` fails on any finding that is not waived.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    check: str
    """Which check found it, e.g. `deploy-graph`, `parliament`, `checkov`, `documented-permissions`."""
    subject: str
    """The resource (logical name), document or file it is about."""
    message: str
    """What is wrong, in one sentence."""
    fix: str
    """What to change, or where the rule comes from."""
    waived: str = ""
    """The reason from policies/waivers.yaml when the finding is accepted; empty when it counts."""

    @property
    def blocking(self) -> bool:
        return not self.waived
