"""Load test: this service against `mlflow models serve` on the same champion, same load, same workers.

    uv run python -m bench.serve [--workers 1] [--connections 16] [--duration 10]

Both servers run on 127.0.0.1 with the same number of worker processes and
POLARS_MAX_THREADS=1, serving the registry's champion (RETAIL_REGISTRY_URI,
RETAIL_MODEL_NAME). wrk, in its own process, sends the same synthetic baskets to
both, in each server's input format (this API's JSON basket; MLflow's pandas
`dataframe_split` of lines), runs one at a time and bounded in time:

1. single baskets at fixed concurrency: each server's saturation throughput;
2. this service paced at the MLflow server's saturation throughput: latency at the
   load where the peer saturates;
3. one batch of 1,000 baskets per request, one connection: batch latency.

It prints throughput and p50/p95/p99 for each run and the throughput ratio. wrk is
not installed by this script: `apt-get install wrk` (Debian/Ubuntu) or `brew install wrk`.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import polars as pl

from api.frames import lines_frame
from api.schemas import Basket
from ml.schema import BASKET_KEY, LABEL
from ml.settings import Settings
from ml.synth import SynthConfig, generate

SINGLE_BASKETS = 200  # distinct single-basket bodies, sent in rotation
BATCH_BASKETS = 1000
WRK_SCRIPT = """
local bodies = {}
for line in io.lines(os.getenv("BENCH_BODIES")) do bodies[#bodies + 1] = line end
local headers = {["Content-Type"] = "application/json"}
local key = os.getenv("BENCH_API_KEY")
if key ~= nil and key ~= "" then headers["X-API-Key"] = key end
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
local i = 0
request = function()
  i = i % #bodies + 1
  return wrk.format("POST", nil, headers, bodies[i])
end
-- Exponential think time: connections send independently instead of in step.
if pause > 0 then delay = function() return -pause * math.log(1 - math.random()) end end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "seconds": %f, "failed": %d, "p50_ms": %f, "p95_ms": %f, "p99_ms": %f}\\n',
    summary.requests, summary.duration / 1e6, e.connect + e.read + e.write + e.timeout + e.status,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
"""


@dataclass(frozen=True)
class Result:
    name: str
    requests: int
    seconds: float
    failed: int
    p50_ms: float
    p95_ms: float
    p99_ms: float

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def row(self) -> str:
        return (f"{self.name:<44} {self.throughput:>9.1f} {self.p50_ms:>8.2f} {self.p95_ms:>8.2f} "
                f"{self.p99_ms:>8.2f} {self.failed:>7d}")


def sample_baskets(count: int) -> list[dict]:
    """Synthetic baskets in the data set's own layout (coded segments, YYYYMMDD dates), as API bodies."""
    raw = pl.from_arrow(generate(SynthConfig(rows=60_000, seed=SynthConfig.seed))).drop(LABEL, "SHOP_WEEK")
    header = [c for c in raw.columns if c not in ("QUANTITY", "SPEND") and not c.startswith("PROD_CODE")]
    baskets = []
    for _, group in raw.group_by("BASKET_ID", maintain_order=True):
        body = group.select(header).row(0, named=True)
        body["lines"] = group.select("QUANTITY", "SPEND", "PROD_CODE", "PROD_CODE_10", "PROD_CODE_20",
                                     "PROD_CODE_30", "PROD_CODE_40").to_dicts()
        baskets.append(body)
        if len(baskets) == count:
            return baskets
    raise RuntimeError(f"the synthetic sample holds fewer than {count} baskets")


def mlflow_body(baskets: list[dict]) -> str:
    """The same baskets as MLflow's input: a pandas `dataframe_split` of lines, BASKET_ID grouping them."""
    frame = lines_frame([Basket.model_validate(b) for b in baskets])
    ids = pl.Series(BASKET_KEY, [str(b["BASKET_ID"]) for b in baskets])
    frame = frame.with_columns(pl.col(BASKET_KEY).cast(pl.Int64).map_elements(ids.__getitem__, pl.String))
    frame = frame.rename({BASKET_KEY: "BASKET_ID"}).with_columns(pl.col("SHOP_DATE").cast(pl.String))
    return json.dumps({"dataframe_split": {"columns": frame.columns, "data": frame.rows()}})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running(name: str, command: list[str], env: dict[str, str], ready_url: str, log: Path):
    """A server process, from ready until the block ends."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with {process.returncode}; see {log}")
                try:
                    if httpx.get(ready_url, timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.5)
            else:
                raise RuntimeError(f"{name} was not ready after 180 s; see {log}")
            yield
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def wrk(name: str, url: str, bodies: Path, script: Path, connections: int, seconds: int,
        api_key: str = "", delay_ms: float = 0.0) -> Result:
    env = {**os.environ, "BENCH_BODIES": str(bodies), "BENCH_API_KEY": api_key, "BENCH_DELAY_MS": f"{delay_ms:.3f}"}
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), url]
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    line = next(x for x in output.splitlines() if x.startswith("BENCH "))
    return Result(name, **json.loads(line.removeprefix("BENCH ")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1, help="server worker processes, on both sides")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections for single baskets")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not on PATH: install it (`apt-get install wrk` on Debian/Ubuntu, `brew install wrk` on "
                 "macOS) and run again")
    settings = Settings()
    from ml.registry import Registry

    champion = Registry(settings).champion_version()
    if champion is None:
        sys.exit(f"no champion in {settings.registry_uri}: run `retail demo` or `retail pipeline run` first")

    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    baskets = sample_baskets(BATCH_BASKETS)
    singles = baskets[:SINGLE_BASKETS]
    files = {
        "api_single": "\n".join(json.dumps(b) for b in singles),
        "api_batch": json.dumps({"baskets": baskets}),
        "mlflow_single": "\n".join(mlflow_body([b]) for b in singles),
        "mlflow_batch": mlflow_body(baskets),
    }
    for name, text in files.items():
        (work / f"{name}.jsonl").write_text(text + "\n")
    script = work / "bench.lua"
    script.write_text(WRK_SCRIPT)
    mean_lines = sum(len(b["lines"]) for b in singles) / len(singles)
    print(f"champion version {champion}; {args.workers} worker(s) per server; wrk -t1 -c{args.connections}, "
          f"{args.duration}s runs; {len(singles)} single baskets ({mean_lines:.1f} lines on average); "
          f"batch of {len(baskets)} baskets; {os.cpu_count()} CPUs", flush=True)

    common = {"POLARS_MAX_THREADS": "1", "OMP_NUM_THREADS": "1"}
    api_key = secrets.token_urlsafe(24)
    api_port, mlflow_port = free_port(), free_port()
    api_env = {**common, "RETAIL_API_KEYS": api_key, "RETAIL_RELOAD_INTERVAL_SECONDS": "0"}
    api_cmd = [sys.executable, "-m", "api", "--host", "127.0.0.1", "--port", str(api_port),
               "--workers", str(args.workers)]
    mlflow_env = {**common, "MLFLOW_TRACKING_URI": settings.registry_uri, "MLFLOW_REGISTRY_URI": settings.registry_uri}
    mlflow_cmd = [str(Path(sys.executable).with_name("mlflow")), "models", "serve", "-m",
                  f"models:/{settings.model_name}@champion", "--env-manager", "local", "-h", "127.0.0.1",
                  "-p", str(mlflow_port), "-w", str(args.workers)]
    api_url, mlflow_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{mlflow_port}"
    results: list[Result] = []
    c, d = args.connections, args.duration

    with running("mlflow models serve", mlflow_cmd, mlflow_env, f"{mlflow_url}/ping", work / "mlflow.log"):
        invocations = f"{mlflow_url}/invocations"
        wrk("warm-up", invocations, work / "mlflow_single.jsonl", script, c, 3)
        peer = wrk(f"mlflow serve: single, c={c}", invocations, work / "mlflow_single.jsonl", script, c, d)
        results.append(peer)
        results.append(wrk("mlflow serve: batch of 1000, c=1", invocations, work / "mlflow_batch.jsonl", script, 1,
                           max(d // 2, 3)))

    with running("retail API", api_cmd, api_env, f"{api_url}/health/ready", work / "api.log"):
        predict = f"{api_url}/v1/predict"
        wrk("warm-up", predict, work / "api_single.jsonl", script, c, 3, api_key)
        ours = wrk(f"retail API: single, c={c}", predict, work / "api_single.jsonl", script, c, d, api_key)
        results.append(ours)
        idle = wrk("retail API: single, c=1", predict, work / "api_single.jsonl", script, 1, 3, api_key)
        results.append(idle)
        # Pace each connection (random think time, mean `delay`) so the offered load is the peer's saturation
        # throughput.
        delay = max(c * 1000 / peer.throughput - idle.p50_ms, 0.0)
        results.append(wrk(f"retail API: paced at mlflow's {peer.throughput:.0f} req/s", predict,
                           work / "api_single.jsonl", script, c, d, api_key, delay))
        results.append(wrk("retail API: batch of 1000, c=1", f"{api_url}/v1/predict/batch", work / "api_batch.jsonl",
                           script, 1, max(d // 2, 3), api_key))

    print(f"\n{'run':<44} {'req/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'failed':>7}")
    for result in results:
        print(result.row())
    print(f"\nthroughput ratio, single baskets at c={c}: {ours.throughput / peer.throughput:.1f}x "
          f"(retail API {ours.throughput:.0f} req/s, mlflow serve {peer.throughput:.0f} req/s)")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
