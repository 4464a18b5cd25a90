"""`retail lake`: the saved queries on the lake (ml/queries/), run in process by DuckDB over a local lake."""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from cli.console import print_error

if TYPE_CHECKING:
    import pyarrow as pa

app = typer.Typer(no_args_is_help=True)
console = Console()


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


@app.command("queries")
def list_queries() -> None:
    """The saved queries: each one's name and what it answers."""
    from ml.lake_queries import LAKE_QUERIES

    table = Table(title="Saved lake queries (retail lake query NAME)")
    table.add_column("name", no_wrap=True)
    table.add_column("answers")
    for saved in LAKE_QUERIES:
        table.add_row(saved.name, saved.description)
    console.print(table)


@app.command()
def query(
    name: str = typer.Argument(..., help="a saved query's name (`retail lake queries` lists them)"),
    run: str = typer.Option(None, help="the lake run id the query reads (default: the newest run under silver/)"),
    lake: str = typer.Option(None, help="lake root: a local folder (default: RETAIL_LAKE_ROOT, else ./lake)"),
    format: Format = typer.Option(Format.table, "--format", help="table to read; csv or json: the rows on stdout"),
) -> None:
    """Run the saved query NAME on one run of a local lake (DuckDB, in process).

    On AWS the same SQL is an Athena named query over the lake's Glue catalog. Exits 2 when
    the query, the lake, the run or a table the query reads is missing.
    """
    from ml.lake_queries import lake_query
    from ml.lake_sql import LakeQueryError, newest_run, run_query
    from ml.settings import Settings

    try:
        chosen = lake_query(name)
    except KeyError as exc:
        raise typer.BadParameter(exc.args[0], param_hint="NAME") from exc
    settings = Settings(**({"lake_root": lake} if lake else {}))
    try:
        run = run or newest_run(settings.lake_root)
        answer = run_query(chosen, run, settings.lake_root, settings.max_memory_gb, settings.work_dir / "lake-query")
    except LakeQueryError as exc:
        print_error(exc)
        raise typer.Exit(2) from exc
    _print(answer, format, f"{chosen.name}, run {run}")


def _print(answer: pa.Table, format: Format, title: str) -> None:
    """The answer as a table on the terminal, or its rows as CSV or JSON (an array of objects) on stdout."""
    import polars as pl

    frame = pl.DataFrame(answer)
    if format is Format.csv:
        sys.stdout.write(frame.write_csv())
    elif format is Format.json:
        sys.stdout.write(frame.write_json() + "\n")
    else:
        console.print(title if frame.height else f"{title}: no rows", style="bold", markup=False, highlight=False)
        table = Table()
        for column in frame.columns:
            table.add_column(column, justify="left" if frame[column].dtype == pl.String else "right")
        for row in frame.iter_rows():
            table.add_row(*("" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
        if frame.height:
            console.print(table)
