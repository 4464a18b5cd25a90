"""The rules as pulumi-policy policies: the adapter the pack in `__main__.py` uses.

Importing this module does not start anything; only constructing `PolicyPack` (in
`__main__.py`) starts the analyzer server the Pulumi CLI talks to.
"""

from __future__ import annotations

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from policies.model import Enforcement, Resource, ResourceRule, Rule, StackRule

LEVELS = {
    Enforcement.advisory: EnforcementLevel.ADVISORY,
    Enforcement.mandatory: EnforcementLevel.MANDATORY,
    Enforcement.disabled: EnforcementLevel.DISABLED,
}


def from_validation_args(args: ResourceValidationArgs) -> Resource:
    return Resource(
        type=args.resource_type,
        name=args.name,
        props=args.props,
        urn=args.urn,
        provider_props=args.provider.props if args.provider else {},
    )


def from_policy_resource(resource: PolicyResource) -> Resource:
    return Resource(
        type=resource.resource_type,
        name=resource.name,
        props=resource.props,
        urn=resource.urn,
        provider_props=resource.provider.props if resource.provider else {},
        dependencies={key: [d.urn for d in deps] for key, deps in resource.property_dependencies.items()},
    )


def resource_policy(rule: ResourceRule) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        resource = from_validation_args(args)
        if rule.applies_to(resource):
            for message in rule.judge(resource, args.get_config()):
                report_violation(f"{args.name} ({args.resource_type}) {message}. Fix: {rule.description}", None)

    schema = PolicyConfigSchema(properties={k: dict(v) for k, v in rule.config_schema.items()}) \
        if rule.config_schema else None
    return ResourceValidationPolicy(rule.name, rule.description, validate, LEVELS[rule.enforcement],
                                    config_schema=schema)


def stack_policy(rule: StackRule) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        resources = [from_policy_resource(r) for r in args.resources]
        if not rule.applies_to_stack(resources):
            return
        urns = {r.name: r.urn for r in resources}
        for name, message in rule.check(resources):
            subject = f"{name} {message}" if name else message.capitalize()
            report_violation(f"{subject}. Fix: {rule.description}", urns.get(name))

    return StackValidationPolicy(rule.name, rule.description, validate, LEVELS[rule.enforcement])


def to_policy(rule: Rule) -> ResourceValidationPolicy | StackValidationPolicy:
    return resource_policy(rule) if isinstance(rule, ResourceRule) else stack_policy(rule)
