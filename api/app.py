"""The FastAPI application: settings, model store, scoring queue and routes wired together.

`create_app` builds everything but loads nothing; the lifespan loads the model (a
failure leaves the service live but not ready, and polling keeps trying), starts the
scoring task and the poller that picks up a new champion. With the prediction log on it
starts its writer, and with a challenger the shadow scorer, whose model is loaded in the
background: readiness waits for the champion only. At shutdown the log writes what it
holds, the shadow scorer scores what waits until its deadline and the log writes that
(api/shutdown.py).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import validation_error_definition, validation_error_response_definition
from pydantic.json_schema import models_json_schema

from api.batcher import Batcher
from api.body import validation_error_response
from api.emf import EmfPublisher
from api.memory import keep_freed_memory
from api.middleware import RequestPlumbing
from api.model_source import BundleLocationSource, ModelSource, RegistrySource
from api.model_store import ModelStore
from api.prediction_log import PredictionLog, ServiceLogFiles
from api.routes import health, model, predict
from api.schemas import Basket, BatchRequest
from api.security import load_api_keys, reread_api_keys
from api.settings import ApiSettings
from api.shadow import ShadowScorer
from api.shutdown import drain
from ml.lake import join_uri
from ml.prediction_log import CHALLENGER, SERVICE_LOG
from ml.settings import Settings

log = logging.getLogger("retail.api")


def model_source(settings: ApiSettings) -> ModelSource:
    """A bundle location when RETAIL_MODEL_URI is set, else the registry's champion."""
    if settings.model_uri:
        return BundleLocationSource(settings.model_uri, settings.model_cache_dir, settings.model_sha256)
    return RegistrySource(Settings())


def challenger_source(settings: ApiSettings) -> ModelSource | None:
    """The challenger's bundle location (RETAIL_CHALLENGER_URI) or registry alias or version (RETAIL_CHALLENGER)."""
    if settings.challenger_uri:
        return BundleLocationSource(settings.challenger_uri, settings.model_cache_dir, settings.challenger_sha256)
    if settings.challenger:
        return RegistrySource(Settings(), settings.challenger)
    return None


def prediction_log(settings: ApiSettings) -> PredictionLog | None:
    """The prediction log the settings ask for (under the lake's predictions/service by default), or None."""
    if not settings.prediction_log_enabled:
        return None
    root = settings.prediction_log_uri or join_uri(Settings().lake_root, *SERVICE_LOG)
    return PredictionLog(ServiceLogFiles(root), settings.prediction_log_flush_rows,
                         settings.prediction_log_flush_seconds, settings.prediction_log_max_rows)


async def _poll(app: FastAPI, interval: float) -> None:
    """Pick up a moved champion or challenger (or changed bundle) and rotated API keys."""
    while True:
        await asyncio.sleep(interval)
        await asyncio.to_thread(app.state.store.try_refresh)
        if app.state.challengers is not None:
            await asyncio.to_thread(app.state.challengers.try_refresh)
        app.state.api_keys = await asyncio.to_thread(reread_api_keys, app.state.settings, app.state.api_keys)


async def _heartbeat(app: FastAPI, emf: EmfPublisher, interval: float) -> None:
    """A heartbeat metric while a model is loaded, so "no data" means "not serving" to the heartbeat alarm."""
    while True:
        if app.state.store.current is not None:
            emf.heartbeat()
        await asyncio.sleep(interval)


def settle_collector(gen0_threshold: int) -> None:
    """The garbage collector as the service runs it once started. What start-up created (imported modules, the registry
    client, the first model) lives as long as the process: it is kept out of the collector's full passes, which
    otherwise pause a 1,000-basket request by ~100 ms (refcounting still frees it). Young collections run every
    `gen0_threshold` net allocations (allocations less deallocations, RETAIL_GC_GEN0_THRESHOLD). The benchmarks call
    it too, to time as the service runs."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(gen0_threshold, *gc.get_threshold()[1:])


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: ApiSettings = app.state.settings
    models: ModelStore = app.state.store
    sys.setswitchinterval(settings.gil_switch_interval_ms / 1000)
    keep_freed_memory(settings.malloc_trim_threshold_bytes, settings.malloc_mmap_threshold_bytes)
    await asyncio.to_thread(models.try_refresh)
    settle_collector(settings.gc_gen0_threshold)
    app.state.batcher = Batcher(settings.max_coalesced_baskets, settings.inline_scoring_min_baskets)
    app.state.batcher.start()
    interval = settings.reload_interval_seconds
    tasks: list[asyncio.Task[Any]] = [asyncio.create_task(_poll(app, interval))] if interval else []
    if app.state.emf is not None:
        tasks.append(asyncio.create_task(_heartbeat(app, app.state.emf, settings.heartbeat_seconds)))
    app.state.prediction_log = predictions = prediction_log(settings)
    app.state.shadow = shadow = None
    challengers: ModelStore | None = app.state.challengers
    if predictions is not None:
        predictions.start()
        if challengers is not None:
            app.state.shadow = shadow = ShadowScorer(challengers, predictions, settings.shadow_interval_seconds,
                                                     settings.shadow_max_lines, settings.max_coalesced_baskets)
            shadow.start()
            tasks.append(asyncio.create_task(asyncio.to_thread(challengers.try_refresh)))
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await app.state.batcher.stop()
        if predictions is not None:
            await asyncio.to_thread(drain, predictions, shadow, settings)


def _openapi_document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the schemas of the bodies the prediction routes read themselves (`api.body`),
    which their `requestBody` entries refer to, and of the 422 they answer (FastAPI adds it only for a route with
    a body parameter)."""
    document = app.openapi_schema
    if document is None:
        document = FastAPI.openapi(app)  # builds the document and keeps it as app.openapi_schema
        _, schemas = models_json_schema([(Basket, "validation"), (BatchRequest, "validation")],
                                        ref_template="#/components/schemas/{model}")
        components = document.setdefault("components", {}).setdefault("schemas", {})
        components.update(schemas["$defs"])
        components.setdefault("ValidationError", validation_error_definition)
        components.setdefault("HTTPValidationError", validation_error_response_definition)
        settings: ApiSettings = app.state.settings  # the limits this service enforces, not the models' ceilings
        components["Basket"]["properties"]["lines"]["maxItems"] = settings.max_basket_lines
        components["BatchRequest"]["properties"]["baskets"]["maxItems"] = settings.max_batch_baskets
    return document


class _Service(FastAPI):
    """FastAPI with the document of `_openapi_document` (overriding `openapi` rather than assigning it)."""

    def openapi(self) -> dict[str, Any]:
        return _openapi_document(self)


def create_app(settings: ApiSettings | None = None, source: ModelSource | None = None,
               challenger: ModelSource | None = None) -> FastAPI:
    """The service; `source` and `challenger` default to what the settings name (`model_source`,
    `challenger_source`)."""
    settings = settings or ApiSettings()
    app = _Service(
        title="retail-mlops inference API",
        summary="Basket price sensitivity (LA / MM / UM) from a basket and its product lines.",
        version="1",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.api_keys = load_api_keys(settings)
    app.state.store = ModelStore(source or model_source(settings), settings.drift_window_baskets,
                                 settings.drift_min_baskets)
    challenger = challenger or challenger_source(settings)
    if challenger is not None and not settings.prediction_log_enabled:
        raise ValueError("a challenger is scored only for the prediction log: set RETAIL_PREDICTION_LOG_ENABLED=true")
    app.state.challengers = None if challenger is None else ModelStore(
        challenger, settings.drift_window_baskets, settings.drift_min_baskets, role=CHALLENGER)
    # Starlette types a handler as taking any Exception, though it calls it only with the class it is registered
    # for (https://github.com/Kludex/starlette/issues/2417), so a handler of RequestValidationError is refused
    app.add_exception_handler(RequestValidationError, validation_error_response)  # type: ignore[arg-type]
    app.include_router(predict.router)
    app.include_router(model.router)
    app.include_router(health.router)
    emf = EmfPublisher(settings.environment) if settings.emf_enabled else None
    app.state.emf = emf
    app.add_middleware(RequestPlumbing, max_body_bytes=settings.max_body_bytes, emf=emf,
                       drift_score=lambda: app.state.batcher.drift_score)
    return app
