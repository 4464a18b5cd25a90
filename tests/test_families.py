"""Fitted models predict the same probabilities on every call, also after a save and a load."""

from __future__ import annotations

import numpy as np

from ml.families import FAMILIES, fitted, load_model, save_model


def test_a_fitted_random_forest_predicts_identically_every_time_and_after_loading(tmp_path):
    rng = np.random.default_rng(3)
    x, y = rng.random((600, 5)), rng.integers(0, 3, 600)
    params = {**FAMILIES["random_forest"].defaults, "n_estimators": 40}
    model = fitted(FAMILIES["random_forest"].build(params, 7), x, y)
    first = model.predict_proba(x)
    assert all(np.array_equal(first, model.predict_proba(x)) for _ in range(5))
    loaded = load_model("random_forest", save_model("random_forest", model, tmp_path))
    assert loaded.n_jobs == 1 and np.array_equal(loaded.predict_proba(x), first)
