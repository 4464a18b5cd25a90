"""A model bundle: the fitted featurizer, the model and a manifest with checksums.

Layout (this is what SageMaker's SM_MODEL_DIR receives and what the registry stores):
  bundle.json            family, classes, feature names, metrics, lineage, and the
                         SHA-256 of every other file
  featurizer/            `BasketFeaturizer.save` output
  model/model.ubj|skops  the classifier

`load_bundle` verifies every checksum before it reads anything else, so a changed or
truncated artifact is refused, and it loads only non-executable formats.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sklearn.ensemble import RandomForestClassifier
from sklearn.tree import DecisionTreeClassifier
from xgboost import XGBClassifier

from ml.checksums import sha256_file
from ml.compiled import BasketColumns, CompiledFeaturizer
from ml.families import FAMILIES, load_model, save_model
from ml.features import BasketFeaturizer

MANIFEST = "bundle.json"


class BundleIntegrityError(Exception):
    """A bundle file is missing or its checksum does not match the manifest."""


@dataclass
class ModelBundle:
    """A loaded bundle. Scoring goes through the compiled featurizer (`ml.compiled`), which gives the rows the
    fitted featurizer's `transform` gives, without building a query per call."""

    featurizer: BasketFeaturizer
    model: Any
    meta: dict[str, Any]
    compiled: CompiledFeaturizer = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.compiled = CompiledFeaturizer(self.featurizer)
        self._probabilities = _probability_function(self.model)

    @property
    def classes(self) -> list[str]:
        classes: list[str] = self.meta["classes"]  # the class names, as training wrote them (`save_bundle`)
        return classes

    def predict_proba(self, lines: pl.DataFrame) -> tuple[pl.DataFrame, np.ndarray]:
        """Per basket (in the order of its first line): BASKET_KEY with the pass-through columns present
        (`ml.features.PASSTHROUGH` and the label), and the class probabilities in `classes` order."""
        keys, _, probabilities = self.score_frame(lines)
        return keys, probabilities

    def score_frame(self, lines: pl.DataFrame) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
        """`predict_proba` with the model input too (float32, one row per basket, `feature_names` columns)."""
        batch, keys = self.compiled.encode_frame(lines)
        matrix = self.compiled.transform(batch)
        return keys, matrix, self.probabilities(matrix)

    def score_columns(self, columns: BasketColumns) -> tuple[np.ndarray, np.ndarray]:
        """Model input and class probabilities of baskets given as plain values."""
        matrix = self.compiled.transform(self.compiled.encode_columns(columns))
        return matrix, self.probabilities(matrix)

    def probabilities(self, matrix: np.ndarray) -> np.ndarray:
        """Class probabilities of model-input rows."""
        if not len(matrix):
            return np.zeros((0, len(self.classes)))
        return self._probabilities(matrix)


def _probability_function(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """The model's class probabilities of model-input rows, without the checks scikit-learn's wrappers repeat on
    every call, which cost more than the prediction for a request-sized input (one basket, the `retail demo` models,
    bench/request_profile.py):

    - XGBoost: its booster's `inplace_predict`; it uses every tree, as the final fit has no early stopping.
    - A decision tree: `predict_proba(check_input=False)`, the tree's own switch for skipping the input's
      validation (the feature count is still checked): 12 us a basket instead of 152 us.
    - A random forest: its trees' `predict_proba(check_input=False)` added in tree order and divided by their
      number, as its own `predict_proba` does on one thread, without its joblib dispatch: 0.5 ms a basket instead
      of 4.0 ms for 40 trees.
    - Anything else (the logistic regression pipeline): `predict_proba`.

    The checks skipped are finiteness, sparsity and feature names; the dtype is converted here (a no-op for the
    compiled featurizer's dense, finite float32 matrix, which is what every caller passes). tests/test_compiled.py
    checks each against `predict_proba`."""
    if isinstance(model, XGBClassifier) and getattr(model, "best_iteration", None) is None:
        booster = model.get_booster()
        return lambda matrix: booster.inplace_predict(matrix, validate_features=False)
    if isinstance(model, DecisionTreeClassifier) and model.n_outputs_ == 1:
        return lambda matrix: model.predict_proba(np.ascontiguousarray(matrix, dtype=np.float32), check_input=False)
    if isinstance(model, RandomForestClassifier) and model.n_outputs_ == 1:
        return partial(_forest_probabilities, model)
    predict_proba: Callable[[np.ndarray], np.ndarray] = model.predict_proba  # `model` is any family's (Any)
    return predict_proba


def _forest_probabilities(forest: RandomForestClassifier, matrix: np.ndarray) -> np.ndarray:
    """The forest's `predict_proba` on one thread; each tree still checks the feature count."""
    rows = np.ascontiguousarray(matrix, dtype=np.float32)
    total = np.zeros((len(rows), forest.n_classes_), dtype=np.float64)
    for tree in forest.estimators_:
        total += tree.predict_proba(rows, check_input=False)
    total /= len(forest.estimators_)
    return total


def save_bundle(
    folder: Path, featurizer: BasketFeaturizer, family: str, model: Any, meta: dict[str, Any]
) -> Path:
    """Write featurizer, model and manifest; returns the manifest path."""
    folder.mkdir(parents=True, exist_ok=True)
    featurizer.save(folder / "featurizer")
    save_model(family, model, folder / "model")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    manifest = {
        **meta,
        "family": family,
        "model_file": f"model/{FAMILIES[family].file_name}",
        "feature_names": featurizer.feature_names_,
        "files": {p.relative_to(folder).as_posix(): sha256_file(p) for p in files},
    }
    path = folder / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, default=str))
    return path


def verify_bundle(folder: Path) -> dict[str, Any]:
    """The manifest, after checking every listed file against its checksum."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise BundleIntegrityError(f"{folder}: no {MANIFEST}; not a model bundle")
    meta: dict[str, Any] = json.loads(manifest_path.read_text())  # a JSON object: `save_bundle` writes one
    for relative, expected in meta["files"].items():
        path = folder / relative
        if not path.is_file():
            raise BundleIntegrityError(f"{path}: listed in {MANIFEST} but missing")
        if sha256_file(path) != expected:
            raise BundleIntegrityError(f"{path}: checksum mismatch, the artifact was changed")
    return meta


def load_bundle(folder: Path) -> ModelBundle:
    meta = verify_bundle(folder)
    featurizer = BasketFeaturizer.load(folder / "featurizer")
    if featurizer.feature_names_ != meta["feature_names"]:
        raise BundleIntegrityError(f"{folder}: featurizer and model disagree on the feature list")
    model = load_model(meta["family"], folder / meta["model_file"])
    return ModelBundle(featurizer=featurizer, model=model, meta=meta)


def bundle_digest(folder: Path) -> str:
    """One checksum for the whole bundle: the manifest's, which lists every file's."""
    return sha256_file(folder / MANIFEST)
