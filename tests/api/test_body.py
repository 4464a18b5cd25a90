"""The fast body path (`api.body`) against the pydantic models and FastAPI, which define the bodies.

Three properties, over hand-picked and generated bodies (valid baskets with one value replaced,
removed or added):
- whatever the fast path accepts, the models accept, with the same values for the scorer;
- the two routes answer every body exactly as a plain FastAPI route taking the model does
  (status and JSON, so the same 422 details);
- valid bodies in the data set's usual form do take the fast path (else the speed-up would
  silently be gone while everything above still held).
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
from collections.abc import Iterator

import httpx2
import orjson
import pytest
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from hypothesis import given, settings
from hypothesis import strategies as st

from api import body as fast
from api.schemas import EXAMPLE_BASKET, Basket, BatchRequest
from ml.schema import CODE_PATTERNS
from tests.api.conftest import basket

HEADER_KEYS = [key for key in EXAMPLE_BASKET if key != "lines"] + [
    "SHOP_WEEK", "SHOP_WEEKDAY", "CUST_PRICE_SENSITIVITY", "CUST_LIFESTAGE", "NOT_A_FIELD"]
LINE_KEYS = list(EXAMPLE_BASKET["lines"][0]) + ["NOT_A_FIELD"]
EDGE_VALUES = [
    None, True, 0, 1, -1, 2.0, 2.5, 14, 24, 1e400, 10**20, 20080412, 20080231, 2008041, -2008041, 1207958400,
    "", "PRD0900001", "PRD0900001\n", "PRD09\u0660\u0660\u0660\u0660\u0661", "PRD09000012", "CL00001\n",
    "STORE00001", "STORE00001\n", "CUST0000123456", "CUST0000123456\n", "20080412", "2008-04-12", "2008-4-12",
    "20080231", "2008-04-12T00:00:00", "\uff12\uff10\uff10\uff18\uff10\uff14\uff11\uff12", "2", "14", "1.5",
    "CT", "AZ", "UM", "LA", "YF", "L", "Top Up", "Fresh", "LS", "E02", "X01", "x" * 65, [], {}, [1], {"a": 1},
]
json_values = st.one_of(st.sampled_from(EDGE_VALUES), st.integers(), st.floats(allow_nan=False),
                        st.text(max_size=20))


@st.composite
def mutated_baskets(draw) -> dict:
    """A valid basket with one header or line value replaced, removed or added."""
    body = copy.deepcopy(EXAMPLE_BASKET)
    target = draw(st.sampled_from(["header", "line"]))
    record = body if target == "header" else body["lines"][draw(st.integers(0, len(body["lines"]) - 1))]
    key = draw(st.sampled_from(HEADER_KEYS if target == "header" else LINE_KEYS))
    if draw(st.booleans()) and key in record:
        del record[key]
    else:
        record[key] = draw(json_values)
    return body


class InProcessClient:
    """Posts to an ASGI app through httpx2's ASGI transport on one event loop kept open: a fifth to an eighth of
    TestClient's cost per request (0.5-0.9 against 4.1-4.5 ms for one basket, three rounds of 2,000 posts with
    httpx2 on 2026-11-28), which crosses to a portal thread and back for each, and these tests post thousands of
    bodies. Exceptions in the app are raised here, as TestClient raises them."""

    def __init__(self, app: FastAPI):
        self._loop = asyncio.new_event_loop()
        self._client = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://test")

    def post(self, path: str, content: bytes, headers: dict[str, str] | None = None) -> httpx2.Response:
        return self._loop.run_until_complete(self._client.post(path, content=content, headers=headers))

    def close(self) -> None:
        self._loop.run_until_complete(self._client.aclose())
        self._loop.close()


def reference_and_ours() -> tuple[InProcessClient, InProcessClient]:
    """A FastAPI app taking the models as body parameters, and one reading its bodies through `api.body`; both with
    the service's 422 handler (FastAPI's own fails on NaN, see `validation_error_response`)."""
    reference, ours = FastAPI(), FastAPI()
    for app in (reference, ours):
        app.add_exception_handler(RequestValidationError, fast.validation_error_response)

    @reference.post("/one")
    async def one_reference(_: Basket) -> dict:
        return {}

    @reference.post("/many")
    async def many_reference(_: BatchRequest) -> dict:
        return {}

    @ours.post("/one")
    async def one_ours(request: Request) -> dict:
        fast.parse_single(await request.body(), request.headers.get("content-type"))
        return {}

    @ours.post("/many")
    async def many_ours(request: Request) -> dict:
        fast.parse_batch(await request.body(), request.headers.get("content-type"))
        return {}

    return InProcessClient(reference), InProcessClient(ours)


@pytest.fixture(scope="module")
def clients() -> Iterator[tuple[InProcessClient, InProcessClient]]:
    pair = reference_and_ours()
    yield pair
    for client in pair:
        client.close()


def fast_path(body: bytes, batch: bool) -> fast.ParsedBaskets | None:
    """What the fast path alone makes of a JSON body: None when it does not vouch for it."""
    try:
        decoded = fast._BATCH.decode(body).baskets if batch else [fast._BASKET.decode(body)]
    except fast.NOT_DECODED:  # what the routes treat as "not accepted"; anything else would be a 500
        return None
    return fast._accepted(decoded)


def assert_same_as_the_models(body: bytes, batch: bool) -> None:
    accepted = fast_path(body, batch)
    if accepted is None:
        return
    model = BatchRequest if batch else Basket
    validated = model.model_validate_json(body)
    expected = fast.columns_of(validated.baskets if batch else [validated])
    assert accepted == expected, f"the fast path read {body[:300]!r} differently from the models"


def answer(response) -> tuple[int, object]:
    """The status and the decoded body, a float kept apart from an integer: an input echoed as 200000.0 is not the
    answer 200000 is (Python's == would take them as equal)."""
    return response.status_code, response.json(parse_float=lambda text: ("float", text))


def assert_same_answer(clients, body: bytes, batch: bool, content_type: str = "application/json") -> None:
    reference, ours = clients
    path = "/many" if batch else "/one"
    expected = reference.post(path, content=body, headers={"content-type": content_type})
    answered = ours.post(path, content=body, headers={"content-type": content_type})
    assert answer(answered) == answer(expected), body[:300]


def every_edge_case() -> list[dict]:
    """The example basket with each header and line key set to each edge value in turn, or removed."""
    bodies = []
    for key in HEADER_KEYS + LINE_KEYS:
        for value in [*EDGE_VALUES, KeyError]:
            body = copy.deepcopy(EXAMPLE_BASKET)
            record = body if key in HEADER_KEYS else body["lines"][1]
            if value is KeyError:
                record.pop(key, None)
            else:
                record[key] = value
            bodies.append(body)
    return bodies


def test_what_the_fast_path_accepts_the_models_accept_with_the_same_values_for_every_edge_case():
    for body in every_edge_case():
        assert_same_as_the_models(json.dumps(body).encode(), batch=False)
        assert_same_as_the_models(json.dumps({"baskets": [EXAMPLE_BASKET, body]}).encode(), batch=True)


def test_the_single_route_answers_every_edge_case_as_fastapi_answers_it(clients):
    for body in every_edge_case():
        assert_same_answer(clients, json.dumps(body).encode(), batch=False)


@settings(max_examples=300)
@given(mutated_baskets())
def test_what_the_fast_path_accepts_the_models_accept_with_the_same_values(body):
    assert_same_as_the_models(json.dumps(body).encode(), batch=False)
    assert_same_as_the_models(json.dumps({"baskets": [EXAMPLE_BASKET, body]}).encode(), batch=True)


@settings(max_examples=150)
@given(mutated_baskets())
def test_both_routes_answer_as_fastapi_answers_with_the_models(clients, body):
    assert_same_answer(clients, json.dumps(body).encode(), batch=False)
    assert_same_answer(clients, json.dumps({"baskets": [body, EXAMPLE_BASKET]}).encode(), batch=True)


@pytest.mark.parametrize("raw", [
    b"", b"{", b"not json", b"[]", b"null", b'{"baskets": []}', b'{"baskets": {}}', b'{"baskets": [1]}',
    json.dumps({**EXAMPLE_BASKET, "SHOP_HOUR": 3, "SHOP_HOUR ": 3}).encode(),
    b'{"SHOP_HOUR": 1, "SHOP_HOUR": 99}',  # duplicate keys: the last one counts, for json.loads as for msgspec
    json.dumps({"baskets": [EXAMPLE_BASKET]}).encode().replace(b'"SHOP_HOUR": 14', b'"SHOP_HOUR": 14, "SHOP_HOUR": 99'),
    json.dumps(EXAMPLE_BASKET).encode().replace(b'"SHOP_HOUR": 14', b'"SHOP_HOUR": 99, "SHOP_HOUR": 14'),
    json.dumps(EXAMPLE_BASKET).encode().replace(b'"SPEND": 1.58', b'"SPEND": NaN'),
    json.dumps(EXAMPLE_BASKET).encode().replace(b'"SPEND": 1.58', b'"SPEND": 1e400'),
    json.dumps(EXAMPLE_BASKET).encode().replace(b'"SHOP_HOUR": 14', b'"SHOP_HOUR": -Infinity'),
    json.dumps(EXAMPLE_BASKET, ensure_ascii=False).encode("utf-16"),
    json.dumps(EXAMPLE_BASKET).encode().replace(b'"CT"', b'"C\xff"'),  # not UTF-8: FastAPI's 400
    b"[" * 100_000,  # nested deeper than json.loads recurses: FastAPI's 400
])
def test_malformed_and_edge_bodies_are_answered_as_fastapi_answers_them(clients, raw):
    for batch in (False, True):
        assert_same_as_the_models(raw, batch) if raw else None
        assert_same_answer(clients, raw, batch)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "application/json; charset=utf-8", "application/merge-patch+json",
                                          "APPLICATION/JSON"])
def test_content_types_are_read_as_fastapi_reads_them(clients, content_type):
    assert_same_answer(clients, json.dumps(EXAMPLE_BASKET).encode(), False, content_type)
    assert_same_answer(clients, json.dumps({"baskets": [EXAMPLE_BASKET]}).encode(), True, content_type)


def test_a_missing_content_type_is_answered_as_fastapi_answers_it(clients):
    reference, ours = clients
    expected = reference.post("/one", content=json.dumps(EXAMPLE_BASKET).encode())
    answered = ours.post("/one", content=json.dumps(EXAMPLE_BASKET).encode())
    assert (answered.status_code, answered.json()) == (expected.status_code, expected.json())


def test_valid_baskets_in_the_data_sets_forms_take_the_fast_path():
    forms = [
        EXAMPLE_BASKET,
        basket(SHOP_DATE=20080412, SHOP_WEEKDAY=7, BASKET_ID=994110500123456),
        basket(SHOP_DATE="2008-04-12", seg_1=None, seg_2=None, CUST_PRICE_SENSITIVITY="LA", CUST_LIFESTAGE="YF"),
        basket(seg_1="AZ", CUST_PRICE_SENSITIVITY="LA", CUST_CODE=None, SHOP_WEEK=200815),
    ]
    for form in forms:
        body = orjson.dumps(form)
        accepted = fast_path(body, batch=False)
        assert accepted is not None, f"the fast path refused a valid basket: {form}"
        assert accepted == fast.columns_of([Basket.model_validate_json(body)])
    assert fast_path(orjson.dumps({"baskets": forms}), batch=True) is not None


def test_every_code_pattern_is_anchored_so_fullmatch_reads_it_as_the_models_do():
    for column, pattern in CODE_PATTERNS.items():
        assert pattern.startswith("^") and pattern.endswith("$"), column
    with pytest.raises(ValueError, match="not anchored"):
        fast._full_match(r"PRD\d+")


@pytest.mark.parametrize("raw", [
    json.dumps(EXAMPLE_BASKET).encode().replace(b'"994110500123456"', b'"\\ud800"'),  # a lone surrogate
    json.dumps(EXAMPLE_BASKET).encode().replace(b'"SPEND": 1.58', b'"SPEND": NaN'),
])
def test_inputs_fastapi_cannot_echo_are_still_a_422(clients, raw):
    """FastAPI's own handler fails to encode these inputs in its 422 (a 500); the service's handler writes them."""
    _, ours = clients
    for path in ("/one", "/many"):
        body = raw if path == "/one" else b'{"baskets": [' + raw + b"]}"
        response = ours.post(path, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422, response.text


def test_the_document_describes_the_bodies_and_the_422_of_both_routes():
    from api.app import create_app
    from tests.api.conftest import api_settings

    document = create_app(api_settings(), source=object()).openapi()
    schemas = document["components"]["schemas"]
    for path, model in (("/v1/predict", "Basket"), ("/v1/predict/batch", "BatchRequest")):
        operation = document["paths"][path]["post"]
        assert operation["requestBody"]["content"]["application/json"]["schema"] == {
            "$ref": f"#/components/schemas/{model}"}
        assert operation["responses"]["422"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/HTTPValidationError"}
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(document)))
    assert refs <= set(schemas), f"refs to missing schemas: {refs - set(schemas)}"
