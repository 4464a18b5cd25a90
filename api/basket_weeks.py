"""The fiscal week of each basket of a prediction request body, for the prediction log.

A basket's week is the SHOP_WEEK it was sent with, else the week of its SHOP_DATE
(`ml.calendar.week_code_of`). `api.body` does not keep either (the scorer needs neither),
so the prediction log reads them again from the body, off the request path: msgspec
decodes only those two fields (the rest of the body is skipped, about 1 µs a basket) and
each distinct value is read as the request models read it (`api.schemas`). A body msgspec
does not take (JSON in UTF-16, which the service accepts through Python's parser) is read
and validated as `api.body` does for such a body.
The body was validated before it was scored, so every basket has a week.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import msgspec
from pydantic import TypeAdapter, ValidationError

from api.schemas import Basket, BatchRequest, ShopDate
from ml.calendar import week_code_of


class _Dated(msgspec.Struct, gc=False):
    SHOP_DATE: Any = None
    SHOP_WEEK: Any = None


class _Batch(msgspec.Struct, gc=False):
    baskets: list[_Dated]


_ONE = msgspec.json.Decoder(_Dated)
_MANY = msgspec.json.Decoder(_Batch)
_WEEK = TypeAdapter(int)
_DATE: TypeAdapter[Any] = TypeAdapter(ShopDate)


def weeks_of(body: bytes, many: bool) -> list[int]:
    """The week of each basket of a validated body: POST /v1/predict/batch's (`many`) or POST /v1/predict's."""
    try:
        dated = _MANY.decode(body).baskets if many else [_ONE.decode(body)]
        return [_week(basket.SHOP_WEEK, basket.SHOP_DATE) for basket in dated]
    # TypeError: a value that cannot be a cache key; ValidationError: a form only the whole model reads
    except (msgspec.DecodeError, UnicodeDecodeError, TypeError, ValidationError):
        value = json.loads(body)  # as `api.body` reads a body its fast path does not take (UTF-16, say)
        baskets = BatchRequest.model_validate(value).baskets if many else [Basket.model_validate(value)]
        return [basket.SHOP_WEEK or week_code_of(basket.SHOP_DATE) for basket in baskets]


@functools.lru_cache(maxsize=4096)  # a batch's baskets share a few dates
def _week(week: Any, date: Any) -> int:
    if week is not None:
        return _WEEK.validate_python(week)
    return week_code_of(_DATE.validate_python(date))
