"""`retail pipeline`: run the local ML lifecycle on an input."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cli.console import print_error
from cli.extras import require_extras
from cli.report import print_summary

if TYPE_CHECKING:  # the pipeline and its model libraries load when a command runs
    from ml.pipeline import PipelineResult

app = typer.Typer(no_args_is_help=True)
console = Console(stderr=True)
FILES_SHOWN = 20


def files_table(result: PipelineResult) -> Table | None:
    """Rows read, accepted and quarantined for each file that had rows quarantined."""
    files = {f: c for f, c in result.validation.files.items() if c["quarantined"]}
    if not files:
        return None
    table = Table(title=f"Files with quarantined rows ({len(files)} of {len(result.validation.files)})")
    table.add_column("file")
    for column in ("read", "accepted", "quarantined"):
        table.add_column(column, justify="right")
    for name, counts in list(files.items())[:FILES_SHOWN]:
        table.add_row(name, *(f"{counts[c]:,}" for c in ("read", "accepted", "quarantined")))
    if len(files) > FILES_SHOWN:
        table.add_row(f"... {len(files) - FILES_SHOWN} more in the run manifest", "", "", "")
    return table


@app.command()
def run(
    input: Path = typer.Option(..., "--input", "-i", help="transaction CSV (.csv/.csv.gz) or a folder of weekly files"),
    lake: str = typer.Option(None, help="lake root: a folder or s3://bucket/prefix [env RETAIL_LAKE_ROOT]"),
    holdout_weeks: int = typer.Option(
        None, min=1, help="latest weeks held out, at most a quarter of the input's weeks [env RETAIL_HOLDOUT_WEEKS]"
    ),
) -> None:
    """Ingest, validate, build features, train four families, gate and register the winner.

    Exits 2 when the input cannot be used (unreadable, missing columns, no valid row, too
    few weeks for a time split); lines and rows that are bad on their own are quarantined.
    """
    require_extras("retail pipeline run", "ml")
    from ml.ingest import InputError
    from ml.pipeline import run_pipeline
    from ml.settings import Settings

    overrides = {k: v for k, v in {"lake_root": lake, "holdout_weeks": holdout_weeks}.items() if v is not None}
    settings = Settings(**overrides)
    try:
        result = run_pipeline(input, settings)
    except InputError as exc:
        print_error(exc)
        raise typer.Exit(2) from exc
    print_summary(result, console)
    table = files_table(result)
    if table is not None:
        console.print(table)
    for notice in result.notices:
        console.print(Text.assemble(("notice: ", "yellow"), notice))
