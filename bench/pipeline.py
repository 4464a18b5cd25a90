"""Benchmark: the whole local pipeline on the full-size synthetic file.

Times every stage (synth, ingest, validate, features, train, register) and samples the
process's resident memory every 20 ms to report each stage's peak and the overall
peak. Prints what it measured; `--json` also writes it to a file.

    uv run python bench/pipeline.py [--rows 2700000] [--workdir bench-work] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.memory import MeasuredTimer, MemorySampler
from ml.pipeline import run_pipeline
from ml.settings import Settings
from ml.synth import SynthConfig, generate, write_csv

TARGET_SECONDS = 90
TARGET_PEAK_GB = 4.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=SynthConfig.rows)
    parser.add_argument("--workdir", type=Path, default=Path("bench-work"))
    parser.add_argument("--json", type=Path, help="also write the measurements to this file")
    args = parser.parse_args()

    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    console = Console(stderr=True)
    sampler = MemorySampler()
    sampler.start()
    timer = MeasuredTimer(sampler, console)
    data = args.workdir / "transaction.csv"
    with timer.stage("synth", f"Synthesising {args.rows:,} rows"):
        write_csv(generate(SynthConfig(rows=args.rows)), data)
    settings = Settings(
        lake_root=str(args.workdir / "lake"),
        registry_uri=f"sqlite:///{args.workdir / 'registry' / 'mlflow.db'}",
        artifact_root=args.workdir / "registry" / "artifacts",
        work_dir=args.workdir / "work",
    )
    started = time.perf_counter()
    result = run_pipeline(data, settings, timer)
    pipeline_seconds = time.perf_counter() - started
    sampler.stop()

    pipeline_peak = max(v for k, v in timer.peak_bytes.items() if k != "synth")
    table = Table(title=f"Pipeline benchmark: {args.rows:,} rows, {os.cpu_count()} cores, {platform.python_version()}")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    table.add_column("peak RSS (GB)", justify="right")
    for name, seconds in timer.seconds.items():
        table.add_row(name, f"{seconds:.1f}", f"{timer.peak_bytes[name] / 1e9:.2f}")
    table.add_row("pipeline (ingest..register)", f"{pipeline_seconds:.1f}", f"{pipeline_peak / 1e9:.2f}")
    Console().print(table)
    winner = result.training["leaderboard"][0]
    verdict = (
        f"target {TARGET_SECONDS} s / {TARGET_PEAK_GB} GB: "
        f"{'met' if pipeline_seconds < TARGET_SECONDS and pipeline_peak / 1e9 < TARGET_PEAK_GB else 'NOT met'}"
    )
    Console().print(
        f"baskets {result.validation.baskets_accepted:,}; champion {winner['family']} "
        f"accuracy {winner['accuracy']:.4f} macro-F1 {winner['macro_f1']:.4f}; "
        f"gate {'passed' if result.training['gate']['passed'] else 'FAILED'}; {verdict}"
    )
    if args.json:
        args.json.write_text(json.dumps({
            "rows": args.rows,
            "cores": os.cpu_count(),
            "stage_seconds": timer.seconds,
            "stage_peak_rss_bytes": timer.peak_bytes,
            "pipeline_seconds": round(pipeline_seconds, 2),
            "pipeline_peak_rss_bytes": pipeline_peak,
            "champion": winner,
        }, indent=2))


if __name__ == "__main__":
    main()
