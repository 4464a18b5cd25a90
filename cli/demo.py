"""`retail demo`: the whole local lifecycle on a full-size synthetic file."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from cli.report import print_summary
from ml.pipeline import run_pipeline
from ml.progress import StageTimer
from ml.settings import Settings
from ml.synth import SynthConfig, generate, write_csv

console = Console(stderr=True)


def demo(
    rows: int = typer.Option(SynthConfig.rows, min=1000, help="synthetic rows (default: the real file's size)"),
    data: Path = typer.Option(Path("data/transaction.csv"), help="where the synthetic file is written"),
    seed: int = typer.Option(SynthConfig.seed),
) -> None:
    """Synthesise transactions, run the pipeline and print the summary."""
    timer = StageTimer(console)
    with timer.stage("synth", f"Synthesising {rows:,} transactions into {data}"):
        write_csv(generate(SynthConfig(rows=rows, seed=seed)), data)
    result = run_pipeline(data, Settings(), timer)
    print_summary(result, console)
