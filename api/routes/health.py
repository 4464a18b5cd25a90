"""Probes and metrics: GET /health/live, GET /health/ready, GET /metrics (no API key; in-cluster only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse

from api.dependencies import store
from api.metrics import exposition
from api.model_store import ModelStore
from api.schemas import Status

router = APIRouter(tags=["operations"])


@router.get("/health/live", response_model=Status)
async def live() -> dict[str, str]:
    """The process is up and answering."""
    return {"status": "ok"}


@router.get("/health/ready", response_model=Status, responses={503: {"model": Status}})
async def ready(models: Annotated[ModelStore, Depends(store)]) -> dict[str, str] | JSONResponse:
    """Ready only once a model is loaded."""
    if models.current is None:
        return JSONResponse({"status": "not ready", "model_version": None}, status_code=503)
    return {"status": "ready", "model_version": models.current.version}


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics() -> Response:
    """Prometheus text exposition."""
    body, content_type = exposition()
    return Response(body, media_type=content_type)
