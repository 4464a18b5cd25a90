"""A bounded hyperparameter search for XGBoost.

Trials are drawn with a seeded sampler from a small space, each trained with early
stopping on the last training weeks (never on the holdout), on at most `max_rows`
training rows so the search stays within a fixed budget. The best trial's
parameters, with its early-stopped number of trees, are used for the final fit.

On a multi-host job (ml/cluster.py) every host runs the same trials on its share of the rows: XGBoost's collective
trains each trial over all hosts and reduces the early-stopping metric over them, and the validation macro-F1 is
taken over every host's validation rows (`Peers.pooled`), so all hosts pick the same trial. `max_rows` then bounds
each host's rows: a trial fits on at most hosts x `max_rows` rows in all. Before the fits the hosts check together
that each has rows of every class to fit on and rows to score (`agreed_validation_rows`): XGBoost infers the number
of classes from a host's own labels, so a host short of one would otherwise break the collective with a generic
error.
"""

from __future__ import annotations

import time
from typing import Any, TypedDict

import numpy as np
from sklearn.metrics import f1_score
from sklearn.model_selection import ParameterSampler
from xgboost import XGBClassifier

from ml.cluster import SOLO, Peers
from ml.schema import TRAINABLE_LABELS
from ml.selection import MAX_FIT_ROWS, agreed_validation_rows

SPACE: dict[str, tuple[Any, ...]] = {
    "max_depth": (4, 6, 8),
    "learning_rate": (0.1, 0.2, 0.3),
    "min_child_weight": (1.0, 5.0),
    "subsample": (0.7, 0.9),
    "colsample_bytree": (0.6, 0.9),
}
MAX_ROUNDS = 400
N_CLASSES = len(TRAINABLE_LABELS)
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
    peers: Peers = SOLO,
) -> SearchResult:
    """Returns the trials (params, validation macro-F1, trees, seconds) and `best_params`."""
    rng = np.random.default_rng(seed)
    fit_rows, val_rows = agreed_validation_rows(y, validation, max_rows, rng, peers)
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
        y_true, y_pred = peers.pooled(y[val_rows], predicted, N_CLASSES)
        results.append(
            {
                "params": params,
                "validation_macro_f1": float(f1_score(y_true, y_pred, average="macro")),
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
