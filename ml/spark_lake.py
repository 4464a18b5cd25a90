"""raw -> silver -> gold on Spark: the local pipeline's data stages as a distributed job, with ml's own code.

`python -m ml.spark_lake --raw URI --lake URI [--master local[2]]` (or this file as a spark-submit / EMR Serverless
entry point) writes a run's silver lines, quarantine, gold basket table, featurizer, lineage and manifest in the
layout of the local pipeline (ml/pipeline.py, ml/lake.py). No rule or feature is written twice: Spark moves the
rows and the tasks run ml's functions on Arrow batches (`DataFrame.mapInArrow`, Polars inside), so the local path
and this job share one definition of ingestion, validation and the features (tests/test_spark_lake.py checks that
both give the same rows). What runs where:

- ingest and the row rules, one task per raw file: the task copies an s3:// file to local scratch, reads it with
  `ml.ingest.InputReader` a piece at a time and checks each piece with `ml.validate.check_rows`; its rows and lines
  set aside keep the file and line numbers the local path gives them (an s3:// file is named by its URI);
- the basket check, a partition of whole baskets at a time: the checked rows are repartitioned by BASKET_KEY and
  sorted by key, file and line, and `ml.validate.check_baskets` turns each run of whole baskets into silver lines
  and quarantined rows;
- on the driver: the validation report (`ml.validate.written_report` over the files written, with the rows read
  and accepted per file counted by the tasks), the holdout plan (`ml.pipeline.holdout_plan`) and the featurizer's
  fit (`BasketFeaturizer.fit_folds` over a scan of the silver lines: aggregates on Polars' streaming engine, so
  the driver holds one entry per product or basket, not the lines);
- the features, a partition of whole baskets at a time: the silver lines stay in the basket tasks' partitions,
  whole baskets sorted by key, file and line (the local path's line order within a basket, so per-basket float sums
  add in the same order), and each basket gets its fold's query (training side) or the fitted featurizer's
  (holdout); the fitted queries reach the tasks in the pickled task closure.

The silver lines and the quarantine are folders of Parquet files written by Spark (silver/<run>/lines/,
silver/<run>/quarantine/), the gold table is partitioned by STORE_REGION and BASKET_TYPE with folders named as
`ml.lake.Lake.write_partitioned` names them. See docs/spark.md.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__" and sys.path and os.path.realpath(sys.path[0]) == os.path.dirname(os.path.realpath(__file__)):
    # Run as a file (spark-submit's entry point, EMR Serverless's local://.../ml/spark_lake.py): Python put ml/ first
    # on the path, where ml/calendar.py would shadow the standard library's calendar.
    sys.path.pop(0)

import argparse
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
from pyspark import StorageLevel
from pyspark.errors import PythonException
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from ml.features import BasketFeaturizer, FeaturePart, Featurize
from ml.ingest import SOURCE_FILE, SOURCE_LINE, EmptyFile, InputError, InputReader, discover
from ml.lake import (
    CHUNK,
    Lake,
    RawRecord,
    check_partition_values,
    file_name,
    filesystem,
    hashed_file,
    join,
    run_id_for,
    split_options,
)
from ml.pipeline import PARTITIONS, gold_counts, gold_part, holdout_plan, lake_manifest, lineage_facts, split_facts
from ml.progress import StageTimer
from ml.schema import BASKET_KEY, CANONICAL_COLUMNS
from ml.score import transaction_files
from ml.settings import Settings, rows_per_piece
from ml.split import HoldoutPlan, split_weeks
from ml.validate import QUARANTINE_SCHEMA, ValidationReport, check_baskets, check_rows, written_report

SOURCE_COLUMNS = (SOURCE_FILE, SOURCE_LINE)
PASSED_SCHEMA = {**{c: pl.String for c in CANONICAL_COLUMNS}, SOURCE_FILE: pl.String, SOURCE_LINE: pl.Int64,
                 BASKET_KEY: pl.String}
"""The rows `check_rows` passes."""
KIND = "_kind"
"""What a row of the ingest tasks' output is: `passed` (PASSED_SCHEMA), `failed` (QUARANTINE_SCHEMA) or `file`
(one per file read: its rows read, header variant and notice)."""
FILE_FACTS = {"_rows_read": pl.Int64, "_variant": pl.String, "_notice": pl.String}
INGESTED_SCHEMA = {**QUARANTINE_SCHEMA, BASKET_KEY: pl.String, KIND: pl.String, **FILE_FACTS}
SILVER_WITH_SOURCE = (check_baskets(pl.LazyFrame(schema=PASSED_SCHEMA), engine="auto").lines(*SOURCE_COLUMNS)
                      .collect_schema())
"""The silver lines as the basket tasks give them: with the source columns, for the line order and counts."""
TEXT_OF = {c: f"_text_{c}" for c, t in SILVER_WITH_SOURCE.items()
           if c in QUARANTINE_SCHEMA and t != QUARANTINE_SCHEMA[c]}
"""The columns the silver lines type (SHOP_WEEK, QUANTITY, ...): a quarantined row's text of them is carried in
these columns beside the silver lines'."""
CHECKED_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    **SILVER_WITH_SOURCE, **{c: t for c, t in QUARANTINE_SCHEMA.items() if c not in SILVER_WITH_SOURCE},
    **dict.fromkeys(TEXT_OF.values(), pl.String), KIND: pl.String,
}
"""What the basket tasks give: silver lines with their source columns (`lines`) and quarantined rows (`failed`)."""
BASKET_CHUNK_LINES = 100_000
"""About how many lines a task gathers before it checks or featurizes them (whole baskets, so a few more); the
job's default (`run_job(basket_chunk_lines=...)`)."""
BATCH_ROWS = 10_000
"""The most rows in an Arrow batch a task hands back to Spark (what a task holds twice over while it converts)."""
SPARK_TYPES: dict[pl.DataType, T.DataType] = {
    pl.String(): T.StringType(), pl.Binary(): T.BinaryType(), pl.Boolean(): T.BooleanType(),
    pl.Int8(): T.ByteType(), pl.Int16(): T.ShortType(), pl.Int32(): T.IntegerType(), pl.Int64(): T.LongType(),
    pl.Float32(): T.FloatType(), pl.Float64(): T.DoubleType(), pl.Date(): T.DateType(),
}
"""The Spark type each Polars type of the job's tables is held as (the same Arrow type on both sides)."""
TASK_ERROR = re.compile(r"ml\.ingest\.(?:InputError|EmptyFile): (.*)")


Schema = Mapping[str, pl.DataType | type[pl.DataType]]


def spark_schema(schema: Schema) -> T.StructType:
    """A Polars schema as Spark's; ValueError naming a column whose type has no equivalent here."""
    fields = []
    for name, dtype in pl.Schema(schema).items():
        if dtype not in SPARK_TYPES:
            raise ValueError(f"column {name}: no Spark type for Polars' {dtype}")
        fields.append(T.StructField(name, SPARK_TYPES[dtype], nullable=True))
    return T.StructType(fields)


def _batches(frame: pl.DataFrame, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """A frame as Arrow batches of `schema` (Spark's Arrow types: string, not Polars' large_string)."""
    return iter(frame.select(schema.names).to_arrow().cast(schema).to_batches(max_chunksize=BATCH_ROWS))


def _frames(batches: Iterator[pa.RecordBatch]) -> Iterator[pl.DataFrame]:
    for batch in batches:
        yield pl.DataFrame(pl.from_arrow(batch))


def whole_baskets(frames: Iterator[pl.DataFrame], lines: int = BASKET_CHUNK_LINES) -> Iterator[pl.DataFrame]:
    """A partition's rows sorted by BASKET_KEY, gathered into frames of whole baskets of at least `lines` rows each
    (but the last): a frame ends where a basket does."""
    held: list[pl.DataFrame] = []
    count = 0
    for frame in frames:
        held.append(frame)
        count += frame.height
        if count < lines:
            continue
        gathered = pl.concat(held)
        keys = gathered[BASKET_KEY]
        last = keys[-1]
        if (keys == last).all():  # one basket so far
            held = [gathered]
            continue
        trailing = int((keys.reverse() != last).arg_max() or 0)  # the last basket's rows, perhaps continued
        yield gathered.head(gathered.height - trailing)
        held = [gathered.tail(trailing)]
        count = trailing
    if count:
        yield pl.concat(held)


# ---- ingest and row rules: one task per file -------------------------------------------------------------------
@contextmanager
def _local_copy(uri: str) -> Iterator[Path]:
    """The file itself, or an s3:// file copied to local scratch (as it is: no decompression)."""
    if "://" not in uri:
        yield Path(uri)
        return
    fs, path = filesystem(uri)
    with tempfile.TemporaryDirectory(prefix="spark-lake-") as scratch:
        local = Path(scratch) / path.rsplit("/", 1)[-1]
        with fs.open_input_stream(path, compression=None) as source, local.open("wb") as sink:
            shutil.copyfileobj(source, sink, CHUNK)
        yield local


def _ingest_file(uri: str, in_folder: bool) -> Iterator[pl.DataFrame]:
    """One raw file's checked rows (`passed`), quarantined rows and lines (`failed`), then its facts (`file`)."""
    with _local_copy(uri) as local:
        local_name = str(local)
        notice = None
        try:
            reader = InputReader(local)
            for raw, rejected in reader.pieces():
                checked = check_rows(raw, rejected)
                yield pl.concat([checked.passed.with_columns(pl.lit("passed").alias(KIND)),
                                 checked.failed.with_columns(pl.lit("failed").alias(KIND))],
                                how="diagonal_relaxed").with_columns(pl.col(SOURCE_FILE).replace(local_name, uri))
        except EmptyFile as exc:  # as `InputReader` of a folder: a notice for one weekly file, fatal for a file
            if not in_folder:
                raise EmptyFile(str(exc).replace(local_name, uri)) from exc
            notice = f"{str(exc).replace(local_name, uri)}: read as 0 rows"
        except InputError as exc:  # named by the file's URI, not its scratch copy
            raise type(exc)(str(exc).replace(local_name, uri)) from exc
        variant = next(iter(reader.variants), None)
        yield pl.DataFrame({SOURCE_FILE: [uri], KIND: ["file"], "_rows_read": [reader.rows_read[local_name]],
                            "_variant": [variant], "_notice": [notice]}, schema_overrides=FILE_FACTS)


def _conformed(frame: pl.DataFrame, schema: Schema) -> pl.DataFrame:
    """The frame in `schema`'s columns and types, a column it lacks null."""
    return frame.select(pl.col(c).cast(t) if c in frame.columns else pl.lit(None, t).alias(c)
                        for c, t in schema.items())


def _ingest_task(batches: Iterator[pa.RecordBatch], in_folder: bool, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    for files in _frames(batches):
        for uri in files["uri"]:
            for frame in _ingest_file(uri, in_folder):
                yield from _batches(_conformed(frame, INGESTED_SCHEMA), schema)


# ---- basket check: whole baskets per task ----------------------------------------------------------------------
def _basket_task(batches: Iterator[pa.RecordBatch], chunk_lines: int, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """`check_baskets` on each run of whole baskets (CHECKED_SCHEMA) of about `chunk_lines`: their silver lines with
    the source columns (`lines`), then their rows that go to the quarantine (`failed`)."""
    for baskets in whole_baskets(_frames(batches), chunk_lines):
        check = check_baskets(baskets.lazy(), engine="auto")
        lines, failures = pl.collect_all([check.lines(*SOURCE_COLUMNS).with_columns(pl.lit("lines").alias(KIND)),
                                          check.failures.rename(TEXT_OF).with_columns(pl.lit("failed").alias(KIND))])
        for frame in (lines, failures):
            yield from _batches(_conformed(frame, CHECKED_SCHEMA), schema)


# ---- features: whole baskets per task --------------------------------------------------------------------------
@dataclass(frozen=True)
class GoldQueries:
    """What a task needs to featurize whole baskets as `ml.pipeline.plan_gold` does: which lines are held out,
    the fold of a training line and each fold's query, and the fitted featurizer's query for the holdout."""

    held: pl.Expr
    fold: pl.Expr
    folds: list[Featurize]
    holdout: Featurize

    def baskets(self, lines: pl.DataFrame) -> pl.DataFrame:
        """The gold rows of whole baskets' silver lines, with their `split` side."""
        train, holdout = lines.lazy().filter(~self.held), lines.lazy().filter(self.held)
        parts = [(FeaturePart(train.filter(self.fold == k), featurize), "train")
                 for k, featurize in enumerate(self.folds)]
        parts.append((FeaturePart(holdout, self.holdout), "holdout"))
        return pl.concat([gold_part(part, side) for part, side in parts])


def _gold_task(batches: Iterator[pa.RecordBatch], queries: GoldQueries, chunk_lines: int,
               schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    for lines in whole_baskets(_frames(batches), chunk_lines):
        yield from _batches(queries.baskets(lines.drop(SOURCE_COLUMNS)), schema)


def _map(frame: DataFrame, task: Callable[..., Iterator[pa.RecordBatch]], schema: Schema,
         **arguments: Any) -> DataFrame:
    """`frame.mapInArrow` of a task that yields batches of `schema` (given to it as Arrow's)."""
    struct = spark_schema(schema)
    return frame.mapInArrow(partial(task, schema=to_arrow_schema(struct), **arguments), struct)


def _whole_baskets(frame: DataFrame) -> DataFrame:
    """The rows repartitioned by BASKET_KEY, sorted by key, then file and line (the order read)."""
    return frame.repartition(BASKET_KEY).sortWithinPartitions(BASKET_KEY, *SOURCE_COLUMNS)


# ---- the driver ------------------------------------------------------------------------------------------------
def input_files(raw: str) -> tuple[list[str], bool]:
    """The files of an input and whether it is a folder: a file, or a folder's weekly files, found as the local
    pipeline (`ml.ingest.discover`) or, on S3, as batch scoring (ml/score.py) finds them; InputError naming the input
    when there is none."""
    if "://" not in raw:
        path = Path(raw)
        return [str(f) for f in discover(path)], path.is_dir()
    files = [name for name, _ in transaction_files(raw)[1]]
    return files, files != [raw]


def in_raw_zone(lake: Lake, uri: str) -> bool:
    """Whether a file (path or URI) is inside the lake's raw zone, `<lake>/raw/`."""
    fs, path = filesystem(uri)
    return fs.type_name == lake.fs.type_name and path.startswith(join(lake.base, "raw") + "/")


def put_raw(lake: Lake, raw: str, files: list[str]) -> RawRecord:
    """The input's raw zone entry, its hash the local path's (`ml.lake.combined_sha256` of the files' names and
    digests).

    An input already in the lake's raw zone (on AWS: uploaded there, the job's role may read raw/ but not write it)
    is recorded where it is (`raw`), and nothing is written under raw/. Otherwise the files, local or s3://, are
    copied in by `Lake.put_raw`, as the local pipeline copies its input."""
    if not all(in_raw_zone(lake, f) for f in files):
        return lake.put_raw(files)
    return RawRecord.of({file_name(f): hashed_file(f) for f in files}, location=raw)


def _scan(uri: str) -> pl.LazyFrame:
    """The Parquet files Spark wrote under a folder (a partitioned one too: its partition columns are not read)."""
    return pl.scan_parquet(join(uri, "**/*.parquet"), hive_partitioning=False)


def _write(frame: DataFrame, uri: str, partition_by: list[str] | None = None) -> str:
    frame.write.mode("overwrite").parquet(uri, partitionBy=partition_by)
    return uri


@dataclass
class _Validated:
    """The validate stage's outcome: the silver lines (a cached Spark frame with the source columns, and their
    folder), the quarantine's folder, the report, and the accepted lines per file and gold partition."""

    lines: DataFrame
    silver_lines: str
    quarantine: str
    report: ValidationReport
    by_file: pl.DataFrame  # SOURCE_FILE, STORE_REGION, BASKET_TYPE, len


@dataclass
class _Featured:
    gold_baskets: str
    split: dict[str, Any]
    lineage: dict[str, Any]
    counts: dict[str, int]


class _Cache:
    """Spark frames read by more than one Spark job, computed once and let go of at the end."""

    def __init__(self) -> None:
        self.frames: list[DataFrame] = []

    def __call__(self, frame: DataFrame) -> DataFrame:
        self.frames.append(frame.persist(StorageLevel.MEMORY_AND_DISK))
        return frame

    def drop(self, *frames: DataFrame) -> None:
        """Lets go of `frames`, or of every frame still held."""
        for frame in frames or tuple(self.frames):
            frame.unpersist()
            self.frames.remove(frame)


def _ingest(spark: SparkSession, files: list[str], in_folder: bool, raw: str,
            cache: _Cache) -> tuple[DataFrame, list[Row]]:
    """The ingest tasks' rows (INGESTED_SCHEMA, cached) and each file's facts; InputError when every weekly file
    of a folder is empty, as `InputReader` says it."""
    one_per_task = spark.sparkContext.parallelize([(f,) for f in files], len(files))
    ingested = cache(_map(spark.createDataFrame(one_per_task, "uri string"), _ingest_task, INGESTED_SCHEMA,
                          in_folder=in_folder))
    facts = ingested.filter(F.col(KIND) == "file").select(SOURCE_FILE, *FILE_FACTS).collect()
    if in_folder and all(row["_notice"] for row in facts):
        raise InputError(f"{raw}: every weekly file is empty ({len(files)} found)")
    return ingested, facts


def _validate(ingested: DataFrame, facts: list[Row], lake: Lake, run_id: str, cache: _Cache,
              chunk_lines: int) -> _Validated:
    """The basket check on partitions of whole baskets, the silver lines and the quarantine written, the report."""
    checked = cache(_map(_whole_baskets(ingested.filter(F.col(KIND) == "passed").select(*PASSED_SCHEMA)),
                         _basket_task, CHECKED_SCHEMA, chunk_lines=chunk_lines))
    lines = checked.filter(F.col(KIND) == "lines").select(*SILVER_WITH_SOURCE)
    failures = checked.filter(F.col(KIND) == "failed").select(*(F.col(TEXT_OF.get(c, c)).alias(c)
                                                                  for c in QUARANTINE_SCHEMA))
    quarantine = ingested.filter(F.col(KIND) == "failed").select(*QUARANTINE_SCHEMA).unionByName(failures)
    silver_lines = _write(lines.drop(*SOURCE_COLUMNS), lake.uri("silver", run_id, "lines"))
    quarantine_uri = _write(quarantine, lake.uri("silver", run_id, "quarantine"))
    # The accepted lines per file and gold partition (whose values are checked before the table is written, as
    # `Lake.write_partitioned` does): one small aggregate.
    by_file = pl.DataFrame([tuple(row) for row in lines.groupBy(SOURCE_FILE, *PARTITIONS).count().collect()],
                           schema={SOURCE_FILE: pl.String, **dict.fromkeys(PARTITIONS, pl.String), "len": pl.Int64},
                           orient="row")
    rows_read = {row[SOURCE_FILE]: row["_rows_read"] for row in facts}
    report = written_report(_scan(silver_lines), _scan(quarantine_uri), rows_read,
                            by_file.lazy().group_by(SOURCE_FILE).agg(pl.col("len").sum()))
    cache.drop(ingested)  # the features read the silver lines only
    return _Validated(lines, silver_lines, quarantine_uri, report, by_file)


def _features(validated: _Validated, plan: HoldoutPlan, lake: Lake, run_id: str, record: RawRecord,
              settings: Settings, chunk_lines: int) -> _Featured:
    """The featurizer fitted on the driver, the gold table featurized in tasks and written, the featurizer and the
    lineage written."""
    split = split_weeks(_scan(validated.silver_lines), plan.holdout_weeks)
    featurizer = BasketFeaturizer(seed=settings.seed)
    folds = featurizer.fit_folds(split.train, rows_per_piece(settings.max_memory_gb))
    queries = GoldQueries(split.held, folds.fold, folds.featurize, featurizer.plan)
    check_partition_values(ds.dataset(validated.by_file.select(PARTITIONS).to_arrow()), PARTITIONS)
    gold_schema = queries.baskets(pl.DataFrame(schema=SILVER_WITH_SOURCE).drop(SOURCE_COLUMNS)).schema
    # The silver lines are the basket tasks' output, in their partitions: whole baskets, each run of them in the order
    # given (by key, file and line; `check_baskets` keeps it), so they are featurized where they are, no new shuffle.
    gold = _map(validated.lines, _gold_task, gold_schema, queries=queries, chunk_lines=chunk_lines)
    gold_baskets = _write(gold, lake.uri("gold", run_id, "baskets"), PARTITIONS)
    with tempfile.TemporaryDirectory(prefix="spark-lake-") as scratch:
        featurizer.save(Path(scratch))
        lake.put_folder(Path(scratch), "gold", run_id, "featurizer")
    facts = {**split_facts(split, plan.holdout_weeks), **plan.facts()}
    lineage = lineage_facts(run_id, record, validated.silver_lines, gold_baskets, facts)
    lake.write_json(join("gold", run_id, "lineage.json"), lineage)
    return _Featured(gold_baskets, facts, lineage, gold_counts(_scan(gold_baskets)))


class JobResult(NamedTuple):
    """What `run_job` wrote: the manifest's URI and the manifest (the job's role on AWS may not read manifests/)."""

    manifest_uri: str
    manifest: dict[str, Any]


def run_job(spark: SparkSession, raw: str, lake_root: str, settings: Settings, run_id: str | None = None,
            timer: StageTimer | None = None, found: tuple[list[str], bool] | None = None,
            basket_chunk_lines: int = BASKET_CHUNK_LINES) -> JobResult:
    """The job on a session: writes the run's zones and manifest. `found` is `input_files(raw)` when the caller
    listed the input already; `basket_chunk_lines` about how many lines a task checks or featurizes at a time."""
    timer = timer or StageTimer()
    files, in_folder = found or input_files(raw)
    lake = Lake(lake_root)
    cache = _Cache()
    try:
        with timer.stage("ingest", f"Reading {len(files)} file(s) of {raw} and checking their rows, a task per file"):
            record = put_raw(lake, raw, files)
            run_id = run_id or run_id_for(record.sha256)
            ingested, facts = _ingest(spark, files, in_folder, raw, cache)
        with timer.stage("validate", "Checking baskets, writing the silver lines and the quarantine"):
            validated = _validate(ingested, facts, lake, run_id, cache, basket_chunk_lines)
        plan = holdout_plan(validated.report, _scan(validated.silver_lines), settings, raw, validated.quarantine)
        with timer.stage("features", "Fitting the featurizer on the driver, featurizing baskets in tasks"):
            featured = _features(validated, plan, lake, run_id, record, settings, basket_chunk_lines)
    finally:
        cache.drop()
    variants = sorted({row["_variant"] for row in facts if row["_variant"]})
    notices = [*(row["_notice"] for row in facts if row["_notice"]), *([plan.notice] if plan.notice else [])]
    manifest = lake_manifest(featured.lineage, raw, variants[0] if len(variants) == 1 else "mixed", notices, record,
                             validated.report, validated.quarantine, featured.counts, featured.split)
    manifest["input"]["file_sha256"] = dict(record.file_sha256)
    manifest |= {"engine": "spark", "seconds": timer.seconds}
    return JobResult(lake.write_json(join("manifests", f"{run_id}.json"), manifest), manifest)


def polars_threads(master: str) -> int:
    """The threads each task's Polars may use in a local session, so that the tasks running at once share the
    machine's cores instead of each taking all of them: the cores over the tasks `local[N]` runs (`local` one,
    `local[*]` one per core), at least 1."""
    cores = os.cpu_count() or 1
    slots = re.fullmatch(r"local(?:\[(\d+|\*)(?:,\d+)?\])?", master)
    if slots is None:
        return 1
    tasks = cores if slots.group(1) == "*" else int(slots.group(1) or 1)
    return max(1, cores // tasks)


def session(master: str | None, shuffle_partitions: int = 4, java_options: str = "") -> SparkSession:
    """The job's Spark session: with `master` (local runs), on 127.0.0.1 without a UI and with few shuffle
    partitions, with POLARS_MAX_THREADS from `polars_threads`; without it, as spark-submit configured it. Either way
    the tasks run on this interpreter unless PYSPARK_PYTHON names another. Spark's committer writes `_SUCCESS` into
    each folder it completes: readers take a silver run's lines/_SUCCESS as the sign that the run is whole
    (ml.lake.SPARK_COMMITTED)."""
    builder = SparkSession.builder.appName("retail-lake")
    # The tasks' Python is this one unless told otherwise (EMR: spark.emr-serverless.driverEnv.PYSPARK_PYTHON and
    # spark.executorEnv.PYSPARK_PYTHON); Spark's default, `python3` on PATH, lacks polars outside an activated venv.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if master:
        builder = (builder.master(master)
                   .config("spark.executorEnv.POLARS_MAX_THREADS", str(polars_threads(master)))
                   .config("spark.ui.enabled", "false")
                   .config("spark.ui.showConsoleProgress", "false")
                   .config("spark.driver.host", "127.0.0.1")
                   .config("spark.driver.bindAddress", "127.0.0.1")
                   .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
                   .config("spark.driver.extraJavaOptions", java_options))
    return (builder
            .config("spark.sql.parquet.compression.codec", "zstd")
            .getOrCreate())


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    defaults = Settings()
    parser = argparse.ArgumentParser(prog="python -m ml.spark_lake", description=__doc__.split("\n\n")[0])
    parser.add_argument("--raw", required=True, help="a CSV file or a folder of weekly CSV files (path or s3:// URI)")
    parser.add_argument("--lake", required=True, help="the lake root (path or s3://bucket[/prefix])")
    parser.add_argument("--run-id", help="default: the UTC time and the input's hash prefix (ml.lake.run_id_for)")
    parser.add_argument("--holdout-weeks", type=int, default=defaults.holdout_weeks)
    parser.add_argument("--validation-weeks", type=int, default=defaults.validation_weeks)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--max-memory-gb", type=float, default=defaults.max_memory_gb)
    parser.add_argument("--master", help="Spark master for a local run (e.g. local[2]); absent: spark-submit's")
    return parser.parse_args(argv)


def task_input_error(exc: PythonException) -> str | None:
    """The InputError a task raised (a file it could not read), from the task's traceback."""
    found = TASK_ERROR.findall(str(exc))
    return found[-1] if found else None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the job; prints `manifest=<uri>` last and returns the manifest. Bad input exits 2 naming the problem."""
    args = _arguments(argv)
    settings = Settings(holdout_weeks=args.holdout_weeks, validation_weeks=args.validation_weeks, seed=args.seed,
                        max_memory_gb=args.max_memory_gb, lake_root=args.lake)
    try:
        if split_options(args.lake)[1]:
            raise InputError(f"--lake {args.lake}: the lake job's root takes no options: Spark and Polars read s3:// "
                             "with their own clients, which do not read Arrow's; give s3://bucket[/prefix]")
        found = input_files(args.raw)  # a missing input stops before a session starts
        spark = session(args.master)
        try:
            result = run_job(spark, args.raw, args.lake, settings, args.run_id, found=found)
        finally:
            spark.stop()
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    except PythonException as exc:
        message = task_input_error(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2) from exc
    print(f"manifest={result.manifest_uri}")
    return result.manifest


if __name__ == "__main__":
    # Through the module's own name, so that Spark pickles the tasks' functions as references to ml.spark_lake
    # (importable on the executors), not by value from `__main__`.
    from ml import spark_lake

    spark_lake.main()
