"""A bounded hyperparameter search for XGBoost.

Trials are drawn with a seeded sampler from a small space, each trained with early
stopping on the last training weeks (never on the holdout), on at most `max_rows`
training rows so the search stays within a fixed budget. The best trial's
parameters, with its early-stopped number of trees, are used for the final fit.
"""

from __future__ import annotations

import time
from typing import Any, TypedDict

import numpy as np
from sklearn.metrics import f1_score
from sklearn.model_selection import ParameterSampler
from xgboost import XGBClassifier

from ml.selection import MAX_FIT_ROWS, validation_rows

SPACE: dict[str, tuple[Any, ...]] = {
    "max_depth": (4, 6, 8),
    "learning_rate": (0.1, 0.2, 0.3),
    "min_child_weight": (1.0, 5.0),
    "subsample": (0.7, 0.9),
    "colsample_bytree": (0.6, 0.9),
}
MAX_ROUNDS = 400
EARLY_STOPPING = 20


class Trial(TypedDict):
    params: dict[str, Any]
    validation_macro_f1: float
    trees: int  # the early-stopped number of trees
    seconds: float


class SearchResult(TypedDict):
    fit_rows: int
    validation_rows: int
    trials: list[Trial]
    best_params: dict[str, Any]


def _sample(space: dict[str, tuple[Any, ...]], trials: int, seed: int) -> list[dict[str, Any]]:
    """`trials` distinct points of the grid, drawn without replacement (scikit-learn's ParameterSampler); the
    whole grid when it has fewer points than that."""
    grid_size = int(np.prod([len(values) for values in space.values()]))
    sampler = ParameterSampler({k: list(v) for k, v in space.items()}, n_iter=min(trials, grid_size),
                               random_state=seed)
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in point.items()} for point in sampler]


def search_xgboost(
    x: np.ndarray,
    y: np.ndarray,
    validation: np.ndarray,
    base: dict[str, Any],
    trials: int,
    seed: int,
    max_rows: int = MAX_FIT_ROWS,
) -> SearchResult:
    """Returns the trials (params, validation macro-F1, trees, seconds) and `best_params`."""
    rng = np.random.default_rng(seed)
    fit_rows, val_rows = validation_rows(validation, max_rows, rng)
    results: list[Trial] = []
    for params in _sample(SPACE, trials, seed):
        started = time.perf_counter()
        model = XGBClassifier(
            tree_method="hist",
            objective="multi:softprob",
            n_estimators=MAX_ROUNDS,
            early_stopping_rounds=EARLY_STOPPING,
            n_jobs=-1,
            random_state=seed,
            **params,
        )
        model.fit(x[fit_rows], y[fit_rows], eval_set=[(x[val_rows], y[val_rows])], verbose=False)
        predicted = model.predict_proba(x[val_rows]).argmax(axis=1)
        results.append(
            {
                "params": params,
                "validation_macro_f1": float(f1_score(y[val_rows], predicted, average="macro")),
                "trees": int(model.best_iteration) + 1,
                "seconds": round(time.perf_counter() - started, 2),
            }
        )
    best = max(results, key=lambda r: (r["validation_macro_f1"], -r["trees"]))
    best_params = {**base, **best["params"], "n_estimators": best["trees"]}
    return {
        "fit_rows": int(len(fit_rows)),
        "validation_rows": int(len(val_rows)),
        "trials": results,
        "best_params": best_params,
    }
