"""`retail models`: the registry's versions and the champion alias; `history` lists SageMaker's registry."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from cli.console import print_error
from cli.extras import require_extras

if TYPE_CHECKING:
    pass

app = typer.Typer(no_args_is_help=True)
console = Console()


def _registry(command: str):
    """The registry, after checking the `ml` extra it is read through (MLflow) is installed."""
    require_extras(command, "ml")
    from ml.registry import Registry
    from ml.settings import Settings

    return Registry(Settings())


@app.command("list")
def list_versions() -> None:
    """Every registered version with its family, metrics, gate result and aliases."""
    rows = _registry("retail models list").versions()
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
        _registry("retail models promote").promote(version, force=force)
    except ValueError as exc:
        print_error(exc)
        raise typer.Exit(1) from exc
    console.print(f"champion -> version {version}")


@app.command()
def rollback() -> None:
    """Move the champion back to the version that held it before."""
    try:
        version = _registry("retail models rollback").rollback()
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
    """Copy a verified model bundle to RETAIL_MODEL_URI's location; the service reloads it.

    For a service that is not pinned (RETAIL_MODEL_SHA256 unset), as `retail serve` runs it. The pods on EKS are
    pinned to the bundle their ServedModel published into a folder of its own; a new model goes out there by a
    deploy of its package (`retail:modelPackageArn`), not by publishing over that folder.
    """
    import tempfile
    from pathlib import Path

    from ml.bundle import BundleIntegrityError
    from ml.publish import fetch_model_data, publish_bundle

    if version and model_data:
        print_error("give --version or --model-data, not both")
        raise typer.Exit(2)
    with tempfile.TemporaryDirectory(prefix="retail-publish-") as scratch:
        try:
            if model_data:
                bundle = fetch_model_data(model_data, Path(scratch))
            else:
                bundle = _registry("retail models publish").download(version)
            digest = publish_bundle(bundle, to)
        except (BundleIntegrityError, FileNotFoundError, LookupError, ValueError) as exc:
            print_error(exc)
            raise typer.Exit(1) from exc
    console.print(f"published bundle sha256:{digest[:12]} to {to}")


@app.command()
def history(
    stack: str = typer.Option(None, help="platform stack whose model package group to list (reads its outputs)"),
    group: str = typer.Option(None, help="the model package group itself (no Pulumi CLI needed)"),
    region: str = typer.Option(None, help="AWS region [default: the stack's, else the AWS configuration's]"),
    project_dir: Path = typer.Option(None, help="directory holding the platform's Pulumi.yaml"),
) -> None:
    """Every version `retail train --cloud` registered in SageMaker, newest first: approval, family, holdout
    accuracy and macro-F1, the data hash it was trained on and when it was registered."""
    require_extras("retail models history", "infra")
    from cli.train import platform_outputs
    from infra.automation import PulumiCliMissing, require_cli
    from infra.offline import find_project_dir
    from infra.providers.model_version import list_versions

    if bool(stack) == bool(group):
        print_error("give --stack (the platform stack) or --group (a model package group), one of them")
        raise typer.Exit(2)
    if stack:
        try:
            require_cli("retail models history --stack")
        except PulumiCliMissing as error:
            print_error(f"{error}; or pass the group with --group")
            raise typer.Exit(2) from None
        outputs = platform_outputs(stack, project_dir or find_project_dir())
        group = outputs.get("modelPackageGroupName")
        if not group:
            print_error(f"the platform stack {stack!r} has no modelPackageGroupName output")
            raise typer.Exit(2)
        region = region or outputs.get("region")
    versions = list_versions(group, region or _default_region())
    if not versions:
        typer.echo(f"No versions registered in {group} yet: run `retail train --cloud`.")
        return
    typer.echo(f"Model package group {group} ({len(versions)} versions, newest first)")
    for line in _history_lines(versions):
        typer.echo(line)


def _history_lines(versions) -> list[str]:
    """Plain aligned columns (nothing is cut in an 80-column CI log, unlike a rich table)."""
    rows = [("version", "approval", "family", "accuracy", "macro-F1", "data hash", "created (UTC)")]
    rows += [(str(v.version), v.approval, v.family or "-", v.metric("accuracy") or "-", v.metric("macro_f1") or "-",
              v.data_hash[:12] or "-", v.created.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M")) for v in versions]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]


def _default_region() -> str:
    import boto3

    return boto3.session.Session().region_name or "ap-southeast-1"
