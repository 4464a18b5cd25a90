"""Prediction request bodies to the scorer's columns: msgspec for a valid body, the pydantic models for the rest.

The pydantic models of `api.schemas` define the bodies: the OpenAPI document and every 422
come from them. Validating a 1,000-basket body with them costs about 20 ms (an object per
line, every code matched against its pattern), most of the batch route's budget. So a body
is first decoded by msgspec into structs with the same fields, types, bounds and closed
domains (bounds read from the models' fields), the code patterns are matched once per
distinct code, and the header rules (coded segments, weekday) run in one pass.

That fast path only ever accepts. A body it does not accept, whether invalid or valid in a
form it is stricter about (a quantity sent as 2.0, a date as a timestamp, another content
type), is parsed and validated again exactly as FastAPI validates a body parameter, so the
client gets the same answer and the same 422 either way. tests/api/test_body.py checks that
whatever the fast path accepts the models accept too, with the same values, and that the
422s equal those of a plain FastAPI route taking the model.
"""

from __future__ import annotations

import datetime as dt
import email.message
import functools
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Annotated, Any, TypeVar

import msgspec
from annotated_types import Ge, Le, MaxLen, MinLen
from fastapi import HTTPException, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, TypeAdapter, ValidationError

from api.schemas import Basket, BasketLine, BatchRequest, merge_segment
from ml.calendar import week_code_of
from ml.compiled import LINE_FIELDS, BasketColumns
from ml.features import HEADER_CATEGORICALS, HEADER_NUMERICS
from ml.schema import (
    CODE_PATTERNS,
    SEG_1_MEANINGS,
    SEG_2_MEANINGS,
    BasketMission,
    BasketSize,
    BasketType,
    Lifestage,
    LifestageCode,
    PriceSensitivity,
    PriceSensitivityCode,
    StoreFormat,
    StoreRegion,
)

JSON_CONTENT_TYPE = "application/json"
NOT_DECODED = (msgspec.DecodeError, UnicodeDecodeError)
"""What msgspec raises for a body its structs do not take: malformed JSON or a value it refuses (its
ValidationError is a DecodeError), and text that is not UTF-8 (a UnicodeDecodeError)."""


@dataclass(frozen=True)
class ParsedBaskets:
    """Validated baskets: each one's BASKET_ID (echoed in the response), fiscal week (SHOP_WEEK as sent, else the
    week of SHOP_DATE: the prediction log's) and the featurizer's columns."""

    ids: list[str | None]
    weeks: list[int]
    columns: BasketColumns

    def lines_per_basket(self) -> list[int]:
        offsets = self.columns.offsets
        return [end - start for start, end in zip(offsets, offsets[1:], strict=False)]


def parse_single(body: bytes, content_type: str | None) -> ParsedBaskets:
    """One basket, the body of POST /v1/predict."""
    return _parse(body, content_type, lambda: [_BASKET.decode(body)],
                  lambda: [_validated(_BASKET_ADAPTER, body, content_type)])


def parse_batch(body: bytes, content_type: str | None) -> ParsedBaskets:
    """Many baskets, the body of POST /v1/predict/batch."""
    return _parse(body, content_type, lambda: _BATCH.decode(body).baskets,
                  lambda: _validated(_BATCH_ADAPTER, body, content_type).baskets)


def _parse(body: bytes, content_type: str | None, decoded: Callable[[], list[_Basket]],
           validated: Callable[[], Sequence[Basket]]) -> ParsedBaskets:
    """The fast path's reading of a JSON body when it vouches for it, else the models' (`validated`)."""
    if is_json(content_type):
        try:
            parsed = _accepted(decoded())
        except NOT_DECODED:
            parsed = None
        if parsed is not None:
            return parsed
    return columns_of(validated())


def columns_of(baskets: Sequence[Basket]) -> ParsedBaskets:
    """Baskets validated by the pydantic models, as the scorer takes them."""
    lines = [line for basket in baskets for line in basket.lines]
    return ParsedBaskets(
        ids=[basket.BASKET_ID for basket in baskets],
        weeks=[basket.SHOP_WEEK or week_code_of(basket.SHOP_DATE) for basket in baskets],
        columns=BasketColumns(
            header={name: list(map(attrgetter(name), baskets)) for name in _HEADER},
            lines={name: list(map(attrgetter(name), lines)) for name in LINE_FIELDS},
            offsets=BasketColumns.offsets_of(len(basket.lines) for basket in baskets),
        ),
    )


def is_json(content_type: str | None) -> bool:
    """Whether FastAPI would parse a body sent with this Content-Type as JSON (application/json or */*+json)."""
    if content_type == JSON_CONTENT_TYPE:
        return True
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


async def validation_error_response(_: Request, error: RequestValidationError) -> JSONResponse:
    """FastAPI's 422, with the echoed input made encodable. Starlette's encoder refuses NaN and infinities, and
    UTF-8 refuses lone surrogates and undecodable bytes, so FastAPI's own handler answers 500 to a body holding
    NaN, Infinity or 1e400 where a number is due, a string with a lone surrogate (`"\\ud800"`), or non-UTF-8
    bytes sent as another content type: each error repeats its input. Here non-finite numbers are written as
    null and undecodable text as U+FFFD."""
    return JSONResponse({"detail": jsonable_encoder(_encodable(error.errors()))}, status_code=422)


def _encodable(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, dict):
        return {_encodable(key): _encodable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_encodable(item) for item in value]
    return value


# ---- the fallback: what FastAPI does for a body parameter ------------------------------------------------------

_BASKET_ADAPTER = TypeAdapter(Basket)
_BATCH_ADAPTER = TypeAdapter(BatchRequest)
_Model = TypeVar("_Model", bound=BaseModel)


def _validated(adapter: TypeAdapter[_Model], body: bytes, content_type: str | None) -> _Model:
    """`body` validated by the adapter's model as FastAPI validates a body parameter: the same parsing and the
    same 422s."""
    if not body:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    value: Any = body  # not JSON by its Content-Type: validated as bytes, and refused
    if is_json(content_type):
        try:
            value = json.loads(body)
        except json.JSONDecodeError as error:
            raise RequestValidationError([{"type": "json_invalid", "loc": ("body", error.pos),
                                           "msg": "JSON decode error", "input": {}, "ctx": {"error": error.msg}}],
                                         body=error.doc) from error
        except Exception as error:  # not UTF-8 (or UTF-16/32), nested too deep: FastAPI's 400
            raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="There was an error parsing the body") from error
    try:
        return adapter.validate_python(value, from_attributes=True)
    except ValidationError as error:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in error.errors(include_url=False)],
                                     body=value) from error


# ---- the fast path ------------------------------------------------------------------------------------------------

def _meta(model: type[BaseModel], name: str) -> msgspec.Meta:
    """The bounds of a model's field (ge, le, min_length, max_length) as msgspec constraints."""
    kinds = ((Ge, "ge"), (Le, "le"), (MinLen, "min_length"), (MaxLen, "max_length"))
    bounds = {key: getattr(item, key) for item in model.model_fields[name].metadata
              for kind, key in kinds if isinstance(item, kind)}
    return msgspec.Meta(**bounds)


class _Line(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    QUANTITY: Annotated[int, _meta(BasketLine, "QUANTITY")]
    SPEND: Annotated[float, _meta(BasketLine, "SPEND")]
    PROD_CODE: str
    PROD_CODE_10: str
    PROD_CODE_20: str
    PROD_CODE_30: str
    PROD_CODE_40: str


class _Basket(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    SHOP_DATE: int | str
    SHOP_HOUR: Annotated[int, _meta(Basket, "SHOP_HOUR")]
    BASKET_SIZE: BasketSize
    BASKET_TYPE: BasketType
    BASKET_DOMINANT_MISSION: BasketMission
    STORE_CODE: str
    STORE_FORMAT: StoreFormat
    STORE_REGION: StoreRegion
    lines: Annotated[list[_Line], _meta(Basket, "lines")]
    BASKET_ID: str | int | None = None
    SHOP_WEEK: Annotated[int, _meta(Basket, "SHOP_WEEK")] | None = None
    SHOP_WEEKDAY: Annotated[int, _meta(Basket, "SHOP_WEEKDAY")] | None = None
    CUST_CODE: str | None = None
    CUST_PRICE_SENSITIVITY: PriceSensitivity | None = None
    seg_1: PriceSensitivityCode | None = None
    CUST_LIFESTAGE: Lifestage | None = None
    seg_2: LifestageCode | None = None


class _Batch(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    baskets: Annotated[list[_Basket], _meta(BatchRequest, "baskets")]


_BASKET = msgspec.json.Decoder(_Basket)
_BATCH = msgspec.json.Decoder(_Batch)
_HEADER = (*HEADER_CATEGORICALS, *HEADER_NUMERICS)
_SEGMENTS = ("CUST_PRICE_SENSITIVITY", "CUST_LIFESTAGE")
_SENT_AS_IS = tuple(name for name in HEADER_CATEGORICALS if name not in _SEGMENTS)


def _max_length(model: type[BaseModel], name: str) -> int:
    length = _meta(model, name).max_length
    if length is None:
        raise ValueError(f"{model.__name__}.{name} has no max_length")
    return length


_BASKET_ID_MAX_LENGTH = _max_length(Basket, "BASKET_ID")


def _full_match(pattern: str) -> Callable[[str], re.Match[str] | None]:
    """A code pattern (anchored with ^ and $, as pydantic's Rust regex reads them) as a whole-string match.
    Python's `$` would also match before a final newline, so the anchors are dropped for `fullmatch`."""
    if not (pattern.startswith("^") and pattern.endswith("$")):
        raise ValueError(f"code pattern {pattern!r} is not anchored at both ends")
    return re.compile(pattern[1:-1]).fullmatch


_CODE_MATCHES = {column: _full_match(pattern) for column, pattern in CODE_PATTERNS.items()}


def _accepted(baskets: list[_Basket]) -> ParsedBaskets | None:
    """The baskets as the scorer takes them, or None when the fast path does not vouch for them."""
    ids: list[str | None] = []
    sensitivity: list[str | None] = []
    lifestage: list[str | None] = []
    weekday: list[int] = []
    weeks: list[int] = []
    for basket in baskets:
        # msgspec decodes BASKET_ID to a str, an int (never a bool: a JSON true is refused) or None
        identifier = str(basket.BASKET_ID) if isinstance(basket.BASKET_ID, int) else basket.BASKET_ID
        dated = _shop_date(basket.SHOP_DATE)
        if dated is None:
            return None
        day, week = dated
        if ((identifier is not None and len(identifier) > _BASKET_ID_MAX_LENGTH)
                or (basket.SHOP_WEEKDAY is not None and basket.SHOP_WEEKDAY != day)):
            return None
        try:  # the models' merge: coded and decoded segments that disagree are the models' 422 to report
            sensitivity.append(merge_segment("CUST_PRICE_SENSITIVITY", basket.CUST_PRICE_SENSITIVITY,
                                             "seg_1", basket.seg_1, SEG_1_MEANINGS))
            lifestage.append(merge_segment("CUST_LIFESTAGE", basket.CUST_LIFESTAGE, "seg_2", basket.seg_2,
                                           SEG_2_MEANINGS))
        except ValueError:
            return None
        ids.append(identifier)
        weekday.append(day)
        weeks.append(week if basket.SHOP_WEEK is None else basket.SHOP_WEEK)
    lines = [line for basket in baskets for line in basket.lines]
    columns = {name: list(map(attrgetter(name), lines)) for name in LINE_FIELDS}
    codes = {name: columns[name] for name in CODE_PATTERNS if name in columns}
    codes["STORE_CODE"] = [basket.STORE_CODE for basket in baskets]
    codes["CUST_CODE"] = [basket.CUST_CODE for basket in baskets if basket.CUST_CODE is not None]
    for name, values in codes.items():
        if not all(map(_CODE_MATCHES[name], set(values))):
            return None
    header = {name: list(map(attrgetter(name), baskets)) for name in (*_SENT_AS_IS, "SHOP_HOUR")}
    header.update(CUST_PRICE_SENSITIVITY=sensitivity, CUST_LIFESTAGE=lifestage, SHOP_WEEKDAY=weekday)
    offsets = BasketColumns.offsets_of(len(basket.lines) for basket in baskets)
    return ParsedBaskets(ids=ids, weeks=weeks, columns=BasketColumns(header=header, lines=columns, offsets=offsets))


@functools.lru_cache(maxsize=4096)  # a batch's baskets share a few dates
def _shop_date(value: int | str) -> tuple[int, int] | None:
    """The weekday (1 = Sunday .. 7) and fiscal week of SHOP_DATE given as YYYYMMDD (number or text) or YYYY-MM-DD;
    None for any other form, or a date that does not exist."""
    text = str(value) if isinstance(value, int) else value  # msgspec gives an int or a str, never a bool
    if len(text) == 8 and text.isascii() and text.isdigit():
        year, month, day = text[:4], text[4:6], text[6:]
    elif (len(text) == 10 and text[4] == "-" and text[7] == "-" and text.isascii()
          and (year := text[:4]).isdigit() and (month := text[5:7]).isdigit() and (day := text[8:]).isdigit()):
        pass
    else:
        return None
    try:
        date = dt.date(int(year), int(month), int(day))
    except ValueError:
        return None
    return date.isoweekday() % 7 + 1, week_code_of(date)
