"""`retail pipeline`: run the local ML lifecycle on an input."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from cli.console import print_error
from cli.report import print_summary
from ml.ingest import InputError
from ml.pipeline import run_pipeline
from ml.settings import Settings

app = typer.Typer(no_args_is_help=True)
console = Console(stderr=True)


@app.command()
def run(
    input: Path = typer.Option(..., "--input", "-i", help="transaction CSV (.csv/.csv.gz) or a folder of weekly files"),
    lake: str = typer.Option(None, help="lake root: a folder or s3://bucket/prefix [env RETAIL_LAKE_ROOT]"),
    holdout_weeks: int = typer.Option(None, min=1, help="latest weeks held out [env RETAIL_HOLDOUT_WEEKS]"),
) -> None:
    """Ingest, validate, build features, train four families, gate and register the winner."""
    overrides = {k: v for k, v in {"lake_root": lake, "holdout_weeks": holdout_weeks}.items() if v is not None}
    settings = Settings(**overrides)
    try:
        result = run_pipeline(input, settings)
    except InputError as exc:
        print_error(exc)
        raise typer.Exit(2) from exc
    print_summary(result, console)
