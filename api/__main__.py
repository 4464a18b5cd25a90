"""`python -m api [--host H] [--port P] [--workers N]`: the container's entry point."""

from __future__ import annotations

import argparse

from api.server import run
from api.settings import ApiSettings


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m api", description="Serve the basket price-sensitivity model.")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--log-level", default=ApiSettings().log_level, help="default: RETAIL_LOG_LEVEL or INFO")
    args = parser.parse_args()
    run(args.host, args.port, args.workers, args.log_level)


if __name__ == "__main__":
    main()
