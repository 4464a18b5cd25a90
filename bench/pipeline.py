"""Benchmark: the whole local pipeline on synthetic files, one size or a table of sizes.

One size (`--rows N`): synthesises the file in a process of its own (`write_synthetic`, in chunks),
so what synthesis leaves allocated is not counted in the pipeline's memory, then times every
stage (ingest, validate, features, train, register) and samples the process's resident memory
every 20 ms to report each stage's peak and the pipeline's peak; synthesis's peak is its own
process's. Prints what it measured; `--json` also writes it to a file.

A table of sizes (the default: 1M, 3M and 9M rows; `--include-30m` adds 30M): each size runs
the one-size benchmark in a process of its own, so no size inherits another's memory, and one
row per size is printed: the pipeline's wall time (synthesis excluded), its peak RSS, the
process's peak RSS (synthesis is another process), how many training baskets training used of those
available (a sample above RETAIL_MAX_MEMORY_GB's cap, ml/channel.py), the champion's holdout macro-F1 and the machine's
load average when the size started and ended (the machine may be shared; the load says how
much the times can be trusted).

    uv run python bench/pipeline.py [--sizes 1000000,3000000,9000000] [--include-30m] [--workdir bench-work]
    uv run python bench/pipeline.py --rows 3000000 [--workdir bench-work] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

TARGET_SECONDS = 90  # one size: 3M rows (issue 6)
TARGET_PEAK_GB = 4.0
DEFAULT_SIZES = (1_000_000, 3_000_000, 9_000_000)
LARGE_SIZE = 30_000_000
LARGE_TARGET_SECONDS = 15 * 60  # 30M rows end to end on 2 cores (issue 14)
LARGE_TARGET_PEAK_GB = 8.0
SYNTHESISE = "import sys; from pathlib import Path; from ml.synth import SynthConfig, write_synthetic; " \
             "write_synthetic(SynthConfig(rows=int(sys.argv[1])), Path(sys.argv[2]))"


def load_average() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def run_one(rows: int, workdir: Path, json_path: Path | None) -> None:
    """The one-size benchmark, in this process."""
    from bench.memory import MeasuredTimer, MemorySampler
    from ml.pipeline import run_pipeline
    from ml.settings import Settings

    load_before = load_average()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    console = Console(stderr=True)
    sampler = MemorySampler()
    sampler.start()
    timer = MeasuredTimer(sampler, console)
    data = workdir / "transaction.csv"
    with timer.stage("synth", f"Synthesising {rows:,} rows (in a process of its own)"):
        subprocess.run([sys.executable, "-c", SYNTHESISE, str(rows), str(data)], check=True)
    timer.peak_bytes["synth"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
    settings = Settings(
        lake_root=str(workdir / "lake"),
        registry_uri=f"sqlite:///{workdir / 'registry' / 'mlflow.db'}",
        artifact_root=workdir / "registry" / "artifacts",
        work_dir=workdir / "work",
    )
    started = time.perf_counter()
    result = run_pipeline(data, settings, timer)
    pipeline_seconds = time.perf_counter() - started
    sampler.stop()

    pipeline_peak = max(v for k, v in timer.peak_bytes.items() if k != "synth")
    table = Table(title=f"Pipeline benchmark: {rows:,} rows, {os.cpu_count()} cores, {platform.python_version()}")
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
    if json_path:
        json_path.write_text(json.dumps({
            "rows": rows,
            "cores": os.cpu_count(),
            "stage_seconds": timer.seconds,
            "stage_peak_rss_bytes": timer.peak_bytes,
            "pipeline_seconds": round(pipeline_seconds, 2),
            "pipeline_peak_rss_bytes": pipeline_peak,
            "process_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # KiB on Linux
            "baskets": result.validation.baskets_accepted,
            "champion": winner,
            "train_sample": result.training["data"]["train_sample"],
            "load_average": {"start": load_before, "end": load_average()},
        }, indent=2))


def run_sizes(sizes: list[int], workdir: Path, keep: bool) -> list[dict[str, Any]]:
    """Each size in a process of its own; what each measured (its `--json`)."""
    measured = []
    for rows in sizes:
        folder = workdir / f"rows-{rows}"
        out = workdir / f"rows-{rows}.json"
        subprocess.run([sys.executable, "-m", "bench.pipeline", "--rows", str(rows), "--workdir", str(folder),
                        "--json", str(out)], check=True)
        measured.append(json.loads(out.read_text()))
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
    return measured


def size_table(measured: list[dict[str, Any]]) -> Table:
    table = Table(title=f"Pipeline by input size, {os.cpu_count()} cores, {platform.python_version()}")
    for column in ("rows", "baskets", "pipeline s", "pipeline peak RSS (GB)", "process peak RSS (GB)",
                   "train baskets used", "champion macro-F1", "load avg start", "load avg end"):
        table.add_column(column, justify="right")
    for m in measured:
        table.add_row(
            f"{m['rows']:,}", f"{m['baskets']:,}", f"{m['pipeline_seconds']:.1f}",
            f"{m['pipeline_peak_rss_bytes'] / 1e9:.2f}", f"{m['process_peak_rss_bytes'] / 1e9:.2f}",
            f"{m['train_sample']['used']:,} of {m['train_sample']['available']:,}",
            f"{m['champion']['macro_f1']:.4f} ({m['champion']['family']})",
            m["load_average"]["start"], m["load_average"]["end"],
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, help="one size: the per-stage benchmark of this many rows")
    parser.add_argument("--sizes", default=",".join(str(s) for s in DEFAULT_SIZES),
                        help="the table of sizes: comma-separated row counts, each in its own process")
    parser.add_argument("--include-30m", action="store_true", help="add 30,000,000 rows to the table")
    parser.add_argument("--workdir", type=Path, default=Path("bench-work"))
    parser.add_argument("--keep", action="store_true", help="keep each size's files (input, lake, registry)")
    parser.add_argument("--json", type=Path, help="also write the measurements to this file")
    args = parser.parse_args()
    if args.rows:
        run_one(args.rows, args.workdir, args.json)
        return
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()] + ([LARGE_SIZE] if args.include_30m else [])
    measured = run_sizes(sizes, args.workdir, args.keep)
    Console(width=150).print(size_table(measured))
    for m in measured:
        if m["rows"] == LARGE_SIZE:
            met = (m["pipeline_seconds"] < LARGE_TARGET_SECONDS
                   and m["pipeline_peak_rss_bytes"] / 1e9 < LARGE_TARGET_PEAK_GB)
            Console().print(f"30M target {LARGE_TARGET_SECONDS} s / {LARGE_TARGET_PEAK_GB} GB: "
                            f"{'met' if met else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps(measured, indent=2))


if __name__ == "__main__":
    main()
