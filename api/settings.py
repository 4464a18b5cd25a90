"""Settings of the inference service, from the environment (prefix RETAIL_) or defaults.

The prefix is the project's own (`ml.settings.Settings` reads RETAIL_REGISTRY_URI and
RETAIL_MODEL_NAME from the same environment), and the names match what the EKS
deployment sets: RETAIL_MODEL_URI, RETAIL_API_KEYS_FILE, RETAIL_ENVIRONMENT.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from api.schemas import MAX_BASKET_LINES
from ml.metric_names import HEARTBEAT_SECONDS


class ApiSettings(BaseSettings):
    """Where the model comes from, who may call, and how much a request may carry."""

    model_config = SettingsConfigDict(env_prefix="RETAIL_")

    # Model source: a bundle folder (local path or s3://bucket/prefix/) or, when unset,
    # the registry's champion alias (RETAIL_REGISTRY_URI, RETAIL_MODEL_NAME).
    model_uri: str | None = None
    # Optional pin for model_uri: the expected SHA-256 of the bundle's manifest.
    model_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    model_cache_dir: Path = Path("/tmp/retail-models")
    # Seconds between checks for a new champion (or a changed bundle); 0 turns polling off.
    reload_interval_seconds: float = Field(30.0, ge=0)

    # API keys: comma-separated in RETAIL_API_KEYS and/or one per line in a mounted file.
    api_keys: SecretStr | None = None
    api_keys_file: Path | None = None
    api_auth_disabled: bool = False

    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    max_batch_baskets: int = Field(1000, ge=1)
    # Lines per basket; the request schema's own cap (api.schemas.MAX_BASKET_LINES, in the OpenAPI document) is
    # the most this can allow.
    max_basket_lines: int = Field(MAX_BASKET_LINES, ge=1, le=MAX_BASKET_LINES)
    # Largest number of baskets scored in one featurizer call when requests are coalesced.
    max_coalesced_baskets: int = Field(2048, ge=1)
    # How long a thread may hold the GIL while another waits (Python's default is 5 ms). The event loop and
    # the scoring thread trade it on every request; 0.2 ms took the one-connection p50 from 1.6 to 1.3 ms and
    # saturated throughput from 1,350 to 1,400 req/s (bench/serve.py, README "Benchmark").
    gil_switch_interval_ms: float = Field(0.2, gt=0, le=100)
    # Allocations between two young-generation garbage collections (Python's default is 700). Validating a
    # 1,000-basket body makes thousands of objects; with 50,000 its p95 fell from 105-122 to 80 ms (bench/serve.py).
    gc_gen0_threshold: int = Field(50_000, ge=100)

    drift_window_baskets: int = Field(1000, ge=10)
    drift_min_baskets: int = Field(200, ge=10)

    environment: str = "local"
    emf_enabled: bool = False  # also write CloudWatch embedded-metric-format lines to stdout
    # Seconds between heartbeat metrics while a model is loaded (with emf_enabled).
    heartbeat_seconds: float = Field(HEARTBEAT_SECONDS, gt=0)
    log_level: str = "INFO"
