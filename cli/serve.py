"""`retail serve`: the inference API on this machine (the champion of the local registry by default)."""

from __future__ import annotations

import json
import os
import sys

import typer

from cli.extras import require_extras


def curl_example(host: str, port: int) -> str:
    """A working curl call of POST /v1/predict (the key read from $RETAIL_API_KEYS)."""
    from api.schemas import EXAMPLE_BASKET

    shown = "localhost" if host in ("0.0.0.0", "::") else host
    body = json.dumps(EXAMPLE_BASKET, separators=(",", ":"))
    return (
        f"curl -s http://{shown}:{port}/v1/predict \\\n"
        '  -H "Content-Type: application/json" -H "X-API-Key: ${RETAIL_API_KEYS%%,*}" \\\n'
        f"  -d '{body}'"
    )


def serve(
    host: str = typer.Option("127.0.0.1", help="interface to listen on (0.0.0.0 for all)"),
    port: int = typer.Option(8000, min=1, max=65535),
    workers: int = typer.Option(1, min=1, help="worker processes (about one per core)"),
    log_level: str = typer.Option("INFO", help="DEBUG, INFO, WARNING or ERROR"),
) -> None:
    """Serve the champion (or RETAIL_MODEL_URI) with API keys from RETAIL_API_KEYS or RETAIL_API_KEYS_FILE."""
    registry = () if os.environ.get("RETAIL_MODEL_URI") else ("ml",)  # the registry's champion comes through MLflow
    require_extras("retail serve", "serve", *registry)
    args = [sys.executable, "-m", "api", "--host", host, "--port", str(port), "--workers", str(workers),
            "--log-level", log_level]
    sys.stdout.flush()
    sys.stderr.flush()
    # A fresh interpreter: the server's thread settings must precede the first Polars import.
    os.execv(sys.executable, args)
