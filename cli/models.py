"""`retail models`: the registry's versions and the champion alias."""

from __future__ import annotations

import datetime as dt

import typer
from rich.console import Console
from rich.table import Table

from cli.console import print_error
from ml.settings import Settings

app = typer.Typer(no_args_is_help=True)
console = Console()


def _registry():
    from ml.registry import Registry

    return Registry(Settings())


@app.command("list")
def list_versions() -> None:
    """Every registered version with its family, metrics, gate result and aliases."""
    rows = _registry().versions()
    table = Table(title="Registered versions")
    for column in ("version", "aliases", "family", "accuracy", "macro-F1", "gate", "created", "pipeline run"):
        table.add_column(column)
    for row in rows:
        created = dt.datetime.fromtimestamp(row["created"] / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M")
        table.add_row(row["version"], ", ".join(row["aliases"]), row["family"], row["accuracy"][:6],
                      row["macro_f1"][:6], "pass" if row["gate_passed"] == "true" else "fail", created,
                      row["pipeline_run"])
    console.print(table if rows else "No registered versions yet: run `retail pipeline run --input ...`.")


@app.command()
def promote(
    version: str = typer.Argument(..., help="registered version number"),
    force: bool = typer.Option(False, help="promote even though the version failed the gate"),
) -> None:
    """Make VERSION the champion (it must have passed the gate unless --force)."""
    try:
        _registry().promote(version, force=force)
    except ValueError as exc:
        print_error(exc)
        raise typer.Exit(1) from exc
    console.print(f"champion -> version {version}")


@app.command()
def rollback() -> None:
    """Move the champion back to the version that held it before."""
    try:
        version = _registry().rollback()
    except ValueError as exc:
        print_error(exc)
        raise typer.Exit(1) from exc
    console.print(f"champion -> version {version} (rolled back)")


@app.command()
def publish(
    to: str = typer.Option(..., "--to", help="where the service reads its model: a folder or s3://bucket/prefix"),
    version: str = typer.Option(None, help="registered version to publish [default: the champion]"),
    model_data: str = typer.Option(
        None, help="publish this instead: a bundle folder, or SageMaker's model.tar.gz (local or s3://)"
    ),
) -> None:
    """Copy a verified model bundle to RETAIL_MODEL_URI's location; the service reloads it."""
    import tempfile
    from pathlib import Path

    from ml.bundle import BundleIntegrityError
    from ml.publish import fetch_model_data, publish_bundle

    if version and model_data:
        print_error("give --version or --model-data, not both")
        raise typer.Exit(2)
    with tempfile.TemporaryDirectory(prefix="retail-publish-") as scratch:
        try:
            bundle = fetch_model_data(model_data, Path(scratch)) if model_data else _registry().download(version)
            digest = publish_bundle(bundle, to)
        except (BundleIntegrityError, FileNotFoundError, LookupError, ValueError) as exc:
            print_error(exc)
            raise typer.Exit(1) from exc
    console.print(f"published bundle sha256:{digest[:12]} to {to}")
