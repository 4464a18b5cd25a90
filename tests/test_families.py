"""Fitted models predict the same probabilities on every call, also after a save and a load.

Fitting the families side by side (`fitted_side_by_side`) gives the models fitting them one at a time gives, with
the one-thread fits on separate threads and XGBoost after them.
"""

from __future__ import annotations

import threading
import time
import warnings

import numpy as np

from ml import families
from ml.families import FAMILIES, fitted, fitted_side_by_side, load_model, save_model


def test_a_fitted_random_forest_predicts_identically_every_time_and_after_loading(tmp_path):
    rng = np.random.default_rng(3)
    x, y = rng.random((600, 5)), rng.integers(0, 3, 600)
    params = {**FAMILIES["random_forest"].defaults, "n_estimators": 40}
    model = fitted(FAMILIES["random_forest"].build(params, 7), x, y)
    first = model.predict_proba(x)
    assert all(np.array_equal(first, model.predict_proba(x)) for _ in range(5))
    loaded = load_model("random_forest", save_model("random_forest", model, tmp_path))
    assert loaded.n_jobs == 1 and np.array_equal(loaded.predict_proba(x), first)


def _small_params() -> dict[str, dict]:
    return {name: {**family.defaults, **({"n_estimators": 10} if "n_estimators" in family.defaults else {})}
            for name, family in FAMILIES.items()}


def test_families_fitted_side_by_side_predict_as_fitted_one_at_a_time(monkeypatch):
    monkeypatch.setattr(families.os, "sched_getaffinity", lambda pid: {0, 1})
    rng = np.random.default_rng(5)
    x, y = rng.random((800, 6)).astype(np.float32), rng.integers(0, 3, 800)
    alone = {name: fitted(FAMILIES[name].build(p, 7), x, y) for name, p in _small_params().items()}
    together, seconds = fitted_side_by_side({name: FAMILIES[name].build(p, 7) for name, p in _small_params().items()},
                                            x, y)
    assert list(together) == list(seconds) == list(FAMILIES)
    for name, model in together.items():
        assert np.array_equal(model.predict_proba(x), alone[name].predict_proba(x)), name
    assert together["random_forest"].n_jobs == 1


def test_one_thread_fits_run_on_two_threads_and_xgboost_after_them(monkeypatch):
    monkeypatch.setattr(families.os, "sched_getaffinity", lambda pid: {0, 1})
    spans: dict[str, tuple[str, float, float]] = {}
    fit = families.fitted

    def recorded(model, x, y):
        started = time.perf_counter()
        time.sleep(0.05)  # long enough that fits on separate threads overlap
        fit(model, x, y)
        name = next(n for n, m in unfitted.items() if m is model)
        spans[name] = (threading.current_thread().name, started, time.perf_counter())
        return model

    monkeypatch.setattr(families, "fitted", recorded)
    rng = np.random.default_rng(5)
    x, y = rng.random((300, 4)).astype(np.float32), rng.integers(0, 3, 300)
    unfitted = {name: FAMILIES[name].build(p, 7) for name, p in _small_params().items()}
    fitted_side_by_side(unfitted, x, y)
    assert spans["logistic_regression"][0] != spans["decision_tree"][0]
    assert spans["decision_tree"][1] < spans["logistic_regression"][2], "the two one-thread fits overlap"
    assert spans["xgboost"][1] >= max(end for name, (_, _, end) in spans.items() if name != "xgboost")
    assert spans["xgboost"][0] == threading.current_thread().name


def test_fitting_leaves_the_processs_warning_filters_as_they_were(monkeypatch):
    """A forest fitting on several threads fits each tree inside scikit-learn's `catch_warnings`, which saves and
    puts back the process's one filter list and is not thread-safe (Python's warnings documentation): on two cores
    19 to 26 of 40 fits of a forest alone left another list in its place. The forest here fits on two threads
    whatever the machine's cores."""
    monkeypatch.setattr(families.os, "sched_getaffinity", lambda pid: {0, 1})
    rng = np.random.default_rng(9)
    x, y = rng.random((300, 4)), rng.integers(0, 3, 300)
    params = {**FAMILIES["random_forest"].defaults, "n_estimators": 16}
    before = list(warnings.filters)
    for seed in range(12):
        forest = FAMILIES["random_forest"].build(params, seed).set_params(n_jobs=2)
        fitted_side_by_side({"decision_tree": FAMILIES["decision_tree"].build(FAMILIES["decision_tree"].defaults, seed),
                             "random_forest": forest}, x, y)
        assert warnings.filters == before, f"fit {seed}"
