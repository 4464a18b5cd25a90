"""Choosing the champion family on the last training weeks, so the holdout scores only what was chosen.

Ranking the families by their holdout score and then reporting the winner's holdout score
would report the best of several draws: the reported figure would be optimistic, and with
families a few baskets apart the pick itself would be noise. So each family is refitted on
the training weeks before the validation window (at most `max_rows` of them, the same
budget as the XGBoost search) and scored on that window; the ranking uses those scores.
The holdout weeks are then only read to evaluate.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ml.cluster import SOLO, Peers
from ml.evaluate import Metrics, compute_metrics
from ml.families import FAMILIES, fitted_side_by_side
from ml.schema import TRAINABLE_LABELS

METRIC_DECIMALS = 6
"""Decimals of the `name=value;` metric lines ml/train.py prints for SageMaker's metric definitions."""
MAX_FIT_ROWS = 80_000
"""Rows fitted per family (and per XGBoost search trial) before the validation window: a fixed budget."""


def validation_rows(
    validation: np.ndarray, max_rows: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices to fit on (before the window, at most `max_rows`, drawn with `rng`) and to score on (the
    window)."""
    fit_rows = np.flatnonzero(~validation)
    if len(fit_rows) > max_rows:
        fit_rows = np.sort(rng.choice(fit_rows, max_rows, replace=False))
    scored_rows = np.flatnonzero(validation)
    if len(fit_rows) == 0 or len(scored_rows) == 0:
        raise ValueError("choosing a family needs training weeks both before and within the validation window")
    return fit_rows, scored_rows


def agreed_validation_rows(y: np.ndarray, validation: np.ndarray, max_rows: int, rng: np.random.Generator,
                           peers: Peers = SOLO) -> tuple[np.ndarray, np.ndarray]:
    """`validation_rows`; on several hosts, a ValueError on every host at once unless each host has
    fit rows of every class and rows to score (the fewest over the hosts, reduced, decide)."""
    if peers.size == 1:
        return validation_rows(validation, max_rows, rng)
    try:
        fit_rows, scored_rows = validation_rows(validation, max_rows, rng)
    except ValueError:  # no rows on one side of the window: reported with the other hosts' counts below
        fit_rows = scored_rows = np.empty(0, dtype=np.int64)
    counts = np.append(np.bincount(y[fit_rows], minlength=len(TRAINABLE_LABELS)), len(scored_rows)).astype(np.int64)
    fewest = peers.reduce(counts, "min")
    if fewest.min() == 0:
        per_class = ", ".join(f"{label} {int(n)}" for label, n in zip(TRAINABLE_LABELS, fewest[:-1], strict=True))
        raise ValueError(f"fitting on the weeks before the validation window and scoring within it needs, on each "
                         f"of the {peers.size} hosts, baskets of every class before the window and some within it; "
                         f"the fewest a host has: {per_class} before, {int(fewest[-1])} within: train on fewer "
                         "instances, or change validation-weeks")
    return fit_rows, scored_rows


def validation_scores(
    x: np.ndarray,
    y: np.ndarray,
    validation: np.ndarray,
    params: dict[str, dict[str, Any]],
    classes: list[str],
    seed: int,
    max_rows: int = MAX_FIT_ROWS,
    peers: Peers = SOLO,
) -> dict[str, Metrics]:
    """Each family of `params`, fitted before the validation window and scored within it (on the rows the XGBoost
    search fits on, for the same seed); the fits run side by side (`ml.families.fitted_side_by_side`). With several
    `peers` (ml/cluster.py), each family is fitted over all hosts' rows before the window and scored on all hosts'
    rows within it."""
    fit_rows, scored_rows = agreed_validation_rows(y, validation, max_rows, np.random.default_rng(seed), peers)
    unfitted = {family: FAMILIES[family].build(family_params, seed) for family, family_params in params.items()}
    models, _ = fitted_side_by_side(unfitted, x[fit_rows], y[fit_rows])
    scores = {}
    for family, model in models.items():
        predicted = model.predict_proba(x[scored_rows]).argmax(axis=1)
        scores[family] = compute_metrics(*peers.pooled(y[scored_rows], predicted, len(classes)), classes)
    return scores


def ranking_key(macro_f1: float, accuracy: float) -> tuple[float, float]:
    """Higher is better: macro-F1, then accuracy, each to the `METRIC_DECIMALS` the training job prints, so the
    cloud side, which reads the printed lines back, ranks exactly as the job did (equal keys: the first family in
    the requested order wins on both sides)."""
    return round(macro_f1, METRIC_DECIMALS), round(accuracy, METRIC_DECIMALS)
