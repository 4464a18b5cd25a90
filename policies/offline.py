"""The offline check: the stack's resources as the mock runtime recorded them, judged by the pack's rules."""

from __future__ import annotations

from pathlib import Path

from infra.offline import OfflineRun, RegisteredResource, preview_stack
from policies.catalog import RULES
from policies.enforcement import CONFIG_DIR, load_levels
from policies.evaluate import evaluate
from policies.model import Resource, Violation


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


def check_run(run: OfflineRun, config_dir: Path = CONFIG_DIR) -> list[Violation]:
    return evaluate(RULES, resources_of(run), load_levels(RULES, run.stack, config_dir))


def check_stack(stack: str, project_dir: Path | None = None, config_dir: Path = CONFIG_DIR) -> list[Violation]:
    """Run the stack's program under the mocks and check every rule against what it registered."""
    return check_run(preview_stack(stack, project_dir), config_dir)
