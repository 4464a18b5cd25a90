"""Settings of the inference service, from the environment (prefix RETAIL_) or defaults.

The prefix is the project's own (`ml.settings.Settings` reads RETAIL_REGISTRY_URI and
RETAIL_MODEL_NAME from the same environment), and the names match what the EKS
deployment sets: RETAIL_MODEL_URI, RETAIL_API_KEYS_FILE, RETAIL_ENVIRONMENT.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
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
    # Requests of at least this many baskets are scored on the event loop when the scorer is idle, not handed to the
    # scoring thread (api/batcher.py). 1,000-basket batches on 4 connections: 26-35 against 17-24 req/s for JSON
    # bodies (docs/serving.md). At 256 baskets a call's fixed cost, all that coalescing saves, is a fifth of it.
    inline_scoring_min_baskets: int = Field(256, ge=2)  # 1 would score single baskets inline: no coalescing
    # How long a thread may hold the GIL while another waits (Python's default is 5 ms). The event loop and
    # the scoring thread trade it on every request; 0.2 ms took the one-connection p50 from 1.6 to 1.3 ms and
    # saturated throughput from 1,350 to 1,400 req/s (bench/serve.py, README "Benchmark").
    gil_switch_interval_ms: float = Field(0.2, gt=0, le=100)
    # Allocations between two young-generation garbage collections (Python's default is 700). Validating a
    # 1,000-basket body makes thousands of objects; with 50,000 its p95 fell from 105-122 to 80 ms (bench/serve.py).
    # At most a C int, what gc.set_threshold takes: a larger value would fail the service's start-up with an
    # OverflowError instead of naming this setting.
    gc_gen0_threshold: int = Field(50_000, ge=100, le=2**31 - 1)
    # glibc's malloc (api/memory.py): up to malloc_trim_threshold_bytes of freed heap is kept in each thread's arena
    # instead of being handed back to the kernel after each request, and blocks up to malloc_mmap_threshold_bytes
    # come from the heap. With glibc's adaptive defaults a 1,000-basket JSON batch faulted ~1,180 pages back in per
    # request. Both 0 leave glibc's defaults; setting one turns off glibc's adjustment of the other, so they are set
    # together. Not applied when the environment sets glibc's own (MALLOC_*_THRESHOLD_, GLIBC_TUNABLES). The mmap
    # threshold is glibc's at most 32 MiB on 64-bit; mallopt takes a C int.
    malloc_trim_threshold_bytes: int = Field(16 * 2**20, ge=0, le=2**31 - 1)
    malloc_mmap_threshold_bytes: int = Field(8 * 2**20, ge=0, le=32 * 2**20)

    drift_window_baskets: int = Field(1000, ge=10)
    drift_min_baskets: int = Field(200, ge=10)

    # The prediction log (api/prediction_log.py): a row per scored basket (id, week, class, probabilities, model),
    # as Parquet files under RETAIL_PREDICTION_LOG_URI (a folder or s3:// prefix; default: the lake's
    # predictions/service, under RETAIL_LAKE_ROOT), written every prediction_log_flush_rows rows or
    # prediction_log_flush_seconds and at shutdown. A file per write and week, so the flush sets how many files a
    # week's monitoring reads (ml/monitor.py): every 300 s, 2,016 a week per replica. At most prediction_log_max_rows
    # rows per role are held; beyond, rows are dropped and counted.
    prediction_log_enabled: bool = False
    prediction_log_uri: str | None = None
    prediction_log_flush_rows: int = Field(50_000, ge=1)
    prediction_log_flush_seconds: float = Field(300.0, gt=0)
    prediction_log_max_rows: int = Field(200_000, ge=1)

    # A challenger in shadow (api/shadow.py), logged beside the champion: a registry alias (e.g. challenger) or
    # version number in RETAIL_CHALLENGER, or a bundle location in RETAIL_CHALLENGER_URI (pinned by
    # RETAIL_CHALLENGER_SHA256). Scored every shadow_interval_seconds; requests of at most shadow_max_lines lines
    # wait (a waiting line costs ~370 bytes and a request 6 lines more, api/shadow.py: 200,000 are ~70 MB).
    challenger: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]+$")
    challenger_uri: str | None = None
    challenger_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    shadow_interval_seconds: float = Field(0.1, gt=0)
    shadow_max_lines: int = Field(200_000, ge=1)

    # Shutdown (api/shutdown.py), within the pod's grace period after its preStop sleep: requests still running
    # after graceful_shutdown_seconds are cancelled (uvicorn's timeout_graceful_shutdown); then the log writes what
    # it holds, the challenger scores what waits for shadow_shutdown_seconds, and the log writes that; the log's
    # writes may take prediction_log_shutdown_seconds in all.
    graceful_shutdown_seconds: int = Field(10, gt=0)
    shadow_shutdown_seconds: float = Field(5.0, ge=0)
    prediction_log_shutdown_seconds: float = Field(10.0, gt=0)

    environment: str = "local"
    emf_enabled: bool = False  # also write CloudWatch embedded-metric-format lines to stdout
    # Seconds between heartbeat metrics while a model is loaded (with emf_enabled).
    heartbeat_seconds: float = Field(HEARTBEAT_SECONDS, gt=0)
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _challenger_is_logged(self) -> ApiSettings:
        if self.challenger and self.challenger_uri:
            raise ValueError("set one of RETAIL_CHALLENGER (a registry alias or version) and RETAIL_CHALLENGER_URI "
                             "(a bundle location), not both")
        if (self.challenger or self.challenger_uri) and not self.prediction_log_enabled:
            raise ValueError("a challenger is scored only for the prediction log: set "
                             "RETAIL_PREDICTION_LOG_ENABLED=true, or unset RETAIL_CHALLENGER(_URI)")
        return self

    @model_validator(mode="after")
    def _malloc_thresholds_together(self) -> ApiSettings:
        if (self.malloc_trim_threshold_bytes == 0) != (self.malloc_mmap_threshold_bytes == 0):
            raise ValueError("set RETAIL_MALLOC_TRIM_THRESHOLD_BYTES and RETAIL_MALLOC_MMAP_THRESHOLD_BYTES both to 0 "
                             "(glibc's adaptive thresholds) or both above 0: setting one turns off glibc's adjustment "
                             "of the other")
        return self

    @model_validator(mode="after")
    def _log_flushes_on_rows(self) -> ApiSettings:
        if self.prediction_log_flush_rows > self.prediction_log_max_rows:
            raise ValueError(f"RETAIL_PREDICTION_LOG_FLUSH_ROWS ({self.prediction_log_flush_rows}) exceeds "
                             f"RETAIL_PREDICTION_LOG_MAX_ROWS ({self.prediction_log_max_rows}): that many rows are "
                             "never held, so the log would write only on its timer")
        return self
