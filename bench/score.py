"""Benchmark: `retail score` (ml/score.py) on the full-size synthetic file.

Synthesises the full-size file once (kept in the work folder and reused), takes a model
bundle (`--bundle`, a folder or s3:// prefix; without it, one is trained by the pipeline on
a small synthetic file, as bench/pipeline.py runs it), scores every week of the file into a
lake under the work folder, and prints what it measured: load seconds (reading, ingesting
and spilling the input by week), scoring seconds (reading back, validation, features and
model, writing; the first two run on a second thread while the chunk before is scored, so
the stages add up to more than the scoring), baskets per second of the scoring, and the
process's peak resident memory, sampled every 20 ms. `--silver` scores the file's silver lines instead (made once, in a
child process, as the pipeline writes them), as the weekly CronJob does. `--json` also
writes the measurements to a file.

    uv run python bench/score.py [--rows 3050000] [--bundle PATH] [--silver] [--chunk-lines N]
                                 [--workdir work/bench-score] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.memory import MeasuredTimer, MemorySampler
from cli.score import choose_model
from ml import ingest
from ml.lake import Lake
from ml.pipeline import run_pipeline
from ml.progress import StageTimer
from ml.score import CHUNK_LINES, PIECE_BYTES, ScoringInput, score
from ml.settings import Settings
from ml.synth import SynthConfig, generate, write_csv
from ml.validate import validate

FULL_SIZE_ROWS = 3_050_000
"""The real file's size: about 475,000 baskets of 6.4 lines on average (FACTS.md), so about 3.05 million rows, in the
upper half of its copies' 2.7-3.1 million. The synthetic file at SynthConfig's default of 2.7 million rows holds about
418,000 baskets; at this many, 472,191."""
TARGET_BASKETS_PER_SECOND = 100_000
TARGET_PEAK_GB = 2.0
TRAIN_ROWS = 40_000


def settings_in(folder: Path) -> Settings:
    return Settings(
        lake_root=str(folder / "lake"),
        registry_uri=f"sqlite:///{folder / 'registry' / 'mlflow.db'}",
        artifact_root=folder / "registry" / "artifacts",
        work_dir=folder / "work",
    )


def full_size_file(workdir: Path, rows: int, console: Console) -> Path:
    """The synthetic file of `rows` rows (default seed), made once and reused."""
    data, stamp = workdir / f"transaction-{rows}.csv", workdir / f"transaction-{rows}.json"
    made = {"rows": rows, "bytes": data.stat().st_size} if data.is_file() else None
    if made and stamp.is_file() and json.loads(stamp.read_text()) == made:
        console.print(f"Reusing {data}")
        return data
    with StageTimer(console).stage("synth", f"Synthesising {rows:,} rows"):
        write_csv(generate(SynthConfig(rows=rows)), data)
    stamp.write_text(json.dumps({"rows": rows, "bytes": data.stat().st_size}))
    return data


def in_child(target, *args) -> None:
    """`target(*args)` in a fresh process: what it allocates (the allocator keeps it) stays out of the measurement."""
    child = multiprocessing.get_context("spawn").Process(target=target, args=args)
    child.start()
    child.join()
    if child.exitcode != 0:
        raise SystemExit(f"{target.__name__}{args} failed (exit code {child.exitcode})")


def write_silver(data: Path, lines: Path) -> None:
    """The file's validated lines, as the pipeline writes them to silver."""
    raw_input, raw = ingest.read(data)
    lines.parent.mkdir(parents=True, exist_ok=True)
    Lake(str(lines.parent)).write_parquet(validate(raw, raw_input).lines, lines.name)


def silver_lines(data: Path, console: Console) -> Path:
    lines = data.with_suffix("") / "silver" / "lines.parquet"
    if not lines.is_file() or lines.stat().st_mtime < data.stat().st_mtime:
        with StageTimer(console).stage("silver", f"Validating {data} into {lines}"):
            in_child(write_silver, data, lines)
    return lines


def train(folder: Path) -> None:
    """The pipeline on a small synthetic file (another seed than the scored file); its bundle's folder in bundle.txt."""
    data = folder / "transaction.csv"
    write_csv(generate(SynthConfig(rows=TRAIN_ROWS, seed=3)), data)
    result = run_pipeline(data, settings_in(folder), StageTimer())
    (folder / "bundle.txt").write_text(str(folder / "work" / result.run_id / "model"))


def trained_bundle(workdir: Path, console: Console) -> str:
    folder = workdir / "train"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    with StageTimer(console).stage("train", f"Training a bundle with the pipeline on {TRAIN_ROWS:,} synthetic rows"):
        in_child(train, folder)
    return (folder / "bundle.txt").read_text()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=FULL_SIZE_ROWS)
    parser.add_argument("--bundle", help="model bundle folder or s3:// prefix [default: train one on a small file]")
    parser.add_argument("--workdir", type=Path, default=Path("work/bench-score"))
    parser.add_argument("--chunk-lines", type=int, default=CHUNK_LINES)
    parser.add_argument("--piece-bytes", type=int, default=PIECE_BYTES)
    parser.add_argument("--silver", action="store_true", help="score the file's silver lines (the CronJob's input)")
    parser.add_argument("--json", type=Path, help="also write the measurements to this file")
    args = parser.parse_args()

    console = Console(stderr=True)
    args.workdir.mkdir(parents=True, exist_ok=True)
    data = full_size_file(args.workdir, args.rows, console)
    source = ScoringInput(str(silver_lines(data, console)), silver=True) if args.silver else ScoringInput(str(data))
    bundle = args.bundle or trained_bundle(args.workdir, console)
    settings = settings_in(args.workdir / "score")
    model = choose_model(settings, bundle=bundle)
    console.print(f"Model: {bundle} ({model.family}, {model.version})")

    sampler = MemorySampler()
    baseline = sampler.process.memory_info().rss
    sampler.start()
    timer = MeasuredTimer(sampler, console)
    cpu = time.process_time()
    result = score(source, model, settings, timer, chunk_lines=args.chunk_lines,
                   piece_bytes=args.piece_bytes)
    cpu = time.process_time() - cpu
    scoring_peak = sampler.take()
    peak = max(sampler.stop(), timer.peak_bytes["load"], scoring_peak)

    seconds, counts = result.seconds, result.counts
    scoring = seconds["total"] - seconds["load"]
    features_model_write = seconds.get("predict", 0) + seconds.get("write", 0)
    baskets = counts["baskets_scored"]
    rate = baskets / scoring
    kind = "silver lines" if args.silver else "CSV lines"
    table = Table(title=f"Scoring benchmark: {counts['lines_read']:,} {kind}, {baskets:,} baskets, "
                        f"{counts['weeks']} weeks, {os.cpu_count()} cores, Python {platform.python_version()}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("load s (read, ingest, spill by week)", f"{seconds['load']:.1f}")
    table.add_row("  read back from the spill s (second thread)", f"{seconds.get('read', 0):.1f}")
    table.add_row("  validate s (second thread)", f"{seconds.get('validate', 0):.1f}")
    table.add_row("  features + model s (predict_proba)", f"{seconds.get('predict', 0):.1f}")
    table.add_row("  write s", f"{seconds.get('write', 0):.1f}")
    table.add_row("  waiting for the second thread s", f"{seconds.get('wait', 0):.1f}")
    table.add_row("scoring s (after load: read back, validate, features + model, write)", f"{scoring:.1f}")
    table.add_row("baskets/s (scoring after load)", f"{rate:,.0f}")
    table.add_row("baskets/s (features + model + write)", f"{baskets / max(features_model_write, 1e-9):,.0f}")
    table.add_row("total s (CPU s of this process)", f"{seconds['total']:.1f} ({cpu:.1f})")
    table.add_row("RSS before scoring (GB)", f"{baseline / 1e9:.2f}")
    table.add_row("peak RSS while loading (GB)", f"{timer.peak_bytes['load'] / 1e9:.2f}")
    table.add_row("peak RSS while scoring (GB)", f"{scoring_peak / 1e9:.2f}")
    table.add_row("peak RSS (GB)", f"{peak / 1e9:.2f}")
    Console().print(table)
    met = rate >= TARGET_BASKETS_PER_SECOND and peak / 1e9 < TARGET_PEAK_GB
    Console().print(f"chunk of {args.chunk_lines:,} lines; target {TARGET_BASKETS_PER_SECOND:,} baskets/s and "
                    f"< {TARGET_PEAK_GB} GB: {'met' if met else 'NOT met'}; manifest {result.manifest_uri}")
    if args.json:
        args.json.write_text(json.dumps({
            "input": "silver" if args.silver else "csv",
            "lines": counts["lines_read"], "baskets": baskets, "weeks": counts["weeks"], "cores": os.cpu_count(),
            "chunk_lines": args.chunk_lines, "piece_bytes": args.piece_bytes, "model_family": model.family,
            "seconds": seconds, "cpu_seconds": round(cpu, 2), "baskets_per_second": round(rate),
            "rss_before_bytes": baseline, "load_peak_rss_bytes": timer.peak_bytes["load"],
            "scoring_peak_rss_bytes": scoring_peak, "peak_rss_bytes": peak,
        }, indent=2))


if __name__ == "__main__":
    main()
