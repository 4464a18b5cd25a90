"""The stack's estimated monthly cost against its AWS Budget, priced by infra/cost.py.

Judges the platform project, which holds the budget. CrossGuard shows a policy one stack
at a time, so the estimate here covers the platform's own resources (EKS, nodes, NAT,
endpoints, logs, keys, storage), not the service's load balancer or the training jobs:
`retail infra cost --stack <stack>` itemises all three projects. The assumptions are the
stack's `retail:cost` config, read from the platform's `Pulumi.<stack>.yaml`.
"""

from __future__ import annotations

from collections.abc import Sequence

from infra.config import PLATFORM_PROJECT
from infra.cost import Billable, Budget, Estimate, estimate, monthly_budget, stack_assumptions
from policies.model import Resource, StackRule

AWS_PROVIDER = "pulumi:providers:aws"


def within_budget(resources: Sequence[Resource]) -> list[tuple[str, str]]:
    """The priced lines alone over the budget, under the stack's cost assumptions: unpriced lines only add to them."""
    priced = _priced(resources)
    if isinstance(priced, list):
        return priced
    budget, cost = priced
    if cost.total_usd > budget.usd:
        return [(budget.name, f"is exceeded: the stack's resources are estimated at ${cost.total_usd:,.2f} a month "
                              f"against ${budget.usd:,.2f}")]
    return []


def fully_priced(resources: Sequence[Resource]) -> list[tuple[str, str]]:
    """Resources without a price: within_budget's total leaves them out, so it can pass a stack that is over."""
    priced = _priced(resources)
    if isinstance(priced, list):
        return []  # within_budget reports a stack that cannot be priced at all
    budget, cost = priced
    if not cost.unpriced:
        return []
    items = "; ".join(f"{line.item} ({line.price_key})" for line in cost.unpriced)
    return [(budget.name, f"cannot be checked in full: no price for {items}")]


def _priced(resources: Sequence[Resource]) -> tuple[Budget, Estimate] | list[tuple[str, str]]:
    """The stack's budget and estimate, or the problems that stop the estimate (none when there is no budget)."""
    billable = [Billable(r.type, r.name, r.props) for r in resources]
    budget = monthly_budget(billable)
    if budget is None:
        return []  # no budget to compare with: stack-has-budget reports that
    region = _region(resources)
    if region is None:
        return [("", "has no AWS provider region to price its resources in")]
    try:
        return budget, estimate(billable, region, stack_assumptions(_stack(resources)))
    except FileNotFoundError as error:
        return [("", f"cannot be priced: {error}")]


def _region(resources: Sequence[Resource]) -> str | None:
    """The AWS region the resources' provider names (or an AWS provider resource among them)."""
    for resource in resources:
        region = resource.provider_props.get("region") or (resource.type == AWS_PROVIDER and resource.get("region"))
        if region:
            return str(region)
    return None


def _stack(resources: Sequence[Resource]) -> str:
    """The stack in the resources' URNs (`urn:pulumi:<stack>::...`); empty for hand-made resources."""
    prefix = "urn:pulumi:"
    return next((r.urn[len(prefix):].split("::")[0] for r in resources if r.urn.startswith(prefix)), "")


RULES = [
    StackRule(
        "stack-within-budget",
        "Keep the estimated monthly cost (retail infra cost) within the AWS Budget: shrink what costs most, or raise "
        "retail:observability.monthlyBudgetUsd where the budget, not the stack, is wrong.",
        within_budget,
        projects=frozenset({PLATFORM_PROJECT}),
    ),
    StackRule(
        "stack-fully-priced",
        "Price every resource the estimate meets: add what is missing to infra/data/prices/<region>.json, with its "
        "date and source (infra/data/prices/README.md).",
        fully_priced,
        projects=frozenset({PLATFORM_PROJECT}),
    ),
]
