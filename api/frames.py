"""Validated baskets as the scorer takes them: plain values for the compiled featurizer, no frame built."""

from __future__ import annotations

from collections.abc import Sequence

from api.schemas import Basket
from ml.compiled import LineValues
from ml.features import HEADER_CATEGORICALS, HEADER_NUMERICS

FEATURE_HEADER = (*HEADER_CATEGORICALS, *HEADER_NUMERICS)
"""The header fields the featurizer reads."""


def basket_records(baskets: Sequence[Basket]) -> tuple[list[dict], list[list[LineValues]]]:
    """Each basket's header fields and lines as `ml.bundle.ModelBundle.score_records` takes them; no frame built."""
    headers = [{name: getattr(b, name) for name in FEATURE_HEADER} for b in baskets]
    lines = [
        [(ln.PROD_CODE, ln.PROD_CODE_10, ln.PROD_CODE_20, ln.PROD_CODE_30, ln.PROD_CODE_40, ln.QUANTITY, ln.SPEND)
         for ln in b.lines]
        for b in baskets
    ]
    return headers, lines
