"""Schemathesis drives the live service from its own OpenAPI document, with every check it has: no 5xx, every
request valid by the document served, every invalid one refused, every response as documented.

Each operation gets its own bounded Hypothesis run per generation mode (valid bodies, then
invalid ones, with the API key), so a failure names the route. One rule of the bodies is not
in the document because JSON Schema cannot state it: SHOP_WEEKDAY, when sent, must be
SHOP_DATE's weekday (its description says so). Valid bodies are generated with that rule
applied (`with_consistent_weekdays`); every other rule, the segments' included, is the
document's own.
"""

from __future__ import annotations

import datetime as dt

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.generation import GenerationMode

from api.app import create_app
from tests.api.conftest import AUTH, api_settings, live_server, tiny_source

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 30  # with the 30 s request timeout, what bounds each operation's run (no deadline: a call is HTTP)
SUPPRESSED = [HealthCheck.too_slow]
"""Only too_slow: it times the generation of the first examples, which for the nested batch body depends on how
loaded the machine is, not on the service. The others stay on because each would mean a weaker fuzz:
filter_too_much (Schemathesis discarding most generated cases), data_too_large / large_base_example (bodies too big
to shrink). function_scoped_fixture, nested_given and differing_executors cannot fire: the inner `call` takes no
fixture, is not inside another @given and is a plain function. With none suppressed, none fired in four runs (three
at once)."""
OPERATIONS = [
    ("POST", "/v1/predict"),
    ("POST", "/v1/predict/batch"),
    ("GET", "/v1/model"),
    ("POST", "/v1/admin/reload"),
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    ("GET", "/metrics"),
]


@pytest.fixture(scope="module")
def fuzzed_url(tiny_bundle):
    app = create_app(api_settings(), source=tiny_source(tiny_bundle))
    with live_server(app) as url:
        yield url


@pytest.fixture(scope="module")
def api_schema(fuzzed_url):
    return schemathesis.openapi.from_url(f"{fuzzed_url}/openapi.json")


def test_the_document_lists_every_operation(api_schema):
    listed = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert listed == set(OPERATIONS)


def with_consistent_weekdays(case):
    """The case with each basket's SHOP_WEEKDAY set to its SHOP_DATE's (1 = Sunday), where both are present and
    the date is one; a SHOP_DATE the service cannot read is left for it to refuse."""
    body = case.body if isinstance(case.body, dict) else None
    baskets = body.get("baskets", []) if body is not None and "baskets" in body else [body] if body else []
    for basket in baskets:
        if not isinstance(basket, dict) or basket.get("SHOP_WEEKDAY") is None:
            continue
        try:
            day = dt.date.fromisoformat(str(basket.get("SHOP_DATE")))
        except ValueError:
            continue
        basket["SHOP_WEEKDAY"] = day.isoweekday() % 7 + 1
    return case


TAKING_INPUT = OPERATIONS[:4]
"""The operations with something to get wrong (a body or the API key header): the probes take no input, so no
request to them can be invalid."""
RUNS = [(*operation, GenerationMode.POSITIVE) for operation in OPERATIONS] + [
    (*operation, GenerationMode.NEGATIVE) for operation in TAKING_INPUT]


@pytest.mark.parametrize(("method", "path", "mode"), RUNS, ids=[f"{m} {p} {g.value}" for m, p, g in RUNS])
def test_every_check_holds_for_generated_requests_and_some_are_served(api_schema, fuzzed_url, method, path, mode):
    load_all_checks()
    checks = CHECKS.get_all()
    operation = api_schema[path][method]
    statuses = []
    strategy = operation.as_strategy(generation_mode=mode)
    if mode is GenerationMode.POSITIVE:
        strategy = strategy.map(with_consistent_weekdays)

    @given(case=strategy)
    @settings(max_examples=MAX_EXAMPLES, suppress_health_check=SUPPRESSED)
    def call(case):
        response = case.call_and_validate(base_url=fuzzed_url, headers=AUTH, timeout=30, checks=checks)
        statuses.append(response.status_code)

    call()
    if mode is GenerationMode.POSITIVE:
        assert any(200 <= status < 300 for status in statuses), f"no generated request was served: {set(statuses)}"
