"""Entry point of the `retail` command."""

import atexit
import gc
import sys

import typer

from cli import data as data_cli
from cli import infra as infra_cli
from cli import lake as lake_cli
from cli import models as models_cli
from cli import pipeline as pipeline_cli
from cli.changes import changed
from cli.demo import demo
from cli.extras import missing_extra_message
from cli.monitor import monitor
from cli.score import score
from cli.serve import serve
from cli.smoke import smoke
from cli.train import train

app = typer.Typer(
    name="retail",
    help="retail-mlops: basket price-sensitivity prediction, from transactions to a served model.",
    no_args_is_help=True,
    add_completion=False,
)

app.add_typer(data_cli.app, name="data", help="Synthetic transactions in the dunnhumby format.")
app.add_typer(pipeline_cli.app, name="pipeline", help="The local ML lifecycle: lake, features, training, registry.")
app.add_typer(models_cli.app, name="models", help="Registered model versions and the champion alias.")
app.add_typer(lake_cli.app, name="lake", help="Saved queries on the lake, run here by DuckDB (Athena on AWS).")
app.command(help="Synthesise data, run the pipeline, print the summary (--loop: the monitoring loop).")(demo)
app.add_typer(infra_cli.app, name="infra", help="AWS (Pulumi): preview, check, deploy, doctor, cost, leak scan.")
app.command(help="Serve the champion model over HTTP (the inference API).")(serve)
app.command(help="Score whole weeks of baskets in batch; predictions go to the lake, by week.")(score)
app.command(help="Measure a week's predictions against its labels; retraining and challenger decisions.")(monitor)
app.command(help="Train on SageMaker and register the model version, through Pulumi (--cloud).")(train)
app.command(help="Check a deployed service: readiness, the served model, one prediction.")(smoke)
app.command(help="Print true when the model should be retrained (a change, or what monitoring found).")(changed)

YOUNG_GENERATION_THRESHOLD = 50_000
"""Allocations between two young-generation collections during a command (Python's default is 700)."""


def main() -> None:
    """Run `retail` with the garbage collector tuned for a short-lived process.

    Most of a short command is importing: MLflow alone makes hundreds of thousands of objects, and at the
    default threshold the collector walks them again and again while finding nothing to free, then once
    more at exit. `retail models list` took 3.3-3.8 s with the defaults and about 1.9 s with a larger
    young generation and the start-up objects frozen at exit (bench/cli_startup.py). Cycles are still
    collected, only less often. What is still in a reference cycle at exit is frozen with the rest, so its
    finalizer never runs: files, Parquet writers and MLflow runs must be closed by `with` blocks (they are),
    never left to a finalizer. `retail serve` starts a fresh interpreter, which the API tunes itself.
    """
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, *gc.get_threshold()[1:])
    atexit.register(gc.freeze)  # atexit runs before the interpreter's final collection, which then skips them
    try:
        app()
    except ModuleNotFoundError as error:  # a library of an extra the wheel's user did not install
        message = missing_extra_message(error)
        if message is None:
            raise
        print(message, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
