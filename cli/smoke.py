"""`retail smoke`: check a deployed inference service end to end, as the pipeline does after every deploy.

Three calls, each of which must succeed: GET /health/ready (polled until the rollout
answers, up to --wait seconds), GET /v1/model (which version is served) and
POST /v1/predict with one basket of synthetic transactions, whose answer must name a
known class, carry probabilities for every class that sum to 1, and come from the
version /v1/model reported. Only the standard library speaks HTTP here, so the
command runs wherever `retail` is installed.
"""

from __future__ import annotations

import json
import math
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import typer

from cli.console import print_error

SYNTH_ROWS = 200
READY_POLL_SECONDS = 5.0
BASKET_HEADER = ("BASKET_ID", "SHOP_HOUR", "CUST_CODE", "seg_1", "seg_2", "BASKET_SIZE", "BASKET_TYPE",
                 "BASKET_DOMINANT_MISSION", "STORE_CODE", "STORE_FORMAT", "STORE_REGION")
LINE_FIELDS = ("QUANTITY", "SPEND", "PROD_CODE", "PROD_CODE_10", "PROD_CODE_20", "PROD_CODE_30", "PROD_CODE_40")


class SmokeFailure(Exception):
    """A check of the deployed service failed; the message says which and what it answered."""


def synthetic_basket(seed: int = 11) -> dict[str, Any]:
    """The first labelled card holder's basket of several lines in a small synthetic file, as a POST body."""
    from ml.synth import SynthConfig, generate

    baskets: dict[int, list[dict]] = {}
    for row in generate(SynthConfig(rows=SYNTH_ROWS, seed=seed)).to_pylist():
        baskets.setdefault(row["BASKET_ID"], []).append(row)
    lines = next(rows for rows in baskets.values() if len(rows) > 1 and rows[0]["CUST_CODE"] is not None
                 and "XX" not in (rows[0]["BASKET_TYPE"], rows[0]["BASKET_PRICE_SENSITIVITY"]))
    first = lines[0]
    header = {key: first[key] for key in BASKET_HEADER if first[key] is not None}
    return {**header, "BASKET_ID": str(first["BASKET_ID"]), "SHOP_DATE": str(first["SHOP_DATE"]),
            "lines": [{key: line[key] for key in LINE_FIELDS} for line in lines]}


def call(method: str, url: str, api_key: str | None, body: dict | None, timeout: float) -> tuple[int, Any]:
    """Status code and decoded JSON body of one request; a non-JSON body comes back as text."""
    headers = {"Accept": "application/json"}
    if api_key:
        headers["X-API-Key"] = api_key
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")[:300]


def poll_ready(url: str, wait: float, interval: float, timeout: float = 10.0,
               alive: Callable[[], str | None] = lambda: None) -> Any:
    """The JSON body of the first 200 answer of GET `url` (a readiness route), asking every `interval` seconds for
    up to `wait` seconds; `alive` returns why to stop waiting (a server process that exited), or None.

    The one readiness poll of the project: the smoke test, the API test server and the serving benchmark use it.
    Raises SmokeFailure naming the last answer."""
    deadline = time.monotonic() + wait
    while True:
        try:
            status, body = call("GET", url, None, None, timeout)
            if status == 200:
                return body
            last = f"HTTP {status}: {body}"
        except (urllib.error.URLError, OSError) as exc:
            last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        if (gone := alive()) is not None:
            raise SmokeFailure(f"GET {url}: {gone}")
        if time.monotonic() >= deadline:
            raise SmokeFailure(f"GET {url} not ready after {wait:.0f} s; last answer: {last}")
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


def wait_until_ready(base: str, wait: float, timeout: float) -> str:
    """The served model version once GET /health/ready answers 200 and ready; polls every 5 s up to `wait` seconds."""
    body = poll_ready(f"{base}/health/ready", wait, READY_POLL_SECONDS, timeout)
    if not isinstance(body, dict) or body.get("status") != "ready":
        raise SmokeFailure(f"GET {base}/health/ready answered 200 but not ready: {body}")
    return str(body.get("model_version"))


def expect_ok(method: str, url: str, status: int, body: Any) -> dict:
    if status != 200 or not isinstance(body, dict):
        raise SmokeFailure(f"{method} {url} answered HTTP {status}: {body}")
    return body


def check_prediction(answer: dict, classes: list[str], version: str) -> None:
    """The answer names a known class with a probability per class summing to 1, from `version`."""
    probabilities = answer.get("probabilities", {})
    if answer.get("prediction") not in classes:
        raise SmokeFailure(f"prediction {answer.get('prediction')!r} is not one of the model's classes {classes}")
    if sorted(probabilities) != sorted(classes) or not math.isclose(sum(probabilities.values()), 1, abs_tol=1e-6):
        raise SmokeFailure(f"probabilities {probabilities} do not cover {classes} with a sum of 1")
    if answer.get("model_version") != version:
        raise SmokeFailure(f"the prediction came from version {answer.get('model_version')!r}, "
                           f"but /v1/model serves {version!r}")


def run_smoke(base: str, api_key: str, wait: float, timeout: float, expect_version: str | None) -> list[str]:
    """Run the three checks against `base`; one line per passed check, SmokeFailure at the first failure."""
    base = base.rstrip("/")
    passed = [f"GET /health/ready: ready, version {wait_until_ready(base, wait, timeout)}"]
    model = expect_ok("GET", f"{base}/v1/model", *call("GET", f"{base}/v1/model", api_key, None, timeout))
    version, classes = str(model.get("version")), list(model.get("classes", []))
    if expect_version is not None and version != expect_version:
        raise SmokeFailure(f"/v1/model serves version {version!r}, expected {expect_version!r}")
    passed.append(f"GET /v1/model: version {version}, family {model.get('family')}, classes {classes}")
    basket = synthetic_basket()
    answer = expect_ok("POST", f"{base}/v1/predict", *call("POST", f"{base}/v1/predict", api_key, basket, timeout))
    check_prediction(answer, classes, version)
    passed.append(f"POST /v1/predict: basket {basket['BASKET_ID']} ({len(basket['lines'])} lines) -> "
                  f"{answer['prediction']} ({answer['probabilities'][answer['prediction']]:.2f})")
    return passed


def smoke(
    url: str = typer.Option(..., help="base URL of the service, e.g. https://api.dev.retail-mlops.example.com"),
    api_key_env: str = typer.Option("RETAIL_API_KEY", help="environment variable holding one of its API keys"),
    wait: float = typer.Option(300, min=0, help="seconds to wait for /health/ready (a rollout in progress)"),
    timeout: float = typer.Option(10, min=0.1, help="seconds per request"),
    expect_version: str = typer.Option(None, help="fail unless /v1/model serves this version"),
) -> None:
    """Check a deployed service: readiness, the served model, one prediction of a synthetic basket."""
    api_key = os.environ.get(api_key_env, "")
    if not api_key:
        print_error(f"smoke test: ${api_key_env} is empty; set it to one of the service's API keys")
        raise typer.Exit(2)
    try:
        for line in run_smoke(url, api_key, wait, timeout, expect_version):
            typer.echo(f"ok  {line}")
    except SmokeFailure as exc:
        print_error(f"smoke test of {url} failed: {exc}")
        raise typer.Exit(1) from exc
    typer.echo(f"smoke test of {url} passed")
