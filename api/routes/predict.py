"""POST /v1/predict (one basket) and POST /v1/predict/batch (many)."""

from __future__ import annotations

from typing import Annotated

import numpy as np
import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from api.batcher import Batcher
from api.dependencies import batcher, current_model, settings
from api.middleware import BASKETS_SCORED
from api.model_store import LoadedModel
from api.schemas import Basket, BatchRequest, BatchResponse, PredictResponse
from api.security import require_api_key
from api.settings import ApiSettings

router = APIRouter(prefix="/v1", tags=["predictions"], dependencies=[Depends(require_api_key)])
AUTH_RESPONSES = {401: {"description": "missing or invalid API key"}, 503: {"description": "no model loaded yet"}}
SIZE_RESPONSES = {413: {"description": "request body over RETAIL_MAX_BODY_BYTES"}}


def _json(payload: dict) -> Response:
    """The body serialised once by orjson. Returning a dict would have FastAPI validate it against the response
    model first, a second pass over every prediction; the model stays declared for the OpenAPI document, and the
    tests check the bodies against it."""
    return Response(orjson.dumps(payload), media_type="application/json")


def predictions(classes: list[str], baskets: list[Basket], probabilities: np.ndarray) -> list[dict]:
    """One response item per basket, in request order."""
    best = probabilities.argmax(axis=1).tolist()
    return [
        {"basket_id": basket.BASKET_ID, "prediction": classes[i], "probabilities": dict(zip(classes, row, strict=True))}
        for basket, i, row in zip(baskets, best, probabilities.tolist(), strict=True)
    ]


def _within_line_limit(baskets: list[Basket], limit: int, location: tuple) -> None:
    """422 naming the first basket with more lines than RETAIL_MAX_BASKET_LINES allows."""
    for i, basket in enumerate(baskets):
        if len(basket.lines) > limit:
            where = (*location, i, "lines") if len(location) > 1 else (*location, "lines")
            raise RequestValidationError([{
                "type": "too_long",
                "loc": where,
                "msg": f"{len(basket.lines)} lines in one basket; the limit is {limit} (RETAIL_MAX_BASKET_LINES)",
                "input": None,
            }])


@router.post("/predict", response_model=PredictResponse, responses={**AUTH_RESPONSES, **SIZE_RESPONSES})
async def predict(
    basket: Basket,
    request: Request,
    model: Annotated[LoadedModel, Depends(current_model)],
    scoring: Annotated[Batcher, Depends(batcher)],
    config: Annotated[ApiSettings, Depends(settings)],
) -> Response:
    """The price sensitivity of one basket (header fields and its product lines)."""
    _within_line_limit([basket], config.max_basket_lines, ("body",))
    probabilities = await scoring.predict(model, [basket])
    setattr(request.state, BASKETS_SCORED, 1)
    return _json({**predictions(model.bundle.classes, [basket], probabilities)[0],
                           "model_version": model.version})


@router.post("/predict/batch", response_model=BatchResponse, responses={**AUTH_RESPONSES, **SIZE_RESPONSES})
async def predict_batch(
    batch: BatchRequest,
    request: Request,
    model: Annotated[LoadedModel, Depends(current_model)],
    scoring: Annotated[Batcher, Depends(batcher)],
    config: Annotated[ApiSettings, Depends(settings)],
) -> Response:
    """The price sensitivity of many baskets, in request order, all scored by one model version."""
    if len(batch.baskets) > config.max_batch_baskets:
        raise RequestValidationError([{
            "type": "too_long",
            "loc": ("body", "baskets"),
            "msg": f"{len(batch.baskets)} baskets in one batch; the limit is {config.max_batch_baskets} "
                   "(RETAIL_MAX_BATCH_BASKETS): split the batch",
            "input": None,
        }])
    _within_line_limit(batch.baskets, config.max_basket_lines, ("body", "baskets"))
    probabilities = await scoring.predict(model, batch.baskets)
    setattr(request.state, BASKETS_SCORED, len(batch.baskets))
    return _json({"model_version": model.version,
                           "predictions": predictions(model.bundle.classes, batch.baskets, probabilities)})

