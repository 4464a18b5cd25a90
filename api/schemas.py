"""Request and response bodies: the OpenAPI document of the service is built from these.

Field names and codes are the data set's own (see `ml.schema`): a basket header with
its product lines. Customer segments are accepted decoded (`CUST_PRICE_SENSITIVITY`,
`CUST_LIFESTAGE`, as in the original weekly files) or coded (`seg_1`, `seg_2`, as in
`transaction.csv`). Closed domains are enums and open codes are patterns, so a
malformed value is a 422 that names its field; a well-formed product code the model
has never seen is fine (its evidence falls back to the product hierarchy).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeAlias, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, WithJsonSchema, model_validator
from pydantic.config import JsonDict
from pydantic_core import PydanticCustomError

from ml.schema import (
    CODE_PATTERNS,
    MAX_QUANTITY,
    MAX_SPEND,
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

MAX_BASKET_LINES = 500
EXAMPLE_BASKET: JsonDict = {
    "BASKET_ID": "994110500123456",
    "SHOP_DATE": "20080412",
    "SHOP_HOUR": 14,
    "CUST_CODE": "CUST0000123456",
    "seg_1": "CT",
    "seg_2": "CZ",
    "BASKET_SIZE": "M",
    "BASKET_TYPE": "Top Up",
    "BASKET_DOMINANT_MISSION": "Fresh",
    "STORE_CODE": "STORE00001",
    "STORE_FORMAT": "LS",
    "STORE_REGION": "E02",
    "lines": [
        {"QUANTITY": 2, "SPEND": 1.58, "PROD_CODE": "PRD0900001", "PROD_CODE_10": "CL00001",
         "PROD_CODE_20": "DEP00001", "PROD_CODE_30": "G00001", "PROD_CODE_40": "D00001"},
        {"QUANTITY": 1, "SPEND": 3.20, "PROD_CODE": "PRD0900002", "PROD_CODE_10": "CL00002",
         "PROD_CODE_20": "DEP00001", "PROD_CODE_30": "G00001", "PROD_CODE_40": "D00001"},
    ],
}


def _pattern(column: str) -> StringConstraints:
    return StringConstraints(pattern=CODE_PATTERNS[column])


ProdCode: TypeAlias = Annotated[str, _pattern("PROD_CODE")]
ProdCode10: TypeAlias = Annotated[str, _pattern("PROD_CODE_10")]
ProdCode20: TypeAlias = Annotated[str, _pattern("PROD_CODE_20")]
ProdCode30: TypeAlias = Annotated[str, _pattern("PROD_CODE_30")]
ProdCode40: TypeAlias = Annotated[str, _pattern("PROD_CODE_40")]
CustCode: TypeAlias = Annotated[str, _pattern("CUST_CODE")]
StoreCode: TypeAlias = Annotated[str, _pattern("STORE_CODE")]


_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _date(value: Any) -> Any:
    """SHOP_DATE as the data set writes it, YYYYMMDD (a number or text), or as an ISO date (YYYY-MM-DD), the
    document's `format: date`. Any other form is refused here: pydantic's date would also take a Unix time (0 as
    1970-01-01, as a number or text) or a timestamp at midnight, which the document does not allow."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if isinstance(text, str):
        if len(text) == 8 and text.isascii() and text.isdigit():
            return f"{text[:4]}-{text[4:6]}-{text[6:]}"
        if _ISO_DATE.fullmatch(text):
            return text
    raise PydanticCustomError("date_format", "SHOP_DATE must be a date as YYYYMMDD (text or a number) or YYYY-MM-DD")


ShopDate = Annotated[dt.date, BeforeValidator(_date)]


def _json_number(error: str, message: str) -> BeforeValidator:
    """Only a JSON number for a numeric field, as the document's `type` says: pydantic's lax mode would take `true`
    as 1 and `"3"` as 3. The error is the one pydantic gives any other non-number (`int_type`, `float_type`)."""

    def refuse_other_types(value: Any) -> Any:
        if isinstance(value, bool | str):
            raise PydanticCustomError(error, message)
        return value

    return BeforeValidator(refuse_other_types)


_INT_ONLY = _json_number("int_type", "Input should be a valid integer")
JsonInt: TypeAlias = Annotated[int, _INT_ONLY]
OptionalJsonInt: TypeAlias = Annotated[int | None, _INT_ONLY]
JsonFloat: TypeAlias = Annotated[float, _json_number("float_type", "Input should be a valid number")]


class BasketLine(BaseModel):
    """One product in the basket."""

    model_config = ConfigDict(extra="forbid")

    QUANTITY: JsonInt = Field(ge=1, le=MAX_QUANTITY, examples=[1])
    SPEND: JsonFloat = Field(ge=0, le=MAX_SPEND, allow_inf_nan=False, examples=[1.23])
    PROD_CODE: ProdCode = Field(examples=["PRD0900001"])
    PROD_CODE_10: ProdCode10 = Field(examples=["CL00001"])
    PROD_CODE_20: ProdCode20 = Field(examples=["DEP00001"])
    PROD_CODE_30: ProdCode30 = Field(examples=["G00001"])
    PROD_CODE_40: ProdCode40 = Field(examples=["D00001"])


def _segment_rules(schema: JsonDict) -> None:
    """The document's examples, and the one cross-field rule of the header that JSON Schema can state: a coded
    segment sent with its decoded one must mean the same (`merge_segment`), as an if/then per code. (The other,
    SHOP_WEEKDAY agreeing with SHOP_DATE, is a calendar computation: its field's description says it.)"""
    schema["examples"] = [EXAMPLE_BASKET]
    schema["allOf"] = [
        {"if": {"properties": {coded_name: {"const": code}}, "required": [coded_name]},
         "then": {"properties": {name: {"enum": [meaning, None]}}}}
        for coded_name, name, meanings in (("seg_1", "CUST_PRICE_SENSITIVITY", SEG_1_MEANINGS),
                                           ("seg_2", "CUST_LIFESTAGE", SEG_2_MEANINGS))
        for code, meaning in meanings.items()
    ]


class Basket(BaseModel):
    """A basket header (constant within a basket in the data set) and its lines."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True, json_schema_extra=_segment_rules)

    BASKET_ID: Annotated[str | None, WithJsonSchema({  # a number is taken as its text (coerce_numbers_to_str)
        "anyOf": [{"type": "string", "maxLength": 64}, {"type": "number"}, {"type": "null"}]})] = Field(
        None, max_length=64, description="echoed back (a number as its text); not a feature")
    SHOP_WEEK: OptionalJsonInt = Field(None, ge=190001, le=299953, description="fiscal week YYYYWW; not a feature")
    SHOP_DATE: ShopDate = Field(description="YYYYMMDD as in the data set (text or a number), or YYYY-MM-DD",
                               examples=["20080412"])
    SHOP_WEEKDAY: OptionalJsonInt = Field(None, ge=1, le=7, description="1 = Sunday .. 7; must be SHOP_DATE's weekday "
                                     "(a 422 otherwise); from SHOP_DATE if left out")
    SHOP_HOUR: JsonInt = Field(ge=0, le=23, examples=[14])
    CUST_CODE: CustCode | None = None
    CUST_PRICE_SENSITIVITY: PriceSensitivity | None = None
    seg_1: PriceSensitivityCode | None = Field(None, description="coded CUST_PRICE_SENSITIVITY")
    CUST_LIFESTAGE: Lifestage | None = None
    seg_2: LifestageCode | None = Field(None, description="coded CUST_LIFESTAGE")
    BASKET_SIZE: BasketSize
    BASKET_TYPE: BasketType
    BASKET_DOMINANT_MISSION: BasketMission
    STORE_CODE: StoreCode = Field(examples=["STORE00001"])
    STORE_FORMAT: StoreFormat
    STORE_REGION: StoreRegion
    lines: list[BasketLine] = Field(min_length=1, max_length=MAX_BASKET_LINES)

    @model_validator(mode="after")
    def _consistent(self) -> Basket:
        """Decode the coded segments and check that the header agrees with itself."""
        self.CUST_PRICE_SENSITIVITY = merge_segment("CUST_PRICE_SENSITIVITY", self.CUST_PRICE_SENSITIVITY,
                                                    "seg_1", self.seg_1, SEG_1_MEANINGS)
        self.CUST_LIFESTAGE = merge_segment("CUST_LIFESTAGE", self.CUST_LIFESTAGE, "seg_2", self.seg_2,
                                            SEG_2_MEANINGS)
        weekday = (self.SHOP_DATE.isoweekday() % 7) + 1
        if self.SHOP_WEEKDAY is None:
            self.SHOP_WEEKDAY = weekday
        elif self.SHOP_WEEKDAY != weekday:
            raise ValueError(f"SHOP_WEEKDAY {self.SHOP_WEEKDAY} disagrees with SHOP_DATE {self.SHOP_DATE} "
                             f"(weekday {weekday}, 1 = Sunday); send the right one or leave it out")
        return self


_Code = TypeVar("_Code", bound=str)
_Value = TypeVar("_Value", bound=str)


def merge_segment(name: str, decoded: _Value | None, coded_name: str, coded: _Code | None,
                  decode: Mapping[_Code, _Value]) -> _Value | None:
    """A customer segment sent decoded, coded or both: its decoded value; a ValueError when the two disagree.
    (The request models and the fast path of `api.body` both merge segments with it.)"""
    if coded is None:
        return decoded
    if decoded is not None and decode[coded] != decoded:
        raise ValueError(f"{coded_name}={coded} means {decode[coded]} but {name}={decoded}; send one of them")
    return decode[coded]


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    baskets: list[Basket] = Field(min_length=1, description="at most RETAIL_MAX_BATCH_BASKETS (1000 by default)")


class BasketPrediction(BaseModel):
    basket_id: str | None = Field(description="the request's BASKET_ID")
    prediction: str = Field(description="the most likely basket price sensitivity", examples=["MM"])
    probabilities: dict[str, float] = Field(description="per class, summing to 1")


class PredictResponse(BasketPrediction):
    model_version: str


class BatchResponse(BaseModel):
    model_version: str
    predictions: list[BasketPrediction] = Field(description="in request order")


class ModelDescription(BaseModel):
    version: str = Field(description="registry version, or sha256:<prefix> of a bundle loaded from a URI")
    source: str
    family: str
    classes: list[str]
    bundle_sha256: str
    loaded_at: dt.datetime
    metrics: dict[str, Any]
    params: dict[str, Any]
    gate: dict[str, Any]
    data: dict[str, Any]
    lineage: dict[str, Any]


class Status(BaseModel):
    status: Literal["ok", "ready", "not ready"]
    model_version: str | None = None


class ReloadResponse(BaseModel):
    reloaded: bool = Field(description="false when the source still holds the loaded model")
    previous_version: str | None
    model_version: str
