"""Run rules over plain resources: what the offline check does with the whole stack at once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from policies.model import Enforcement, Resource, ResourceRule, Rule, StackRule, Violation


def evaluate(
    rules: Sequence[Rule],
    resources: Sequence[Resource],
    levels: Mapping[str, Enforcement],
    settings: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Violation]:
    """Every violation of every enabled rule: resource rules per resource, stack rules on the whole set.

    A stack rule scoped to other projects (`StackRule.projects`) is skipped, as the pack skips it.
    `settings` holds each configurable rule's configured values (`policies.enforcement.load_settings`);
    a rule without an entry runs with its schema's defaults.
    """
    settings = settings or {}
    by_name = {r.name: r for r in resources}
    violations = []
    for rule in rules:
        level = levels.get(rule.name, rule.enforcement)
        if level is Enforcement.disabled:
            continue
        if isinstance(rule, ResourceRule):
            found = [(r.name, message) for r in resources if rule.applies_to(r)
                     for message in rule.judge(r, settings.get(rule.name))]
        elif isinstance(rule, StackRule):
            found = rule.check(resources) if rule.applies_to_stack(resources) else []
        else:
            raise TypeError(f"{rule!r} is neither a ResourceRule nor a StackRule")
        for name, message in found:
            type_ = by_name[name].type if name in by_name else ""
            violations.append(Violation(rule.name, level, name, type_, message, rule.description))
    return violations


def mandatory(violations: Sequence[Violation]) -> list[Violation]:
    return [v for v in violations if v.enforcement is Enforcement.mandatory]
