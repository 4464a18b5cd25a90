"""The offline check of one project: its resources as the mock runtime recorded them, judged by the pack's rules.

`policies.report.check_deployment` does this for every project of a stack, each on its
own, as CrossGuard judges each stack during its `pulumi preview`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from infra.offline import OfflineRun, RegisteredResource
from policies.catalog import RULES
from policies.evaluate import evaluate
from policies.model import Enforcement, Resource, Violation


def resources_of(run: OfflineRun) -> list[Resource]:
    """Each recorded resource as a rule sees it, with its provider's inputs attached."""
    providers = {r.urn: r for r in run.resources if r.type.startswith("pulumi:providers:")}
    return [_resource(record, providers) for record in run.resources]


def _resource(record: RegisteredResource, providers: dict[str, RegisteredResource]) -> Resource:
    provider_urn = record.provider.rsplit("::", 1)[0] if record.provider else ""
    provider = providers.get(provider_urn)
    return Resource(
        type=record.type,
        name=record.name,
        props=record.inputs,
        urn=record.urn,
        provider_props=provider.inputs if provider else {},
        dependencies=record.property_dependencies,
    )


def check_run(
    run: OfflineRun, levels: Mapping[str, Enforcement], settings: Mapping[str, Mapping[str, Any]] | None = None
) -> list[Violation]:
    """Every violation of the pack's rules in one run (one project), at the given levels and rule settings."""
    return evaluate(RULES, resources_of(run), levels, settings)
