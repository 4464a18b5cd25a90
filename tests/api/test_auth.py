"""API keys: required on prediction, model and admin routes; probes and metrics stay open."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.model_source import BundleLocationSource
from api.security import ApiKeys
from tests.api.conftest import API_KEY, AUTH, api_settings, basket, wait_until

PROTECTED = [
    ("POST", "/v1/predict", {"json": basket()}),
    ("POST", "/v1/predict/batch", {"json": {"baskets": [basket()]}}),
    ("GET", "/v1/model", {}),
    ("POST", "/v1/admin/reload", {}),
]
OPEN = ["/health/live", "/health/ready", "/metrics", "/openapi.json"]


def unloaded_app(tmp_path, **settings):
    """An app whose source is an empty folder: enough to test start-up checks."""
    return create_app(api_settings(**settings), source=BundleLocationSource(str(tmp_path), tmp_path / "cache"))


@pytest.mark.parametrize(("method", "path", "kwargs"), PROTECTED)
def test_a_request_without_a_key_is_401(client, method, path, kwargs):
    response = client.request(method, path, **kwargs)
    assert response.status_code == 401
    assert "X-API-Key" in response.json()["detail"]


@pytest.mark.parametrize(("method", "path", "kwargs"), PROTECTED)
def test_a_request_with_a_wrong_key_is_401(client, method, path, kwargs):
    response = client.request(method, path, headers={"X-API-Key": API_KEY[:-1] + "x"}, **kwargs)
    assert response.status_code == 401


@pytest.mark.parametrize(("method", "path", "kwargs"), PROTECTED)
def test_a_request_with_the_right_key_is_served(client, method, path, kwargs):
    assert client.request(method, path, headers=AUTH, **kwargs).status_code == 200


@pytest.mark.parametrize("path", OPEN)
def test_probes_metrics_and_the_openapi_document_need_no_key(client, path):
    assert client.get(path).status_code == 200


def test_keys_are_read_from_a_mounted_secret_file(tmp_path):
    keys_file = tmp_path / "api-keys"
    keys_file.write_text("# rotated 2024-05\nfirst-key-0123456789abcdef\n\nsecond-key-0123456789abcdef\n")
    app = unloaded_app(tmp_path, api_keys=None, api_keys_file=keys_file)
    assert app.state.api_keys.accepts("second-key-0123456789abcdef")
    assert not app.state.api_keys.accepts("# rotated 2024-05")


def test_a_rotated_key_file_takes_effect_without_a_restart(tmp_path):
    keys_file = tmp_path / "api-keys"
    keys_file.write_text("old-key-0123456789abcdef\n")
    app = unloaded_app(tmp_path, api_keys=None, api_keys_file=keys_file, reload_interval_seconds=0.1)
    with TestClient(app) as client:
        assert client.get("/v1/model", headers={"X-API-Key": "old-key-0123456789abcdef"}).status_code == 503
        keys_file.write_text("new-key-0123456789abcdef\n")

        def old_key_refused() -> bool:
            return client.get("/v1/model", headers={"X-API-Key": "old-key-0123456789abcdef"}).status_code == 401

        wait_until(old_key_refused, timeout=5)
        assert client.get("/v1/model", headers={"X-API-Key": "new-key-0123456789abcdef"}).status_code == 503


def test_any_of_several_configured_keys_is_accepted():
    keys = ApiKeys(["first-key-0123456789abcdef", "second-key-0123456789abcdef"])
    assert keys.accepts("first-key-0123456789abcdef") and keys.accepts("second-key-0123456789abcdef")
    assert not keys.accepts("first-key-0123456789abcde")


def test_the_service_refuses_to_start_without_keys(tmp_path):
    with pytest.raises(RuntimeError, match="no API keys configured"):
        unloaded_app(tmp_path, api_keys=None)


def test_the_service_refuses_short_keys(tmp_path):
    with pytest.raises(RuntimeError, match="shorter than 16 characters"):
        unloaded_app(tmp_path, api_keys="short")


def test_turning_auth_off_takes_an_explicit_setting_and_logs_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="retail.api.security"):
        app = unloaded_app(tmp_path, api_keys=None, api_auth_disabled=True)
    assert "authentication is turned off" in caplog.text
    with TestClient(app) as client:
        assert client.post("/v1/predict", json=basket()).status_code == 503  # past auth, but no model yet
