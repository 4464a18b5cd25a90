"""The model being served, and how a new one replaces it.

`ModelStore.refresh` asks the source which model it holds; if that is not the loaded
one, it fetches and loads the new bundle beside the old, scores a probe basket with
it, and only then swaps the reference in one assignment. A request takes the
reference once (`current`) and keeps that model to the end, so a swap never fails
or mixes models within a request. Refreshes are serialised by a lock.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass
from typing import cast

import orjson

from api.body import JSON_CONTENT_TYPE, parse_single
from api.drift import DriftMonitor
from api.metrics import CHALLENGER_INFO, CHALLENGER_RELOADS, MODEL_INFO, MODEL_RELOADS
from api.model_source import ModelSource
from api.schemas import EXAMPLE_BASKET
from ml.bundle import ModelBundle, load_bundle
from ml.prediction_log import CHALLENGER, CHAMPION, Role

log = logging.getLogger("retail.api.model")


@dataclass(frozen=True)
class LoadedModel:
    bundle: ModelBundle
    version: str
    fingerprint: str
    source: str
    sha256: str
    loaded_at: dt.datetime
    drift: DriftMonitor

    @property
    def family(self) -> str:
        return cast(str, self.bundle.meta["family"])  # bundle.json's family is a name (ml.bundle writes it)


@dataclass(frozen=True)
class Refresh:
    previous: LoadedModel | None
    current: LoadedModel

    @property
    def changed(self) -> bool:
        return self.previous is not self.current


_METRICS = {CHAMPION: (MODEL_INFO, MODEL_RELOADS), CHALLENGER: (CHALLENGER_INFO, CHALLENGER_RELOADS)}
"""What each role's loads are reported as: the champion's as retail_model_*, a challenger's as retail_challenger_*."""


class ModelStore:
    def __init__(self, source: ModelSource, drift_window: int, drift_min_baskets: int, role: Role = CHAMPION):
        """`role`: the champion answers requests; a challenger is only scored in shadow (`api.shadow`)."""
        self.source = source
        self.role = role
        self.current: LoadedModel | None = None
        self._drift = (drift_window, drift_min_baskets)
        self._lock = threading.Lock()

    def refresh(self) -> Refresh:
        """Load the source's model if it is not the one being served; raises if that fails."""
        with self._lock:
            previous = self.current
            fingerprint = self.source.fingerprint()
            if previous is not None and previous.fingerprint == fingerprint:
                return Refresh(previous, previous)
            info, reloads = _METRICS[self.role]
            try:
                loaded = self._load(fingerprint)
            except Exception:
                reloads.labels("failed").inc()
                raise
            self.current = loaded
            reloads.labels("loaded").inc()
            if previous is not None:
                info.labels(previous.version, previous.family, previous.source).set(0)
            info.labels(loaded.version, loaded.family, loaded.source).set(1)
            log.info("model loaded", extra={"role": self.role, "model_version": loaded.version,
                                            "family": loaded.family,
                                            "previous_version": previous.version if previous else None})
            return Refresh(previous, loaded)

    def try_refresh(self) -> Refresh | None:
        """`refresh`, logging a failure instead of raising it (the loaded model keeps serving)."""
        try:
            return self.refresh()
        except Exception as exc:
            log.warning("model not loaded", extra={"role": self.role, "source": self.source.description,
                                                   "error": f"{type(exc).__name__}: {exc}"})
            return None

    def _load(self, fingerprint: str) -> LoadedModel:
        fetched = self.source.fetch(fingerprint)
        bundle = load_bundle(fetched.folder)
        if "n_jobs" in bundle.model.get_params():
            # One scoring thread per worker process: workers, not threads, use the cores.
            bundle.model.set_params(n_jobs=1)
        # Warm up before serving.
        bundle.score_columns(parse_single(orjson.dumps(EXAMPLE_BASKET), JSON_CONTENT_TYPE).columns)
        return LoadedModel(
            bundle=bundle,
            version=fetched.version,
            fingerprint=fingerprint,
            source=self.source.description,
            sha256=fetched.sha256,
            loaded_at=dt.datetime.now(dt.UTC),
            drift=DriftMonitor(bundle.meta.get("drift_reference", {}), bundle.featurizer.feature_names_, *self._drift),
        )
