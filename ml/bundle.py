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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ml.checksums import sha256_file
from ml.families import FAMILIES, load_model, save_model
from ml.features import BasketFeaturizer

MANIFEST = "bundle.json"


class BundleIntegrityError(Exception):
    """A bundle file is missing or its checksum does not match the manifest."""


@dataclass
class ModelBundle:
    featurizer: BasketFeaturizer
    model: Any
    meta: dict[str, Any]

    @property
    def classes(self) -> list[str]:
        return self.meta["classes"]

    def predict_proba(self, lines: pl.DataFrame) -> tuple[pl.DataFrame, np.ndarray]:
        """Basket keys (with pass-through columns) and class probabilities, one row each."""
        features = self.featurizer.transform(lines)
        return features, self.model.predict_proba(self.featurizer.matrix(features))


def save_bundle(folder: Path, featurizer: BasketFeaturizer, family: str, model: Any, meta: dict) -> Path:
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


def verify_bundle(folder: Path) -> dict:
    """The manifest, after checking every listed file against its checksum."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise BundleIntegrityError(f"{folder}: no {MANIFEST}; not a model bundle")
    meta = json.loads(manifest_path.read_text())
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
