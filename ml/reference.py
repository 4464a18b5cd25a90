"""The training reference of key features, for input-drift monitoring.

For each key feature: decile edges on the training side and the share of training
baskets in each bin. Recent baskets are compared with these shares using the
population stability index: by the service over its last requests (api/drift.py), and
by `retail monitor` over a week's baskets (ml/monitor.py). Both bin with `bin_of` and
score with `population_stability_index`, so a PSI means the same wherever it is shown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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
DRIFT_FEATURES = tuple(name for name in KEY_FEATURES if name != "share_unseen_products")
"""The key features whose PSI judges input drift (`retail monitor`'s breach, alarm metric and retraining rule).
`share_unseen_products` is measured and reported but left out: products launched after the training data are unseen
by construction, so its PSI rises with the model's age and no drift at all; that age is the "new weeks" rule's."""
BINS = 10

Reference = Mapping[str, Mapping[str, Sequence[float]]]
"""key feature -> {"edges": inner bin edges, "shares": share of training baskets per bin} (`reference_bins`)."""


def bin_of(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The bin of each value: 0 below the first edge, len(edges) from the last one (a value on an edge goes up)."""
    bins: np.ndarray = np.searchsorted(edges, values, side="right")
    return bins


def reference_bins(features: pl.DataFrame) -> dict[str, dict[str, list[float]]]:
    reference = {}
    for name in KEY_FEATURES:
        values = features[name].to_numpy()
        edges = np.unique(np.quantile(values, np.linspace(0, 1, BINS + 1))[1:-1])
        counts = np.bincount(bin_of(edges, values), minlength=len(edges) + 1)
        reference[name] = {"edges": edges.tolist(), "shares": (counts / counts.sum()).tolist()}
    return reference


def population_stability_index(expected: np.ndarray, actual: np.ndarray, floor: float = 1e-4) -> float:
    """PSI = sum((a - e) * ln(a / e)) over bins, shares floored to keep it finite."""
    e = np.maximum(np.asarray(expected, dtype=float), floor)
    a = np.maximum(np.asarray(actual, dtype=float), floor)
    return float(np.sum((a - e) * np.log(a / e)))


def feature_psi(reference: Reference, feature_names: Sequence[str], matrix: np.ndarray) -> dict[str, float]:
    """PSI of each key feature of the reference that the model input has: `matrix`'s rows (one per basket,
    columns in `feature_names` order) against the training shares. Missing values (NaN) are left out, rather than
    binned above the last edge (`missing_values` counts them); a feature without a value has no PSI. Empty without
    rows."""
    names = list(feature_names)
    psi = {}
    for name in KEY_FEATURES:
        if name not in reference or name not in names:
            continue
        values = matrix[:, names.index(name)]
        values = values[~np.isnan(values)]
        if not len(values):
            continue
        shares = np.asarray(reference[name]["shares"], dtype=float)
        bins = bin_of(np.asarray(reference[name]["edges"], dtype=float), values)
        psi[name] = population_stability_index(shares, np.bincount(bins, minlength=len(shares)) / len(bins))
    return psi


def missing_values(feature_names: Sequence[str], matrix: np.ndarray) -> dict[str, int]:
    """Key features with missing values (NaN) among `matrix`'s rows, and how many."""
    names = list(feature_names)
    counts = {name: int(np.isnan(matrix[:, names.index(name)]).sum()) for name in KEY_FEATURES if name in names}
    return {name: count for name, count in counts.items() if count}


def flat_features(reference: Reference) -> list[str]:
    """Key features whose reference has fewer than two populated bins (the feature was constant on the reference
    baskets): every basket falls in that bin or beside it, so their PSI cannot show a drift within it."""
    return [name for name in KEY_FEATURES
            if name in reference and np.count_nonzero(np.asarray(reference[name]["shares"])) < 2]
