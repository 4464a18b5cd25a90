"""GET /v1/model (what is being served) and POST /v1/admin/reload (load the source's model now)."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, status

from api.dependencies import current_model, store
from api.logs import REQUEST_ID
from api.model_store import LoadedModel, ModelStore
from api.schemas import ModelDescription, ReloadResponse
from api.security import require_api_key

router = APIRouter(tags=["model"], dependencies=[Depends(require_api_key)])
log = logging.getLogger("retail.api.model")


@router.get("/v1/model", response_model=ModelDescription, responses={401: {}, 503: {}})
async def describe_model(model: Annotated[LoadedModel, Depends(current_model)]) -> dict[str, Any]:
    """Version, family, held-out metrics, parameters, promotion gate and data lineage of the served model."""
    meta = model.bundle.meta
    return {
        "version": model.version,
        "source": model.source,
        "family": model.family,
        "classes": model.bundle.classes,
        "bundle_sha256": model.sha256,
        "loaded_at": model.loaded_at,
        **{key: meta.get(key, {}) for key in ("metrics", "params", "gate", "data", "lineage")},
    }


@router.post("/v1/admin/reload", response_model=ReloadResponse, responses={401: {}, 503: {}})
async def reload_model(models: Annotated[ModelStore, Depends(store)]) -> dict[str, bool | str | None]:
    """Load the model the source holds now (e.g. a new champion) beside the served one and swap.

    With several worker processes this reloads the worker that answers; the others
    follow at their next poll (RETAIL_RELOAD_INTERVAL_SECONDS).
    """
    try:
        refresh = await asyncio.to_thread(models.refresh)
    except Exception as exc:  # the cause (paths, bucket names, registry errors) goes to the log, not to the caller
        log.exception("reload failed; still serving the previous model")
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"reload failed, still serving the previous model; the service log has the cause under request id "
                   f"{REQUEST_ID.get()}",
        ) from exc
    return {
        "reloaded": refresh.changed,
        "previous_version": refresh.previous.version if refresh.previous else None,
        "model_version": refresh.current.version,
    }
