"""The four model families of the brief, their hyperparameters and their file formats.

XGBoost models are saved in XGBoost's own UBJSON format and scikit-learn models in
skops' format; neither executes code when loaded (skops refuses any type that is neither
on its own trusted list nor in `TRUSTED_TYPES`).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier
from xgboost import XGBClassifier

TRUSTED_TYPES = frozenset({"sklearn.tree._tree.Tree"})
"""Types our families' files hold beyond skops' default trusted list (the trees of the tree and forest families,
as `skops.io.get_untrusted_types` lists them). A name, not a prefix: `sklearn.` alone would trust any class of any
module whose name begins so."""


@dataclass(frozen=True)
class Family:
    name: str
    build: Callable[[dict[str, Any], int], Any]
    defaults: dict[str, Any]
    file_name: str
    threads: Literal["one", "any", "all"]
    """How its fit uses the cores (`fitted_side_by_side`): on one thread whatever the machine has; on several
    threads, the model the same on any number of them; on every core, the model possibly not the same on another
    number."""


def _logistic(params: dict[str, Any], seed: int) -> Pipeline:
    # Multinomial (softmax) logistic regression: lbfgs on 3+ classes is multinomial.
    return make_pipeline(StandardScaler(), LogisticRegression(C=params["C"], max_iter=params["max_iter"]))


def _tree(params: dict[str, Any], seed: int) -> DecisionTreeClassifier:
    return DecisionTreeClassifier(
        max_depth=params["max_depth"], min_samples_leaf=params["min_samples_leaf"], random_state=seed
    )


def _forest(params: dict[str, Any], seed: int) -> RandomForestClassifier:
    return RandomForestClassifier(
        n_estimators=params["n_estimators"],
        max_depth=params["max_depth"],
        min_samples_leaf=params["min_samples_leaf"],
        max_samples=params["max_samples"],
        n_jobs=-1,
        random_state=seed,
    )


def fitted(model: Any, x: np.ndarray, y: np.ndarray) -> Any:
    """`model` fitted on (x, y), set up to predict the same probabilities on every call.

    A random forest fits its trees in parallel, but predicting with several threads adds the trees' votes in
    whatever order the threads finish: last-bit differences that flip exact ties (0.5 against 0.5), and with
    them a validation score and the family chosen. One thread predicts in tree order, and for a request-sized
    input it is also faster than starting a pool.
    """
    model.fit(x, y)
    if isinstance(model, RandomForestClassifier):
        model.set_params(n_jobs=1)
    return model


def fitted_side_by_side(
    models: dict[str, Any], x: np.ndarray, y: np.ndarray
) -> tuple[dict[str, Any], dict[str, float]]:
    """`fitted` for each of `models` (family name to unfitted model), in their order, and each fit's wall seconds.

    A single-threaded fit alone leaves every core but one idle (logistic regression at 3M rows: about 13 s of one
    core). So the families that fit on one thread (`Family.threads` "one") and those whose model is the same
    whatever number of threads fits it ("any", the forest) fit side by side, as many at a time as there are cores,
    each with its own threads; then the families that use every core and whose model may depend on how many
    ("all") fit one after another with the cores to themselves (XGBoost's OpenMP threads slow to a crawl when
    another fit holds a core). Each model is therefore the one a fit alone gives; only the seconds change: a
    family's are its own fit's, while others share the cores.

    The process's warning filters are put back as they were when the fits are done: a forest fitting on several
    threads fits each tree inside scikit-learn's `catch_warnings`, which saves and restores the one filter list of
    the process and is not thread-safe, so threads that overlap leave another list in its place (18 to 31 of 40
    fits of a tree and a forest side by side did, on two cores)."""
    with warnings.catch_warnings():
        return _fitted_side_by_side(models, x, y)


def _fitted_side_by_side(
    models: dict[str, Any], x: np.ndarray, y: np.ndarray
) -> tuple[dict[str, Any], dict[str, float]]:
    side_by_side = [f for f in models if FAMILIES[f].threads in ("one", "any")]
    every_core = [f for f in models if f not in side_by_side]
    workers = min(len(side_by_side), len(os.sched_getaffinity(0)))
    done: dict[str, Any] = {}
    seconds: dict[str, float] = {}

    def fit(name: str) -> None:
        started = time.perf_counter()
        done[name] = fitted(models[name], x, y)
        seconds[name] = time.perf_counter() - started

    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="side-by-side-fits") as pool:
            for pending in [pool.submit(fit, name) for name in side_by_side]:
                pending.result()
    else:
        for name in side_by_side:
            fit(name)
    for name in every_core:
        fit(name)
    return {name: done[name] for name in models}, {name: seconds[name] for name in models}


def _xgboost(params: dict[str, Any], seed: int) -> XGBClassifier:
    return XGBClassifier(
        tree_method="hist",
        objective="multi:softprob",
        n_jobs=-1,
        random_state=seed,
        **params,
    )


FAMILIES: dict[str, Family] = {
    "logistic_regression": Family(
        # scikit-learn computes lbfgs's multinomial loss on one thread (LogisticRegression.fit sets n_threads=1).
        "logistic_regression", _logistic, {"C": 1.0, "max_iter": 300}, "model.skops", "one"
    ),
    "decision_tree": Family(
        "decision_tree", _tree, {"max_depth": 10, "min_samples_leaf": 20}, "model.skops", "one"
    ),
    "random_forest": Family(
        "random_forest",
        _forest,
        {"n_estimators": 40, "max_depth": 14, "min_samples_leaf": 5, "max_samples": 0.25},
        "model.skops",
        "any",  # each tree's seed is drawn before the trees are dealt to threads
    ),
    "xgboost": Family(
        "xgboost",
        _xgboost,
        {"n_estimators": 120, "max_depth": 6, "learning_rate": 0.2, "subsample": 0.8,
         "colsample_bytree": 0.8, "min_child_weight": 1.0},
        "model.ubj",
        "all",  # the histograms' sums are split over its threads
    ),
}


def save_model(family: str, model: Any, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / FAMILIES[family].file_name
    if family == "xgboost":
        model.save_model(path)
    else:
        import skops.io as sio  # here, not at the top: importing it walks scikit-learn's estimators (0.6 s)

        sio.dump(model, path)
    return path


def load_model(family: str, path: Path) -> Any:
    """Load without executing code: XGBoost's format, or skops with a type allow-list."""
    if family == "xgboost":
        model = XGBClassifier()
        model.load_model(path)
        return model
    import skops.io as sio

    untrusted = sio.get_untrusted_types(file=path)
    refused = sorted(set(untrusted) - TRUSTED_TYPES)
    if refused:
        raise ValueError(f"{path}: refusing to load types that are not on the trusted list "
                         f"(ml.families.TRUSTED_TYPES): {', '.join(refused)}")
    return sio.load(path, trusted=untrusted)

