"""The canonical transaction schema and the two header variants that map onto it.

Raw exports come with either the coded customer-segment columns (`seg_1`, `seg_2`,
values such as AZ or CZ) or the original dunnhumby names (`CUST_PRICE_SENSITIVITY`,
`CUST_LIFESTAGE`, values such as LA or OA). Both are mapped to the canonical names
and decoded values below, so everything after ingestion sees one schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypeAlias, TypeVar, get_args

SCHEMA_VERSION = "1.0"

# Column order of the coded `transaction.csv` export (the project's target file).
CODED_COLUMNS: tuple[str, ...] = (
    "SHOP_WEEK", "SHOP_DATE", "SHOP_WEEKDAY", "SHOP_HOUR", "QUANTITY", "SPEND",
    "PROD_CODE", "PROD_CODE_10", "PROD_CODE_20", "PROD_CODE_30", "PROD_CODE_40",
    "CUST_CODE", "seg_1", "seg_2", "BASKET_ID", "BASKET_SIZE",
    "BASKET_PRICE_SENSITIVITY", "BASKET_TYPE", "BASKET_DOMINANT_MISSION",
    "STORE_CODE", "STORE_FORMAT", "STORE_REGION",
)
# The original weekly files use these names in the same two positions.
ORIGINAL_SEGMENT_NAMES = {"seg_1": "CUST_PRICE_SENSITIVITY", "seg_2": "CUST_LIFESTAGE"}
ORIGINAL_COLUMNS: tuple[str, ...] = tuple(ORIGINAL_SEGMENT_NAMES.get(c, c) for c in CODED_COLUMNS)
# Canonical names are the original ones, with decoded values.
CANONICAL_COLUMNS = ORIGINAL_COLUMNS

# Closed code domains as Literal types, so that a type checker sees them (the API's request models use them as
# field types); `DOMAINS` below reads their values with `get_args`, in the order written here.
PriceSensitivity: TypeAlias = Literal["LA", "UM", "MM", "XX"]
PriceSensitivityCode: TypeAlias = Literal["AZ", "BG", "CT", "DY"]  # seg_1
Lifestage: TypeAlias = Literal["YA", "OT", "OA", "YF", "OF", "PE"]
LifestageCode: TypeAlias = Literal["AT", "BU", "CZ", "DI", "EQ", "FN"]  # seg_2
BasketSize: TypeAlias = Literal["S", "M", "L"]
BasketType: TypeAlias = Literal["Small Shop", "Top Up", "Full Shop", "XX"]
BasketMission: TypeAlias = Literal["Fresh", "Grocery", "Mixed", "Nonfood", "XX"]
StoreFormat: TypeAlias = Literal["LS", "MS", "SS", "XLS"]
StoreRegion: TypeAlias = Literal[
    "E01", "E02", "E03", "N01", "N02", "N03", "S01", "S02", "S03", "W01", "W02", "W03",
]

_Code = TypeVar("_Code", bound=str)
_Value = TypeVar("_Value", bound=str)

# Coded segment to decoded value, typed by their domains.
SEG_1_MEANINGS: dict[PriceSensitivityCode, PriceSensitivity] = {"AZ": "LA", "BG": "UM", "CT": "MM", "DY": "XX"}
SEG_2_MEANINGS: dict[LifestageCode, Lifestage] = {
    "AT": "YA", "BU": "OT", "CZ": "OA", "DI": "YF", "EQ": "OF", "FN": "PE",
}


def _decoding(meanings: Mapping[_Code, _Value], codes: Any, values: Any) -> dict[str, str]:
    """`meanings` as a plain dict[str, str], once checked to map the Literal `codes` onto `values`, in order."""
    if tuple(meanings) != get_args(codes) or tuple(meanings.values()) != get_args(values):
        raise AssertionError(f"{meanings} does not map {get_args(codes)} onto {get_args(values)} in that order")
    return {code: value for code, value in meanings.items()}


SEG_1_DECODE = _decoding(SEG_1_MEANINGS, PriceSensitivityCode, PriceSensitivity)
SEG_2_DECODE = _decoding(SEG_2_MEANINGS, LifestageCode, Lifestage)
SEG_1_ENCODE = {v: k for k, v in SEG_1_DECODE.items()}
SEG_2_ENCODE = {v: k for k, v in SEG_2_DECODE.items()}

LABEL = "BASKET_PRICE_SENSITIVITY"
LABELS = ("LA", "MM", "UM", "XX")
TRAINABLE_LABELS = ("LA", "MM", "UM")
UNCLASSIFIED = "XX"

# Closed code domains, by canonical column.
DOMAINS: dict[str, tuple[str, ...]] = {
    "CUST_PRICE_SENSITIVITY": get_args(PriceSensitivity),
    "CUST_LIFESTAGE": get_args(Lifestage),
    "BASKET_SIZE": get_args(BasketSize),
    LABEL: LABELS,
    "BASKET_TYPE": get_args(BasketType),
    "BASKET_DOMINANT_MISSION": get_args(BasketMission),
    "STORE_FORMAT": get_args(StoreFormat),
    "STORE_REGION": get_args(StoreRegion),
}

# Open code domains: a prefix and a number of digits.
CODE_PATTERNS: dict[str, str] = {
    "PROD_CODE": r"^PRD09\d{5}$",
    "PROD_CODE_10": r"^CL\d{5}$",
    "PROD_CODE_20": r"^DEP\d{5}$",
    "PROD_CODE_30": r"^G\d{5}$",
    "PROD_CODE_40": r"^D\d{5}$",
    "CUST_CODE": r"^CUST\d{10}$",
    "STORE_CODE": r"^STORE\d{5}$",
}

INTEGER_COLUMNS = ("SHOP_WEEK", "SHOP_DATE", "SHOP_WEEKDAY", "SHOP_HOUR", "QUANTITY")
FLOAT_COLUMNS = ("SPEND",)
MAX_QUANTITY = 100_000
MAX_SPEND = 100_000.0
"""A line's largest QUANTITY and SPEND: the lake quarantines a line over them, the API refuses it (422)."""

# Blank allowed: no loyalty card, or no life stage on file.
OPTIONAL_COLUMNS = ("CUST_CODE", "CUST_PRICE_SENSITIVITY", "CUST_LIFESTAGE")
REQUIRED_COLUMNS = tuple(c for c in CANONICAL_COLUMNS if c not in OPTIONAL_COLUMNS)

# Columns that describe the basket, not the line: constant within a basket.
BASKET_COLUMNS = (
    "SHOP_WEEK", "SHOP_DATE", "SHOP_WEEKDAY", "SHOP_HOUR", "CUST_CODE",
    "CUST_PRICE_SENSITIVITY", "CUST_LIFESTAGE", "BASKET_SIZE", LABEL, "BASKET_TYPE",
    "BASKET_DOMINANT_MISSION", "STORE_CODE", "STORE_FORMAT", "STORE_REGION",
)
LINE_COLUMNS = (
    "QUANTITY", "SPEND", "PROD_CODE", "PROD_CODE_10", "PROD_CODE_20", "PROD_CODE_30",
    "PROD_CODE_40",
)
HIERARCHY = ("PROD_CODE", "PROD_CODE_10", "PROD_CODE_20", "PROD_CODE_30", "PROD_CODE_40")

# Added by ingestion: the basket key (BASKET_ID, or rebuilt when the id is damaged).
BASKET_KEY = "BASKET_KEY"
