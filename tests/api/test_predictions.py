"""POST /v1/predict, POST /v1/predict/batch and GET /v1/model: on the small run's registered champion, and what any
model's service does with the baskets (on the tiny bundle)."""

from __future__ import annotations

import numpy as np
import pytest

from api.schemas import BatchResponse, PredictResponse
from ml.bundle import load_bundle
from ml.registry import Registry
from tests.api.conftest import AUTH, basket


def test_predict_returns_the_class_its_probabilities_and_the_model_version(champion_client):
    response = champion_client.post("/v1/predict", json=basket(), headers=AUTH)
    assert response.status_code == 200
    body = response.json()
    PredictResponse.model_validate(body)
    assert response.headers["content-type"] == "application/json"
    assert set(body["probabilities"]) == {"LA", "MM", "UM"}
    assert body["prediction"] == max(body["probabilities"], key=body["probabilities"].get)
    assert sum(body["probabilities"].values()) == pytest.approx(1.0)
    assert body["model_version"] == "1"
    assert body["basket_id"] == basket()["BASKET_ID"]


def test_predictions_come_from_the_champion_bundle_on_the_same_lines(champion_client, holdout_baskets, small_run):
    """The service scores through the compiled featurizer; the reference here is the training path (the Polars
    featurizer and the model's own predict_proba), so the two featurizers are compared end to end."""
    lines, bodies = holdout_baskets
    bundle = load_bundle(Registry(small_run.settings).download())
    expected = bundle.model.predict_proba(bundle.featurizer.matrix(bundle.featurizer.transform(lines)))
    response = champion_client.post("/v1/predict/batch", json={"baskets": bodies}, headers=AUTH)
    BatchResponse.model_validate(response.json())
    got = np.array([[p["probabilities"][c] for c in ("LA", "MM", "UM")] for p in response.json()["predictions"]])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_batch_answers_each_basket_in_request_order(champion_client, holdout_baskets):
    _, bodies = holdout_baskets
    response = champion_client.post("/v1/predict/batch", json={"baskets": bodies}, headers=AUTH)
    assert response.status_code == 200
    assert [p["basket_id"] for p in response.json()["predictions"]] == [b["BASKET_ID"] for b in bodies]
    assert response.json()["model_version"] == "1"


def test_a_basket_scores_the_same_alone_and_in_a_batch(client, bodies):
    batch = client.post("/v1/predict/batch", json={"baskets": bodies[:5]}, headers=AUTH).json()["predictions"]
    for body, in_batch in zip(bodies[:5], batch, strict=True):
        alone = client.post("/v1/predict", json=body, headers=AUTH).json()
        assert alone["probabilities"] == pytest.approx(in_batch["probabilities"])


def test_coded_segments_score_like_their_decoded_values(client):
    coded = client.post("/v1/predict", json=basket(seg_1="AZ", seg_2="FN"), headers=AUTH).json()
    decoded = basket(CUST_PRICE_SENSITIVITY="LA", CUST_LIFESTAGE="PE")
    del decoded["seg_1"], decoded["seg_2"]
    assert client.post("/v1/predict", json=decoded, headers=AUTH).json()["probabilities"] == coded["probabilities"]


def test_dates_are_accepted_as_the_data_sets_yyyymmdd_or_iso(client):
    as_number = client.post("/v1/predict", json=basket(SHOP_DATE=20080412), headers=AUTH).json()
    as_iso = client.post("/v1/predict", json=basket(SHOP_DATE="2008-04-12"), headers=AUTH).json()
    assert as_number["probabilities"] == as_iso["probabilities"]


def test_a_basket_without_a_loyalty_card_is_scored(client):
    no_card = basket(CUST_CODE=None, seg_1=None, seg_2=None)
    assert client.post("/v1/predict", json=no_card, headers=AUTH).status_code == 200


def test_model_route_describes_version_family_metrics_and_lineage(champion_client, small_run):
    body = champion_client.get("/v1/model", headers=AUTH).json()
    assert body["version"] == "1"
    assert body["family"] == small_run.result.training["winner"]
    assert body["metrics"]["macro_f1"] == pytest.approx(small_run.result.training["metrics"]["macro_f1"])
    assert body["lineage"]["input_sha256"] == small_run.result.training["lineage"]["input_sha256"]
    assert body["source"] == "models:/basket-price-sensitivity@champion"
    assert len(body["bundle_sha256"]) == 64


def test_admin_reload_keeps_the_model_when_the_champion_has_not_moved(champion_client):
    response = champion_client.post("/v1/admin/reload", headers=AUTH)
    assert response.status_code == 200
    assert response.json() == {"reloaded": False, "previous_version": "1", "model_version": "1"}
