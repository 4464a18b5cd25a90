"""Where the model comes from: readiness before a model is loaded, bundle locations, checksums."""

from __future__ import annotations

import json
import shutil

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.model_source import BundleLocationSource
from ml.bundle import bundle_digest
from ml.registry import Registry
from tests.api.conftest import AUTH, api_settings, basket


@pytest.fixture(scope="module")
def champion_folder(small_run):
    return Registry(small_run.settings).download()


def location_app(folder, cache, **settings):
    return create_app(api_settings(**settings), source=BundleLocationSource(str(folder), cache,
                                                                            settings.get("model_sha256")))


def test_before_a_model_is_loaded_the_service_is_live_but_not_ready(tmp_path):
    with TestClient(location_app(tmp_path, tmp_path / "cache")) as client:
        assert client.get("/health/live").status_code == 200
        ready = client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["status"] == "not ready"


def test_predictions_before_a_model_is_loaded_are_503_with_retry_after(tmp_path):
    with TestClient(location_app(tmp_path, tmp_path / "cache")) as client:
        response = client.post("/v1/predict", json=basket(), headers=AUTH)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"


def test_a_bundle_that_appears_later_is_loaded_by_the_admin_call(tmp_path, champion_folder):
    folder = tmp_path / "bundle"
    folder.mkdir()
    with TestClient(location_app(folder, tmp_path / "cache")) as client:
        shutil.copytree(champion_folder, folder, dirs_exist_ok=True)
        reload = client.post("/v1/admin/reload", headers=AUTH)
        assert reload.status_code == 200
        assert reload.json()["reloaded"] is True
        assert client.get("/health/ready").status_code == 200


def test_a_bundle_location_is_served_under_its_manifest_digest(tmp_path, champion_folder):
    with TestClient(location_app(champion_folder, tmp_path / "cache")) as client:
        version = client.post("/v1/predict", json=basket(), headers=AUTH).json()["model_version"]
    assert version == f"sha256:{bundle_digest(champion_folder)[:12]}"


def test_a_bundle_that_does_not_match_the_pinned_digest_is_refused(tmp_path, champion_folder):
    with TestClient(location_app(champion_folder, tmp_path / "cache", model_sha256="0" * 64)) as client:
        assert client.get("/health/ready").status_code == 503


def test_a_tampered_bundle_is_refused_and_the_cause_is_logged_not_returned(tmp_path, champion_folder, caplog):
    folder = tmp_path / "bundle"
    shutil.copytree(champion_folder, folder)
    manifest = json.loads((folder / "bundle.json").read_text())
    model_file = folder / manifest["model_file"]
    model_file.write_bytes(model_file.read_bytes()[:-10])
    with TestClient(location_app(folder, tmp_path / "cache")) as client:
        assert client.get("/health/ready").status_code == 503
        caplog.clear()
        reload = client.post("/v1/admin/reload", headers={**AUTH, "X-Request-ID": "reload-1"})
        assert reload.status_code == 503
        detail = reload.json()["detail"]
        assert "request id reload-1" in detail
        assert "checksum" not in detail and str(folder) not in detail
        assert any("checksum mismatch" in (r.exc_text or "") or "checksum mismatch" in str(r.exc_info)
                   for r in caplog.records if r.name == "retail.api.model")


def test_an_s3_bundle_location_takes_the_environments_region_instead_of_asking_s3_while_the_app_is_built(
        tmp_path, monkeypatch):
    """On EKS the source is made inside uvicorn's app factory: a region lookup there (Arrow's unsigned HeadBucket)
    that cannot reach S3 would fail the start instead of leaving the service live but not ready."""
    for variable in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_REGION", "ap-southeast-1")
    source = BundleLocationSource("s3://retail-dev-artifacts/models/price-sensitivity/serving/dev/x/", tmp_path)
    assert (source.fs.region, source.base) == (
        "ap-southeast-1", "retail-dev-artifacts/models/price-sensitivity/serving/dev/x")
