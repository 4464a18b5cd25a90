"""`retail data`: synthetic transactions in the dunnhumby format."""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer(no_args_is_help=True)
console = Console(stderr=True)


class Header(StrEnum):
    coded = "coded"
    original = "original"


@app.command()
def synth(
    output: Path = typer.Option(Path("data/transaction.csv"), "--output", "-o",
                                help="CSV file (.csv or .csv.gz), or a folder with --weekly"),
    rows: int = typer.Option(None, min=100, show_default=False,
                             help="number of rows, about 6.4 per basket "
                                  "[default: 2,700,000, as the real file's smaller copies]"),
    seed: int = typer.Option(None, show_default=False, help="same seed, same file [default: ml.synth's]"),
    header: Header = typer.Option(
        Header.coded, help="coded: seg_1/seg_2; original: CUST_PRICE_SENSITIVITY/CUST_LIFESTAGE"
    ),
    weekly: bool = typer.Option(False, help="write one transactions_YYYYWW.csv per week into OUTPUT (a folder)"),
    crlf: bool = typer.Option(False, help="Windows line endings, as some copies of the data have"),
    chunk_rows: int = typer.Option(None, min=10_000, show_default=False,
                                   help="rows generated and written at a time (whole weeks), which bounds memory; a "
                                        "file of at most this many rows is one chunk [default: ml.synth's]"),
) -> None:
    """Write synthetic transactions with the structure of the real file (see FACTS.md)."""
    from ml.progress import StageTimer
    from ml.synth import CHUNK_ROWS, write_synthetic

    config = synth_config(rows, seed)
    started = time.perf_counter()
    timer = StageTimer(console)
    with timer.stage("synth", f"Generating and writing {config.rows:,} rows (seed {config.seed}) to {output}"):
        written, files = write_synthetic(config, output, original_header=header is Header.original, weekly=weekly,
                                         crlf=crlf, chunk_rows=chunk_rows or CHUNK_ROWS)
    where = f"{len(files)} weekly files in {output}" if weekly else str(output)
    console.print(f"{written:,} rows -> {where} in {time.perf_counter() - started:.1f} s")


def synth_config(rows: int | None, seed: int | None):  # -> ml.synth.SynthConfig
    """The synthetic data set's config: the given rows and seed, ml.synth's defaults for the others."""
    from ml.synth import SynthConfig

    return SynthConfig(**{k: v for k, v in {"rows": rows, "seed": seed}.items() if v is not None})
