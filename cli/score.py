"""`retail score`: batch scoring of whole weeks into the lake's predictions zone (see ml/score.py).

With RETAIL_EMF_ENABLED=true (`Settings.emf_enabled`), every run ends with one CloudWatch
embedded-metric-format line on stdout (ml/emf.py `scoring_run`, metrics `PUBLISHED_METRICS`,
dimension Environment=RETAIL_ENVIRONMENT): `ScoringRunFailed` 0 when it succeeded, 1 when it
failed (exit 2, exit 1, a usage error, or any exception), and `BasketsScored`. The weekly CronJob
(infra/batch_scoring.py) sets both variables; the platform's alarms on a failed or a missing
run (infra/observability.py) read those metrics.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cli.console import print_error
from ml import emf

if TYPE_CHECKING:  # polars, pyarrow and the model libraries load when the command runs, not with `retail`
    from ml.score import ScoringModel, ScoringResult
    from ml.settings import Settings

console = Console(stderr=True)
CHAMPION = "champion"
PUBLISHED_METRICS = emf.SCORING_RUN_METRICS
"""The metrics a run publishes with RETAIL_EMF_ENABLED=true (policies/producers.py checks the alarms against them)."""


def choose_model(
    settings: Settings,
    model: str | None = None,
    bundle: str | None = None,
    bundle_sha256: str | None = None,
    cache_dir: Path | None = None,
) -> ScoringModel:
    """The registry's champion (default), a registered version, or a bundle folder (path or s3:// prefix),
    through the service's own sources (api/model_source.py); a bundle can be pinned to its manifest's SHA-256.

    Raises LookupError when there is no such model, BundleIntegrityError when its files do not match.
    """
    from api.model_source import BundleLocationSource, RegistrySource  # the model libraries load only to score
    from ml.bundle import load_bundle
    from ml.score import ScoringModel

    if bundle is not None:
        source = BundleLocationSource(bundle, cache_dir or settings.work_dir / "bundles", bundle_sha256)
        fetched = source.fetch(source.fingerprint())
        description = bundle
    elif model in (None, CHAMPION):
        source = RegistrySource(settings)
        fetched = source.fetch(source.fingerprint())
        description = source.description
    else:
        from mlflow.exceptions import MlflowException

        description = f"models:/{settings.model_name}/{model}"
        try:
            fetched = RegistrySource(settings).fetch(model)
        except MlflowException as exc:
            raise LookupError(f"{description}: no such version ({exc.message}); see `retail models list`") from exc
    return ScoringModel(bundle=load_bundle(fetched.folder), version=fetched.version, sha256=fetched.sha256,
                        source=description)


def summary_table(result: ScoringResult, model: ScoringModel) -> Table:
    counts, seconds = result.counts, result.seconds
    table = Table(title=f"Scoring run {result.run_id}", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("model", f"{model.source}: version {model.version}, {model.family}, sha256 {model.sha256[:12]}")
    table.add_row("lines read", f"{counts['lines_read']:,}")
    table.add_row("lines accepted", f"{counts['lines_accepted']:,}")
    table.add_row("lines quarantined", f"{counts['lines_quarantined']:,}")
    for rule, count in counts["quarantined_by_rule"].items():
        table.add_row(f"  {rule}", f"{count:,}")
    if counts["lines_without_label"]:
        table.add_row("lines without a label (validated as XX)", f"{counts['lines_without_label']:,}")
    weeks = [int(w) for w in counts["baskets_by_week"]]
    span = f" ({min(weeks)}-{max(weeks)})" if weeks else ""
    table.add_row("weeks", f"{counts['weeks']:,}{span}")
    table.add_row("baskets scored", f"{counts['baskets_scored']:,}")
    scoring = seconds["total"] - seconds["load"]
    steps = " + ".join(f"{seconds.get(k, 0):.1f} {k}" for k in ("read", "validate", "predict", "write"))
    table.add_row("seconds: load / scoring", f"{seconds['load']:.1f} / {scoring:.1f} ({steps})")
    if scoring > 0:
        table.add_row("baskets per second (after load)", f"{counts['baskets_scored'] / scoring:,.0f}")
    return table


def score(
    input: str = typer.Option(
        None, "--input", "-i", help="a path or s3:// URI: a transactions CSV (.csv/.csv.gz), a folder of weekly "
        "files, or a silver run's validated lines (a silver/<run>/ folder or its lines/part-0.parquet)"),
    silver: str = typer.Option(None, help="instead of --input: the silver lines of this pipeline run id, in the lake"),
    model: str = typer.Option(None, "--model", "-m",
                              help="'champion' or a registered version number [default: champion]"),
    bundle: str = typer.Option(None, help="score with this model bundle folder instead of the registry: "
                                          "a path or s3:// prefix (e.g. the service's RETAIL_MODEL_URI)"),
    bundle_sha256: str = typer.Option(None, envvar="RETAIL_MODEL_SHA256",
                                      help="with --bundle: refuse a bundle whose manifest has another SHA-256"),
    bundle_cache: Path = typer.Option(None, envvar="RETAIL_MODEL_CACHE_DIR",
                                      help="where an s3:// bundle is copied to [default: RETAIL_WORK_DIR/bundles]"),
    lake: str = typer.Option(None, help="lake root: a folder or s3://bucket/prefix [env RETAIL_LAKE_ROOT]"),
    chunk_lines: int = typer.Option(None, min=1, show_default=False,
                                    help="lines scored at a time, whole weeks; bounds memory [default: ml.score's]"),
) -> None:
    """Predict every basket of whole weeks; predictions go to the lake, partitioned by week.

    Writes predictions/<run>/baskets/week=YYYYWW/, the quarantine next to them and
    predictions/<run>/manifest.json (last). Exits 2 when the input or the model cannot be used,
    or no basket passed validation; 1 when the input could not be read this time (storage or
    network errors: try again). Lines and rows that are bad on their own are quarantined.
    """
    from ml.settings import Settings

    settings = Settings(**({"lake_root": lake} if lake else {}))
    failed, baskets = True, 0
    try:
        baskets = _score(settings, input, silver, model, bundle, bundle_sha256, bundle_cache, chunk_lines)
        failed = False
    finally:
        if settings.emf_enabled:
            emf.scoring_run(settings.environment, failed, baskets)


def _score(
    settings: Settings,
    input: str | None,
    silver: str | None,
    model: str | None,
    bundle: str | None,
    bundle_sha256: str | None,
    bundle_cache: Path | None,
    chunk_lines: int | None,
) -> int:
    """One scoring run; returns the baskets scored. Raises typer.Exit(2) when the input or the model is unusable,
    typer.Exit(1) when the input could not be read this time (`ml.score.unreadable`: the scheduled Job retries)."""
    from ml.ingest import InputError, InputUnavailable
    from ml.progress import StageTimer
    from ml.score import input_at, silver_run
    from ml.score import score as score_input

    if (input is None) == (silver is None):
        raise typer.BadParameter("give either --input or --silver (one of them)")
    if bundle is not None and model is not None:
        raise typer.BadParameter("give either --model or --bundle, not both")
    if model not in (None, CHAMPION) and not model.isdigit():
        raise typer.BadParameter(f"{model!r} is neither 'champion' nor a version number", param_hint="--model")
    from ml.bundle import BundleIntegrityError

    try:
        source = input_at(input) if input is not None else silver_run(silver, settings.lake_root)
        chosen = choose_model(settings, model, bundle, bundle_sha256 if bundle else None, bundle_cache)
        chunking = {} if chunk_lines is None else {"chunk_lines": chunk_lines}
        result = score_input(source, chosen, settings, StageTimer(console), **chunking)
    except (InputError, LookupError, BundleIntegrityError) as exc:
        print_error(exc)
        raise typer.Exit(2) from exc
    except InputUnavailable as exc:
        print_error(exc)
        raise typer.Exit(1) from exc
    Console().print(summary_table(result, chosen))
    for notice in result.notices:
        console.print(Text.assemble(("notice: ", "yellow"), notice))
    console.print(f"Predictions: {result.predictions_uri}")
    if result.quarantine_uri:
        console.print(f"Quarantine: {result.quarantine_uri}")
    console.print(f"Manifest: {result.manifest_uri}")
    if result.counts["baskets_scored"] == 0:
        print_error(f"{source.location}: no basket passed validation; see {result.quarantine_uri}")
        raise typer.Exit(2)
    return result.counts["baskets_scored"]


if __name__ == "__main__":  # `python -m cli.score ...`: the command without the rest of `retail` (infra, pulumi)
    typer.run(score)
