"""The local pipeline: input file to registered champion, stage by stage.

ingest (raw zone) -> validate (silver zone, quarantine) -> features (gold zone) ->
train (the SageMaker entry point, run locally) -> register (MLflow) -> manifest.
Ingestion and validation stream: the input is read a piece at a time, each piece's rows
checked against the row rules and staged in the work folder (`ml.validate.StagedRows`),
then the basket check, the silver lines and the quarantine run with Polars' streaming
engine over the staged pieces (`ml.validate.validate_staged`), so neither stage holds the
input. The features stage fits the featurizer from aggregates over a scan of the silver
lines and writes the gold basket table a part at a time (`plan_gold`): each fold of the
training side and the holdout are dealt into parts of at most about `rows_per_piece`
lines, sized from RETAIL_MAX_MEMORY_GB, each part's lines held and featurized in memory;
training then reads the gold table in bounded batches (`ml.channel`), on a sample of the
training side when the setting cannot hold all of it. A run that fails removes the copies of the
silver lines and the gold parts it made in the work folder.
Every stage is timed; the manifest records counts per zone, the input's content hash,
the schema version and the git commit, so a model can be traced back to its data.
An input holding fewer weeks than the holdout needs trains with a smaller holdout,
announced in `notices` and the manifest's `split`, or stops (see `ml.split.plan_holdout`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.dataset as ds

from ml import ingest
from ml.features import ENGINE, BasketFeaturizer, FeaturePart
from ml.lake import SILVER_LINES, SILVER_QUARANTINE, Lake, RawRecord, join, run_id_for
from ml.lineage import git_commit
from ml.progress import StageTimer
from ml.schema import LABEL, SCHEMA_VERSION, TRAINABLE_LABELS
from ml.settings import GateSettings, Settings, rows_per_piece
from ml.split import HoldoutPlan, LazySplit, TooFewWeeks, plan_holdout, split_weeks
from ml.validate import StagedRows, ValidationReport, validate_staged

PARTITIONS = ["STORE_REGION", "BASKET_TYPE"]


@dataclass
class PipelineResult:
    run_id: str
    manifest_uri: str
    report_dir: Path
    validation: ValidationReport
    training: dict[str, Any]
    registration: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)  # what the run changed from its settings, and why


def _chosen_families(settings: Settings) -> list[str]:
    """The families to train (RETAIL_FAMILIES, default all), checked before anything is read."""
    from ml.families import FAMILIES

    chosen = [f.strip() for f in settings.families.split(",") if f.strip()] or list(FAMILIES)
    unknown = sorted(set(chosen) - set(FAMILIES))
    if unknown:
        raise ingest.InputError(f"RETAIL_FAMILIES: unknown families: {', '.join(unknown)} "
                                f"(known: {', '.join(FAMILIES)})")
    return chosen


@dataclass
class Gold:
    baskets: pl.DataFrame  # one feature row per basket, with its `split` side
    featurizer: BasketFeaturizer  # fitted on the training side only
    holdout_lines: pl.DataFrame  # kept to score the current champion on the same baskets
    facts: dict[str, Any]


@dataclass
class GoldPlans:
    """`Gold` as parts over the lines, the featurizer fitted already: the basket table is the parts' features in
    order, each with its split side (the training side's folds, each in pieces, then the holdout in pieces)."""

    parts: list[tuple[FeaturePart, str]]
    featurizer: BasketFeaturizer
    holdout_lines: pl.LazyFrame
    facts: dict[str, Any]


def plan_gold(lines: pl.LazyFrame, holdout_weeks: int, seed: int, rows_per_piece: int | None = None) -> GoldPlans:
    """Basket features with their split side; the featurizer is fitted on training lines only (from aggregates, so
    `lines` may be a scan that is never held). A part holds at most about `rows_per_piece` lines (a fold without
    it)."""
    split = split_weeks(lines, holdout_weeks)
    featurizer = BasketFeaturizer(seed=seed)
    train = [(part, "train") for part in featurizer.fold_parts(split.train, rows_per_piece)]
    holdout = [(part, "holdout") for part in featurizer.parts(split.holdout, split.holdout_lines, rows_per_piece)]
    return GoldPlans([*train, *holdout], featurizer, split.holdout, split_facts(split, holdout_weeks))


def split_facts(split: LazySplit, holdout_weeks: int) -> dict[str, Any]:
    """What the lineage and the manifest record of a split."""
    return {
        "holdout_weeks": holdout_weeks,
        "last_train_week": split.last_train_week,
        "first_holdout_week": split.first_holdout_week,
        "train_lines": split.train_lines,
        "holdout_lines": split.holdout_lines,
    }


def gold_part(part: FeaturePart, side: str) -> pl.DataFrame:
    """One part of the basket table: its baskets' features and their split side."""
    return part.collect().with_columns(pl.lit(side).alias("split"))


def build_gold(lines: pl.DataFrame, holdout_weeks: int, seed: int) -> Gold:
    """`plan_gold` in memory: the whole basket table as one frame, a part per fold."""
    plans = plan_gold(lines.lazy(), holdout_weeks, seed)
    baskets = pl.concat([gold_part(part, side) for part, side in plans.parts])
    return Gold(baskets, plans.featurizer, plans.holdout_lines.collect(), plans.facts)


def _write_gold(plans: GoldPlans, folder: Path) -> list[Path]:
    """Each part of the basket table to a Parquet file under `folder`, one at a time."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (part, side) in enumerate(plans.parts):
        paths.append(folder / f"part-{i:05d}.parquet")
        gold_part(part, side).write_parquet(paths[-1])
    return paths


def holdout_plan(report: ValidationReport, lines: pl.LazyFrame, settings: Settings, input_name: str,
                 quarantine: str) -> HoldoutPlan:
    """The holdout for a validated input's silver lines (a scan), once its report is checked; InputError naming the
    input when no row was accepted or the weeks are too few."""
    if not report.counts_add_up:  # a bug, never bad input: fail loudly rather than lose rows
        raise RuntimeError(f"row counts do not add up: {report}")
    if report.baskets_accepted == 0:
        raise ingest.InputError(f"{input_name}: no row passed validation; see {quarantine}")
    weeks = lines.select(pl.col("SHOP_WEEK").unique()).collect(engine="streaming")
    try:
        return plan_holdout(weeks["SHOP_WEEK"].to_list(), settings.holdout_weeks, settings.validation_weeks,
                            settings.max_holdout_share, settings.min_train_weeks)
    except TooFewWeeks as exc:
        raise ingest.InputError(f"{input_name}: {exc}") from exc


def gold_counts(baskets: pl.LazyFrame) -> dict[str, int]:
    """The basket table's counts the manifest records: baskets, on each split side, and with a trainable label."""
    counts = baskets.select(
        pl.len().alias("baskets"),
        (pl.col("split") == "train").sum().alias("train_baskets"),
        (pl.col("split") == "holdout").sum().alias("holdout_baskets"),
        pl.col(LABEL).is_in(list(TRAINABLE_LABELS)).sum().alias("trainable_baskets"),
    ).collect(engine=ENGINE)
    return {name: int(value) for name, value in counts.row(0, named=True).items()}


def lineage_facts(run_id: str, record: RawRecord, silver_lines: str, gold_baskets: str,
                  split_facts: dict[str, Any]) -> dict[str, Any]:
    """gold/<run>/lineage.json: the data, code and split a run's basket table comes from."""
    return {
        "run_id": run_id,
        "input_sha256": record.sha256,
        "raw_location": record.location,
        "silver_lines": silver_lines,
        "gold_baskets": gold_baskets,
        "schema_version": SCHEMA_VERSION,
        "git_commit": git_commit(),
        **split_facts,
    }


def lake_manifest(lineage: dict[str, Any], input_path: str, variant: str, notices: list[str], record: RawRecord,
                  report: ValidationReport, quarantine: str, counts: dict[str, int],
                  split_facts: dict[str, Any]) -> dict[str, Any]:
    """The manifest's facts about a run's data (its input, zones, validation and split), which the local pipeline
    and the distributed job (ml/spark_lake.py) both record; each adds what else it did."""
    return {
        "run_id": lineage["run_id"],
        "notices": notices,
        "created": dt.datetime.now(dt.UTC).isoformat(),
        "input": {"path": input_path, "files": list(record.files), "variant": variant,
                  "sha256": record.sha256, "bytes": record.bytes},
        "schema_version": SCHEMA_VERSION,
        "git_commit": lineage["git_commit"],
        "zones": {
            "raw": {"location": record.location, "rows": report.rows_in},
            "silver": {"lines": lineage["silver_lines"], "rows": report.rows_accepted,
                       "quarantine": quarantine, "quarantined_rows": report.rows_quarantined},
            "gold": {"baskets": lineage["gold_baskets"], **counts},
        },
        "validation": asdict(report),
        "split": split_facts,
    }


def run_pipeline(input_path: Path, settings: Settings, timer: StageTimer | None = None) -> PipelineResult:
    timer = timer or StageTimer()
    families = _chosen_families(settings)
    lake = Lake(settings.lake_root)

    staging = settings.work_dir / f"staging-{uuid.uuid4().hex[:12]}"
    try:
        with timer.stage("ingest", f"Reading {input_path} and checking its rows, a piece at a time"):
            reader = ingest.InputReader(input_path)
            staged = StagedRows(staging)
            staged.add_all(reader.pieces())
            raw_input = reader.raw_input()
            record = lake.put_raw(raw_input.files)
        run_id = run_id_for(record.sha256)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    # The run's copies of the silver lines and gold parts, and its training channel: a failed run removes them.
    local_silver = settings.work_dir / run_id / "silver"
    local_gold = settings.work_dir / run_id / "gold"
    channel = settings.work_dir / run_id / "train"
    try:
        try:
            rows_read = sum(raw_input.rows_read.values())
            with timer.stage("validate", f"Validating {rows_read:,} rows (baskets, silver lines, quarantine)"):
                report = validate_staged(staged, raw_input, local_silver / SILVER_LINES,
                                         local_silver / SILVER_QUARANTINE)
                silver_lines = lake.put_file(local_silver / SILVER_LINES, "silver", run_id, SILVER_LINES)
                quarantine_uri = lake.put_file(local_silver / SILVER_QUARANTINE, "silver", run_id, SILVER_QUARANTINE)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        plan = holdout_plan(report, pl.scan_parquet(local_silver / SILVER_LINES), settings, str(input_path),
                            quarantine_uri)

        with timer.stage("features", "Building basket features (fitted on training weeks only)"):
            plans = plan_gold(pl.scan_parquet(local_silver / SILVER_LINES), plan.holdout_weeks, settings.seed,
                              rows_per_piece(settings.max_memory_gb))
            split_facts = {**plans.facts, **plan.facts()}
            shutil.rmtree(channel, ignore_errors=True)
            parts = _write_gold(plans, local_gold)
            plans.holdout_lines.sink_parquet(channel / "holdout_lines.parquet", engine=ENGINE, mkdir=True)
            shutil.rmtree(local_silver)  # read; the lake keeps the silver zone
            gold = ds.dataset([str(p) for p in parts], format="parquet")
            gold_uri = lake.write_partitioned(gold, PARTITIONS, "gold", run_id, "baskets")
            plans.featurizer.save(channel / "featurizer")
            lake.put_folder(channel / "featurizer", "gold", run_id, "featurizer")
            lineage = lineage_facts(run_id, record, silver_lines, gold_uri, split_facts)
            lake.write_json(join("gold", run_id, "lineage.json"), lineage)
            # The training channel, laid out as SageMaker would download it.
            Lake(str(channel)).write_partitioned(gold, PARTITIONS, "baskets")
            (channel / "lineage.json").write_text(json.dumps(lineage, indent=2))
            counts = gold_counts(pl.scan_parquet(parts))
            shutil.rmtree(local_gold)
            del gold, plans
    except BaseException:
        for folder in (local_silver, local_gold, channel):
            shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):  # kept if anything else is in it
            (settings.work_dir / run_id).rmdir()
        raise

    report_dir = settings.work_dir / run_id / "output"
    model_dir = settings.work_dir / run_id / "model"
    with timer.stage("train", f"Training {', '.join(families)} (ml/train.py)"):
        from ml import train as train_entry

        training = train_entry.main(
            [
                "--train", str(channel),
                "--model-dir", str(model_dir),
                "--output-data-dir", str(report_dir),
                "--validation-weeks", str(plan.validation_weeks),
                "--xgb-trials", str(settings.xgb_trials),
                "--seed", str(settings.seed),
                "--families", ",".join(families),
                "--max-memory-gb", str(settings.max_memory_gb),
                *_gate_flags(GateSettings()),
            ]
        )

    with timer.stage("register", "Registering the winner in MLflow and applying the gate"):
        from ml.registry import Registry

        registration = Registry(settings).register_run(model_dir, report_dir, training, channel)

    notices = [*raw_input.notices, *([plan.notice] if plan.notice else [])]
    manifest = {
        **lake_manifest(lineage, str(input_path), raw_input.variant, notices, record, report, quarantine_uri, counts,
                        split_facts),
        "model": {"winner": training["winner"], "gate_passed": training["gate"]["passed"], **registration},
        "seconds": timer.seconds,
    }
    manifest_uri = lake.write_json(join("manifests", f"{run_id}.json"), manifest)
    lake.put_folder(report_dir, "reports", run_id)
    return PipelineResult(
        run_id=run_id,
        manifest_uri=manifest_uri,
        report_dir=report_dir,
        validation=report,
        training=training,
        registration=registration,
        seconds=dict(timer.seconds),
        notices=notices,
    )


def _gate_flags(gate: GateSettings) -> list[str]:
    return [
        "--gate-min-accuracy", str(gate.min_accuracy),
        "--gate-min-macro-f1", str(gate.min_macro_f1),
        "--gate-min-class-precision", str(gate.min_class_precision),
    ]
