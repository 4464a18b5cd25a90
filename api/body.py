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

The rules past the structs' own (SHOP_DATE's forms, BASKET_ID's length, SHOP_WEEKDAY against
SHOP_DATE, the segment merges, the code patterns) run over whole columns in `accepted_columns`,
which the Arrow body of the batch route (`api.arrow_body`) goes through too; its bodies that
path does not accept are validated basket by basket by the same models (`validated_rows`).
"""

from __future__ import annotations

import datetime as dt
import email.message
import functools
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
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
    """Many baskets, the JSON body of POST /v1/predict/batch (and what FastAPI makes of another content type)."""
    return _parse(body, content_type, lambda: _BATCH.decode(body).baskets,
                  lambda: _validated(_BATCH_ADAPTER, body, content_type).baskets)


def within_batch_limit(baskets: int, limit: int) -> None:
    """422 when a batch holds more baskets than RETAIL_MAX_BATCH_BASKETS allows."""
    if baskets > limit:
        raise RequestValidationError([{
            "type": "too_long",
            "loc": ("body", "baskets"),
            "msg": f"{baskets} baskets in one batch; the limit is {limit} (RETAIL_MAX_BATCH_BASKETS): split the batch",
            "input": None,
        }])


def within_line_limit(lines_per_basket: Iterable[int], limit: int, location: tuple[str, ...]) -> None:
    """422 naming the first basket with more lines than RETAIL_MAX_BASKET_LINES allows; `location` is ("body",) for
    the single route, ("body", "baskets") for the batch route."""
    for i, lines in enumerate(lines_per_basket):
        if lines > limit:
            where = (*location, i, "lines") if len(location) > 1 else (*location, "lines")
            raise RequestValidationError([{
                "type": "too_long",
                "loc": where,
                "msg": f"{lines} lines in one basket; the limit is {limit} (RETAIL_MAX_BASKET_LINES)",
                "input": None,
            }])


def validated_rows(rows: Iterable[Mapping[str, Any]]) -> ParsedBaskets:
    """Baskets given as the values JSON would decode to (a mapping per basket, its lines a list of mappings),
    validated one at a time by the models as `_validated` validates a body: their reading, or a 422 with every
    basket's errors located as FastAPI locates them in a BatchRequest body (("body", "baskets", i, ...)). One basket
    at a time, so what is held is the baskets' models, not every basket's values as well."""
    baskets: list[Basket] = []
    errors: list[Any] = []
    for i, row in enumerate(rows):
        try:
            basket = _BASKET_ADAPTER.validate_python(row, from_attributes=True)
        except ValidationError as error:
            errors.extend({**e, "loc": ("body", "baskets", i, *e["loc"])} for e in error.errors(include_url=False))
            continue
        if not errors:
            baskets.append(basket)
    if not baskets and not errors:  # no baskets at all: the batch's own rule (at least one)
        try:
            _BATCH_ADAPTER.validate_python({"baskets": []}, from_attributes=True)
        except ValidationError as error:
            errors.extend({**e, "loc": ("body", *e["loc"])} for e in error.errors(include_url=False))
    if errors:
        raise RequestValidationError(errors)
    return columns_of(baskets)


def basket_errors(baskets: Sequence[int], row: Callable[[int], Mapping[str, Any]], most_baskets: int,
                  most_errors: int) -> list[dict[str, Any]]:
    """The models' errors for the baskets of these indices (those a faster check flagged), `row(i)` giving basket i
    as the values JSON would decode to, located as `validated_rows` locates them: the errors of the first
    `most_baskets` baskets the models refuse, at most `most_errors` of them, then, when any are left out, one
    `too_many_errors` entry at ("body", "baskets") counting the errors left out and the baskets not validated. Empty
    when the models refuse none of them."""
    errors: list[dict[str, Any]] = []
    refused = validated = 0
    for i in baskets:
        if refused == most_baskets or len(errors) >= most_errors:
            break
        validated += 1
        try:
            _BASKET_ADAPTER.validate_python(row(i), from_attributes=True)
        except ValidationError as error:
            refused += 1
            errors.extend({**e, "loc": ("body", "baskets", i, *e["loc"])} for e in error.errors(include_url=False))
    left_out, unchecked = max(0, len(errors) - most_errors), len(baskets) - validated
    if left_out or unchecked:
        errors = [*errors[:most_errors], {
            "type": "too_many_errors", "loc": ("body", "baskets"),
            "msg": f"{left_out} more errors and {unchecked} more baskets that may have errors are not listed: at most "
                   f"{most_baskets} baskets' errors and {most_errors} errors are listed",
            "input": None, "ctx": {"errors_left_out": left_out, "baskets_not_validated": unchecked}}]
    return errors


def _parse(body: bytes, content_type: str | None, decoded: Callable[[], list[DecodedBasket]],
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


def media_type(content_type: str | None) -> str:
    """The media type a Content-Type names, in lower case and without parameters, as the email package reads the
    header (`text/plain` for one it cannot read); empty without a Content-Type."""
    if not content_type:
        return ""
    message = email.message.Message()
    message["content-type"] = content_type
    return message.get_content_type()


def is_json(content_type: str | None) -> bool:
    """Whether FastAPI would parse a body sent with this Content-Type as JSON (application/json or */*+json)."""
    if content_type == JSON_CONTENT_TYPE:
        return True
    maintype, _, subtype = media_type(content_type).partition("/")
    return maintype == "application" and (subtype == "json" or subtype.endswith("+json"))


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


class DecodedLine(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A line as the fast path decodes it: the model's fields, types and bounds."""

    QUANTITY: Annotated[int, _meta(BasketLine, "QUANTITY")]
    SPEND: Annotated[float, _meta(BasketLine, "SPEND")]
    PROD_CODE: str
    PROD_CODE_10: str
    PROD_CODE_20: str
    PROD_CODE_30: str
    PROD_CODE_40: str


class DecodedBasket(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A basket as the fast path decodes it: the model's fields, types, bounds and closed domains."""

    SHOP_DATE: int | str
    SHOP_HOUR: Annotated[int, _meta(Basket, "SHOP_HOUR")]
    BASKET_SIZE: BasketSize
    BASKET_TYPE: BasketType
    BASKET_DOMINANT_MISSION: BasketMission
    STORE_CODE: str
    STORE_FORMAT: StoreFormat
    STORE_REGION: StoreRegion
    lines: Annotated[list[DecodedLine], _meta(Basket, "lines")]
    BASKET_ID: str | int | None = None
    SHOP_WEEK: Annotated[int, _meta(Basket, "SHOP_WEEK")] | None = None
    SHOP_WEEKDAY: Annotated[int, _meta(Basket, "SHOP_WEEKDAY")] | None = None
    CUST_CODE: str | None = None
    CUST_PRICE_SENSITIVITY: PriceSensitivity | None = None
    seg_1: PriceSensitivityCode | None = None
    CUST_LIFESTAGE: Lifestage | None = None
    seg_2: LifestageCode | None = None


class _Batch(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    baskets: Annotated[list[DecodedBasket], _meta(BatchRequest, "baskets")]


_BASKET = msgspec.json.Decoder(DecodedBasket)
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


HEADER_FIELDS = tuple(name for name in DecodedBasket.__struct_fields__ if name != "lines")
"""A basket's fields but its lines: the header columns `accepted_columns` reads."""


def _accepted(baskets: list[DecodedBasket]) -> ParsedBaskets | None:
    """The baskets as the scorer takes them, or None when the fast path does not vouch for them."""
    header = {name: list(map(attrgetter(name), baskets)) for name in HEADER_FIELDS}
    lines = [line for basket in baskets for line in basket.lines]
    columns = {name: list(map(attrgetter(name), lines)) for name in LINE_FIELDS}
    return accepted_columns(header, columns, BasketColumns.offsets_of(len(basket.lines) for basket in baskets))


def accepted_columns(header: Mapping[str, list[Any]], lines: dict[str, list[Any]],
                     offsets: list[int]) -> ParsedBaskets | None:
    """Baskets as columns whose values already have the types, bounds and closed domains of `DecodedBasket` and
    `DecodedLine` (`header`: a list per HEADER_FIELDS name, None where a basket left the field out; `lines`: a list
    per LINE_FIELDS name, basket i's lines at offsets[i]:offsets[i + 1]): the scorer's reading when the remaining
    rules hold, else None (the fast path does not vouch for them). Each rule runs over a whole column at once: a
    1,000-basket body is one call per field, not per basket."""
    dated = list(map(_shop_date, header["SHOP_DATE"]))
    if None in dated or not dated:
        return None
    days, weeks_of_date = zip(*dated, strict=True)
    # msgspec decodes BASKET_ID to a str, an int (never a bool: a JSON true is refused) or None
    ids = [str(i) if isinstance(i, int) else i for i in header["BASKET_ID"]]
    if any(len(i) > _BASKET_ID_MAX_LENGTH for i in ids if i is not None):
        return None
    if any(sent is not None and sent != day for sent, day in zip(header["SHOP_WEEKDAY"], days, strict=True)):
        return None
    try:  # the models' merge: coded and decoded segments that disagree are the models' 422 to report
        sensitivity = list(map(_merged_sensitivity, header["CUST_PRICE_SENSITIVITY"], header["seg_1"]))
        lifestage = list(map(_merged_lifestage, header["CUST_LIFESTAGE"], header["seg_2"]))
    except ValueError:
        return None
    codes = {name: lines[name] for name in CODE_PATTERNS if name in lines}
    codes["STORE_CODE"] = header["STORE_CODE"]
    codes["CUST_CODE"] = [code for code in header["CUST_CODE"] if code is not None]
    if not all(_VALID_CODES[name].vouch(values) for name, values in codes.items()):
        return None
    weeks = [date_week if sent is None else sent
             for sent, date_week in zip(header["SHOP_WEEK"], weeks_of_date, strict=True)]
    scored = {name: header[name] for name in (*_SENT_AS_IS, "SHOP_HOUR")}
    scored.update(CUST_PRICE_SENSITIVITY=sensitivity, CUST_LIFESTAGE=lifestage, SHOP_WEEKDAY=list(days))
    return ParsedBaskets(ids=ids, weeks=weeks, columns=BasketColumns(header=scored, lines=lines, offsets=offsets))


@functools.lru_cache(maxsize=64)  # a few segment values, each pair merged once
def _merged_sensitivity(decoded: PriceSensitivity | None, coded: PriceSensitivityCode | None) -> str | None:
    return merge_segment("CUST_PRICE_SENSITIVITY", decoded, "seg_1", coded, SEG_1_MEANINGS)


@functools.lru_cache(maxsize=64)
def _merged_lifestage(decoded: Lifestage | None, coded: LifestageCode | None) -> str | None:
    return merge_segment("CUST_LIFESTAGE", decoded, "seg_2", coded, SEG_2_MEANINGS)


class _CodesSeen:
    """A code column's pattern, and the codes already found to match it: requests repeat the same products and
    stores, so each code is matched once and then only looked up. At most `kept` codes are remembered."""

    def __init__(self, pattern: str, kept: int = 200_000):
        self.matches = _full_match(pattern)
        self.kept = kept
        self.seen: set[str] = set()

    def vouch(self, values: list[str]) -> bool:
        """Whether every value matches the pattern."""
        if self.seen.issuperset(values):  # the usual case, without building a set of the values
            return True
        new = set(values).difference(self.seen)
        if not all(map(self.matches, new)):
            return False
        if len(self.seen) + len(new) > self.kept:
            self.seen.clear()
        self.seen.update(new)
        return True


_VALID_CODES = {column: _CodesSeen(pattern) for column, pattern in CODE_PATTERNS.items()}


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
