"""MLflow pyfunc flavour of a model bundle (`loader_module` in `mlflow.pyfunc.log_model`).

MLflow calls `_load_pyfunc(data_path)` with the bundle folder; the returned object
scores a pandas DataFrame of basket lines (canonical columns, one row per product,
BASKET_ID grouping the lines) and returns one row per basket with the predicted
class and the class probabilities. This lets `mlflow models serve` serve the same
champion as the project's API, without any pickled Python object.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl

from ml.bundle import ModelBundle, load_bundle
from ml.schema import BASKET_KEY


class BundleModel:
    def __init__(self, bundle: ModelBundle):
        self.bundle = bundle

    def predict(self, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        lines = pl.from_pandas(model_input)
        if BASKET_KEY not in lines.columns:
            lines = lines.with_columns(pl.col("BASKET_ID").cast(pl.String).alias(BASKET_KEY))
        features, probabilities = self.bundle.predict_proba(lines)
        classes = self.bundle.classes
        frame = pl.DataFrame({c: probabilities[:, i] for i, c in enumerate(classes)})
        predicted = [classes[i] for i in probabilities.argmax(axis=1)]
        return frame.with_columns(
            features[BASKET_KEY].alias(BASKET_KEY), pl.Series("prediction", predicted)
        ).to_pandas()


def _load_pyfunc(data_path: str) -> BundleModel:
    return BundleModel(load_bundle(Path(data_path)))
