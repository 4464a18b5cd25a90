"""Metrics of a classifier on the holdout, the confusion-matrix plot and the promotion gate."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from ml.settings import GateSettings


@dataclass
class Metrics:
    accuracy: float
    macro_f1: float
    per_class: dict[str, dict[str, float]]  # class -> precision, recall, f1, support
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    classes: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compute_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> Metrics:
    labels = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    per_class = {
        c: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for c, p, r, f, s in zip(classes, precision, recall, f1, support, strict=True)
    }
    return Metrics(
        accuracy=float(accuracy_score(y_true, y_pred)),
        macro_f1=float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        per_class=per_class,
        confusion=confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        classes=list(classes),
    )


def week_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """`compute_metrics` (as a dict) for a monitored week, where a class may be absent. Macro-F1 averages over the
    classes the week's labels hold (support above 0): an absent class has no F1 to average, and counting it as 0
    would mark a perfect model 0.667 on a week without UM. A class the model never predicted has no precision (None,
    not applicable) rather than 0; when it was present its recall (0) says it was missed, and its F1 counts.

    The promotion gate keeps `compute_metrics`: its holdout is weeks long and holds every class, and a model that
    never predicts a class ought to fail the gate's precision check there."""
    metrics = compute_metrics(y_true, y_pred, classes).to_dict()
    predicted = np.bincount(np.asarray(y_pred, dtype=np.int64), minlength=len(classes))
    for values, times in zip(metrics["per_class"].values(), predicted, strict=True):
        if not times:
            values["precision"] = None
    present = [values["f1"] for values in metrics["per_class"].values() if values["support"]]
    metrics["macro_f1"] = float(np.mean(present)) if present else 0.0
    return metrics


@dataclass
class GateCheck:
    name: str
    value: float
    threshold: float
    passed: bool


@dataclass
class GateResult:
    passed: bool
    checks: list[GateCheck]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def failures(self) -> list[str]:
        return [f"{c.name} {c.value:.4f} < {c.threshold}" for c in self.checks if not c.passed]


def apply_gate(metrics: Metrics, gate: GateSettings) -> GateResult:
    """Every KPI of the brief, each reported with its value and threshold."""
    checks = [
        GateCheck("accuracy", metrics.accuracy, gate.min_accuracy, metrics.accuracy >= gate.min_accuracy),
        GateCheck("macro_f1", metrics.macro_f1, gate.min_macro_f1, metrics.macro_f1 >= gate.min_macro_f1),
    ]
    for cls, values in metrics.per_class.items():
        precision = values["precision"]
        checks.append(
            GateCheck(f"precision_{cls}", precision, gate.min_class_precision, precision >= gate.min_class_precision)
        )
    return GateResult(passed=all(c.passed for c in checks), checks=checks)


def plot_confusion(metrics: Metrics, title: str, path: Path) -> Path:
    """The confusion matrix as a PNG, counts and row-normalised shares in each cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.array(metrics.confusion)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(4.8, 4.2), dpi=110)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(metrics.classes))
    ax.set_xticks(ticks, metrics.classes)
    ax.set_yticks(ticks, metrics.classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in ticks:
        for j in ticks:
            colour = "white" if shares[i, j] > 0.6 else "black"
            ax.text(j, i, f"{counts[i, j]}\n{shares[i, j]:.1%}", ha="center", va="center", color=colour, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
