"""`retail demo`: the whole local lifecycle on a full-size synthetic file, then the API; or, with --loop, the
weekly monitoring loop replayed on small synthetic weeks (docs/monitoring.md)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import typer
from rich.console import Console

from cli.data import synth_config
from cli.extras import require_extras
from cli.report import print_summary
from cli.serve import curl_example, serve

console = Console(stderr=True)


def demo_api_key_file(work_dir: Path) -> Path:
    """A local API key for the demo server, created once, readable by this user only.

    The key is never printed: the curl example reads it from this file.
    """
    path = work_dir / "demo-api-key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32) + "\n")
    return path


def demo(
    rows: int = typer.Option(None, min=1000, show_default=False,
                             help="synthetic rows [default: 2,700,000, as the real file's smaller copies]"),
    data: Path = typer.Option(Path("data/transaction.csv"), help="where the synthetic file is written"),
    seed: int = typer.Option(None, show_default=False, help="[default: ml.synth's]"),
    serve_after: bool = typer.Option(True, "--serve/--no-serve", help="serve the champion when done"),
    port: int = typer.Option(8000, min=1, max=65535, help="port of the API when serving"),
    loop: bool = typer.Option(False, "--loop", help="instead: replay synthetic weeks, a drift among them, through "
                                                    "score, label, monitor and retrain/promote, under "
                                                    "RETAIL_WORK_DIR/demo-loop, and end with the report"),
    weeks: int = typer.Option(10, min=1, max=40, help="with --loop: weeks replayed"),
    drift_week: int = typer.Option(4, min=1, help="with --loop: the replayed week the market drifts in"),
) -> None:
    """Synthesise transactions, run the pipeline, print the summary, then serve the champion."""
    require_extras("retail demo", "ml", *(("monitor",) if loop else ("serve",) if serve_after else ()),
                   without={"serve": "--no-serve"})
    if loop:
        from cli.demo_loop import replay

        replay(weeks, drift_week, seed)
        return
    from ml.pipeline import run_pipeline
    from ml.progress import StageTimer
    from ml.settings import Settings
    from ml.synth import generate, write_csv

    config = synth_config(rows, seed)
    timer = StageTimer(console)
    with timer.stage("synth", f"Synthesising {config.rows:,} transactions into {data}"):
        write_csv(generate(config), data)
    settings = Settings()
    result = run_pipeline(data, settings, timer)
    print_summary(result, console)
    if not serve_after:
        return
    if result.registration["champion_version"] is None:
        console.print("No champion to serve: the gate did not pass (see the report above).", style="red")
        raise typer.Exit(1)
    if not (os.environ.get("RETAIL_API_KEYS") or os.environ.get("RETAIL_API_KEYS_FILE")):
        key_file = demo_api_key_file(settings.work_dir)
        os.environ["RETAIL_API_KEYS_FILE"] = str(key_file.resolve())
        key_hint = f"export RETAIL_API_KEYS=$(cat {key_file})"
    else:
        key_hint = "# RETAIL_API_KEYS holds your key"
    console.print(
        f"\nServing champion version {result.registration['champion_version']} on http://127.0.0.1:{port} "
        "(Ctrl-C to stop). Try, from another shell in this folder:\n",
        soft_wrap=True,
    )
    console.print(f"{key_hint}\n{curl_example('127.0.0.1', port)}\n", markup=False, highlight=False, soft_wrap=True)
    serve(host="127.0.0.1", port=port, workers=1, log_level="INFO")
