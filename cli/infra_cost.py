"""`retail infra cost`: a stack's monthly cost, estimated offline from what its programs would create.

The pricing is infra/cost.py's; this module runs the programs, and renders the breakdown
as a table or as JSON. Registered on `retail infra` by cli/infra.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.extras import require_extras

if TYPE_CHECKING:  # the Pulumi side loads when the command runs, not with `retail --help`
    from infra.cost import Budget, Estimate, LineItem


def cost(
    stack: Annotated[str, typer.Option(help="Which Pulumi.<stack>.yaml (both projects) to price: dev, prod, ...")],
    project_dir: Annotated[
        Path | None,
        typer.Option(help="Directory holding the platform's Pulumi.yaml (default: found from the cwd upwards)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the breakdown as JSON.")] = False,
) -> None:
    """Estimate the stack's monthly cost, resource by resource, against its AWS Budget; offline.

    Runs the platform, service and training programs under the mock runtime (as `preview`
    does) and prices each cost-bearing resource with the region's table,
    infra/data/prices/<region>.json (every price dated, with its source), and the stack's
    retail:cost assumptions (volumes, hours; documented defaults). Lines whose price the
    table lacks are listed apart and left out of the total. The policy rule
    stack-within-budget judges the same estimate during `retail infra check`.
    """
    require_extras("retail infra cost", "infra")
    from infra.config import read_stack_file
    from infra.cost import Billable, assumptions_from_config, estimate, monthly_budget
    from infra.offline import find_project_dir, preview_deployment

    directory = project_dir or find_project_dir()
    try:
        config = read_stack_file(directory, stack).config
        assumptions = assumptions_from_config(config)
        runs = preview_deployment(stack, directory)
    except (FileNotFoundError, ValueError) as error:
        typer.echo(f"cannot estimate stack {stack}: {error}", err=True)
        raise typer.Exit(2) from None
    resources = [Billable(r.type, r.name, r.inputs) for run in runs for r in run.resources]
    result = estimate(resources, config["aws:region"], assumptions)
    projects = [run.project for run in runs]
    budget = monthly_budget(resources)
    if as_json:
        typer.echo(json.dumps(breakdown_json(stack, projects, result, budget), indent=2))
        return
    for line in breakdown_lines(stack, projects, result, budget):
        typer.echo(line)


def breakdown_lines(stack: str, projects: list[str], result: Estimate, budget: Budget | None) -> list[str]:
    """The estimate as a table by category, then the total against the budget and what is not priced."""
    table = result.prices
    assumed = ", ".join(f"{k}={_assumed(v)}" for k, v in _assumptions(result).items())
    lines = [
        f"Estimated monthly cost of stack {stack} ({', '.join(projects)}) in {result.region}, USD, as of {result.on}",
        f"Prices: infra/data/prices/{result.region}.json, compiled {table.compiled} ({table.terms}); "
        "each price's date and source are in the file",
        f"Assumptions (retail:cost, defaults where unset): {assumed}",
        "",
    ]
    rows = [("Category / resource", "Quantity", "Unit price", "Monthly")]
    notes: dict[int, str] = {}
    for category, subtotal in result.by_category().items():
        items = [line for line in result.lines if line.category == category]
        rows.append((category, "", "", _subtotal(subtotal, items)))
        for item in items:
            rows.append((f"  {item.item}", f"{item.quantity:,.2f} {item.unit}", _unit_usd(item.unit_usd),
                         _usd(item.monthly_usd) if item.monthly_usd is not None else "not priced"))
            if item.note:
                notes[len(rows) - 1] = item.note
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for index, row in enumerate(rows):
        lines.append(f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:>{widths[2]}}  {row[3]:>{widths[3]}}")
        if index in notes:
            lines.append(f"      ({notes[index]})")
    lines += ["", f"Total of the priced lines: {_usd(result.total_usd)} a month (* a category with lines not priced)"]
    lines.append(_verdict(result, budget))
    unconfirmed = sorted({line.price_key for line in result.lines
                          if line.price_key in table.prices and not table.prices[line.price_key].region_confirmed
                          and line.unit_usd is not None})
    if unconfirmed:
        lines.append(f"Prices not confirmed for {result.region} (see the file): {', '.join(unconfirmed)}")
    if result.unpriced:
        lines.append(f"Not priced, so not in the total ({len(result.unpriced)}): "
                     + "; ".join(f"{line.item} [{line.price_key}]" for line in result.unpriced))
    return lines


def breakdown_json(stack: str, projects: list[str], result: Estimate, budget: Budget | None) -> dict[str, Any]:
    return {
        "stack": stack,
        "projects": projects,
        "region": result.region,
        "on": str(result.on),
        "currency": "USD",
        "prices": {"file": f"infra/data/prices/{result.region}.json", "compiled": str(result.prices.compiled),
                   "terms": result.prices.terms},
        "assumptions": _assumptions(result),
        "lines": [
            {"category": line.category, "item": line.item, "quantity": line.quantity, "unit": line.unit,
             "price_key": line.price_key, "unit_usd": line.unit_usd, "monthly_usd": line.monthly_usd,
             "note": line.note}
            for line in result.lines
        ],
        "by_category": result.by_category(),
        "total_usd": result.total_usd,
        "unpriced": [line.item for line in result.unpriced],
        "budget": None if budget is None else {"name": budget.name, "usd": budget.usd},
        "within_budget": None if budget is None else result.total_usd <= budget.usd,
    }


def _assumptions(result: Estimate) -> dict[str, Any]:
    dumped: dict[str, Any] = result.assumptions.model_dump(by_alias=True)
    return dumped


def _assumed(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    return format(value, ",.10g")


def _verdict(result: Estimate, budget: Budget | None) -> str:
    if budget is None:
        return "The stack has no monthly USD budget to compare with"
    gap = budget.usd - result.total_usd
    if gap >= 0:
        return f"Within the budget {budget.name} of {_usd(budget.usd)} ({_usd(gap)} to spare)"
    return f"OVER the budget {budget.name} of {_usd(budget.usd)} by {_usd(-gap)}"


def _subtotal(value: float, items: list[LineItem]) -> str:
    if all(item.unit_usd is None for item in items):
        return "not priced"
    return _usd(value) + (" *" if any(item.unit_usd is None for item in items) else "")


def _usd(value: float) -> str:
    return f"${value:,.2f}"


def _unit_usd(value: float | None) -> str:
    return "-" if value is None else f"${value:.4f}"
