"""POST /v1/predict (one basket) and POST /v1/predict/batch (many)."""

from __future__ import annotations

from typing import Annotated, Any, TypeAlias, TypedDict, cast

import numpy as np
import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from api.arrow_body import (
    ARROW_STREAM_CONTENT_TYPE,
    COLUMN_TYPES,
    LISTED_BASKETS,
    LISTED_ERRORS,
    is_arrow_stream,
    parse_arrow_batch,
)
from api.batcher import Batcher
from api.body import ParsedBaskets, parse_batch, parse_single, within_batch_limit, within_line_limit
from api.dependencies import batcher, current_model, settings
from api.middleware import BASKETS_SCORED
from api.model_store import LoadedModel
from api.prediction_log import LoggedBaskets, PredictionLog
from api.schemas import BatchResponse, PredictResponse
from api.security import require_api_key
from api.settings import ApiSettings
from api.shadow import ShadowScorer
from ml.prediction_log import CHAMPION

router = APIRouter(prefix="/v1", tags=["predictions"], dependencies=[Depends(require_api_key)])
Responses: TypeAlias = dict[int | str, dict[str, Any]]  # FastAPI's `responses` argument
AUTH_RESPONSES: Responses = {401: {"description": "missing or invalid API key"},
                             503: {"description": "no model loaded yet"}}
SIZE_RESPONSES: Responses = {413: {"description": "request body over RETAIL_MAX_BODY_BYTES"}}
BODY_RESPONSES: Responses = {
    400: {"description": "the body cannot be parsed: not UTF-8, or nested too deep"},
    422: {"description": "Validation Error",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}}},
}
"""What FastAPI documents for a route with a body parameter; these routes read their body themselves (`api.body`),
and `api.app` adds the HTTPValidationError schema to the document's components."""


class Prediction(TypedDict):
    """An item of the response bodies (`api.schemas.BasketPrediction`)."""

    basket_id: str | None
    prediction: str
    probabilities: dict[str, float]


class SinglePrediction(Prediction):
    """The body of POST /v1/predict (`api.schemas.PredictResponse`)."""

    model_version: str


class BatchPredictions(TypedDict):
    """The body of POST /v1/predict/batch (`api.schemas.BatchResponse`)."""

    model_version: str
    predictions: list[Prediction]


def request_body(model_name: str) -> dict[str, Any]:
    """The OpenAPI request body of a route that reads its body itself (see `api.body`); `api.app` adds the
    models' schemas to the document's components."""
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{model_name}"}}}}}


ARROW_BATCH_BODY: dict[str, Any] = {"x-arrow-columns": COLUMN_TYPES}
"""The batch body as an Arrow IPC stream (`api.arrow_body`): a row per basket, a column per BatchRequest basket field,
`lines` a list of structs of the line fields; `x-arrow-columns` lists the Arrow types each column takes. No schema:
OpenAPI 3.1 describes binary content by its media type alone (its format registry retires `format: binary`)."""


def batch_request_body() -> dict[str, Any]:
    """The batch route's OpenAPI request body: the BatchRequest as JSON, or its baskets as an Arrow IPC stream."""
    document = request_body("BatchRequest")
    document["requestBody"]["description"] = (
        "A BatchRequest as JSON, or its baskets as an Arrow IPC stream: a row per basket, a column per basket "
        "field, `lines` a list of structs of the line fields (x-arrow-columns: the Arrow types each column takes; "
        "any column may also be of the null type). Value errors are the JSON body's 422s at "
        f"[body, baskets, i, ...], those of the first {LISTED_BASKETS} baskets refused and at most {LISTED_ERRORS:,} "
        "of them; one more entry, type too_many_errors at [body, baskets], counts what is left out.")
    document["requestBody"]["content"][ARROW_STREAM_CONTENT_TYPE] = ARROW_BATCH_BODY
    return document


def _json(payload: SinglePrediction | BatchPredictions) -> Response:
    """The body serialised once by orjson. Returning a dict would have FastAPI validate it against the response
    model first, a second pass over every prediction; the model stays declared for the OpenAPI document, and the
    tests check the bodies against it."""
    return Response(orjson.dumps(payload), media_type="application/json")


def predictions(classes: list[str], basket_ids: list[str | None], probabilities: np.ndarray) -> list[Prediction]:
    """One response item per basket, in request order."""
    best = probabilities.argmax(axis=1).tolist()
    return [
        {"basket_id": basket_id, "prediction": classes[i], "probabilities": dict(zip(classes, row, strict=True))}
        for basket_id, i, row in zip(basket_ids, best, probabilities.tolist(), strict=True)
    ]


def _observe(request: Request, model: LoadedModel, baskets: ParsedBaskets, probabilities: np.ndarray) -> None:
    """Hand what the champion scored to the prediction log and the shadow challenger, if they are on (appends
    only: each does its work on its own thread). `api.app` sets both in the lifespan, None when off."""
    predictions = cast("PredictionLog | None", request.app.state.prediction_log)
    if predictions is None:
        return
    logged = LoggedBaskets(baskets.ids, baskets.weeks)
    predictions.record(CHAMPION, model, logged, probabilities)
    shadow = cast("ShadowScorer | None", request.app.state.shadow)
    if shadow is not None:
        shadow.submit(logged, baskets.columns)


@router.post("/predict", response_model=PredictResponse, openapi_extra=request_body("Basket"),
             responses={**AUTH_RESPONSES, **SIZE_RESPONSES, **BODY_RESPONSES})
async def predict(
    request: Request,
    model: Annotated[LoadedModel, Depends(current_model)],
    scoring: Annotated[Batcher, Depends(batcher)],
    config: Annotated[ApiSettings, Depends(settings)],
) -> Response:
    """The price sensitivity of one basket (header fields and its product lines)."""
    basket = parse_single(await request.body(), request.headers.get("content-type"))
    within_line_limit(basket.lines_per_basket(), config.max_basket_lines, ("body",))
    probabilities = await scoring.predict(model, basket.columns)
    setattr(request.state, BASKETS_SCORED, 1)
    _observe(request, model, basket, probabilities)
    return _json({**predictions(model.bundle.classes, basket.ids, probabilities)[0],
                  "model_version": model.version})


@router.post("/predict/batch", response_model=BatchResponse, openapi_extra=batch_request_body(),
             responses={**AUTH_RESPONSES, **SIZE_RESPONSES, **BODY_RESPONSES})
async def predict_batch(
    request: Request,
    model: Annotated[LoadedModel, Depends(current_model)],
    scoring: Annotated[Batcher, Depends(batcher)],
    config: Annotated[ApiSettings, Depends(settings)],
) -> Response:
    """The price sensitivity of many baskets, in request order, all scored by one model version: a JSON body, or
    an Arrow IPC stream (Content-Type: application/vnd.apache.arrow.stream)."""
    content_type, body = request.headers.get("content-type"), await request.body()
    if is_arrow_stream(content_type):
        batch = parse_arrow_batch(body, config.max_batch_baskets, config.max_basket_lines)
    else:
        batch = parse_batch(body, content_type)
    within_batch_limit(len(batch.ids), config.max_batch_baskets)
    within_line_limit(batch.lines_per_basket(), config.max_basket_lines, ("body", "baskets"))
    probabilities = await scoring.predict(model, batch.columns)
    setattr(request.state, BASKETS_SCORED, len(batch.ids))
    _observe(request, model, batch, probabilities)
    return _json({"model_version": model.version,
                  "predictions": predictions(model.bundle.classes, batch.ids, probabilities)})
