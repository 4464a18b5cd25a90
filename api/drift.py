"""Input drift: recent baskets against the training reference, per key feature.

The reference (`bundle.meta["drift_reference"]`, from `ml.reference`) holds decile
edges and the share of training baskets per bin. The monitor keeps the bin of each
key feature for the last `window` scored baskets in a ring buffer and reports the
population stability index once it has seen `min_baskets`. It is fed by one scoring call
at a time (the scoring thread's, or a large request's on the event loop while that thread is
idle: api/batcher.py), so it needs no lock.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ml.reference import KEY_FEATURES, bin_of, population_stability_index


class DriftMonitor:
    def __init__(
        self, reference: dict[str, dict[str, list[float]]], feature_names: Sequence[str], window: int, min_baskets: int
    ):
        """`feature_names`: the columns of the model input `observe` receives."""
        self.features = [name for name in KEY_FEATURES if name in reference and name in feature_names]
        self._columns = [list(feature_names).index(name) for name in self.features]
        self._edges = [np.asarray(reference[name]["edges"], dtype=float) for name in self.features]
        self._shares = [np.asarray(reference[name]["shares"], dtype=float) for name in self.features]
        self._bins = np.zeros((len(self.features), window), dtype=np.int16)
        self._window = window
        self._min_baskets = min(min_baskets, window)
        self._seen = 0

    def observe(self, matrix: np.ndarray) -> dict[str, float] | None:
        """Add scored baskets (model-input rows) to the window; PSI per feature once the window holds enough."""
        values = matrix[-self._window :, self._columns]
        slots = (self._seen + np.arange(len(values))) % self._window
        for i, edges in enumerate(self._edges):
            self._bins[i, slots] = bin_of(edges, values[:, i])
        self._seen += len(values)
        filled = min(self._seen, self._window)
        if filled < self._min_baskets:
            return None
        return {
            name: population_stability_index(
                self._shares[i], np.bincount(self._bins[i, :filled], minlength=len(self._shares[i])) / filled
            )
            for i, name in enumerate(self.features)
        }
