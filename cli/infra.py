"""`retail infra ...`: the AWS platform's commands that need no cloud account."""

from __future__ import annotations

from collections import Counter
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from infra.offline import OfflineRun, RegisteredResource, find_project_dir, preview_stack

app = typer.Typer(no_args_is_help=True, add_completion=False)


REMOTE_NOTE = "  [remote component: its plugin creates its children]"


class Stack(StrEnum):
    dev = "dev"
    prod = "prod"


@app.command()
def preview(
    stack: Annotated[Stack, typer.Option(help="Which Pulumi.<stack>.yaml to use.")],
    project_dir: Annotated[
        Path | None,
        typer.Option(help="Directory holding Pulumi.yaml (default: found from the cwd upwards)."),
    ] = None,
) -> None:
    """Run the Pulumi program offline under Pulumi's mock runtime and print its resources.

    Needs neither AWS credentials nor the Pulumi CLI: provider results (ids, ARNs, zones,
    account) come from infra/mocks.py and secrets are placeholders.
    """
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


def tree_lines(run: OfflineRun) -> list[str]:
    """One line per resource (type, then name), children indented under their parent."""
    by_parent: dict[str, list[RegisteredResource]] = {}
    for resource in sorted(run.resources, key=lambda r: (r.name, r.type)):
        by_parent.setdefault(resource.parent, []).append(resource)
    rows: list[tuple[str, str]] = []

    def walk(parent_urn: str, depth: int) -> None:
        for resource in by_parent.get(parent_urn, []):
            note = (
                "  [remote component: its children are made by its plugin]"
                if resource.remote
                else ""
            )
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
