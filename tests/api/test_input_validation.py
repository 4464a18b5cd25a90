"""Malformed and unknown values, and size limits: 422 naming the field, 413 for oversized bodies."""

from __future__ import annotations

import json

import pytest

from api.schemas import MAX_BASKET_LINES, Basket
from tests.api.conftest import AUTH, basket, basket_with_line


def error_locations(response) -> list[tuple]:
    return [tuple(error["loc"]) for error in response.json()["detail"]]


def test_an_unseen_product_code_falls_back_to_its_hierarchy(client):
    unseen = basket_with_line(PROD_CODE="PRD0999999", PROD_CODE_10="CL99999")
    assert client.post("/v1/predict", json=unseen, headers=AUTH).status_code == 200


def test_a_malformed_product_code_is_422_naming_the_line_field(client):
    response = client.post("/v1/predict", json=basket_with_line(PROD_CODE="PRD-1"), headers=AUTH)
    assert response.status_code == 422
    assert error_locations(response) == [("body", "lines", 0, "PROD_CODE")]


def test_a_code_outside_a_closed_domain_is_422_naming_the_field(client):
    response = client.post("/v1/predict", json=basket(STORE_REGION="X01"), headers=AUTH)
    assert response.status_code == 422
    assert error_locations(response) == [("body", "STORE_REGION")]


def test_a_malformed_store_code_is_422_naming_the_field(client):
    response = client.post("/v1/predict", json=basket(STORE_CODE="STORE1"), headers=AUTH)
    assert error_locations(response) == [("body", "STORE_CODE")]


def test_an_unknown_segment_code_is_422_naming_the_field(client):
    response = client.post("/v1/predict", json=basket(seg_1="ZZ"), headers=AUTH)
    assert error_locations(response) == [("body", "seg_1")]


def test_negative_spend_and_zero_quantity_are_422(client):
    response = client.post("/v1/predict", json=basket_with_line(SPEND=-1.0, QUANTITY=0), headers=AUTH)
    assert set(error_locations(response)) == {("body", "lines", 0, "SPEND"), ("body", "lines", 0, "QUANTITY")}


def test_a_coded_segment_that_contradicts_the_decoded_one_is_422(client):
    response = client.post("/v1/predict", json=basket(seg_1="AZ", CUST_PRICE_SENSITIVITY="UM"), headers=AUTH)
    assert response.status_code == 422
    assert "seg_1=AZ means LA but CUST_PRICE_SENSITIVITY=UM" in response.text


def test_a_weekday_that_contradicts_the_date_is_422(client):
    response = client.post("/v1/predict", json=basket(SHOP_DATE="20080412", SHOP_WEEKDAY=2), headers=AUTH)
    assert response.status_code == 422
    assert "SHOP_WEEKDAY 2 disagrees with SHOP_DATE" in response.text


def test_an_impossible_date_is_422_naming_the_field(client):
    response = client.post("/v1/predict", json=basket(SHOP_DATE="20080231"), headers=AUTH)
    assert error_locations(response) == [("body", "SHOP_DATE")]


@pytest.mark.parametrize("value", [0, 1207958400, "1207958400", "2008-04-12T00:00:00", "2008-4-12", "12/04/2008"])
def test_a_date_in_a_form_the_document_does_not_allow_is_422_naming_the_field(client, value):
    """Only YYYYMMDD (text or a number) and YYYY-MM-DD: pydantic's date alone would read a Unix time (0 as
    1970-01-01) or a timestamp at midnight, which the OpenAPI document's `format: date` does not allow."""
    response = client.post("/v1/predict", json=basket(SHOP_DATE=value, SHOP_WEEKDAY=None), headers=AUTH)
    assert response.status_code == 422
    assert error_locations(response) == [("body", "SHOP_DATE")]
    assert "YYYYMMDD (text or a number) or YYYY-MM-DD" in response.text
    for taken in (20080412, "20080412", "2008-04-12"):
        assert client.post("/v1/predict", json=basket(SHOP_DATE=taken), headers=AUTH).status_code == 200


def test_an_unknown_field_is_422_rather_than_ignored(client):
    response = client.post("/v1/predict", json=basket(CUST_PRICE_SENSITIVTY="LA"), headers=AUTH)
    assert error_locations(response) == [("body", "CUST_PRICE_SENSITIVTY")]


def test_a_basket_without_lines_is_422(client):
    assert client.post("/v1/predict", json=basket(lines=[]), headers=AUTH).status_code == 422


def test_a_basket_over_the_line_limit_is_422(client):
    lines = basket()["lines"][:1] * (MAX_BASKET_LINES + 1)
    response = client.post("/v1/predict", json=basket(lines=lines), headers=AUTH)
    assert error_locations(response) == [("body", "lines")]


def test_a_batch_over_the_basket_limit_is_422_with_the_limit_in_the_message(client):
    response = client.post("/v1/predict/batch", json={"baskets": [basket()] * 1001}, headers=AUTH)
    assert response.status_code == 422
    assert error_locations(response) == [("body", "baskets")]
    assert "1001 baskets in one batch; the limit is 1000" in response.text


def test_a_body_declared_over_the_limit_is_413_before_it_is_read(client):
    big = json.dumps({"baskets": [basket()] * 20_000})
    response = client.post("/v1/predict/batch", content=big, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 413
    assert "RETAIL_MAX_BODY_BYTES" in response.json()["detail"]


def test_a_streamed_body_over_the_limit_is_413(client):
    chunk = json.dumps(basket()).encode()

    def stream():
        yield b'{"baskets": ['
        for _ in range(20_000):
            yield chunk + b","
        yield chunk + b"]}"

    response = client.post("/v1/predict/batch", content=stream(), headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 413


def test_a_body_that_is_not_json_is_422(client):
    response = client.post("/v1/predict", content=b"{not json", headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 422


def test_a_lower_line_limit_from_the_settings_is_enforced_naming_the_basket(tiny_bundle):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from tests.api.conftest import api_settings, tiny_source

    app = create_app(api_settings(max_basket_lines=2), source=tiny_source(tiny_bundle))
    two, three = (basket(lines=basket()["lines"][:1] * n) for n in (2, 3))
    with TestClient(app) as limited:
        assert limited.post("/v1/predict", json=two, headers=AUTH).status_code == 200
        single = limited.post("/v1/predict", json=three, headers=AUTH)
        assert single.status_code == 422 and error_locations(single) == [("body", "lines")]
        assert "3 lines in one basket; the limit is 2 (RETAIL_MAX_BASKET_LINES)" in single.text
        batch = limited.post("/v1/predict/batch", json={"baskets": [basket(), three]}, headers=AUTH)
        assert batch.status_code == 422 and error_locations(batch) == [("body", "baskets", 1, "lines")]


def test_non_finite_numbers_are_422_naming_the_field_not_a_server_error(client):
    for raw in (b"NaN", b"Infinity", b"1e400"):
        body = json.dumps(basket()).encode().replace(b'"SPEND": 1.58', b'"SPEND": ' + raw)
        response = client.post("/v1/predict", content=body, headers={**AUTH, "content-type": "application/json"})
        assert response.status_code == 422, raw
        assert error_locations(response) == [("body", "lines", 0, "SPEND")]


def _numeric_fields() -> list[tuple[str, str]]:
    """(model, field) of every field the document types as a JSON integer or number, read from the document."""
    schema = Basket.model_json_schema()
    models = {"Basket": schema["properties"], **{name: d["properties"] for name, d in schema["$defs"].items()}}
    found = []
    for model, properties in models.items():
        for field, spec in properties.items():
            types = {spec.get("type"), *(option.get("type") for option in spec.get("anyOf", []))}
            if types & {"integer", "number"} and "string" not in types:
                found.append((model, field))
    return found


@pytest.mark.parametrize("value", [True, "14"])
@pytest.mark.parametrize(("model", "field"), _numeric_fields())
def test_a_numeric_field_takes_only_a_json_number(client, model, field, value):
    """Pydantic's lax mode would read `true` as 1 and "14" as 14, accepting what the document refuses (found by
    the OpenAPI fuzz: a batch whose SPENDs were booleans was answered 200)."""
    body, location = ((basket_with_line(**{field: value}), ("body", "lines", 0, field)) if model == "BasketLine"
                      else (basket(**{field: value}), ("body", field)))
    response = client.post("/v1/predict", json=body, headers=AUTH)
    assert response.status_code == 422 and error_locations(response) == [location]
    batch = client.post("/v1/predict/batch", json={"baskets": [basket(), body]}, headers=AUTH)
    assert batch.status_code == 422 and error_locations(batch) == [("body", "baskets", 1, *location[1:])]
