"""`retail infra ...`: the AWS platform's commands.

`preview` and `check` run offline under Pulumi's mock runtime (no cloud account, no
Pulumi CLI); `preview --live`, `up`, `destroy` and `ephemeral` drive the Pulumi CLI
through the Automation API (`infra/automation.py`).
"""

from __future__ import annotations

from collections import Counter
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from infra import automation
from infra.automation import AutomationRunner, PulumiCliMissing, require_cli
from infra.offline import OfflineRun, RegisteredResource, find_project_dir, preview_stack
from policies.catalog import RULES
from policies.enforcement import config_path
from policies.evaluate import mandatory
from policies.model import Enforcement, Violation
from policies.offline import check_run

app = typer.Typer(no_args_is_help=True, add_completion=False)


REMOTE_NOTE = "  [remote component: its plugin creates its children]"


class Stack(StrEnum):
    dev = "dev"
    prod = "prod"


ProjectDir = Annotated[
    Path | None,
    typer.Option(help="Directory holding Pulumi.yaml (default: found from the cwd upwards)."),
]


def cli_runner(command: str, project_dir: Path | None) -> AutomationRunner:
    """The Automation API runner for `command`, or exit 2 saying how to install the Pulumi CLI."""
    try:
        require_cli(command)
    except PulumiCliMissing as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None
    return AutomationRunner(project_dir or find_project_dir(), echo=typer.echo)


@app.command()
def preview(
    stack: Annotated[Stack, typer.Option(help="Which Pulumi.<stack>.yaml to use.")],
    project_dir: ProjectDir = None,
    live: Annotated[
        bool,
        typer.Option("--live", help="Run the real `pulumi preview` with the policy pack (needs the Pulumi CLI, AWS)."),
    ] = False,
) -> None:
    """Run the Pulumi program offline under Pulumi's mock runtime and print its resources.

    Needs neither AWS credentials nor the Pulumi CLI: provider results (ids, ARNs, zones,
    account) come from infra/mocks.py and secrets are placeholders. With --live, runs
    `pulumi preview --policy-pack policies` through the Automation API instead.
    """
    if live:
        automation.preview(cli_runner("retail infra preview --live", project_dir), stack.value)
        return
    directory = project_dir or find_project_dir()
    run = preview_stack(stack.value, directory)
    typer.echo(
        f"Offline preview of {run.project}/{run.stack} under Pulumi's mock runtime "
        f"(no cloud calls; provider results are mocked)\n"
    )
    typer.echo("Resources (type, name; children indented under their parent):")
    for line in tree_lines(run):
        typer.echo(line)
    typer.echo("")
    for line in totals_lines(run):
        typer.echo(line)


@app.command()
def up(stack: Annotated[Stack, typer.Option(help="The stack to deploy.")], project_dir: ProjectDir = None) -> None:
    """Deploy the stack with `pulumi up`, the policy pack enforcing policies/config/<stack>.json."""
    outputs = automation.up(cli_runner("retail infra up", project_dir), stack.value)
    typer.echo(f"Stack {stack.value} is up; outputs: {', '.join(sorted(outputs))}")


@app.command()
def destroy(
    stack: Annotated[Stack, typer.Option(help="The stack to destroy.")],
    project_dir: ProjectDir = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Destroy every resource of the stack with `pulumi destroy` (the stack itself is kept)."""
    runner = cli_runner("retail infra destroy", project_dir)
    if not yes:
        typer.confirm(f"Destroy every resource of stack {stack.value}?", abort=True)
    automation.destroy(runner, stack.value)


@app.command()
def ephemeral(
    name: Annotated[str, typer.Option(help="Name of the environment, e.g. the branch: the stack is ephemeral-<name>.")],
    command: Annotated[list[str], typer.Argument(help="The command to run against the stack, after `--`.")],
    project_dir: ProjectDir = None,
) -> None:
    """Create a stack from the dev config, deploy it, run COMMAND, then destroy and remove it whatever happened.

    The command sees the stack's outputs as PULUMI_OUTPUT_<NAME> variables and all of them
    as JSON in PULUMI_OUTPUTS_JSON; its exit code becomes this command's.
    """
    runner = cli_runner("retail infra ephemeral", project_dir)
    code = automation.ephemeral(runner, name, command, project_dir or find_project_dir())
    raise typer.Exit(code)


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
    stack: Annotated[Stack, typer.Option(help="Which Pulumi.<stack>.yaml to use.")],
    project_dir: Annotated[
        Path | None,
        typer.Option(help="Directory holding Pulumi.yaml (default: found from the cwd upwards)."),
    ] = None,
) -> None:
    """Check the stack against the policy pack offline; exit 1 on a mandatory violation.

    Runs the program under the mock runtime (as `preview` does), applies every rule of
    policies/ to every resource and the stack rules to the whole set, with the
    enforcement levels of policies/config/<stack>.json. Needs no credentials or Pulumi CLI.
    """
    run = preview_stack(stack.value, project_dir or find_project_dir())
    violations = check_run(run)
    typer.echo(
        f"Policy check of {run.project}/{run.stack} under Pulumi's mock runtime: "
        f"{len(RULES)} rules, {len(run.resources)} resources, levels from policies/config/{config_path(run.stack).name}"
    )
    for line in violation_lines(violations):
        typer.echo(line)
    blocking = mandatory(violations)
    typer.echo(
        f"Summary: {len(blocking)} mandatory, {len(violations) - len(blocking)} advisory violation(s) "
        f"({len(RULES)} rules on {len(run.resources)} resources)"
    )
    if blocking:
        typer.echo(f"FAILED: {run.stack} breaks mandatory rule(s): {', '.join(sorted({v.rule for v in blocking}))}")
        raise typer.Exit(1)
    typer.echo(f"PASSED: {run.stack} has no mandatory violation")


def violation_lines(violations: list[Violation]) -> list[str]:
    """Mandatory first, then advisory; each with the resource, what is wrong and the fix."""
    order = {Enforcement.mandatory: 0, Enforcement.advisory: 1}
    lines = []
    for v in sorted(violations, key=lambda v: (order.get(v.enforcement, 2), v.rule, v.resource)):
        subject = f"{v.resource} ({v.resource_type})" if v.resource else "stack"
        lines.append(f"[{v.enforcement.value}] {v.rule}: {subject} {v.message}")
        lines.append(f"    fix: {v.fix}")
    return lines
