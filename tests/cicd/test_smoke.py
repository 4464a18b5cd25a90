"""`retail smoke` against the real inference API served on this machine, and what it reports when a check fails."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from api.app import create_app
from api.model_source import RegistrySource
from api.schemas import Basket
from cli.main import app
from cli.smoke import SmokeFailure, check_prediction, synthetic_basket
from tests.api.conftest import API_KEY, api_settings, free_port, live_server

runner = CliRunner()
KEY_ENV = {"SMOKE_KEY": API_KEY}


@pytest.fixture(scope="module")
def service(small_run):
    """The API on the small run's champion, under uvicorn; yields its URL and the champion's version."""
    app_ = create_app(api_settings(), source=RegistrySource(small_run.settings))
    with live_server(app_) as url:
        yield url, small_run.result.registration["champion_version"]


def smoke(*args: str, env: dict | None = None):
    return runner.invoke(app, ["smoke", "--api-key-env", "SMOKE_KEY", "--wait", "0", *args], env=env or KEY_ENV)


def test_the_synthetic_basket_is_a_valid_request_of_several_lines():
    basket = Basket.model_validate(synthetic_basket())
    assert len(basket.lines) > 1 and basket.CUST_CODE is not None


def test_it_passes_against_a_healthy_service_and_names_what_it_checked(service):
    url, version = service
    result = smoke("--url", url, "--expect-version", version)
    assert result.exit_code == 0, result.output
    assert "ok  GET /health/ready: ready" in result.stdout
    assert f"ok  GET /v1/model: version {version}" in result.stdout
    assert "ok  POST /v1/predict: basket " in result.stdout
    assert f"smoke test of {url} passed" in result.stdout


def test_a_rejected_api_key_fails_naming_the_call_and_the_status(service):
    url, _ = service
    result = smoke("--url", url, env={"SMOKE_KEY": "not-the-right-key-0123456789"})
    assert result.exit_code == 1
    assert f"GET {url}/v1/model answered HTTP 401" in result.stderr


def test_serving_another_version_than_expected_fails(service):
    url, version = service
    result = smoke("--url", url, "--expect-version", "999")
    assert result.exit_code == 1
    assert f"/v1/model serves version '{version}', expected '999'" in result.stderr


def test_an_unreachable_service_fails_once_the_wait_is_over():
    url = f"http://127.0.0.1:{free_port()}"
    result = smoke("--url", url)
    assert result.exit_code == 1
    assert f"GET {url}/health/ready not ready after 0 s" in result.stderr


def test_a_missing_api_key_variable_is_a_usage_error():
    result = smoke("--url", "http://127.0.0.1:9", env={"SMOKE_KEY": ""})
    assert result.exit_code == 2
    assert "$SMOKE_KEY is empty" in result.stderr


@pytest.mark.parametrize("answer, problem", [
    ({"prediction": "XX", "probabilities": {"LA": 1.0}, "model_version": "1"}, "not one of the model's classes"),
    ({"prediction": "LA", "probabilities": {"LA": 0.5, "MM": 0.1, "UM": 0.1}, "model_version": "1"}, "sum of 1"),
    ({"prediction": "LA", "probabilities": {"LA": 0.8, "MM": 0.1, "UM": 0.1}, "model_version": "2"}, "came from"),
])
def test_a_prediction_must_name_a_class_with_probabilities_summing_to_one_from_the_served_version(answer, problem):
    with pytest.raises(SmokeFailure, match=problem):
        check_prediction(answer, ["LA", "MM", "UM"], "1")
