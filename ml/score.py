"""Batch scoring of whole weeks: transactions in, one prediction per basket out (`retail score`).

Inputs, each at a local path or an s3:// URI (read through `ml.lake.filesystem`):
* transactions: a CSV (.csv or .csv.gz) or a folder of weekly `transactions_YYYYWW.csv`
  files, read and validated exactly as the pipeline reads its input (`ml.ingest`,
  `ml.validate`): a bad line or row goes to the quarantine and the run goes on;
* a silver run of the lake (`silver/<run>/`, its lines in `lines/`: the pipeline's
  `part-0.parquet`, or the Spark job's part files): lines validated already, scored as they are.

Memory stays bounded by the largest chunk, not by the input:
1. load: each file is read in pieces of at most `PIECE_BYTES` of whole lines; each piece,
   with the file's header line in front, goes through `ml.ingest.read` (its rows get
   back their file name and line number), and its rows are spilled to local scratch,
   one folder per SHOP_WEEK value as written. A silver run is read a batch at a time
   and spilled the same way.
2. score: the weeks are taken in order, in chunks of at most `chunk_lines` lines (a
   bigger week is a chunk of its own). A chunk is validated, scored with the bundle's
   `predict_proba`, and its predictions written before the next chunk is read.

A basket never spans two chunks: a BASKET_ID found under two SHOP_WEEK values (which
validation would quarantine as an inconsistent basket) is taken out of its weeks and
validated as one more chunk at the end, so the quarantine is the pipeline's.

Labels are not needed to score: a row without BASKET_PRICE_SENSITIVITY is validated as
XX (unclassified) and counted in `lines_without_label`; in the quarantine its label is
blank again. (`ml.validate` requires the label, `ml.ingest` the column.)

Written to the lake:
  predictions/<run>/baskets/week=YYYYWW/part-NNNN.parquet   one row per basket scored
  predictions/<run>/quarantine/part-NNNN.parquet            rejected lines and rows, as in silver
  predictions/<run>/manifest.json                           input, model, counts, seconds (written last)
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import posixpath
import shutil
import time
import uuid
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Generator, Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ml import ingest
from ml.ingest import (
    SOURCE_FILE,
    SOURCE_LINE,
    WEEKLY_FILE,
    EmptyFile,
    InputError,
    InputUnavailable,
    RawInput,
    storage_failed,
)
from ml.lake import (
    LINES_WRITTEN,
    SILVER_LINES,
    SILVER_LINES_FOLDER,
    SPARK_COMMITTED,
    Lake,
    arrow_frame,
    file_name,
    file_names,
    filesystem,
    join,
    join_uri,
    path_info,
    silver_line_files,
    silver_runs,
    split_options,
)
from ml.lineage import git_commit
from ml.prediction_log import BATCH, BATCH_BASKETS, CHAMPION, prediction_rows, week_folder, write_whole
from ml.progress import StageTimer
from ml.schema import BASKET_KEY, CANONICAL_COLUMNS, LABEL, UNCLASSIFIED
from ml.settings import Settings
from ml.validate import INTEGER_TEXT, ValidationReport, ValidationResult, validate

if TYPE_CHECKING:  # the bundle (and the model libraries it loads) is the caller's
    from ml.bundle import ModelBundle

# Measured with bench/score.py on the full-size file (2.7M lines, 117 weeks, 2 cores): 16 MiB pieces load as
# fast as 64 MiB ones with half the peak memory (0.64 GB, 1.2 GB); chunks of 400k lines (~17 weeks) score as
# fast as 1M-line ones (one week at a time is ~2x slower: per-call costs of features and model).
PIECE_BYTES = 16 * 1024 * 1024  # bytes of whole lines handed to ingestion at a time (see `_pieces`)
CHUNK_LINES = 400_000  # lines validated and scored at a time, whole weeks
SILVER_BATCH_ROWS = 256 * 1024
WEEK = "SHOP_WEEK"
LATEST = "latest"
"""`silver/latest/`: the newest pipeline run's silver lines (see `input_at`)."""
OLD_SILVER_LINES = "lines.parquet"
"""Where a silver run's lines were before each table had a folder of its own (`ml.lake`)."""
RAW_SCHEMA = {**{c: pl.String for c in CANONICAL_COLUMNS}, SOURCE_FILE: pl.String, SOURCE_LINE: pl.Int64}

READ_ERRORS = (OSError, EOFError, zlib.error, pa.ArrowException)
"""What reading an input can raise besides our own InputError, sorted by `unreadable`."""


def unreadable(where: str, error: Exception) -> InputError | InputUnavailable:
    """What reading `where` failed with, as the command reports it: InputUnavailable (exit 1, which the Jobs retry)
    when the storage failed (`ml.ingest.storage_failed`), else InputError (exit 2, not retried): an error of what was
    read, which a retry would read the same."""
    if storage_failed(error):
        return InputUnavailable(f"{where}: could not be read ({error}); nothing says the input is wrong: try again")
    return InputError(f"{where}: unreadable ({error})")


_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


@dataclass(frozen=True)
class ScoringModel:
    """A loaded bundle and where it came from."""

    bundle: ModelBundle
    version: str  # the registry's version number, or sha256:<12 hex> for a bundle location
    sha256: str  # the bundle manifest's SHA-256
    source: str  # models:/<name>@champion, models:/<name>/<version>, or the bundle URI

    @property
    def family(self) -> str:
        family: str = self.bundle.meta["family"]  # the family name `ml.bundle.save_bundle` wrote
        return family


@dataclass(frozen=True)
class ScoringInput:
    """What to score: transactions (file or weekly folder) or a silver run's lines."""

    location: str  # local path or s3:// URI
    silver: bool = False


def input_at(location: str) -> ScoringInput:
    """The input at a location: silver lines when it is a .parquet file or a silver/<run>/ folder (holding
    lines/part-0.parquet, or a Spark job's committed lines/), otherwise transactions (a CSV or a folder of weekly
    files). A `silver/latest/` location that holds no lines is the newest run under `silver/` (`LATEST`). A run
    folder in the layout before lines/ (its lines in lines.parquet) is refused with what to move; its lines.parquet
    is read as any .parquet file is."""
    if file_name(location).endswith(".parquet"):
        return ScoringInput(location, silver=True)
    try:
        fs, path = filesystem(location)
        if path.rstrip("/").rsplit("/", 1)[-1] == LATEST:
            return ScoringInput(_newest_run(location, fs, path.rstrip("/").rsplit("/", 1)[0]), silver=True)
        # Listed, not looked up key by key: on S3 a request for a key that may not exist is answered 403 to a role
        # that may list only under given prefixes (`ml.lake.path_info`).
        lines = file_names(fs, join(path, SILVER_LINES_FOLDER))
        silver = any(marker.rpartition("/")[2] in lines for marker in LINES_WRITTEN)
        if not silver and OLD_SILVER_LINES in file_names(fs, path):
            raise InputError(f"{location}: a silver run in the layout before lines/ ({OLD_SILVER_LINES}); move it to "
                             f"{SILVER_LINES} (docs/lifecycle.md), or give --input the file itself")
    except READ_ERRORS as exc:
        raise unreadable(location, exc) from exc
    return ScoringInput(location, silver=silver)


def _newest_run(location: str, fs: pafs.FileSystem, runs: str) -> str:
    """The newest pipeline run under the folder `runs` that holds lines (`ml.lake.silver_runs`); the scheduled job
    reads `silver/latest/` so that it needs no run id."""
    with_lines = silver_runs(fs, runs)
    if not with_lines:
        raise InputError(f"{location}: no pipeline run under {runs} holds {SILVER_LINES} or {SPARK_COMMITTED} yet")
    latest, options = split_options(location)
    return join(posixpath.dirname(latest.rstrip("/")), with_lines[-1]) + options  # "latest" alone: the run's name


def silver_run(run_id: str, lake_root: str) -> ScoringInput:
    """The silver lines of a pipeline run, by its id, in the lake at `lake_root`."""
    return ScoringInput(Lake(lake_root).uri("silver", run_id), silver=True)


@dataclass
class ScoringResult:
    run_id: str
    manifest_uri: str
    predictions_uri: str
    quarantine_uri: str | None
    counts: dict[str, Any]
    seconds: dict[str, float]
    notices: list[str] = field(default_factory=list)


# ---- spilling rows to local disk, one folder per week ------------------------------------------------------------
class WeekSpill:
    """Rows on local disk, one folder per SHOP_WEEK value, read back a few weeks at a time."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.rows: dict[Any, int] = {}  # week value (text for transactions, int for silver) -> rows
        self._folders: dict[Any, Path] = {}
        self._pieces = 0

    def add(self, frame: pl.DataFrame) -> None:
        piece = self._pieces
        self._pieces += 1
        for (week,), rows in frame.partition_by(WEEK, as_dict=True, maintain_order=True).items():
            folder = self._folders.setdefault(week, self.folder / str(len(self._folders)))
            folder.mkdir(parents=True, exist_ok=True)
            rows.write_ipc(folder / f"{piece}.arrow", compression="lz4")
            self.rows[week] = self.rows.get(week, 0) + rows.height

    def weeks(self) -> list[Any]:
        """Week values in order: numbers first, then anything else a file held (left to validation)."""
        def order(week: Any) -> tuple[int, int, str]:
            text = "" if week is None else str(week)
            return (0, int(text), "") if text.isdigit() else (1, 0, text)

        return sorted(self.rows, key=order)

    def read(self, weeks: list[Any]) -> pl.DataFrame:
        """The rows of `weeks`, in order of week, then of piece. One scan over the files decompresses them on all
        cores: 0.6 s for the full-size file's 139 files against 1.0 s read one by one (lz4 kept: uncompressed, it
        reads back in 0.4 s, but the spill takes 1.1 GB of scratch rather than 0.12 GB)."""
        files = [f for w in weeks for f in sorted(self._folders[w].glob("*.arrow"), key=lambda p: int(p.stem))]
        return pl.scan_ipc(files, memory_map=False).collect()


def plan_chunks(weeks: list[Any], rows: dict[Any, int], chunk_lines: int) -> list[list[Any]]:
    """Consecutive weeks in chunks of at most `chunk_lines` rows (a bigger week alone)."""
    chunks: list[list[Any]] = []
    size = 0
    for week in weeks:
        if not chunks or size + rows[week] > chunk_lines:
            chunks.append([])
            size = 0
        chunks[-1].append(week)
        size += rows[week]
    return chunks


# ---- loading -----------------------------------------------------------------------------------------------------
@dataclass
class Loaded:
    """The input, read and spilled by week, with what ingestion found on the way."""

    input: ScoringInput
    spill: WeekSpill
    files: dict[str, dict[str, Any]]  # file -> {"bytes", "sha256", "rows_read"}
    variant: str | None = None
    rejected: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=ingest.REJECTED_SCHEMA))
    # Intact BASKET_IDs found under more than one SHOP_WEEK value, and those week values (a damaged id's
    # key is rebuilt from its basket-level columns, the week among them, so it never spans weeks)
    split_baskets: pl.Series = field(default_factory=lambda: pl.Series("BASKET_ID", [], pl.String))
    split_weeks: list[Any] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)


class _HashingReader:
    """A binary stream that counts and hashes the bytes read through it."""

    def __init__(self, stream: ingest.Readable):
        self.stream = stream
        self.digest = hashlib.sha256()
        self.bytes = 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.digest.update(data)
        self.bytes += len(data)
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        """Not seekable: GzipFile (whose readable file must have `seek`) seeks only to rewind, which `_pieces`
        never does."""
        raise io.UnsupportedOperation("seek")


def transaction_files(location: str) -> tuple[pafs.FileSystem, list[tuple[str, str]]]:
    """The files of a transactions input as (name shown to users, filesystem path). On S3 found by listing
    (`ml.lake.path_info`): the roles that read inputs may list only under the lake's zones."""
    try:
        fs, path = filesystem(location)
        kind, found = path_info(fs, path)
        if kind == pafs.FileType.NotFound:
            raise InputError(f"{location}: no such file or folder")
        if kind == pafs.FileType.File:
            return fs, [(location, path)]
    except READ_ERRORS as exc:
        raise unreadable(location, exc) from exc
    weekly = sorted((i for i in found if i.type == pafs.FileType.File and WEEKLY_FILE.match(i.base_name)),
                    key=lambda i: i.base_name)
    if not weekly:
        raise InputError(f"{location}: folder holds no weekly files named transactions_YYYYWW.csv")
    return fs, [(join_uri(location, i.base_name), i.path) for i in weekly]


def _ingest_piece(piece: bytes, scratch: Path, name: str, lines_before: int) -> tuple[RawInput, pl.DataFrame]:
    """`ml.ingest.read` on one piece; rows, set-aside lines and errors name the file and line they came from."""
    path = scratch / "piece.csv"
    path.write_bytes(piece)
    try:
        raw_input, raw = ingest.read(path)
    except InputError as exc:
        raise type(exc)(str(exc).replace(str(path), name)) from exc
    finally:
        path.unlink(missing_ok=True)
    origin = [pl.lit(name).alias(SOURCE_FILE), pl.col(SOURCE_LINE) + lines_before]
    return RawInput(files=(), variant=raw_input.variant, rows_read={name: raw_input.rows_read[str(path)]},
                    rejected=raw_input.rejected.with_columns(origin)), raw.with_columns(origin)


def _load_transactions(loaded: Loaded, scratch: Path, piece_bytes: int) -> None:
    location = loaded.input.location
    fs, files = transaction_files(location)
    is_folder = not (len(files) == 1 and files[0][0] == location)
    variants: set[str] = set()
    rejected: list[pl.DataFrame] = []
    pairs: list[pl.DataFrame] = []
    for name, path in files:
        rows_read = 0
        try:
            with fs.open_input_stream(path, compression=None) as stream:
                hashing = _HashingReader(stream)
                gzipped = file_name(name).endswith(".gz")
                text: ingest.Readable = gzip.GzipFile(fileobj=hashing, mode="rb") if gzipped else hashing
                # piece_bytes must be at most ingest.SCAN_CHUNK or a multiple of it: ingestion's scan fails on a file
                # whose last line straddles a multiple of SCAN_CHUNK from its first data line (an IndexError), and a
                # piece cut at its last line ending within such a size never ends that way.
                for piece, lines_before in ingest.pieces(text, piece_bytes):
                    raw_input, raw = _ingest_piece(piece, scratch, name, lines_before)
                    del piece
                    rows_read += raw_input.rows_read[name]
                    variants.add(raw_input.variant)
                    rejected.append(raw_input.rejected)
                    pairs.append(raw.select("BASKET_ID", WEEK).unique())
                    loaded.spill.add(raw)
        except EmptyFile as exc:
            if not is_folder:
                raise
            loaded.notices.append(f"{exc}: read as 0 rows")
        except READ_ERRORS as exc:
            raise unreadable(name, exc) from exc
        loaded.files[name] = {"bytes": hashing.bytes, "sha256": hashing.digest.hexdigest(), "rows_read": rows_read}
    if not loaded.spill.rows and not any(len(r) for r in rejected):
        raise InputError(f"{location}: every weekly file is empty ({len(files)} found)")
    loaded.variant = variants.pop() if len(variants) == 1 else ("mixed" if variants else None)
    loaded.rejected = pl.concat([loaded.rejected, *rejected])
    if pairs:
        intact = pl.concat(pairs).unique().filter(pl.col("BASKET_ID").str.contains(INTEGER_TEXT))
        split = intact.filter(pl.len().over("BASKET_ID") > 1)
        loaded.split_baskets = split["BASKET_ID"].unique()
        loaded.split_weeks = split[WEEK].unique().to_list()


def _load_silver(loaded: Loaded) -> None:
    """Spill a silver input a batch at a time: a .parquet file, or a run folder's lines (`ml.lake.silver_line_files`:
    the pipeline's one file or a Spark job's part files, read in name order)."""
    location = loaded.input.location
    try:
        fs, path = filesystem(location)
        path = path.rstrip("/")
        if file_name(location).endswith(".parquet"):
            files = [path] if path_info(fs, path)[0] == pafs.FileType.File else []
        else:
            path, location = join(path, SILVER_LINES_FOLDER), join_uri(location, SILVER_LINES_FOLDER)
            files = silver_line_files(fs, path)
        if not files:
            raise InputError(f"{location}: no such file (silver lines are silver/<run>/{SILVER_LINES}, or a Spark "
                             f"job's part files in silver/<run>/{SILVER_LINES_FOLDER}/)")
        size = 0
        for file in files:
            with fs.open_input_file(file) as handle:
                lines = pq.ParquetFile(handle)
                if WEEK not in lines.schema_arrow.names or BASKET_KEY not in lines.schema_arrow.names:
                    raise InputError(f"{location}: not silver lines (no {WEEK} or {BASKET_KEY} column)")
                for batch in lines.iter_batches(batch_size=SILVER_BATCH_ROWS):
                    loaded.spill.add(arrow_frame(pa.Table.from_batches([batch])))
                size += handle.size()  # known since the file was opened: no second request for it
    except READ_ERRORS as exc:
        raise unreadable(location, exc) from exc
    loaded.files[location] = {"bytes": size, "rows_read": sum(loaded.spill.rows.values())}


def load(source: ScoringInput, scratch: Path, piece_bytes: int = PIECE_BYTES) -> Loaded:
    """Read the input into a week-by-week spill under `scratch` (raises InputError naming what is wrong)."""
    loaded = Loaded(input=source, spill=WeekSpill(scratch / "weeks"), files={})
    scratch.mkdir(parents=True, exist_ok=True)
    if source.silver:
        _load_silver(loaded)
    else:
        _load_transactions(loaded, scratch, piece_bytes)
    return loaded


# ---- validating and scoring a chunk ------------------------------------------------------------------------------
def _missing_label() -> pl.Expr:
    return pl.col(LABEL).is_null() | (pl.col(LABEL) == "")


def validate_unlabelled(raw: pl.DataFrame) -> tuple[ValidationResult, int]:
    """`ml.validate.validate` for rows that may lack a label: those are validated as XX (unclassified).

    Returns the validation result, with the quarantine's label (and value, where the label was the
    reason) blank again for those rows, and how many rows had no label.
    """
    unlabelled = raw.filter(_missing_label()).select(SOURCE_FILE, SOURCE_LINE, pl.lit(True).alias("_unlabelled"))
    if unlabelled.height:
        raw = raw.with_columns(pl.when(_missing_label()).then(pl.lit(UNCLASSIFIED)).otherwise(pl.col(LABEL))
                               .alias(LABEL))
    result = validate(raw)
    if unlabelled.height and result.quarantine.height:
        restored = pl.col("_unlabelled").fill_null(False)
        result.quarantine = (
            result.quarantine.join(unlabelled, on=[SOURCE_FILE, SOURCE_LINE], how="left", maintain_order="left")
            .with_columns(
                pl.when(restored).then(None).otherwise(pl.col(LABEL)).alias(LABEL),
                pl.when(restored & (pl.col("column") == LABEL)).then(None).otherwise(pl.col("value")).alias("value"),
            )
            .drop("_unlabelled")
        )
    return result, unlabelled.height


def predictions_frame(model: ScoringModel, lines: pl.DataFrame) -> pl.DataFrame:
    """One row per basket in the prediction log's schema (`ml.prediction_log`): key, week, predicted class, each
    class's probability, the model's identity, source `batch`, role `champion` (a run's one model scores every
    basket) and the time it was scored."""
    features, probabilities = model.bundle.predict_proba(lines)
    identity = {"model_version": model.version, "model_family": model.family, "bundle_sha256": model.sha256}
    return prediction_rows(features[BASKET_KEY], features[WEEK], probabilities, model.bundle.classes, identity,
                           BATCH, CHAMPION, dt.datetime.now(dt.UTC))


@dataclass
class _Tally:
    """Counts over all chunks; `files` as in ValidationReport.files."""

    files: dict[str, Counter[str]] = field(default_factory=dict)
    by_rule: Counter[str] = field(default_factory=Counter)
    baskets_by_week: Counter[int] = field(default_factory=Counter)
    lines_without_label: int = 0
    rebuilt_basket_ids: int = 0
    rows_with_damaged_id: int = 0
    warnings: list[str] = field(default_factory=list)  # validate's, chunk by chunk
    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))  # summed over chunks

    def add_report(self, report: ValidationReport) -> None:
        if not report.counts_add_up:  # a bug, never bad input: fail rather than lose rows
            raise RuntimeError(f"row counts do not add up: {report}")
        for name, counts in report.files.items():
            self.files.setdefault(name, Counter()).update(counts)
        self.by_rule.update(report.quarantined_by_rule)
        self.rebuilt_basket_ids += report.rebuilt_basket_ids
        self.rows_with_damaged_id += report.rows_with_damaged_id
        self.warnings += report.warnings


class RunOutput:
    """Files under predictions/<run>/ of the lake, each opened straight through the lake's filesystem.

    On S3 no directory marker is written and the bucket is not checked (what `Lake.write_parquet` does through
    `create_dir`): the batch-scoring role may only PutObject under predictions/. Local folders are made first.
    Parquet files are written whole or not at all (`ml.prediction_log.write_whole`), so a monitor reading the
    week while the run writes never opens half a file. They are not synced to disk one by one (about 6 ms a file,
    a second over a full run's files): a run is complete once its manifest is written, and one cut short by a
    crash is scored again.
    """

    def __init__(self, lake: Lake, run_id: str):
        self.lake, self.parts = lake, ("predictions", run_id)

    def uri(self, *parts: str) -> str:
        return self.lake.uri(*self.parts, *parts)

    def parquet(self, frame: pl.DataFrame, *parts: str) -> str:
        write_whole(self.lake.fs, join(self.lake.base, *self.parts, *parts), frame.to_arrow(), sync=False)
        return self.uri(*parts)

    def json(self, payload: dict[str, Any], *parts: str) -> str:
        return self.lake.write_json(join(*self.parts, *parts), payload)


@dataclass
class _Checked:
    """A chunk's rows through validation (`_Scorer.check`): what scoring it needs, made without touching the
    scorer's state, so that it can be made on another thread while the chunk before it is scored."""

    lines: pl.DataFrame  # the rows to score
    read: int  # rows read
    result: ValidationResult | None  # None: silver rows, validated already
    unlabelled: int
    seconds: dict[str, float]


class _Scorer:
    """Validates, scores and writes one chunk at a time into predictions/<run>/: `check` validates a chunk (and may
    run on another thread), `take` counts it, writes its quarantine and predictions (in the order chunks come)."""

    def __init__(self, model: ScoringModel, output: RunOutput, validated: bool):
        self.model, self.output, self.validated = model, output, validated
        self.tally = _Tally()
        self.chunks = 0
        self.quarantine_parts = 0

    def chunk(self, rows: pl.DataFrame, source_file: str | None = None) -> None:
        self.take(self.check(rows), source_file)

    def check(self, rows: pl.DataFrame, seconds: dict[str, float] | None = None) -> _Checked:
        """`rows` validated (unless they are silver lines); `seconds` are times spent on them already."""
        started = time.perf_counter()
        result, unlabelled = (None, 0) if self.validated else validate_unlabelled(rows)
        return _Checked(lines=rows if result is None else result.lines, read=rows.height, result=result,
                        unlabelled=unlabelled,
                        seconds={**(seconds or {}), "validate": time.perf_counter() - started})

    def take(self, checked: _Checked, source_file: str | None = None) -> None:
        index = self.chunks
        self.chunks += 1
        for stage, spent in checked.seconds.items():
            self.tally.seconds[stage] += spent
        if checked.result is None:
            # Rows that skip validation are silver lines, which `_score_weeks` passes with the input's one file.
            self.tally.files.setdefault(cast(str, source_file), Counter()).update(
                read=checked.read, accepted=checked.read, quarantined=0)
        else:
            self.tally.add_report(checked.result.report)
            self.tally.lines_without_label += checked.unlabelled
            self._quarantine(checked.result.quarantine, index)
        lines = checked.lines
        if lines.height:
            started = time.perf_counter()
            predictions = predictions_frame(self.model, lines)
            self.tally.seconds["predict"] += time.perf_counter() - started
            started = time.perf_counter()
            self._write(predictions, index)
            self.tally.seconds["write"] += time.perf_counter() - started

    def rejected_lines(self, loaded: Loaded) -> None:
        """The lines ingestion set aside, quarantined by validate as the pipeline does."""
        rejected = loaded.rejected
        if rejected.height:
            rows_read = dict(rejected.group_by(SOURCE_FILE).len().iter_rows())
            empty = pl.DataFrame(schema=RAW_SCHEMA)
            result = validate(empty, RawInput(files=(), variant=loaded.variant or "", rows_read=rows_read,
                                              rejected=rejected))
            self.tally.add_report(result.report)
            self._quarantine(result.quarantine, self.chunks)
            self.chunks += 1

    def _write(self, predictions: pl.DataFrame, index: int) -> None:
        for (week,), part in predictions.partition_by(WEEK, as_dict=True).items():
            self.output.parquet(part, BATCH_BASKETS, week_folder(week), f"part-{index:04d}.parquet")
            self.tally.baskets_by_week[int(week)] += part.height

    def _quarantine(self, quarantine: pl.DataFrame, index: int) -> None:
        if quarantine.height:
            self.output.parquet(quarantine, "quarantine", f"part-{index:04d}.parquet")
            self.quarantine_parts += 1


# ---- the run -----------------------------------------------------------------------------------------------------
def run_id_now() -> str:
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def score(
    source: ScoringInput,
    model: ScoringModel,
    settings: Settings,
    timer: StageTimer | None = None,
    chunk_lines: int = CHUNK_LINES,
    piece_bytes: int = PIECE_BYTES,
    run_id: str | None = None,
) -> ScoringResult:
    """Score every basket of the input, week by week, into the lake's predictions zone."""
    timer = timer or StageTimer(quiet=True)
    run_id = run_id or run_id_now()
    output = RunOutput(Lake(settings.lake_root), run_id)
    scratch = settings.work_dir / "score" / run_id
    started = time.perf_counter()
    try:
        with timer.stage("load", f"Reading {source.location} into weekly chunks"):
            loaded = load(source, scratch, piece_bytes)
        scorer = _Scorer(model, output, validated=source.silver)
        _score_weeks(loaded, scorer, chunk_lines, timer)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    tally = scorer.tally
    seconds = {"load": timer.seconds["load"], **{k: round(v, 2) for k, v in tally.seconds.items()},
               "total": round(time.perf_counter() - started, 2)}
    counts = _counts(loaded, tally)
    predictions_uri = output.uri(BATCH_BASKETS)
    quarantine_uri = output.uri("quarantine") if scorer.quarantine_parts else None
    notices = list(loaded.notices)
    if tally.rows_with_damaged_id:
        notices.append(f"{tally.rows_with_damaged_id} rows carry a damaged BASKET_ID: {tally.rebuilt_basket_ids} "
                       "basket keys were rebuilt from the basket-level columns (validation_warnings in the manifest)")
    if len(loaded.split_baskets):
        notices.append(f"{len(loaded.split_baskets)} BASKET_ID(s) appear under more than one SHOP_WEEK: "
                       "validated together in one last chunk")
    manifest = {
        "run_id": run_id,
        "created": dt.datetime.now(dt.UTC).isoformat(),
        "input": {"location": source.location, "kind": "silver" if source.silver else "transactions",
                  "variant": loaded.variant, "files": loaded.files},
        "model": {"source": model.source, "version": model.version, "family": model.family,
                  "bundle_sha256": model.sha256, "classes": list(model.bundle.classes)},
        "outputs": {"predictions": predictions_uri, "quarantine": quarantine_uri, "partitioning": "week=YYYYWW"},
        "counts": counts,
        "chunk_lines": chunk_lines,
        "notices": notices,
        "validation_warnings": tally.warnings,
        "git_commit": git_commit(),
        "seconds": seconds,
    }
    manifest_uri = output.json(manifest, "manifest.json")
    return ScoringResult(run_id, manifest_uri, predictions_uri, quarantine_uri, counts, seconds, notices)


def _score_weeks(loaded: Loaded, scorer: _Scorer, chunk_lines: int, timer: StageTimer) -> None:
    """The weeks chunk by chunk, in order; a chunk is read back and validated on a second thread while the one
    before it is scored and written (see `_ahead`)."""
    spill, split = loaded.spill, loaded.split_baskets
    weeks = spill.weeks()
    source_file = next(iter(loaded.files)) if loaded.input.silver else None
    in_split_basket = pl.col("BASKET_ID").is_in(split.implode())

    def read_and_check(chunk: list[Any]) -> _Checked:
        started = time.perf_counter()
        rows = spill.read(chunk)
        read = time.perf_counter() - started
        return scorer.check(rows.filter(~in_split_basket) if len(split) else rows, {"read": read})

    checked_chunks = _ahead(read_and_check, plan_chunks(weeks, spill.rows, chunk_lines), scorer.tally.seconds)
    with closing(checked_chunks), _week_progress(timer, len(weeks)) as advance:
        for chunk, checked in checked_chunks:
            scorer.take(checked, source_file)
            advance(len(chunk))
            del checked  # before the chunk after the next one is read (see `_ahead`)
    if len(split):  # baskets under several week values: all their rows in one chunk, gathered a chunk at a time
        in_split = set(loaded.split_weeks)
        split_weeks = [w for w in weeks if w in in_split]
        parts = [spill.read(c).filter(in_split_basket) for c in plan_chunks(split_weeks, spill.rows, chunk_lines)]
        scorer.chunk(pl.concat(parts))
    scorer.rejected_lines(loaded)


def _ahead(
    function: Callable[[_Item], _Result], items: list[_Item], seconds: MutableMapping[str, float]
) -> Generator[tuple[_Item, _Result], None, None]:
    """(item, `function(item)`) for each item, in order, each result made on a second thread while the caller
    uses the one before it. One result is made ahead at most: the next is started once the caller asks for the
    one after what it holds (so when the caller drops what it holds first, two chunks at most are in memory).
    An error raised by `function` is raised here; closing the generator waits for a result being made (the
    caller may then remove what it reads). The time the caller waits for a result is added to seconds["wait"].

    Reading back and validating (Polars, which releases the GIL) overlap features, model and writing (NumPy,
    XGBoost and Arrow) on the 2 cores bench/score.py measures on."""
    remaining = iter(items)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="score-ahead") as pool:
        pending = [(item, pool.submit(function, item)) for item in islice(remaining, 1)]
        try:
            while pending:
                item, future = pending.pop()
                started = time.perf_counter()
                done = future.result()
                seconds["wait"] = seconds.get("wait", 0.0) + (time.perf_counter() - started)
                pending = [(following, pool.submit(function, following)) for following in islice(remaining, 1)]
                yield item, done
        finally:
            for _, future in pending:
                future.cancel()


@contextmanager
def _week_progress(timer: StageTimer, weeks: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar over weeks, nothing when the timer is quiet; yields `advance(weeks done)`."""
    if timer.quiet:
        yield lambda done: None
        return
    columns = (TextColumn("[bold]Scoring weeks"), BarColumn(bar_width=None), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=timer.console, transient=True) as progress:
        task = progress.add_task("weeks", total=weeks)
        yield lambda done: progress.advance(task, done)


def _counts(loaded: Loaded, tally: _Tally) -> dict[str, Any]:
    """Lines read, accepted and quarantined (in all and per file), baskets scored per week."""
    files = {name: {"read": 0, "accepted": 0, "quarantined": 0} for name in loaded.files}
    for name, counts in tally.files.items():
        files[name] = {k: int(counts[k]) for k in ("read", "accepted", "quarantined")}
    for name, info in loaded.files.items():  # every line ingestion read is accounted for, once
        if files[name]["read"] != info["rows_read"]:
            raise RuntimeError(f"{name}: {info['rows_read']} lines read but {files[name]['read']} validated")
    read, accepted, quarantined = (sum(f[k] for f in files.values()) for k in ("read", "accepted", "quarantined"))
    return {
        "lines_read": read,
        "lines_accepted": accepted,
        "lines_quarantined": quarantined,
        "quarantined_by_rule": dict(tally.by_rule.most_common()),
        "lines_without_label": tally.lines_without_label,
        "rebuilt_basket_ids": tally.rebuilt_basket_ids,
        "baskets_scored": sum(tally.baskets_by_week.values()),
        "weeks": len(tally.baskets_by_week),
        "baskets_by_week": {str(w): n for w, n in sorted(tally.baskets_by_week.items())},
        "files": files,
    }
