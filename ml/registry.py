"""The model registry: MLflow with an embedded SQLite store and a local artifact folder.

Every pipeline run is logged (a parent run with the winner's metrics and the reports,
one child run per family). The winner is registered as a new version of one model;
the `champion` alias moves to it only when the gate passed and the version is not
worse (macro-F1 on the same held-out baskets) than the current champion. Each version
is an MLflow pyfunc model whose data is the bundle (`ml.bundle`), loaded by
`ml.pyfunc_loader`, so no pickled code is stored or executed.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml.schema import BASKET_KEY, LABEL, TRAINABLE_LABELS
from ml.settings import GateSettings, Settings

if TYPE_CHECKING:
    from ml.bundle import ModelBundle

CHAMPION = "champion"
CHALLENGER = "challenger"
PROMOTION_TAGS = "promotion."
"""Prefix of the tags `promote_challenger` records on the version it promotes (`promotion.<n>.<name>`)."""
HISTORY_TAG = "champion_history"
EXPERIMENT = "basket-price-sensitivity"
VERSION_COLUMNS = ("family", "accuracy", "macro_f1", "gate_passed", "pipeline_run")
SERVING_REQUIREMENTS = ("polars", "pyarrow", "numpy", "scikit-learn", "skops", "xgboost-cpu")


@dataclass(frozen=True)
class Promotion:
    """A challenger made champion by `Registry.promote_challenger`."""

    version: str
    number: int  # n of its `promotion.<n>.*` tags
    already: bool  # promoted before on the same evidence: nothing was changed


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide(
    gate_passed: bool, new_macro_f1: float, champion_macro_f1: float | None, gate: GateSettings
) -> Decision:
    """Whether a new version becomes champion."""
    if not gate_passed:
        return Decision(False, "the promotion gate failed")
    if champion_macro_f1 is None:
        return Decision(True, "gate passed and there was no champion")
    if new_macro_f1 + gate.max_regression < champion_macro_f1:
        return Decision(
            False,
            f"worse than the champion on the same holdout (macro-F1 {new_macro_f1:.4f} < {champion_macro_f1:.4f})",
        )
    return Decision(
        True, f"gate passed and macro-F1 {new_macro_f1:.4f} >= champion's {champion_macro_f1:.4f} on the same holdout"
    )


class Registry:
    def __init__(self, settings: Settings):
        import mlflow
        from mlflow import MlflowClient

        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        logging.getLogger("mlflow").setLevel(logging.ERROR)
        self.settings = settings
        self.name = settings.model_name
        if settings.registry_uri.startswith("sqlite:///"):
            Path(settings.registry_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(settings.registry_uri)
        mlflow.set_registry_uri(settings.registry_uri)
        self.mlflow = mlflow
        self.client = MlflowClient(tracking_uri=settings.registry_uri, registry_uri=settings.registry_uri)

    def _experiment_id(self) -> str:
        experiment = self.client.get_experiment_by_name(EXPERIMENT)
        if experiment is not None:
            return experiment.experiment_id
        artifacts = self.settings.artifact_root.resolve()
        artifacts.mkdir(parents=True, exist_ok=True)
        return self.client.create_experiment(EXPERIMENT, artifact_location=artifacts.as_uri())

    # ---- registering -----------------------------------------------------------------
    def register_run(
        self, model_dir: Path, report_dir: Path, training: dict[str, Any], channel: Path
    ) -> dict[str, Any]:
        """Log the run, register the winner and move the champion alias if it earned it."""
        mlflow = self.mlflow
        lineage = training["lineage"]
        experiment_id = self._experiment_id()
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"pipeline-{lineage['run_id']}") as run:
            mlflow.set_tags({f"lineage.{k}": str(v) for k, v in lineage.items()})
            mlflow.log_params({f"{training['winner']}.{k}": v for k, v in training["params"].items()})
            mlflow.log_metrics(_flat_metrics(training["metrics"]))
            mlflow.log_metric("gate_passed", float(training["gate"]["passed"]))
            mlflow.log_artifacts(str(report_dir), artifact_path="reports")
            for entry in json.loads((report_dir / "leaderboard.json").read_text()):
                with mlflow.start_run(experiment_id=experiment_id, run_name=entry["family"], nested=True):
                    mlflow.log_params(entry["params"])
                    mlflow.log_metrics(_flat_metrics(entry["metrics"]) | {"fit_seconds": entry["fit_seconds"]})
            info = mlflow.pyfunc.log_model(
                name="model",
                loader_module="ml.pyfunc_loader",
                data_path=str(model_dir),
                registered_model_name=self.name,
                pip_requirements=[f"{p}=={metadata.version(p)}" for p in SERVING_REQUIREMENTS],
            )
        version = str(info.registered_model_version)
        from ml.bundle import bundle_digest  # the model libraries load to register or download, not to list or promote

        tags = {
            "family": training["winner"],
            "gate_passed": str(training["gate"]["passed"]).lower(),
            "accuracy": f"{training['metrics']['accuracy']:.6f}",
            "macro_f1": f"{training['metrics']['macro_f1']:.6f}",
            "bundle_sha256": bundle_digest(model_dir),
            "input_sha256": lineage["input_sha256"],
            "git_commit": lineage["git_commit"],
            "pipeline_run": lineage["run_id"],
            "mlflow_run_id": run.info.run_id,
        }
        for key, value in tags.items():
            self.client.set_model_version_tag(self.name, version, key, value)

        champion = self.champion_version()
        champion_f1 = None
        if champion is not None:
            champion_f1 = self._macro_f1_on(champion, channel / "holdout_lines.parquet")
        decision = decide(training["gate"]["passed"], training["metrics"]["macro_f1"], champion_f1, GateSettings())
        if decision.promote:
            self._move_champion(version)
        return {
            "model_name": self.name,
            "version": version,
            "promoted": decision.promote,
            "reason": decision.reason,
            "previous_champion": champion,
            "champion_version": self.champion_version(),
            "registry_uri": self.settings.registry_uri,
        }

    def _macro_f1_on(self, version: str, holdout_lines: Path) -> float:
        """The champion's macro-F1 on the new run's held-out baskets (`holdout_macro_f1`)."""
        from ml.bundle import load_bundle
        from ml.settings import rows_per_piece

        bundle = load_bundle(self.download(version))
        return holdout_macro_f1(bundle, holdout_lines, rows_per_piece(self.settings.max_memory_gb))

    # ---- aliases -----------------------------------------------------------------
    def champion_version(self) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_model_version_by_alias(self.name, CHAMPION).version)
        except MlflowException:
            return None

    def _history(self) -> list[str]:
        model = self.client.get_registered_model(self.name)
        # The tag holds the JSON list of version strings `_move_champion` writes.
        history: list[str] = json.loads(model.tags.get(HISTORY_TAG, "[]"))
        return history

    def _move_champion(self, version: str) -> None:
        if version == self.champion_version():
            return
        history = self._history()
        self.client.set_registered_model_alias(self.name, CHAMPION, version)
        self.client.set_registered_model_tag(self.name, HISTORY_TAG, json.dumps([*history, version]))

    def promote(self, version: str, force: bool = False) -> str:
        """Make a version champion by hand; it must have passed the gate unless forced."""
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version(self.name, version)
        except MlflowException as exc:
            raise ValueError(f"model {self.name} has no version {version!r}") from exc
        if mv.tags.get("gate_passed") != "true" and not force:
            raise ValueError(f"version {version} did not pass the promotion gate; use --force to override")
        self._move_champion(version)
        return version

    def challenger_version(self) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_model_version_by_alias(self.name, CHALLENGER).version)
        except MlflowException:
            return None

    def make_challenger(self, version: str) -> None:
        """Give a version that passed the gate, and is not the champion, the `challenger` alias: it scores in the
        champion's shadow until `retail monitor` finds it has earned promotion (ml/challenger.py)."""
        mv = self.client.get_model_version(self.name, version)
        if mv.tags.get("gate_passed") != "true":
            raise ValueError(f"version {version} did not pass the promotion gate, so it cannot be the challenger")
        if version == self.champion_version():
            raise ValueError(f"version {version} is the champion already")
        self.client.set_registered_model_alias(self.name, CHALLENGER, version)

    def promote_challenger(
        self, version: str, champion: str | None, reason: str, evidence: Sequence[Mapping[str, Any]],
        context: Mapping[str, Any] | None = None,
    ) -> Promotion:
        """Make the challenger champion on the monitor's verdict, provided `champion` (the version the verdict's
        evidence was measured against) still holds the alias. The decision is recorded on the version as
        `promotion.<n>.*` tags, n counting its promotions from 1, so an earlier one's evidence is kept: its reason,
        evidence (the weeks it won, with both models' macro-F1 on the same baskets), `context` (thresholds, report
        locations), the champion it replaced and when; `promotion.<n>.state` is `pending` until the alias has moved,
        then `done`. The challenger alias is removed; the champion history records the move as `promote` does.

        Idempotent: a version already champion by a promotion with the same evidence is left as it is
        (`Promotion.already`). Raises ValueError when the version is not the challenger, or the champion moved."""
        recorded = json.dumps(list(evidence))
        current = self.champion_version()
        done = self._promotions(version)
        if version == current and done and done[max(done)].get("evidence") == recorded:
            if done[max(done)].get("state") != "done":  # a run stopped after moving the alias: finish its work
                if self.challenger_version() == version:
                    self.client.delete_registered_model_alias(self.name, CHALLENGER)
                self.client.set_model_version_tag(self.name, version, f"{PROMOTION_TAGS}{max(done)}.state", "done")
            return Promotion(version, max(done), already=True)
        if version != self.challenger_version():
            raise ValueError(f"version {version} is not the challenger (the challenger is "
                             f"{self.challenger_version() or 'none'}, the champion {current or 'none'})")
        if current != champion:
            raise ValueError(f"the champion is version {current or 'none'}, not version {champion or 'none'} that "
                             f"challenger {version} was compared with; run `retail monitor` again on the new champion")
        number = max(done, default=0) + 1
        tags = {
            "state": "pending",
            "decision": "promoted from challenger",
            "reason": reason,
            "evidence": recorded,
            "context": json.dumps(dict(context or {})),
            "previous_champion": current or "",
            "decided": dt.datetime.now(dt.UTC).isoformat(),
        }
        for key, value in tags.items():
            self.client.set_model_version_tag(self.name, version, f"{PROMOTION_TAGS}{number}.{key}", value)
        self._move_champion(version)
        self.client.delete_registered_model_alias(self.name, CHALLENGER)
        self.client.set_model_version_tag(self.name, version, f"{PROMOTION_TAGS}{number}.state", "done")
        return Promotion(version, number, already=False)

    def _promotions(self, version: str) -> dict[int, dict[str, str]]:
        """The `promotion.<n>.*` tags of a version, by n."""
        found: dict[int, dict[str, str]] = {}
        for key, value in self.client.get_model_version(self.name, version).tags.items():
            number, _, name = key.removeprefix(PROMOTION_TAGS).partition(".")
            if key.startswith(PROMOTION_TAGS) and number.isdigit():
                found.setdefault(int(number), {})[name] = value
        return found

    def rollback(self) -> str:
        """Move the champion back to the version that held it before the current one."""
        history = self._history()
        current = self.champion_version()
        if current is None or len(history) < 2:
            raise ValueError("no earlier champion to roll back to")
        previous = history[-2]
        self.client.set_registered_model_alias(self.name, CHAMPION, previous)
        self.client.set_registered_model_tag(self.name, HISTORY_TAG, json.dumps(history[:-1]))
        return previous

    # ---- reading -----------------------------------------------------------------
    def versions(self) -> list[dict[str, Any]]:
        from mlflow.exceptions import MlflowException

        try:
            aliases = self.client.get_registered_model(self.name).aliases
        except MlflowException:
            return []
        found = self.client.search_model_versions(f"name='{self.name}'")
        rows = []
        for mv in sorted(found, key=lambda v: int(v.version)):
            rows.append(
                {
                    "version": str(mv.version),
                    "aliases": sorted(a for a, v in aliases.items() if str(v) == str(mv.version)),
                    "created": mv.creation_timestamp,
                    **{k: mv.tags.get(k, "") for k in VERSION_COLUMNS},
                }
            )
        return rows

    def download(self, version: str | None = None) -> Path:
        """The bundle folder of a version (the champion by default), checksums verified."""
        from ml.bundle import bundle_digest, verify_bundle

        version = version or self.champion_version()
        if version is None:
            raise LookupError(f"model {self.name} has no champion yet")
        local = Path(self.mlflow.artifacts.download_artifacts(f"models:/{self.name}/{version}"))
        bundle = next(p.parent for p in local.rglob("bundle.json"))
        expected = self.client.get_model_version(self.name, version).tags.get("bundle_sha256")
        if not expected:
            raise ValueError(f"version {version}: the registry holds no bundle_sha256 tag for it, so its bundle cannot "
                             "be verified; train and register it again (`retail pipeline run`)")
        verify_bundle(bundle)
        if bundle_digest(bundle) != expected:
            raise ValueError(f"version {version}: bundle checksum differs from the registry's record")
        return bundle


def holdout_macro_f1(bundle: ModelBundle, holdout_lines: Path, rows_per_piece: int) -> float:
    """A bundle's macro-F1 on the trainable baskets of a holdout lines file, never held whole: the file's baskets are
    dealt by a hash of their key into buckets of about `rows_per_piece` lines (RETAIL_MAX_MEMORY_GB), each read
    (the filter pushed into the scan) and scored in turn. A basket's lines all land in one bucket and a basket's
    features depend on its own lines only, and macro-F1 counts per class, so the score is the whole file's; a file of
    at most `rows_per_piece` lines is one bucket, read as before."""
    import numpy as np
    import polars as pl

    from ml.evaluate import compute_metrics

    lines = pl.scan_parquet(holdout_lines).filter(pl.col(LABEL).is_in(list(TRAINABLE_LABELS)))
    buckets = max(1, math.ceil(pl.scan_parquet(holdout_lines).select(pl.len()).collect().item() / rows_per_piece))
    classes = bundle.classes
    truth, predicted = [], []
    for bucket in range(buckets):
        piece = lines if buckets == 1 else lines.filter(pl.col(BASKET_KEY).hash(seed=0) % buckets == bucket)
        held = piece.collect()
        if held.is_empty():  # a bucket no basket hashed to
            continue
        features, probabilities = bundle.predict_proba(held)
        codes = features[LABEL].replace_strict({c: i for i, c in enumerate(classes)}, return_dtype=pl.Int32)
        truth.append(codes.to_numpy())
        predicted.append(probabilities.argmax(axis=1))
    return compute_metrics(np.concatenate(truth), np.concatenate(predicted), classes).macro_f1


def _flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    flat = {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}
    for cls, values in metrics["per_class"].items():
        for name in ("precision", "recall", "f1"):
            flat[f"{name}_{cls}"] = values[name]
    return flat
