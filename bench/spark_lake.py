"""Benchmark: the Spark job (ml/spark_lake.py) against the local pipeline's data stages, on synthetic files.

For each size, a synthetic file is written (`write_synthetic`, in a process of its own), then:
- the local pipeline runs on it in a process of its own (`retail`'s run_pipeline, training one decision tree so that
  training costs little) and its ingest, validate and features stages are read from its result;
- the Spark job runs in a process of its own (`python -m ml.spark_lake --master local[N]`, a fresh JVM), its
  wall time measured from outside and its stages read from the manifest.
Prints one row per size: the local stages and their sum, the job's stages, the job's wall time (with the JVM's
start) and the machine's load average (the machine may be shared). With `--compare`, the two lakes are then compared
as the parity test compares them (tests/lake_parity.py `same_lakes`: silver lines, quarantine, every gold value bit
for bit, featurizer, report, gold counts); a difference stops the run with an AssertionError.

    uv run python bench/spark_lake.py [--sizes 6000,1000000] [--master local[2]] [--workdir bench-work/spark]
        [--compare]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

SYNTHESISE = "import sys; from pathlib import Path; from ml.synth import SynthConfig, write_synthetic; " \
             "write_synthetic(SynthConfig(rows=int(sys.argv[1])), Path(sys.argv[2]))"
LOCAL = "import json, sys; from pathlib import Path; from ml.pipeline import run_pipeline; " \
        "from ml.progress import StageTimer; from ml.settings import Settings; " \
        "r = run_pipeline(Path(sys.argv[1]), Settings(), StageTimer(quiet=True)); print(json.dumps(r.seconds))"
STAGES = ("ingest", "validate", "features")


def _local_seconds(data: Path, folder: Path) -> dict[str, float]:
    env = {**os.environ, "RETAIL_LAKE_ROOT": str(folder / "lake"), "RETAIL_WORK_DIR": str(folder / "work"),
           "RETAIL_REGISTRY_URI": f"sqlite:///{folder / 'registry.db'}",
           "RETAIL_ARTIFACT_ROOT": str(folder / "artifacts"), "RETAIL_FAMILIES": "decision_tree"}
    out = subprocess.run([sys.executable, "-c", LOCAL, str(data)], env=env, check=True, capture_output=True,
                         text=True).stdout
    seconds: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return seconds


def _spark_seconds(data: Path, folder: Path, master: str) -> tuple[float, dict[str, float]]:
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "ml.spark_lake", "--raw", str(data), "--lake", str(folder / "lake"),
                          "--master", master], check=True, capture_output=True, text=True).stdout
    wall = time.perf_counter() - started
    manifest_uri = out.strip().splitlines()[-1].removeprefix("manifest=")
    seconds: dict[str, float] = json.loads(Path(manifest_uri).read_text())["seconds"]
    return wall, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="6000,1000000")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--workdir", type=Path, default=Path("bench-work/spark"))
    parser.add_argument("--compare", action="store_true", help="compare the two lakes' rows after each size")
    args = parser.parse_args()
    table = Table(title=f"Spark job ({args.master}) vs the local pipeline's data stages, seconds")
    for column in ("rows", *(f"local {s}" for s in STAGES), "local sum", *(f"spark {s}" for s in STAGES),
                   "spark wall (JVM start incl.)", "load 1 min before/after"):
        table.add_column(column, justify="right")
    for rows in (int(size) for size in args.sizes.split(",")):
        folder = args.workdir / f"{rows}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        data = folder / "transaction.csv"
        subprocess.run([sys.executable, "-c", SYNTHESISE, str(rows), str(data)], check=True)
        load_before = os.getloadavg()[0]
        local = _local_seconds(data, folder / "local")
        wall, spark = _spark_seconds(data, folder / "spark", args.master)
        table.add_row(f"{rows:,}", *(f"{local[s]:.1f}" for s in STAGES), f"{sum(local[s] for s in STAGES):.1f}",
                      *(f"{spark[s]:.1f}" for s in STAGES), f"{wall:.1f}",
                      f"{load_before:.1f}/{os.getloadavg()[0]:.1f}")
        if args.compare:
            from tests.lake_parity import same_lakes

            compared = same_lakes(folder / "local" / "lake", folder / "spark" / "lake")
            print(f"{rows:,} rows: the lakes are equal (" + ", ".join(f"{v:,} {k}" for k, v in compared.items()) + ")")
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
