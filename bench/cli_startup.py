"""How long `retail` takes to answer, process start to exit, for the calls an operator and CI make most.

    uv run python -m bench.cli_startup [--runs 5]

Runs each command `--runs` times after one warm-up run and prints the wall time (min,
median, max) against the targets of issue 15: `retail --help` under 0.5 s, `retail models
list` and `retail models promote` under 3 s. The models commands run against a copy of the
registry database named by RETAIL_REGISTRY_URI (a sqlite file: `make demo` or `retail
pipeline run` makes one), so promoting the champion again changes nothing of the original.
The commands run with Python's bytecode cache on (PYTHONDONTWRITEBYTECODE unset, as an
installed environment has it): without it every run compiles mlflow's modules again, about
2 s of a `retail models list`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ml.settings import Settings

TARGETS_SECONDS = {"help": 0.5, "models list": 3.0, "models promote": 3.0}


def timed_runs(command: list[str], env: dict[str, str], runs: int) -> list[float]:
    """Wall seconds of `runs` runs of `command` (after one warm-up run); a failing run stops the benchmark."""
    seconds = []
    for attempt in range(runs + 1):
        started = time.perf_counter()
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            sys.exit(f"{' '.join(command)} exited {result.returncode}: {result.stderr[-2000:]}")
        if attempt:
            seconds.append(elapsed)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    settings = Settings()
    database = settings.registry_uri.removeprefix("sqlite:///")
    if database == settings.registry_uri or not Path(database).is_file():
        sys.exit(f"RETAIL_REGISTRY_URI={settings.registry_uri} is not a sqlite registry file: run `make demo` first")
    retail = str(Path(sys.executable).parent / "retail")
    with tempfile.TemporaryDirectory(prefix="cli-bench-") as scratch:
        copy = Path(scratch) / "mlflow.db"
        shutil.copy(database, copy)
        env = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
               "RETAIL_REGISTRY_URI": f"sqlite:///{copy}", "RETAIL_ARTIFACT_ROOT": str(settings.artifact_root)}
        from ml.registry import Registry

        champion = Registry(Settings(registry_uri=f"sqlite:///{copy}")).champion_version()
        if champion is None:
            sys.exit(f"{database} holds no champion: run `make demo` first")
        commands = {
            "help": [retail, "--help"],
            "models list": [retail, "models", "list"],
            "models promote": [retail, "models", "promote", str(champion)],
        }
        print(f"{args.runs} runs each after one warm-up; {os.cpu_count()} CPUs; load average "
              f"{os.getloadavg()[0]:.2f} (1 min) at start")
        print(f"{'command':<24} {'min s':>7} {'median s':>9} {'max s':>7} {'target s':>9}  status")
        for name, command in commands.items():
            seconds = timed_runs(command, env, args.runs)
            median = statistics.median(seconds)
            status = "met" if median < TARGETS_SECONDS[name] else "NOT met"
            print(f"{'retail ' + name:<24} {min(seconds):>7.2f} {median:>9.2f} {max(seconds):>7.2f} "
                  f"{TARGETS_SECONDS[name]:>9.1f}  {status}")


if __name__ == "__main__":
    main()
