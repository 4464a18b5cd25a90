"""Request dependencies: the model a request is served by, and the shared scoring queue."""

from __future__ import annotations

from fastapi import HTTPException, Request, status

from api.batcher import Batcher
from api.model_store import LoadedModel, ModelStore
from api.settings import ApiSettings


def current_model(request: Request) -> LoadedModel:
    """The model loaded when the request arrived; it serves the whole request even if a swap follows."""
    model = store(request).current
    if model is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="no model loaded yet; retry shortly",
                            headers={"Retry-After": "5"})
    return model


def store(request: Request) -> ModelStore:
    return request.app.state.store


def batcher(request: Request) -> Batcher:
    return request.app.state.batcher


def settings(request: Request) -> ApiSettings:
    return request.app.state.settings
