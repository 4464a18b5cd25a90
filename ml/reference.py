"""The training reference of key features, for input-drift monitoring in the service.

For each key feature: decile edges on the training side and the share of training
baskets in each bin. The service compares recent requests with these shares using
the population stability index.
"""

from __future__ import annotations

import numpy as np
import polars as pl

KEY_FEATURES = (
    "n_lines",
    "log_total_spend",
    "mean_log_price_index",
    "share_unseen_products",
    "mean_p_LA",
    "mean_p_UM",
)
BINS = 10


def reference_bins(features: pl.DataFrame) -> dict[str, dict[str, list[float]]]:
    reference = {}
    for name in KEY_FEATURES:
        values = features[name].to_numpy()
        edges = np.unique(np.quantile(values, np.linspace(0, 1, BINS + 1))[1:-1])
        counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
        reference[name] = {"edges": edges.tolist(), "shares": (counts / counts.sum()).tolist()}
    return reference


def population_stability_index(expected: np.ndarray, actual: np.ndarray, floor: float = 1e-4) -> float:
    """PSI = sum((a - e) * ln(a / e)) over bins, shares floored to keep it finite."""
    e = np.maximum(np.asarray(expected, dtype=float), floor)
    a = np.maximum(np.asarray(actual, dtype=float), floor)
    return float(np.sum((a - e) * np.log(a / e)))
