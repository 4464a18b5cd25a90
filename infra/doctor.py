"""`retail infra doctor --stack S`: preflight checks, run before anything of the stack is created.

The stack's deployment is read from its offline preview (`infra.preflight.plan_from_runs`),
then checked against the AWS account (`infra.aws_checks`) and this machine's Pulumi set-up
(`infra.pulumi_checks`). A check that needs what an earlier one could not establish (the
stack's config, working credentials) is reported as unknown, not run; a failure names its
fix. The AWS clients use the credentials the stack's provider would (`aws:profile`,
`aws:assumeRoles`: `infra.stack_credentials`); `run_doctor` also takes a boto3 client
factory, so tests point it at moto.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from infra import aws_checks, pulumi_checks, stack_credentials
from infra.config import read_stack_file
from infra.preflight import (
    AWS_ERRORS,
    CheckResult,
    ClientFactory,
    Context,
    DeploymentPlan,
    Status,
    Verdict,
    error_text,
    fail,
    ok,
    plan_from_runs,
    unknown,
)

CONFIG_CHECK = "stack config"
CREDENTIALS_CHECK = "credentials"


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[Context], Verdict]
    needs_plan: bool = True
    needs_aws: bool = True


CHECKS = (
    Check(CREDENTIALS_CHECK, aws_checks.credentials, needs_plan=False),
    Check("region", aws_checks.region, needs_plan=False),
    Check("availability zones", aws_checks.availability_zones),
    Check("instance types", aws_checks.instance_offerings),
    Check("eks", aws_checks.eks, needs_plan=False),
    Check("eks version", aws_checks.eks_version),
    Check("sagemaker", aws_checks.sagemaker, needs_plan=False),
    Check("quota: vpcs", aws_checks.vpc_quota),
    Check("quota: elastic ips", aws_checks.elastic_ip_quota),
    Check("quota: cloudtrail trails", aws_checks.trail_quota),
    Check("quota: spot vcpus", aws_checks.spot_vcpu_quota),
    Check("quota: on-demand vcpus", aws_checks.on_demand_vcpu_quota),
    Check("quota: sagemaker training", aws_checks.sagemaker_training_quota),
    Check("permissions", aws_checks.permissions),
    Check("pulumi cli", pulumi_checks.cli, needs_plan=False, needs_aws=False),
    Check("pulumi plugins", pulumi_checks.plugins, needs_aws=False),
    Check("pulumi backend", pulumi_checks.backend, needs_plan=False, needs_aws=False),
    Check("secrets provider", pulumi_checks.secrets_provider, needs_plan=False, needs_aws=False),
)


def deployment_plan(stack: str, project_dir: Path) -> DeploymentPlan:
    """The plan of `stack` from the offline runs of the platform, service and training programs."""
    from infra.offline import preview_deployment

    region = read_stack_file(project_dir, stack).config["aws:region"]
    return plan_from_runs(stack, region, preview_deployment(stack, project_dir))


def run_doctor(
    stack: str,
    project_dir: Path,
    aws: ClientFactory | None,
    env: Mapping[str, str],
    load_plan: Callable[[str, Path], DeploymentPlan] | None = None,
    checks: tuple[Check, ...] = CHECKS,
) -> list[CheckResult]:
    """Every check's result, in order, the stack's config first. FileNotFoundError without Pulumi.<stack>.yaml.

    `aws` defaults to clients with the stack's own credentials (`stack_credentials.stack_clients`);
    `load_plan` to `deployment_plan` (the offline preview of every project).
    """
    stack_file = read_stack_file(project_dir, stack)
    config = stack_file.config
    aws = aws or stack_credentials.stack_clients(config, stack_file.secret_keys)
    try:
        plan: DeploymentPlan | None = (load_plan or deployment_plan)(stack, project_dir)
        loaded = ok(f"Pulumi.{stack}.yaml loads; its deployment registers {sum(plan.counts.values())} resources")
    except ValueError as error:
        plan, loaded = None, fail(str(error), f"correct Pulumi.{stack}.yaml (`retail infra check --stack {stack}` "
                                              "names the key)")
    ctx = Context(stack, project_dir, plan.region if plan else config["aws:region"], config, plan, aws, dict(env))
    results = [CheckResult(CONFIG_CHECK, loaded.status, loaded.detail, loaded.fix)]
    aws_works = True
    for check in checks:
        verdict = _run(check, ctx, aws_works)
        aws_works = aws_works and not (check.name == CREDENTIALS_CHECK and verdict.status == Status.FAIL)
        results.append(CheckResult(check.name, verdict.status, verdict.detail, verdict.fix))
    return results


def _run(check: Check, ctx: Context, aws_works: bool) -> Verdict:
    if check.needs_plan and ctx.plan is None:
        return unknown(f"not run: the stack's config did not load (see '{CONFIG_CHECK}')")
    if check.needs_aws and not aws_works:
        return unknown(f"not run: no working AWS credentials (see '{CREDENTIALS_CHECK}')")
    try:
        return check.run(ctx)
    except AWS_ERRORS as error:
        return unknown(f"AWS did not answer: {error_text(error)}")


def failed(results: list[CheckResult], strict: bool = False) -> bool:
    """A check failed (or, with `strict`, could not be evaluated)."""
    bad = {Status.FAIL, Status.UNKNOWN} if strict else {Status.FAIL}
    return any(result.status in bad for result in results)
