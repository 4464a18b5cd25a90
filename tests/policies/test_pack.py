"""The pulumi-policy adapter: the same rules, fed by ResourceValidationArgs and StackValidationArgs."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import grpc
from google.protobuf import empty_pb2
from pulumi.runtime.proto import analyzer_pb2_grpc
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from policies.catalog import BY_NAME, RULES
from policies.pack import to_policy
from tests.policies.cases import CASES, TAGS

OPTS = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])
PACK_DIR = Path(__file__).resolve().parents[2] / "policies"


def validation_args(resource, provider_props=None) -> ResourceValidationArgs:
    provider = (
        PolicyProviderResource("pulumi:providers:aws", provider_props, "urn:provider", "aws")
        if provider_props
        else None
    )
    return ResourceValidationArgs(resource.type, resource.props, resource.urn or "urn:x", resource.name, OPTS, provider)


def policy_resource(resource, by_urn: dict) -> PolicyResource:
    deps = {key: [by_urn[u] for u in urns] for key, urns in resource.dependencies.items()}
    return PolicyResource(resource.type, resource.props, resource.urn, resource.name, OPTS, None, None, [], deps)


def report(policy, args) -> list[str]:
    messages: list[str] = []
    policy.validate(args, lambda message, urn=None: messages.append(message))
    return messages


def test_every_rule_becomes_a_policy_with_its_name_description_and_level():
    policies = [to_policy(rule) for rule in RULES]
    assert [p.name for p in policies] == [r.name for r in RULES]
    assert all(p.description == r.description for p, r in zip(policies, RULES, strict=True))
    assert [p.enforcement_level for p in policies] == [
        EnforcementLevel.ADVISORY if r.enforcement.value == "advisory" else EnforcementLevel.MANDATORY for r in RULES
    ]


def test_resource_policy_reports_the_resource_the_problem_and_the_fix():
    _, bad = CASES["ecr-scan-on-push"]
    policy = to_policy(BY_NAME["ecr-scan-on-push"])
    assert isinstance(policy, ResourceValidationPolicy)
    (message,) = report(policy, validation_args(bad))
    assert message.startswith("subject (aws:ecr/repository:Repository) does not scan images on push")
    assert "Fix: Scan images on push" in message


def test_resource_policy_is_silent_for_a_compliant_resource():
    good, _ = CASES["ecr-scan-on-push"]
    assert report(to_policy(BY_NAME["ecr-scan-on-push"]), validation_args(good)) == []


def test_resource_policy_ignores_other_types():
    good, _ = CASES["kms-key-rotation"]
    assert report(to_policy(BY_NAME["ecr-scan-on-push"]), validation_args(good)) == []


def test_required_tags_are_read_from_the_providers_default_tags():
    bucket, _ = CASES["aws-required-tags"]
    policy = to_policy(BY_NAME["aws-required-tags"])
    assert report(policy, validation_args(bucket, {"defaultTags": {"tags": TAGS}})) == []
    assert report(policy, validation_args(bucket, {"region": "ap-southeast-1"}))


def test_stack_policy_joins_settings_to_buckets_through_property_dependencies():
    policy = to_policy(BY_NAME["s3-bucket-encrypted"])
    assert isinstance(policy, StackValidationPolicy)
    good, bad = CASES["s3-bucket-encrypted"]
    for stack, expected in ((good, 0), (bad, 1)):
        by_urn: dict = {}
        for resource in stack:
            by_urn[resource.urn or resource.name] = policy_resource(resource, by_urn)
        args = StackValidationArgs(list(by_urn.values()), {})
        assert len(report(policy, args)) == expected


def test_the_pack_entry_point_only_wires_rules_into_one_policy_pack():
    tree = ast.parse((PACK_DIR / "__main__.py").read_text())
    calls = [n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    assert calls.count("PolicyPack") == 1
    assert not any(isinstance(n, ast.FunctionDef) for n in ast.walk(tree)), "rules belong in policies/rules"


def test_the_pack_starts_as_the_cli_starts_it_and_serves_every_rule():
    """The CLI's analyzer plugin runs `<virtualenv>/bin/python -u -m pulumi.policy <engine> <pack folder>` in the pack's
    folder: the pack imports the project's packages from the environment (the project is installed in it), with no
    path of its own added, prints its port and answers GetAnalyzerInfo with every rule of the registry."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PULUMI_CONFIG")}
    with subprocess.Popen([sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:1", str(PACK_DIR)], cwd=PACK_DIR,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as pack:
        try:
            port = pack.stdout.readline().strip()
            assert port.isdigit(), pack.stderr.read() if pack.poll() is not None else port
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                info = analyzer_pb2_grpc.AnalyzerStub(channel).GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
        finally:
            pack.kill()
    assert info.name == "retail-mlops"
    assert sorted(policy.name for policy in info.policies) == sorted(rule.name for rule in RULES)


def test_the_pack_declares_a_python_runtime_in_the_projects_virtualenv():
    text = (PACK_DIR / "PulumiPolicy.yaml").read_text()
    assert "name: python" in text and "virtualenv: ../.venv" in text


def test_stack_policy_skips_a_stack_of_another_project():
    policy = to_policy(BY_NAME["stack-has-budget"])
    service = PolicyResource(
        "kubernetes:core/v1:Namespace",
        {},
        "urn:pulumi:dev::retail-mlops-service::kubernetes:core/v1:Namespace::ns",
        "ns",
        OPTS,
        None,
        None,
        [],
        {},
    )
    platform = PolicyResource(
        "aws:kms/key:Key", {}, "urn:pulumi:dev::retail-mlops::aws:kms/key:Key::key", "key", OPTS, None, None, [], {}
    )
    assert report(policy, StackValidationArgs([service], {})) == []
    assert len(report(policy, StackValidationArgs([platform], {}))) == 1
