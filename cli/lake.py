"""`retail lake`: build the lake with Spark (locally, or on EMR Serverless through Pulumi), and run the saved queries
on it (ml/queries/), in process by DuckDB over a local lake."""

from __future__ import annotations

import sys
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from cli import train as train_cli
from cli.console import print_error
from cli.extras import require_extras

if TYPE_CHECKING:
    import pyarrow as pa

    from infra.providers.lake_program import LakeInputs

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
    require_extras("retail lake query", "ml")
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


@app.command()
def build(
    raw: str = typer.Option(..., help="the raw input: a CSV file or a folder of CSV files (with --cloud: an s3:// URI "
                                      "under the lake's raw/ zone)"),
    lake: str = typer.Option(None, help="lake root of a local run (default: RETAIL_LAKE_ROOT, else ./lake); with "
                                        "--cloud the platform stack's lakeRoot"),
    cloud: bool = typer.Option(False, "--cloud", help="run on EMR Serverless through Pulumi (the platform stack's "
                                                      "lake engine)"),
    stack: str = typer.Option("dev", help="with --cloud: the platform stack whose lake engine, lake and image "
                                          "repository to use"),
    run_id: str = typer.Option(None, "--run-id", help="local run: the run's id (default: from the input's hash)"),
    master: str = typer.Option("local[*]", help="local run: Spark's master (local[*]: a task per core, with the job's "
                                                "local settings: few shuffle partitions, no UI, 127.0.0.1 only)"),
    image_uri: str = typer.Option(None, help="with --cloud: the lake image to use as is; default: the platform's "
                                             "`lake` repository at lake-<version>, built and pushed when missing"),
    project_dir: Path = typer.Option(None, help="with --cloud: the repository (the platform's Pulumi.yaml, "
                                                "Dockerfile.lake)"),
    new_run: str = typer.Option(None, "--new-run", help="with --cloud: any text not used before (e.g. the date): "
                                                        "start a new EMR Serverless run where the same input and "
                                                        "image would get an earlier one back (one that succeeded "
                                                        "without its manifest, or failed 3 times)"),
) -> None:
    """Build silver, gold and the features from RAW with Spark (ml/spark_lake.py) and print the run's manifest.

    Locally Spark runs in this process's Python; with --cloud one run of the lake job is declared on the platform's
    EMR Serverless engine (project retail-mlops-lake, stack lake-<stack>), and its manifest is what
    `retail train --cloud --manifest` trains on.
    """
    if cloud:
        local_only = [flag for flag, value in (("--lake", lake), ("--run-id", run_id),
                                                ("--master", master if master != "local[*]" else None)) if value]
        if local_only:
            raise train_cli.fail(f"{', '.join(local_only)}: for a local run only; with --cloud the lake is the "
                                 "platform stack's lakeRoot and the run id follows from the input and the image")
        require_extras("retail lake build --cloud", "infra")
        _build_on_aws(raw, stack, image_uri, project_dir, new_run)
        return
    if new_run:
        raise train_cli.fail("--new-run: for a run on AWS only (--cloud); a local run starts anew each time")
    from ml.settings import Settings

    argv = ["--raw", raw, "--lake", lake or Settings().lake_root]
    argv += ["--run-id", run_id] if run_id else []
    argv += ["--master", master]
    from ml.spark_lake import main as spark_lake

    spark_lake(argv)


def _build_on_aws(raw: str, stack: str, image_uri: str | None, project_dir: Path | None,
                  new_run: str | None = None) -> None:
    import boto3

    from infra import images
    from infra.automation import PulumiCliMissing, require_cli
    from infra.offline import find_project_dir
    from infra.providers.lake_program import (
        DOCKERFILE,
        LakeEngineMissing,
        lake_engine_config,
        lake_image_build_args,
        lake_image_tag,
        lake_inputs,
        raw_listing,
        require_lake_outputs,
        require_raw_in_lake,
    )
    from infra.providers.program import platform_tags

    try:
        require_cli("retail lake build --cloud")
    except PulumiCliMissing as error:
        raise train_cli.fail(str(error)) from None
    repo_root = project_dir or find_project_dir()
    outputs = train_cli.platform_outputs(stack, repo_root)
    region = outputs.get("region") or boto3.session.Session().region_name or train_cli.DEFAULT_REGION
    try:
        require_lake_outputs(stack, outputs)
        settings = lake_engine_config(repo_root, stack)
        bucket, prefix = require_raw_in_lake(raw, outputs["lakeRoot"])
        objects = raw_listing(boto3.client("s3", region_name=region), bucket, prefix)
        image = image_uri or images.ensure_image(
            outputs["repositoryUrls"]["lake"], lake_image_tag(repo_root, settings),
            repo_root / DOCKERFILE, repo_root, region, train_cli.docker_runner(),
            build_args=lambda: lake_image_build_args(repo_root, settings))
    except (LakeEngineMissing, ValueError, images.DockerMissing) as error:
        raise train_cli.fail(f"Cannot build the lake on AWS: {error}") from None
    inputs = lake_inputs(stack, outputs, raw_uri=raw, objects=objects, image_uri=image, settings=settings,
                         tags=platform_tags(stack, outputs, repo_root), region=region, new_run=new_run)
    result = run_lake(inputs)
    typer.echo(f"Lake run {result.get('runId')} (EMR Serverless job run {result.get('jobRunId')}) wrote "
               f"{result.get('manifestUri')}; train on it with "
               f"`retail train --cloud --stack {stack} --manifest {result.get('manifestUri')}`")
    typer.echo(f"manifest={result.get('manifestUri')}")


def run_lake(inputs: LakeInputs) -> dict[str, Any]:
    """`pulumi up` of stack lake-<stack> in project retail-mlops-lake, from a temporary work dir outside the
    repository (as `retail train --cloud` does, for the same reasons), with the policy pack at the platform stack's
    levels."""
    from botocore.exceptions import ClientError

    from infra.automation import policy_config_for
    from infra.providers import clients
    from infra.providers.lake_program import LAKE_PROJECT, declared_application, lake_program, stop_for_update

    lake_stack = f"lake-{inputs.stack}"
    with tempfile.TemporaryDirectory(prefix="retail-lake-") as work_dir:
        runner = train_cli.stack_runner(Path(work_dir), LAKE_PROJECT, lake_program(inputs))
        runner.create_stack(lake_stack)
        runner.set_config(lake_stack, {"aws:region": inputs.region}, {})
        try:
            changed = stop_for_update(clients.emr_serverless(inputs.region),
                                      runner.outputs(lake_stack).get("applicationId"), declared_application(inputs))
        except (ClientError, TimeoutError, ValueError) as error:
            raise train_cli.fail(f"Cannot update the lake application of stack {lake_stack}: {error}") from None
        if changed:
            typer.echo(f"Stopped the lake application so that it can be updated ({', '.join(changed)})")
        return runner.up(lake_stack, policy_config_for(inputs.stack))
