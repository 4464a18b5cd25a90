"""`retail infra ...`: the AWS platform's commands.

`preview` and `check` run both Pulumi projects offline under Pulumi's mock runtime (no
cloud account, no Pulumi CLI); `preview --live`, `up`, `destroy` and `ephemeral` drive
the Pulumi CLI through the Automation API (`infra/automation.py`).
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.extras import require_extras
from cli.infra_cost import cost
from cli.infra_doctor import doctor
from cli.infra_options import CheckedStack, ImageOption, ModelGroupOption, ModelOption, ProjectDir, Stack

if TYPE_CHECKING:  # the Pulumi side loads when a command runs, not with `retail --help` (tests/test_cli_startup.py)
    from infra import automation
    from infra.automation import Release, Runners
    from infra.offline import OfflineRun, RegisteredResource

app = typer.Typer(no_args_is_help=True, add_completion=False)


def _require(command: str) -> None:
    from infra.automation import PulumiCliMissing, require_cli

    try:
        require_cli(command)
    except PulumiCliMissing as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None


def release_resolver(
    project_dir: Path, image: str | None, model_package: str | None, model_group: str | None
) -> automation.ReleaseResolver:
    """Resolves the release against a platform stack's outputs with the real AWS clients, Docker and local registry."""
    from infra.release import ReleaseRequest, resolve_release

    request = ReleaseRequest(image=image, model_package_arn=model_package, model_group=model_group)

    def resolve(platform: Mapping[str, Any]) -> Release:
        import boto3

        from infra.images import ensure_image

        region = platform["region"]

        def build(repository: str, tag: str) -> str:
            return ensure_image(repository, tag, project_dir / "Dockerfile", project_dir, region)

        return resolve_release(
            platform,
            request,
            project_dir=project_dir,
            sagemaker=boto3.client("sagemaker", region_name=region),
            s3=boto3.client("s3", region_name=region),
            build_image=build,
            champion=local_champion,
            echo=typer.echo,
        )

    return resolve


def local_champion() -> Path | None:
    """The local registry's champion bundle (after `make demo` or `retail pipeline run`), if there is one."""
    from ml.registry import Registry
    from ml.settings import Settings

    try:
        return Registry(Settings()).download()
    except LookupError:
        return None


@app.command()
def preview(
    stack: Annotated[CheckedStack, typer.Option(help="Which Pulumi.<stack>.yaml (both projects) to use.")],
    project_dir: ProjectDir = None,
    live: Annotated[
        bool,
        typer.Option("--live", help="Run the real `pulumi preview` with the policy pack (needs the Pulumi CLI, AWS)."),
    ] = False,
) -> None:
    """Run both Pulumi programs offline under Pulumi's mock runtime and print their resources.

    Needs neither AWS credentials nor the Pulumi CLI: provider results (ids, ARNs, zones,
    account) come from infra/mocks.py, secrets and the deploy-time release are
    placeholders. With --live, runs `pulumi preview --policy-pack policies` for the
    platform, and for the service with the release it runs now.
    """
    require_extras("retail infra preview", "infra")
    from infra import automation
    from infra.offline import find_project_dir, preview_service, preview_stack

    directory = project_dir or find_project_dir()
    if live:
        _require("retail infra preview --live")
        with automation.project_runners(directory, echo=typer.echo) as runners:
            release = automation.current_release(runners.service, stack.value)
            if release is None:
                typer.echo(f"service stack {stack.value} has no release yet: previewing the platform only")
            automation.preview(runners, stack.value, directory, release)
        return
    platform = preview_stack(stack.value, directory)
    service = preview_service(stack.value, directory, platform)
    typer.echo(
        f"Offline preview of {platform.project}/{stack.value} and {service.project}/{stack.value} under Pulumi's "
        "mock runtime (no cloud calls; provider results are mocked; the release is a placeholder)\n"
    )
    for run in (platform, service):
        typer.echo(f"{run.project} (type, name; children indented under their parent):")
        for line in tree_lines(run):
            typer.echo(line)
        typer.echo("")
        for line in totals_lines(run):
            typer.echo(line)
        typer.echo("")


@app.command()
def up(
    stack: Annotated[Stack, typer.Option(help="The stack to deploy (platform and service).")],
    project_dir: ProjectDir = None,
    image: ImageOption = None,
    model_package: ModelOption = None,
    model_group: ModelGroupOption = None,
    smoke: Annotated[bool, typer.Option(help="Smoke-test the deployed API through its public endpoint.")] = True,
    service_only: Annotated[
        bool, typer.Option("--service-only", help="Leave the platform as it is; deploy the release only.")
    ] = False,
) -> None:
    """Deploy the platform, then the service with the image and model to serve, then smoke-test it.

    The image is --image or this commit built and pushed (needs Docker); the model is
    --model-package, else the newest approved version, else the local champion
    registered in the stack's model registry. Both stacks run with the policy pack at
    policies/config/<stack>.json.
    """
    require_extras("retail infra up", "infra")
    from infra import automation
    from infra.offline import find_project_dir

    _require("retail infra up")
    directory = project_dir or find_project_dir()
    resolver = release_resolver(directory, image, model_package, model_group)
    deploy = automation.deploy_service if service_only else automation.deploy
    with automation.project_runners(directory, echo=typer.echo) as runners:
        platform, service = deploy(runners, stack.value, directory, resolver)
    typer.echo(f"Stacks {stack.value} are up: the API answers at {service.get('endpoint') or '(no endpoint yet)'}")
    if smoke:
        _smoke(service)


@app.command()
def rollback(
    stack: Annotated[Stack, typer.Option(help="The stack whose service goes back to the previous release.")],
    image: Annotated[
        str | None, typer.Option("--image", help="Image digest to run (default: the one running now).")
    ] = None,
    project_dir: ProjectDir = None,
    smoke: Annotated[bool, typer.Option(help="Smoke-test the service after the rollback.")] = True,
) -> None:
    """Serve the approved model version registered before the one served now (and --image, if given).

    The previous version is the one before the current in the stack's model package
    group, newest first; the served bundle is republished from it and the pods roll.
    """
    require_extras("retail infra rollback", "infra")
    from infra import automation
    from infra.offline import find_project_dir

    _require("retail infra rollback")
    directory = project_dir or find_project_dir()
    with automation.project_runners(directory, echo=typer.echo) as runners:
        current = automation.current_release(runners.service, stack.value)
        if current is None:
            typer.echo(f"service stack {stack.value} has no release to roll back from", err=True)
            raise typer.Exit(1)
        _, service = automation.deploy_service(runners, stack.value, directory, _previous_release(current, image))
    if smoke:
        _smoke(service)


def _previous_release(current: Release, image: str | None) -> automation.ReleaseResolver:
    """For `rollback`: the release before `current` in the stack's model package group, with `image` or the
    current image."""
    from infra.automation import Release

    def previous(platform: Mapping[str, Any]) -> Release:
        import boto3

        from infra.model_packages import previous_approved

        client = boto3.client("sagemaker", region_name=platform["region"])
        package = previous_approved(client, platform["modelPackageGroupName"], current.model_package_arn)
        if package is None:
            raise typer.BadParameter(f"no approved version before {current.model_package_arn} to roll back to")
        typer.echo(f"rollback: {current.model_package_arn} -> {package}")
        return Release(image or current.image, package)

    return previous


def _smoke(service: dict[str, Any]) -> None:
    from cli.smoke import SmokeFailure, run_smoke
    from infra import automation

    try:
        for line in run_smoke(service["endpoint"], service[automation.API_KEY_OUTPUT], 600, 10, None):
            typer.echo(f"ok  {line}")
    except SmokeFailure as error:
        typer.echo(f"smoke test of {service['endpoint']} failed: {error}", err=True)
        raise typer.Exit(1) from error


@app.command()
def destroy(
    stack: Annotated[Stack, typer.Option(help="The stack to destroy (service, then platform).")],
    project_dir: ProjectDir = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Destroy the service stack, then the platform stack (the stacks themselves are kept).

    A failed destroy is retried after emptying the platform's buckets and deleting the
    versions of its model package group (AWS deletes neither while they hold something),
    then a refresh. The audit bucket is kept by design (retain_on_delete); see docs/deploy.md.
    Before: the service's Ingresses and LoadBalancer Services are deleted and their load
    balancers awaited. After: the leak scan (`retail infra leaks`); exit 1 if anything remains.
    """
    require_extras("retail infra destroy", "infra")
    from infra import automation
    from infra.automation import TeardownFailed
    from infra.offline import find_project_dir
    from infra.teardown import ProvenTeardown

    _require("retail infra destroy")
    directory = project_dir or find_project_dir()
    if not yes:
        typer.confirm(
            f"Destroy every resource of stack {stack.value} (service and platform), including its lake data "
            "and registered model versions?",
            abort=True,
        )
    region = _stack_region(directory, stack.value)
    checks = ProvenTeardown(region, echo=typer.echo)
    try:
        with automation.project_runners(directory, echo=typer.echo) as runners:
            automation.destroy(
                runners, stack.value, empty=automation.StackEmptier(region), checks=checks, echo=typer.echo
            )
    except TeardownFailed as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(1) from error
    if checks.report is None or not checks.report.clean:
        raise typer.Exit(1)


def _stack_region(directory: Path, stack: str) -> str:
    """The region stack `stack`'s own config names: `Pulumi.<stack>.yaml`, `Pulumi.ephemeral.yaml` for ephemeral-*."""
    from infra import automation
    from infra.config import read_stack_file

    ephemeral = stack == automation.EPHEMERAL_CONFIG or stack.startswith(f"{automation.EPHEMERAL_CONFIG}-")
    return read_stack_file(directory, automation.EPHEMERAL_CONFIG if ephemeral else stack).config["aws:region"]


@app.command()
def ephemeral(
    name: Annotated[str, typer.Option(help="Name of the environment, e.g. the branch: stacks ephemeral-<name>.")],
    command: Annotated[list[str], typer.Argument(help="The command to run against the stacks, after `--`.")],
    project_dir: ProjectDir = None,
    image: ImageOption = None,
    model_package: ModelOption = None,
    model_group: Annotated[
        str, typer.Option(help="Group whose newest approved version is served (the ephemeral registry starts empty).")
    ] = "retail-dev-price-sensitivity",
    leak_report: Annotated[
        Path | None, typer.Option(help="Also write the leak scan's report to this file, as Markdown.")
    ] = None,
) -> None:
    """Create platform and service stacks from Pulumi.ephemeral.yaml, deploy them, run COMMAND, then destroy and
    remove both whatever happened.

    The command sees the stacks' non-secret outputs as PULUMI_OUTPUT_<NAME> (e.g.
    PULUMI_OUTPUT_ENDPOINT) and all of them as JSON in PULUMI_OUTPUTS_JSON, and the
    service's API key in RETAIL_API_KEY (never printed). Its exit code becomes this
    command's; if it succeeded but the leak scan after the teardown finds leftovers (or
    cannot finish), the exit code is 1. The programs run inline in a temporary folder:
    nothing in the repository changes.
    """
    require_extras("retail infra ephemeral", "infra")
    from infra import automation
    from infra.automation import TeardownFailed
    from infra.offline import find_project_dir
    from infra.teardown import ProvenTeardown

    _require("retail infra ephemeral")
    directory = project_dir or find_project_dir()
    resolver = release_resolver(directory, image, model_package, model_group)
    region = _stack_region(directory, automation.EPHEMERAL_CONFIG)
    checks = ProvenTeardown(region, echo=typer.echo)
    with tempfile.TemporaryDirectory(prefix="retail-ephemeral-") as scratch:
        runners: Runners = automation.inline_runners(Path(scratch), echo=typer.echo)
        try:
            code = automation.ephemeral(
                runners, name, command, directory, resolver,
                empty=automation.StackEmptier(region), checks=checks, echo=typer.echo,
            )
        except TeardownFailed as error:
            typer.echo(str(error), err=True)
            raise typer.Exit(1) from error
        finally:
            if leak_report is not None and checks.report is not None:
                leak_report.write_text(checks.report.markdown())
    leaked = checks.report is None or not checks.report.clean
    raise typer.Exit(code or int(leaked))


@app.command()
def leaks(
    stack: Annotated[str, typer.Option(help="The stack name to scan for, e.g. dev or ephemeral-pr-42.")],
    project_dir: ProjectDir = None,
    region: Annotated[
        str | None,
        typer.Option(help="AWS region (default: the stack's own, from Pulumi.<stack>.yaml; Pulumi.ephemeral.yaml "
                     "for ephemeral-*)."),
    ] = None,
    report: Annotated[Path | None, typer.Option(help="Also write the report to this file, as Markdown.")] = None,
) -> None:
    """Scan the AWS account for what is left of STACK; exit 1 if anything is (or a source cannot be asked).

    Looks for resources tagged for the stack (Resource Groups Tagging API), what the
    cluster's controllers made (load balancers, target groups, security groups, VPC CNI
    network interfaces), SageMaker models, endpoints and endpoint configs and IAM roles
    named for it; prints each with the command that removes it. Needs AWS credentials,
    not the Pulumi CLI. `destroy` and `ephemeral` run it after every teardown.
    """
    require_extras("retail infra leaks", "infra")
    from infra.leaks import LeakScope, aws_clients, scan
    from infra.offline import find_project_dir

    try:
        where = region or _stack_region(project_dir or find_project_dir(), stack)
    except FileNotFoundError as error:
        typer.echo(f"no region for stack {stack}: {error}; pass --region", err=True)
        raise typer.Exit(2) from error
    result = scan(LeakScope.of(stack, where), aws_clients(where))
    for line in result.lines():
        typer.echo(line)
    if report is not None:
        report.write_text(result.markdown())
    if not result.clean:
        raise typer.Exit(1)


def tree_lines(run: OfflineRun) -> list[str]:
    """One line per resource (type, then name), children indented under their parent."""
    by_parent: dict[str, list[RegisteredResource]] = {}
    for resource in sorted(run.resources, key=lambda r: (r.name, r.type)):
        by_parent.setdefault(resource.parent, []).append(resource)
    rows: list[tuple[str, str]] = []

    def walk(parent_urn: str, depth: int) -> None:
        for resource in by_parent.get(parent_urn, []):
            note = "  [remote component: its children are made by its plugin]" if resource.remote else ""
            rows.append(("  " * depth + resource.type, resource.name + note))
            walk(resource.urn, depth + 1)

    walk(run.stack_urn, 0)
    width = max((len(left) for left, _ in rows), default=0) + 2
    return [f"{left:{width}}{right}" for left, right in rows]


def totals_lines(run: OfflineRun) -> list[str]:
    """Resource counts: overall, by kind and by type."""
    resources = run.resources
    components = [r for r in resources if not r.custom]
    providers = [r for r in resources if r.type.startswith("pulumi:providers:")]
    aws = [r for r in resources if r.custom and r.type.startswith("aws:")]
    kubernetes = [r for r in resources if r.custom and r.type.startswith("kubernetes:")]
    lines = [
        f"Total: {len(resources)} resources",
        f"  components:         {len(components)} "
        f"({sum(r.type.startswith('retail:') for r in components)} retail, "
        f"{sum(r.remote for r in components)} remote pulumi-eks)",
        f"  AWS resources:      {len(aws)}",
        f"  Kubernetes objects: {len(kubernetes)}",
        f"  providers:          {len(providers)}",
        "By type:",
    ]
    for type_, count in sorted(Counter(r.type for r in resources).items()):
        lines.append(f"  {count:4}  {type_}")
    return lines


@app.command()
def check(
    stack: Annotated[CheckedStack, typer.Option(help="Which Pulumi.<stack>.yaml (both projects) to use.")],
    project_dir: ProjectDir = None,
) -> None:
    """Check the stack's projects against the policy pack and the deploy checks offline; exit 1 on a failure.

    Runs the platform, the service and the training programs under the mock runtime (as
    `preview` does), applies every rule of policies/ to each project's resources with the
    enforcement levels of policies/config/<stack>.json, then the checks across the
    projects: the deploy graph (what must exist before what) and the contracts with AWS
    (documented policy statements, request shapes). Needs no credentials or Pulumi CLI.
    """
    require_extras("retail infra check", "infra")
    from infra.offline import find_project_dir
    from policies.report import check_deployment, report_lines

    report = check_deployment(stack.value, project_dir or find_project_dir())
    for line in report_lines(report):
        typer.echo(line)
    if not report.passed:
        raise typer.Exit(1)


app.command()(cost)  # defined in their own modules, listed after this module's commands
app.command()(doctor)
