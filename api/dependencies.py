"""Request dependencies: the model a request is served by, and the shared scoring queue.

They are `async def` although they do not wait for anything: FastAPI runs a plain `def` dependency in its
thread pool, a round trip through another thread for each of them on every request (the largest cost of a
one-basket prediction after the scoring itself, in a py-spy profile of the server under load).

Starlette's `app.state` is untyped; `api.app` sets `settings` and `store` in `create_app` and `batcher` in the
lifespan, before any request is served, hence the casts."""

from __future__ import annotations

from typing import cast

from fastapi import HTTPException, Request, status

from api.batcher import Batcher
from api.model_store import LoadedModel, ModelStore
from api.settings import ApiSettings


async def current_model(request: Request) -> LoadedModel:
    """The model loaded when the request arrived; it serves the whole request even if a swap follows."""
    model = cast(ModelStore, request.app.state.store).current
    if model is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="no model loaded yet; retry shortly",
                            headers={"Retry-After": "5"})
    return model


async def store(request: Request) -> ModelStore:
    return cast(ModelStore, request.app.state.store)


async def batcher(request: Request) -> Batcher:
    return cast(Batcher, request.app.state.batcher)


async def settings(request: Request) -> ApiSettings:
    return cast(ApiSettings, request.app.state.settings)
