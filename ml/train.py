"""Training: the four families on a gold channel, the gate, the winning bundle.

On SageMaker the training image's entry point (`ml/sagemaker_entry.py`) calls `main()`
with the channel, model and output folders of /opt/ml and the job's hyperparameters as
flags; locally the pipeline calls it with the lake's folders (the flags' defaults read
`SM_CHANNEL_TRAIN`, `SM_MODEL_DIR`, `SM_OUTPUT_DATA_DIR` when set), so both paths run
this very code.

The train channel is a gold folder of the lake: `baskets/` (one feature row per basket,
with its `split` side), `featurizer/` (the transformer fitted on the training side)
and `lineage.json`. The four families are ranked on the last training weeks
(ml/selection.py: macro-F1, then accuracy), trained on the training side (or the sample
of it memory allows, below) and scored on the held-out weeks; the best-ranked is written
as a bundle.
The channel is read in bounded memory (ml/channel.py): the training side straight into one float32 matrix, every
basket while it fits `--max-memory-gb` (RETAIL_MAX_MEMORY_GB), else a seeded uniform sample of them, which the
summary's `data.train_sample`, a printed line and the model card report; the selection, the XGBoost search and the
fits use that matrix; the holdout is scored whole, a piece at a time, after the fits (`score_holdout`).
Each metric is also printed as `name=value;` for SageMaker's metric definitions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ml.bundle import save_bundle
from ml.calendar import week_span
from ml.channel import CLASSES, PIECE_BASKETS, GoldChannel, TrainSide, sample_cap
from ml.cluster import SOLO, Peers
from ml.evaluate import Metrics, apply_gate, compute_metrics, plot_confusion
from ml.families import FAMILIES, fitted_side_by_side
from ml.features import BasketFeaturizer
from ml.model_card import write_model_card
from ml.reference import reference_bins
from ml.selection import METRIC_DECIMALS, ranking_key, validation_scores
from ml.settings import GateSettings, Settings
from ml.xgb_search import SearchResult, search_xgboost

DEFAULT_VALIDATION_WEEKS = 8


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    gate = GateSettings()
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", default=env("SM_CHANNEL_TRAIN"), help="gold folder (SM_CHANNEL_TRAIN)")
    parser.add_argument("--model-dir", default=env("SM_MODEL_DIR"), help="bundle output (SM_MODEL_DIR)")
    parser.add_argument(
        "--output-data-dir", default=env("SM_OUTPUT_DATA_DIR"), help="reports (SM_OUTPUT_DATA_DIR)"
    )
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated families to train")
    parser.add_argument("--validation-weeks", type=int, default=None,
                        help="last training weeks the families are ranked on (and the XGBoost search stops on); "
                             "default: the window the run's holdout plan chose (the channel's lineage.json), else "
                             f"{DEFAULT_VALIDATION_WEEKS}")
    parser.add_argument("--xgb-trials", type=int, default=4,
                        help="bound of the XGBoost search; 0: no search, the --xgboost-* parameters as given")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--max-memory-gb", type=float, default=Settings().max_memory_gb,
                        help="memory the training stage is sized for: a training side larger than it holds is "
                             "sampled (default: RETAIL_MAX_MEMORY_GB, see ml/channel.py)")
    parser.add_argument("--gate-min-accuracy", type=float, default=gate.min_accuracy)
    parser.add_argument("--gate-min-macro-f1", type=float, default=gate.min_macro_f1)
    parser.add_argument("--gate-min-class-precision", type=float, default=gate.min_class_precision)
    for family in FAMILIES.values():
        for name, value in family.defaults.items():
            flag = f"--{family.name.replace('_', '-')}-{name.replace('_', '-')}"
            parser.add_argument(flag, type=type(value), default=value, dest=f"{family.name}__{name}")
    args = parser.parse_args(argv)
    for required in ("train", "model_dir", "output_data_dir"):
        if not getattr(args, required):
            parser.error(f"--{required.replace('_', '-')} is required (or set its SM_ variable)")
    return args


def family_params(args: argparse.Namespace, family: str) -> dict[str, Any]:
    prefix = f"{family}__"
    return {k[len(prefix):]: v for k, v in vars(args).items() if k.startswith(prefix)}


def _report_metric(name: str, value: float) -> None:
    print(f"{name}={value:.{METRIC_DECIMALS}f};", flush=True)


def requested_families(args: argparse.Namespace, hosts: int = 1) -> list[str]:
    """The families `--families` names; SystemExit for an unknown one, ValueError for one that cannot train on
    `hosts` hosts: only XGBoost trains distributed (its collective), and training the others on one host's share
    would rank them on a fraction of the data, so a multi-host job trains `xgboost` alone."""
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise SystemExit(f"unknown families: {', '.join(unknown)} (known: {', '.join(FAMILIES)})")
    if hosts > 1 and families != ["xgboost"]:
        raise ValueError(f"a training job on {hosts} instances trains the xgboost family only (the others cannot "
                         f"train distributed), but families is {args.families!r}: set the hyperparameter "
                         "families=xgboost, or train on one instance")
    return families


@dataclass
class FittedFamilies:
    """What every host knows after the fits: the models (the same on every host) and the facts the report needs."""

    families: list[str]
    params: dict[str, dict[str, Any]]
    search: SearchResult | None
    chosen_on: dict[str, Metrics]
    models: dict[str, Any]
    fit_seconds: dict[str, float]
    train_facts: dict[str, Any]
    train_weeks: tuple[int, int]
    validation_weeks: int


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Train, evaluate and write the winning bundle; returns the run's summary."""
    started = time.perf_counter()
    return report(args, fit_families(args), started)


def fit_families(args: argparse.Namespace, peers: Peers = SOLO, train_dir: Path | None = None) -> FittedFamilies:
    """Search, rank and fit the families on the training side of `train_dir` (default: the channel `--train`).

    With several `peers` (ml/cluster.py) every host runs this on its own share of the training baskets inside
    XGBoost's collective: the fits are distributed, and what the hosts decide by (the validation window's last week,
    each search trial's and family's validation score, the class counts) is reduced over all hosts first, so every
    host takes the same decisions and holds the same models."""
    channel = GoldChannel(train_dir or Path(args.train))
    families = requested_families(args, peers.size)
    params = {f: family_params(args, f) for f in families}
    side = channel.train_side(sample_cap(args.max_memory_gb), args.seed)
    if side.used < side.available:
        print(f"training on a uniform sample of {side.used:,} of the {side.available:,} training baskets "
              f"(seed {args.seed}), the most {args.max_memory_gb:g} GB holds (RETAIL_MAX_MEMORY_GB)", flush=True)
    x_train, y_train = side.x, side.y
    train_facts, train_weeks = _side_facts(side, args, peers)
    validation_weeks = args.validation_weeks or channel.lineage.get("validation_weeks", DEFAULT_VALIDATION_WEEKS)
    last_week = int(peers.reduce(np.array([side.last_week_index], dtype=np.int64), "max")[0])
    validation = side.week_index > last_week - validation_weeks
    search = None
    if "xgboost" in families and args.xgb_trials > 0:
        search = search_xgboost(x_train, y_train, validation, base=params["xgboost"], trials=args.xgb_trials,
                                seed=args.seed, peers=peers)
        params["xgboost"] = search["best_params"]

    chosen_on = validation_scores(x_train, y_train, validation, params, CLASSES, args.seed, peers=peers)
    unfitted = {family: FAMILIES[family].build(params[family], args.seed) for family in families}
    models, fit_seconds = fitted_side_by_side(unfitted, x_train, y_train)
    if peers.size > 1:
        _require_same_models(models, peers)
    return FittedFamilies(families, params, search, chosen_on, models, fit_seconds, train_facts, train_weeks,
                          validation_weeks)


def _side_facts(side: TrainSide, args: argparse.Namespace, peers: Peers) -> tuple[dict[str, Any], tuple[int, int]]:
    """The summary's facts of the training side and its first and last week, over every host's share."""
    facts, weeks = side.facts(args.seed, args.max_memory_gb), side.weeks
    if peers.size == 1:
        return facts, weeks
    counts = np.bincount(side.y, minlength=len(CLASSES)).astype(np.int64)
    if (missing := [c for c, n in zip(CLASSES, peers.reduce(counts, "min"), strict=True) if n == 0]):
        raise ValueError(f"a host's share of the training baskets has no {', '.join(missing)} basket: with "
                         f"{peers.size} hosts each needs every class; train on fewer instances")
    available, used = peers.reduce(np.array([side.available, side.used], dtype=np.int64), "sum")
    first = int(peers.reduce(np.array([weeks[0]], dtype=np.int64), "min")[0])
    last = int(peers.reduce(np.array([weeks[1]], dtype=np.int64), "max")[0])
    facts |= {"available": int(available), "used": int(used), "sampled": bool(used < available),
              "cap": facts["cap"] * peers.size, "hosts": peers.size}
    return facts, (first, last)


def _require_same_models(models: dict[str, Any], peers: Peers) -> None:
    """Every host holds the same model (what the collective's training promises; a host that took another
    decision would write nothing wrong, only waste the job): compared by a digest of the saved bytes."""
    for family, model in models.items():
        digest = hashlib.sha256(bytes(model.get_booster().save_raw("ubj"))).digest()
        value = np.frombuffer(digest[:8], dtype=np.int64).copy()
        if peers.reduce(value, "min")[0] != peers.reduce(value, "max")[0]:
            raise RuntimeError(f"the hosts trained different {family} models; the collective's training diverged")


def report(args: argparse.Namespace, fits: FittedFamilies, started: float) -> dict[str, Any]:
    """Score the holdout of the channel `--train`, rank, gate, and write the winning bundle and the reports (on a
    multi-host job, the leader alone does this: SageMaker merges every host's /opt/ml/model into one archive)."""
    channel = GoldChannel(Path(args.train))
    featurizer, lineage = channel.featurizer, channel.lineage
    output = Path(args.output_data_dir)
    output.mkdir(parents=True, exist_ok=True)
    families, params, chosen_on, fit_seconds = fits.families, fits.params, fits.chosen_on, fits.fit_seconds
    search = fits.search
    train_facts, train_weeks, validation_weeks = fits.train_facts, fits.train_weeks, fits.validation_weeks
    if search is not None:
        (output / "xgboost_search.json").write_text(json.dumps(search, indent=2))
    for family, metrics in chosen_on.items():
        _report_metric(f"{family}_validation_accuracy", metrics.accuracy)
        _report_metric(f"{family}_validation_macro_f1", metrics.macro_f1)
    models = fits.models
    holdout = score_holdout(channel, models)

    results: dict[str, dict[str, Any]] = {}
    holdout_metrics = {}
    for family in families:
        metrics = compute_metrics(holdout.y, holdout.predictions[family], CLASSES)
        plot_confusion(metrics, f"{family} (holdout)", output / f"confusion_{family}.png")
        holdout_metrics[family] = metrics
        results[family] = {
            "family": family,
            "params": params[family],
            "fit_seconds": round(fit_seconds[family], 2),
            "metrics": metrics.to_dict(),
            "validation": {"accuracy": chosen_on[family].accuracy, "macro_f1": chosen_on[family].macro_f1},
        }
        _report_metric(f"{family}_holdout_accuracy", metrics.accuracy)
        _report_metric(f"{family}_holdout_macro_f1", metrics.macro_f1)
        for cls, values in metrics.per_class.items():
            _report_metric(f"{family}_holdout_precision_{cls}", values["precision"])

    # Ranked on the validation weeks, never on the holdout that reports the winner's score (ml/selection.py).
    leaderboard = sorted(
        results.values(),
        key=lambda r: ranking_key(chosen_on[r["family"]].macro_f1, chosen_on[r["family"]].accuracy),
        reverse=True,
    )
    winner = leaderboard[0]
    gate = apply_gate(
        holdout_metrics[winner["family"]],
        GateSettings(
            min_accuracy=args.gate_min_accuracy,
            min_macro_f1=args.gate_min_macro_f1,
            min_class_precision=args.gate_min_class_precision,
        ),
    )
    data = {
        "train_baskets": train_facts["available"],
        "train_baskets_used": train_facts["used"],
        "train_sample": train_facts,
        "holdout_baskets": len(holdout.y),
        "unclassified_baskets_excluded": channel.unclassified(),
        "train_weeks": list(train_weeks),
        "holdout_weeks": list(week_span(pl.Series(holdout.weeks))),
        "validation_weeks": validation_weeks,
    }
    summary = {
        "winner": winner["family"],
        "classes": CLASSES,
        "metrics": winner["metrics"],
        "params": winner["params"],
        "gate": gate.to_dict(),
        "leaderboard": [
            {k: r[k] for k in ("family", "fit_seconds")}
            | {"accuracy": r["metrics"]["accuracy"], "macro_f1": r["metrics"]["macro_f1"],
               "validation_macro_f1": r["validation"]["macro_f1"]}
            for r in leaderboard
        ],
        "data": data,
        "lineage": lineage,
        # The latest weeks of its data, the ones the gate judged it on: a model retrained after a drift compares
        # later weeks with the drifted ones it was judged on, not with the weeks before the drift.
        "drift_reference": reference_bins(holdout.columns),
        "tiers": tier_breakdown(holdout.columns, holdout.y, holdout.predictions[winner["family"]], featurizer),
        "xgboost_search": (
            None if search is None else {"trials": search["trials"], "best_params": search["best_params"]}
        ),
        "train_seconds": round(time.perf_counter() - started, 2),
    }
    save_bundle(Path(args.model_dir), featurizer, winner["family"], models[winner["family"]], summary)
    (output / "leaderboard.json").write_text(json.dumps(leaderboard, indent=2))
    (output / "summary.json").write_text(json.dumps(summary, indent=2))
    write_model_card(summary, leaderboard, output)
    return summary


@dataclass(frozen=True)
class ScoredHoldout:
    """Every trainable holdout basket's label, each family's prediction and the per-basket columns the summary
    reads (`ml.channel.HOLDOUT_COLUMNS`): about 150 bytes a basket, never its features."""

    y: np.ndarray
    predictions: dict[str, np.ndarray]
    weeks: np.ndarray
    columns: pl.DataFrame


def score_holdout(channel: GoldChannel, models: dict[str, Any], piece_baskets: int = PIECE_BASKETS) -> ScoredHoldout:
    """Each model's predictions on all the holdout's baskets, scored a piece of at most `piece_baskets` at a time
    (a basket's prediction depends on its own row only, so the pieces' predictions are the whole holdout's)."""
    labels, weeks, columns = [], [], []
    predictions: dict[str, list[np.ndarray]] = {family: [] for family in models}
    for piece in channel.holdout_pieces(piece_baskets):
        labels.append(piece.y)
        weeks.append(piece.weeks)
        columns.append(pl.DataFrame(piece.columns))
        for family, model in models.items():
            predictions[family].append(model.predict_proba(piece.x).argmax(axis=1))
    if not labels:
        raise ValueError("the training channel has no trainable baskets on the holdout side")
    return ScoredHoldout(np.concatenate(labels), {f: np.concatenate(p) for f, p in predictions.items()},
                         np.concatenate(weeks), pl.concat(columns))


def tier_breakdown(
    holdout: pl.DataFrame, y_true: np.ndarray, y_pred: np.ndarray, featurizer: BasketFeaturizer
) -> dict[str, Any] | None:
    """Holdout metrics of baskets whose every product's tier training revealed exactly vs the others, and
    how the holdout's lines' tiers were known; None for a featurizer without tier inference."""
    if featurizer.tiers_ is None or "tier_exact_lines" not in holdout.columns:
        return None
    exact = holdout["tier_exact_lines"].to_numpy() >= 1.0
    groups = {}
    for name, mask in (("all_exact", exact), ("some_not_exact", ~exact)):
        groups[name] = {"baskets": int(mask.sum())}
        if mask.any():
            groups[name] |= compute_metrics(y_true[mask], y_pred[mask], CLASSES).to_dict()
    lines = holdout["n_lines"].to_numpy()
    shares = {
        kind: float((holdout[f"tier_{kind}_lines"].to_numpy() * lines).sum() / max(lines.sum(), 1))
        for kind in ("exact", "estimated", "unseen")
    }
    return {**groups, "holdout_line_shares": shares, "training_coverage": featurizer.tiers_.coverage_,
            "rule": featurizer.tiers_.state()["rule"]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return train(parse_args(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
