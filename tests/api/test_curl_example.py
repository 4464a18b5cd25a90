"""The curl example printed by `retail demo` is a working call of the service."""

from __future__ import annotations

import json
import re

from cli.serve import curl_example
from tests.api.conftest import API_KEY


def test_the_curl_example_posts_a_basket_the_service_scores(client):
    example = curl_example("127.0.0.1", 8000)
    url = re.search(r"curl -s (\S+)", example).group(1)
    body = json.loads(re.search(r"-d '(.+)'", example).group(1))
    assert url == "http://127.0.0.1:8000/v1/predict"
    assert '-H "X-API-Key: ${RETAIL_API_KEYS%%,*}"' in example
    response = client.post("/v1/predict", json=body, headers={"X-API-Key": API_KEY})
    assert response.status_code == 200


def test_the_curl_example_names_a_reachable_host_when_serving_on_all_interfaces():
    assert "http://localhost:8080/v1/predict" in curl_example("0.0.0.0", 8080)
