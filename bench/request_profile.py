"""Where a prediction request's time goes: each stage of the hot path timed on its own.

    uv run python -m bench.request_profile [--repeats 2000]

For the registry's champion (RETAIL_REGISTRY_URI, RETAIL_MODEL_NAME) and synthetic
request bodies (the ones bench/serve.py sends), it times, per single basket and for
a 1,000-basket batch: parsing and validating the JSON body into the scorer's columns
(`api.body`), the compiled featurizer, the model, and building and serialising the
response; and, for comparison, what the service did before: validating with the
pydantic models, and the Polars featurizer (`BasketFeaturizer.transform` on a lines
frame). It prints
the median and p95 of each stage in microseconds and then the functions taking most
time in a cProfile run of the whole single-basket path. HTTP, the event loop and
the middleware are not in these figures: bench/serve.py measures the whole request.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
from collections.abc import Callable
from pathlib import Path

import orjson

from api.app import settle_collector
from api.body import JSON_CONTENT_TYPE, parse_batch, parse_single
from api.routes.predict import predictions
from api.schemas import Basket, BatchRequest
from api.settings import ApiSettings
from bench.serve import lines_frame, sample_baskets, timed
from ml.bundle import load_bundle
from ml.settings import Settings


def stages(bundle, bodies: list[bytes], batch_body: bytes) -> dict[str, dict[str, Callable[[], object]]]:
    """For one basket and for the batch: each stage as a call on inputs prepared by the stage before."""
    plans = {}
    for name, body, parse, model in (
        ("single basket", bodies[0], parse_single, Basket),
        ("batch of 1000", batch_body, parse_batch, BatchRequest),
    ):
        parsed = parse(body, JSON_CONTENT_TYPE)
        encoded = bundle.compiled.encode_columns(parsed.columns)
        matrix = bundle.compiled.transform(encoded)
        probabilities = bundle.probabilities(matrix)
        validated = model.model_validate_json(body)
        frame = lines_frame([validated] if model is Basket else validated.baskets)
        plans[name] = {
            "parse and validate the body (msgspec path)": lambda body=body, parse=parse: parse(body, JSON_CONTENT_TYPE),
            "compiled featurizer: encode": lambda parsed=parsed: bundle.compiled.encode_columns(parsed.columns),
            "compiled featurizer: transform": lambda encoded=encoded: bundle.compiled.transform(encoded),
            "model": lambda matrix=matrix: bundle.probabilities(matrix),
            "response: build and serialise": lambda parsed=parsed, p=probabilities: orjson.dumps(
                {"predictions": predictions(bundle.classes, parsed.ids, p)}),
            "(before) parse and validate with the pydantic models": lambda body=body, model=model: (
                model.model_validate_json(body)),
            "(before) Polars featurizer on a lines frame": lambda frame=frame: bundle.featurizer.matrix(
                bundle.featurizer.transform(frame)),
        }
    return plans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2000, help="calls per single-basket stage (batch: a tenth)")
    args = parser.parse_args()
    settings = Settings()
    from ml.registry import Registry

    registry = Registry(settings)
    version = registry.champion_version()
    if version is None:
        raise SystemExit(f"no champion in {settings.registry_uri}: run `retail demo` or `retail pipeline run` first")
    bundle = load_bundle(Path(registry.download(version)))
    settle_collector(ApiSettings().gc_gen0_threshold)  # the collector as the service runs it once started
    baskets = sample_baskets(1000)
    bodies = [json.dumps(b).encode() for b in baskets]
    batch_body = json.dumps({"baskets": baskets}).encode()
    lines = sum(len(b["lines"]) for b in baskets) / len(baskets)
    print(f"champion version {version} ({bundle.meta['family']}), {len(bundle.featurizer.feature_names_)} features; "
          f"single basket of {len(baskets[0]['lines'])} lines; batch of {len(baskets)} ({lines:.1f} lines on average)")
    for name, plan in stages(bundle, bodies, batch_body).items():
        repeats = args.repeats if name == "single basket" else max(args.repeats // 10, 20)
        print(f"\n{name} ({repeats} calls per stage)\n{'stage':<46} {'p50 us':>10} {'p95 us':>10}")
        total = 0.0
        for stage, call in plan.items():
            p50, p95 = timed(call, repeats)
            if not stage.startswith("(before)"):
                total += p50
            print(f"{stage:<46} {p50:>10.1f} {p95:>10.1f}")
        print(f"{'sum of the service path p50s':<46} {total:>10.1f}")

    single = stages(bundle, bodies, batch_body)["single basket"]
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(args.repeats):
        for stage, call in single.items():
            if not stage.startswith("(before)"):
                call()
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(15)
    print("\ncProfile of the single-basket service path, by own time:\n" + out.getvalue())


if __name__ == "__main__":
    main()
