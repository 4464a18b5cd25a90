"""The plain data every rule works on, so the policy pack and the offline check share them.

A rule never sees pulumi-policy's argument objects or the offline recorder's records:
each side has a thin adapter (`policies/pack.py`, `policies/offline.py`) that turns its
own view of a resource into a `Resource`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Enforcement(StrEnum):
    """pulumi-policy's enforcement levels, by the names its policy config files use."""

    advisory = "advisory"
    mandatory = "mandatory"
    disabled = "disabled"


@dataclass(frozen=True)
class Resource:
    """One resource as a rule sees it."""

    type: str
    name: str
    props: Mapping[str, Any]
    """The resource's inputs (pulumi-policy's `props`)."""
    urn: str = ""
    provider_props: Mapping[str, Any] = field(default_factory=dict)
    """Inputs of the provider the resource is created with (e.g. the AWS provider's default tags)."""
    dependencies: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """Input name -> URNs of the resources that input's value came from."""

    def get(self, *path: str, default: Any = None) -> Any:
        """The prop at `path` (`get("vpcConfig", "endpointPublicAccess")`), or `default`."""
        value: Any = self.props
        for key in path:
            if not isinstance(value, Mapping) or key not in value:
                return default
            value = value[key]
        return default if value is None else value

    def depends_on(self, prop: str, target: Resource) -> bool:
        """True if input `prop` was computed from `target`, or names it by its physical name (its `bucket` or `name`
        input, or its logical name)."""
        if target.urn and target.urn in self.dependencies.get(prop, ()):
            return True
        value = self.props.get(prop)
        return isinstance(value, str) and value in {target.props.get("bucket"), target.props.get("name"), target.name}


def project_of(urn: str) -> str | None:
    """The project in `urn:pulumi:<stack>::<project>::<type>::<name>`, or None if `urn` is not a URN."""
    parts = urn.split("::")
    return parts[1] if len(parts) >= 4 and parts[0].startswith("urn:pulumi:") else None


def stack_project(resources: Sequence[Resource]) -> str | None:
    """The project the resources were registered in (from the first resource with a URN)."""
    return next((p for p in (project_of(r.urn) for r in resources) if p), None)


ResourceCheck = Callable[[Resource], list[str]]
"""Returns one message per problem found; an empty list means compliant."""
ConfiguredCheck = Callable[[Resource, Mapping[str, Any]], list[str]]
"""A resource check that also takes the rule's settings (`ResourceRule.config_schema`)."""
StackCheck = Callable[[Sequence[Resource]], list[tuple[str, str]]]
"""Returns (resource name, message) per problem; the name is empty for whole-stack problems."""


@dataclass(frozen=True)
class ResourceRule:
    name: str
    description: str
    """One line: what a user should change."""
    types: frozenset[str]
    check: ResourceCheck | ConfiguredCheck
    enforcement: Enforcement = Enforcement.mandatory
    config_schema: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """JSON-schema properties of the rule's own settings in the policy config file, each with a `default`.
    A rule with settings has a `ConfiguredCheck`: it is called with the resource and its settings."""

    def applies_to(self, resource: Resource) -> bool:
        return resource.type in self.types

    def settings(self, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The schema's defaults overridden by the configured values (pulumi-policy's `get_config()`)."""
        given = config or {}
        return {key: given.get(key, schema.get("default")) for key, schema in self.config_schema.items()}

    def judge(self, resource: Resource, config: Mapping[str, Any] | None = None) -> list[str]:
        """The check's messages for `resource`, with the rule's settings when it has any."""
        if self.config_schema:
            return self.check(resource, self.settings(config))  # type: ignore[call-arg]
        return self.check(resource)


@dataclass(frozen=True)
class StackRule:
    name: str
    description: str
    check: StackCheck
    enforcement: Enforcement = Enforcement.mandatory
    projects: frozenset[str] | None = None
    """The Pulumi projects the rule judges (e.g. only the platform has a budget); None: every project."""

    def applies_to_stack(self, resources: Sequence[Resource]) -> bool:
        """True unless the resources' URNs name a project outside `projects`.

        A stack whose resources carry no URN (a hand-made example) is judged: a rule is
        never skipped for want of knowing where it runs.
        """
        if self.projects is None:
            return True
        project = stack_project(resources)
        return project is None or project in self.projects


Rule = ResourceRule | StackRule


@dataclass(frozen=True)
class Violation:
    rule: str
    enforcement: Enforcement
    resource: str
    """The resource's name; empty for a problem of the whole stack."""
    resource_type: str
    message: str
    fix: str


def as_json(value: Any) -> Any:
    """A policy document or provider setting that may arrive as a JSON string or as data."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def as_list(value: Any) -> list[Any]:
    """IAM-style fields are a scalar or a list; always give a list."""
    if value is None:
        return []
    if isinstance(value, Sequence) and not isinstance(value, str):
        return list(value)  # also pulumi-policy's read-only list proxies
    return [value]
