"""`retail infra doctor`: preflight checks of the AWS account and the Pulumi set-up before a stack is created."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Annotated

import typer

from cli.extras import require_extras
from cli.infra_options import CheckedStack, ProjectDir

if TYPE_CHECKING:
    from infra.preflight import CheckResult

STATUS_STYLES = {"ok": "green", "warn": "yellow", "fail": "bold red", "unknown": "magenta"}


def doctor(
    stack: Annotated[CheckedStack, typer.Option(help="Which Pulumi.<stack>.yaml (both projects) to check for.")],
    project_dir: ProjectDir = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 also when a check could not be evaluated (unknown).")
    ] = False,
) -> None:
    """Check, before anything is created, that the stack can deploy from here; exit 1 if a check fails.

    Credentials and account; the region, its AZs and the node instance types offered in
    the AZs the network takes; EKS (and its Kubernetes version) and SageMaker; quotas for
    VPCs, Elastic IPs, CloudTrail trails, spot and on-demand vCPUs and the SageMaker
    training instance, against what is in use; the deploying principal's permissions for
    every action the stacks' resources need (iam:SimulatePrincipalPolicy); the Pulumi CLI,
    its plugins, the backend and the secrets provider. AWS is called with the credentials
    the stack's provider would use (aws:profile, aws:assumeRoles). What the stack creates
    comes from its offline preview. A check AWS cannot answer is "unknown", never a pass.
    """
    require_extras("retail infra doctor", "infra")
    from infra.doctor import failed, run_doctor
    from infra.offline import find_project_dir

    directory = project_dir or find_project_dir()
    try:
        results = run_doctor(stack.value, directory, None, os.environ)  # the stack's aws:profile/assumeRoles
    except FileNotFoundError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None
    if json_output:
        payload = {"stack": stack.value, "passed": not failed(results, strict)}
        typer.echo(json.dumps({**payload, "checks": [_as_dict(result) for result in results]}, indent=2))
    else:
        _print_table(stack.value, results)
    raise typer.Exit(1 if failed(results, strict) else 0)


def _as_dict(result: CheckResult) -> dict[str, str]:
    return {"name": result.name, "status": result.status.value, "detail": result.detail, "fix": result.fix}


def _print_table(stack: str, results: list[CheckResult]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"retail infra doctor --stack {stack}", show_lines=True)
    for column in ("check", "status", "detail"):
        table.add_column(column, overflow="fold")
    for result in results:
        status = result.status.value
        table.add_row(Text(result.name), Text(status, style=STATUS_STYLES[status]), Text(result.detail))
    Console().print(table, highlight=False)
    for result in results:
        if result.fix:
            typer.echo(f"fix {result.name}: {result.fix}")
    counts = {status: sum(r.status.value == status for r in results) for status in STATUS_STYLES}
    typer.echo(", ".join(f"{count} {status}" for status, count in counts.items())
               + ("; unknown checks could not be evaluated: they are not passes" if counts["unknown"] else ""))
