"""Hot reload: a new champion is loaded beside the served one and swapped with no failed request."""

from __future__ import annotations

import threading
from collections import Counter

import httpx2

from api.app import create_app
from api.model_source import RegistrySource
from ml.registry import Registry
from tests.api.conftest import AUTH, api_settings, basket, live_server, wait_until

CLIENTS = 4


def hammer(url: str, stop: threading.Event, outcomes: list, lock: threading.Lock) -> None:
    """Single and batch predictions as fast as the server answers, until told to stop."""
    with httpx2.Client(base_url=url, headers=AUTH, timeout=30) as http:
        sent = 0
        while not stop.is_set():
            if sent % 5 == 4:
                response = http.post("/v1/predict/batch", json={"baskets": [basket()] * 50})
            else:
                response = http.post("/v1/predict", json=basket())
            sent += 1
            version = response.json().get("model_version") if response.status_code == 200 else None
            with lock:
                outcomes.append((response.status_code, version))


def test_moving_the_champion_under_load_swaps_the_model_with_zero_failed_requests(two_versions):
    settings, first, second = two_versions
    registry = Registry(settings)
    registry.promote(first, force=True)
    app = create_app(api_settings(reload_interval_seconds=0.2), source=RegistrySource(settings))
    outcomes: list[tuple[int, str | None]] = []
    lock, stop = threading.Lock(), threading.Event()
    with live_server(app) as url:
        clients = [threading.Thread(target=hammer, args=(url, stop, outcomes, lock)) for _ in range(CLIENTS)]
        for thread in clients:
            thread.start()

        def answered() -> int:
            with lock:
                return len(outcomes)

        def answered_by_second_since(start: int) -> int:
            with lock:
                return sum(version == second for _, version in outcomes[start:])

        try:
            wait_until(lambda: answered() >= 4 * CLIENTS, timeout=30)  # the load is on, served by the first version
            registry.promote(second, force=True)
            wait_until(lambda: answered_by_second_since(0), timeout=60)  # polled, loaded and swapped
            swapped = answered()
            wait_until(lambda: answered_by_second_since(swapped) >= 4 * CLIENTS, timeout=30)  # and stays swapped
        finally:
            stop.set()
            for thread in clients:
                thread.join()
    statuses = Counter(status for status, _ in outcomes)
    versions = [version for _, version in outcomes]
    assert statuses == {200: len(outcomes)}
    assert versions[0] == first and versions[-1] == second
    assert set(versions) == {first, second}


def test_the_admin_call_loads_a_moved_champion_at_once(two_versions):
    settings, first, second = two_versions
    registry = Registry(settings)
    registry.promote(first, force=True)
    app = create_app(api_settings(), source=RegistrySource(settings))
    with live_server(app) as url, httpx2.Client(base_url=url, headers=AUTH) as http:
        registry.promote(second, force=True)
        assert http.post("/v1/predict", json=basket()).json()["model_version"] == first  # polling is off
        reload = http.post("/v1/admin/reload")
        assert reload.json() == {"reloaded": True, "previous_version": first, "model_version": second}
        assert http.post("/v1/predict", json=basket()).json()["model_version"] == second
        assert http.get("/v1/model").json()["version"] == second


def test_the_version_gauge_follows_a_swap(two_versions):
    settings, first, second = two_versions
    registry = Registry(settings)
    registry.promote(first, force=True)
    app = create_app(api_settings(), source=RegistrySource(settings))
    with live_server(app) as url, httpx2.Client(base_url=url, headers=AUTH) as http:
        registry.promote(second, force=True)
        http.post("/v1/admin/reload")
        metrics = http.get("/metrics").text
    family = registry.versions()[int(second) - 1]["family"]
    source = "models:/basket-price-sensitivity@champion"
    assert f'retail_model_info{{family="{family}",source="{source}",version="{second}"}} 1.0' in metrics
    assert f'version="{first}"}} 0.0' in metrics
