"""Rich renderings of pipeline results for the terminal."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:  # the pipeline and its model libraries load when a command runs
    from ml.pipeline import PipelineResult


def validation_table(result: PipelineResult) -> Table:
    report = result.validation
    table = Table(title="Validation", show_header=True)
    table.add_column("rows")
    table.add_column("count", justify="right")
    table.add_row("in", f"{report.rows_in:,}")
    table.add_row("accepted", f"{report.rows_accepted:,}")
    table.add_row("quarantined", f"{report.rows_quarantined:,}")
    for rule, count in report.quarantined_by_rule.items():
        table.add_row(f"  {rule}", f"{count:,}")
    table.add_row("baskets accepted", f"{report.baskets_accepted:,}")
    table.add_row("XX baskets (kept, not trained on)", f"{report.unclassified_baskets:,}")
    table.add_row("rebuilt basket ids", f"{report.rebuilt_basket_ids:,}")
    return table


def leaderboard_table(result: PipelineResult) -> Table:
    table = Table(title="Leaderboard: ranked on the last training weeks, evaluated on the held-out latest weeks")
    for column in ("rank", "family", "validation macro-F1", "holdout accuracy", "holdout macro-F1", "fit s"):
        table.add_column(column, justify="right" if column != "family" else "left")
    for rank, row in enumerate(result.training["leaderboard"], start=1):
        table.add_row(str(rank), row["family"], f"{row['validation_macro_f1']:.4f}", f"{row['accuracy']:.4f}",
                      f"{row['macro_f1']:.4f}", f"{row['fit_seconds']:.1f}")
    return table


def print_summary(result: PipelineResult, console: Console) -> None:
    console.print(validation_table(result))
    for warning in result.validation.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    console.print(leaderboard_table(result))
    gate = result.training["gate"]
    verdict = "[green]PASSED[/]" if gate["passed"] else "[red]FAILED[/]"
    console.print(f"Promotion gate: {verdict}")
    for check in gate["checks"]:
        mark = "✓" if check["passed"] else "✗"
        console.print(f"  {mark} {check['name']} {check['value']:.4f} (threshold {check['threshold']})")
    reg = result.registration
    console.print(
        f"Registered {reg['model_name']} version {reg['version']}: "
        f"{'promoted to champion' if reg['promoted'] else 'not promoted'} ({reg['reason']}). "
        f"Champion: version {reg['champion_version']}."
    )
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
    console.print(f"Stage timings: {timings}")
    console.print(f"Report and model card: {result.report_dir}")
    console.print(f"Run manifest: {result.manifest_uri}")
