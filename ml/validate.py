"""Row and basket validation with a quarantine, and the typed (silver) lines.

Rules are named Polars expressions, checked in the order below; a row that fails
goes to the quarantine with the first rule it failed, the column and the value.
Then every basket-level column must be constant within a basket: the rows of a
basket that is not are quarantined together (which row is wrong cannot be told).
Lines that ingestion could not make a row of (`ml.ingest.LINE_RULES`: invalid UTF-8,
blank, a repeated header, unbalanced quotes, text after a closing quote, a stray carriage
return, too many or too few fields) join the
quarantine with their rule, what is wrong in `value`, no column, and their raw bytes
in `_RAW_LINE` (null for the other rules, whose row is in the canonical columns).
Nothing is dropped: `rows_in == rows_accepted + rows_quarantined`, in total and for
every file (`files`), and the per-rule counts add up to `rows_quarantined`.

Polars expressions are used instead of a schema library because each rule must
name itself in the quarantine and run over millions of rows in a second or two;
the rule table below is the schema.

Validation runs in two steps, so that an input of any size can be validated in bounded
memory: `check_rows` applies the row rules to one piece of rows (and takes the lines set
aside in it); `_finish` then finds the inconsistent baskets over all the checked rows
(`check_baskets`, which the distributed job runs on a partition of whole baskets at a time) and
plans the silver lines, the quarantine and the counts as lazy queries. `validate` does
both in memory on one frame. `StagedRows` checks the pieces of `ml.ingest.InputReader`
one at a time and stages them as Parquet; `validate_staged` runs the same queries with
Polars' streaming engine over the staged pieces and writes the silver lines and the
quarantine as Parquet without holding them: what it holds is one group per basket (for
the basket check and the counts). The quarantine is never sorted as a whole (a sort would
hold it): it holds the rows that failed a row rule and the lines set aside, by file and
line (each piece's are sorted as it is checked, and the pieces come in that order), then
the rows of inconsistent baskets, by file and line (in the order read).
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import polars as pl

from ml.calendar import week_code_expr, weekday_expr
from ml.ingest import RAW_LINE, REJECTED_SCHEMA, SOURCE_FILE, SOURCE_LINE, RawInput
from ml.schema import (
    BASKET_COLUMNS,
    BASKET_KEY,
    CANONICAL_COLUMNS,
    CODE_PATTERNS,
    DOMAINS,
    FLOAT_COLUMNS,
    INTEGER_COLUMNS,
    LABEL,
    MAX_QUANTITY,
    MAX_SPEND,
    REQUIRED_COLUMNS,
    UNCLASSIFIED,
)

INTEGER_TEXT = r"^\d+$"
# What a spreadsheet makes of a long id: 9.94E+14, 9.94100100398294e14, 994100100398294.0
DAMAGED_ID_TEXT = r"^\d+(\.\d*)?([eE]\+?\d+)?$"
QUARANTINE_SCHEMA = {
    **{c: pl.String for c in CANONICAL_COLUMNS},
    SOURCE_FILE: pl.String, SOURCE_LINE: pl.Int64, "rule": pl.String, "column": pl.String, "value": pl.String,
    RAW_LINE: pl.Binary,
}
Engine = Literal["auto", "streaming"]
QUARANTINE_ROW_GROUP = 32_768
"""Rows per Parquet row group of the quarantine `validate_staged` writes (what its sink holds at most)."""


@dataclass(frozen=True)
class Rule:
    """A named check on one column: `fails` is true for a row that breaks it."""

    name: str
    column: str
    fails: pl.Expr


@dataclass
class ValidationReport:
    rows_in: int
    rows_accepted: int
    rows_quarantined: int
    quarantined_by_rule: dict[str, int]
    baskets_accepted: int
    unclassified_baskets: int
    unclassified_rows: int
    rebuilt_basket_ids: int = 0
    rows_with_damaged_id: int = 0
    warnings: list[str] = field(default_factory=list)
    # Per source file: {"read": lines after the header, "accepted": ..., "quarantined": ...}
    files: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def counts_add_up(self) -> bool:
        files = self.files.values()
        return (
            self.rows_in == self.rows_accepted + self.rows_quarantined
            and sum(self.quarantined_by_rule.values()) == self.rows_quarantined
            and all(f["read"] == f["accepted"] + f["quarantined"] for f in files)
            and sum(f["read"] for f in files) == self.rows_in
            and sum(f["accepted"] for f in files) == self.rows_accepted
            and sum(f["quarantined"] for f in files) == self.rows_quarantined
        )


@dataclass
class ValidationResult:
    lines: pl.DataFrame  # typed, validated rows with BASKET_KEY
    quarantine: pl.DataFrame  # raw text of failed rows (or raw bytes of failed lines) with rule, column, value, source
    report: ValidationReport


def _text(column: str) -> pl.Expr:
    """A raw column as received (values are compared untrimmed: " 8" is not an hour)."""
    return pl.col(column)


def _typed_columns() -> list[pl.Expr]:
    ints = [_text(c).cast(pl.Int64, strict=False).alias(f"_{c}") for c in INTEGER_COLUMNS]
    floats = [_text(c).cast(pl.Float64, strict=False).alias(f"_{c}") for c in FLOAT_COLUMNS]
    date = _text("SHOP_DATE").str.strptime(pl.Date, "%Y%m%d", strict=False).alias("_DATE")
    return [*ints, *floats, date]


def _present(column: str) -> pl.Expr:
    return pl.col(column).is_not_null() & (_text(column) != "")


def row_rules() -> list[Rule]:
    """The row rules, in the order they are checked."""
    rules = [Rule("missing_value", c, ~_present(c)) for c in REQUIRED_COLUMNS]
    rules += [
        Rule("bad_type", c, _present(c) & pl.col(f"_{c}").is_null())
        for c in (*INTEGER_COLUMNS, *FLOAT_COLUMNS)
    ]
    rules.append(
        Rule(
            "bad_type",
            "BASKET_ID",
            _present("BASKET_ID") & ~_text("BASKET_ID").str.contains(DAMAGED_ID_TEXT),
        )
    )
    rules += [
        Rule("bad_code", c, _present(c) & ~_text(c).str.contains(pattern))
        for c, pattern in CODE_PATTERNS.items()
    ]
    rules += [
        Rule("bad_code", c, _present(c) & ~_text(c).is_in(list(values)))
        for c, values in DOMAINS.items()
    ]
    rules += [
        Rule("out_of_range", "QUANTITY", ~pl.col("_QUANTITY").is_between(1, MAX_QUANTITY)),
        Rule("out_of_range", "SPEND", ~pl.col("_SPEND").is_between(0, MAX_SPEND)),
        Rule("out_of_range", "SHOP_HOUR", ~pl.col("_SHOP_HOUR").is_between(0, 23)),
        Rule("out_of_range", "SHOP_WEEKDAY", ~pl.col("_SHOP_WEEKDAY").is_between(1, 7)),
        Rule("out_of_range", "SHOP_WEEK", ~(pl.col("_SHOP_WEEK") % 100).is_between(1, 53)),
        Rule("invalid_date", "SHOP_DATE", pl.col("_DATE").is_null()),
        Rule("date_week_mismatch", "SHOP_WEEK", week_code_expr(pl.col("_DATE")) != pl.col("_SHOP_WEEK")),
        Rule(
            "date_weekday_mismatch",
            "SHOP_WEEKDAY",
            weekday_expr(pl.col("_DATE")) != pl.col("_SHOP_WEEKDAY"),
        ),
        Rule(
            "segment_without_customer",
            "CUST_PRICE_SENSITIVITY",
            ~_present("CUST_CODE") & (_present("CUST_PRICE_SENSITIVITY") | _present("CUST_LIFESTAGE")),
        ),
    ]
    return rules


def _flag_failures(frame: pl.DataFrame, rules: list[Rule]) -> pl.DataFrame:
    """Adds a boolean column per rule and `_failed` (any rule failed)."""
    # A rule over a null typed value yields null: only a true `fails` counts.
    flags = [rule.fails.fill_null(False).alias(f"_rule{i}") for i, rule in enumerate(rules)]
    frame = frame.with_columns(flags)
    return frame.with_columns(pl.any_horizontal(pl.col(r"^_rule\d+$")).alias("_failed"))


def _first_failure(rules: list[Rule]) -> list[pl.Expr]:
    """The first failing rule's name and column, from the flags of `_flag_failures`."""
    def first(attribute: str) -> pl.Expr:
        return pl.coalesce(
            [pl.when(pl.col(f"_rule{i}")).then(pl.lit(getattr(r, attribute))) for i, r in enumerate(rules)]
        )

    return [first("name").alias("rule"), first("column").alias("column")]


def _failed_value() -> pl.Expr:
    """The raw text of the column named by `column`, for the quarantine."""
    value = pl.lit(None, dtype=pl.String)
    for c in CANONICAL_COLUMNS:
        value = pl.when(pl.col("column") == c).then(pl.col(c)).otherwise(value)
    return value.alias("value")


KEY_COLUMNS = tuple(c for c in BASKET_COLUMNS if c != LABEL)
"""The basket-level columns a damaged BASKET_ID's key is rebuilt from: all but the label, which is unknown when a
basket is scored (blank, validated as XX) and known when its week lands, so that a basket scored and later labelled
keeps one key and `retail monitor` can join its prediction with its label."""


def _basket_key() -> pl.Expr:
    """BASKET_ID when it is intact; otherwise a key rebuilt from the basket-level columns known when it is scored."""
    damaged = ~_text("BASKET_ID").str.contains(INTEGER_TEXT)
    rebuilt = pl.concat_str(
        [_text("BASKET_ID"), *[pl.col(c).fill_null("") for c in KEY_COLUMNS]], separator="|"
    ).hash(seed=0)
    return pl.when(damaged).then(pl.lit("R") + rebuilt.cast(pl.String)).otherwise(_text("BASKET_ID"))


def _silver(frame: pl.LazyFrame, keep: tuple[str, ...] = ()) -> pl.LazyFrame:
    """Typed canonical columns of rows that passed every rule, BASKET_KEY, then the `keep` columns as they are."""
    typed = {
        "SHOP_WEEK": pl.col("_SHOP_WEEK").cast(pl.Int32),
        "SHOP_DATE": pl.col("_DATE"),
        "SHOP_WEEKDAY": pl.col("_SHOP_WEEKDAY").cast(pl.Int8),
        "SHOP_HOUR": pl.col("_SHOP_HOUR").cast(pl.Int8),
        "QUANTITY": pl.col("_QUANTITY").cast(pl.Int32),
        "SPEND": pl.col("_SPEND"),
    }
    columns = [typed.get(c, _text(c)).alias(c) for c in CANONICAL_COLUMNS]
    return frame.select(*columns, pl.col(BASKET_KEY), *keep)


@dataclass
class CheckedRows:
    """One piece of rows after the row rules."""

    passed: pl.DataFrame  # rows that passed every row rule: raw text, source columns, BASKET_KEY
    failed: pl.DataFrame  # QUARANTINE_SCHEMA: rows that failed a rule, and the lines ingestion set aside


def check_rows(raw: pl.DataFrame, rejected: pl.DataFrame) -> CheckedRows:
    """The row rules on raw text rows; `rejected`: lines ingestion set aside (REJECTED_SCHEMA), quarantined too."""
    rules = row_rules()
    checked = _flag_failures(raw.with_columns(_typed_columns()), rules)
    passed = checked.filter(~pl.col("_failed")).select(
        *CANONICAL_COLUMNS, SOURCE_FILE, SOURCE_LINE, _basket_key().alias(BASKET_KEY)
    )
    # Only the few failing rows get their rule, column and value.
    row_failures = checked.filter(pl.col("_failed")).with_columns(_first_failure(rules)).with_columns(_failed_value())
    del checked
    failed = pl.concat([row_failures, rejected], how="diagonal_relaxed").sort(SOURCE_FILE, SOURCE_LINE)
    return CheckedRows(passed, failed.select(pl.col(c).cast(t) for c, t in QUARANTINE_SCHEMA.items()))


@dataclass
class _Plans:
    """The lazy queries that finish a validation."""

    lines: pl.LazyFrame  # typed silver lines, in the order read
    quarantine: pl.LazyFrame  # QUARANTINE_SCHEMA: row failures and lines set aside, then basket failures; each by
    # file and line
    accepted_by_file: pl.LazyFrame  # SOURCE_FILE, len


@dataclass
class BasketCheck:
    """The basket check's plans over rows that passed the row rules."""

    accepted: pl.LazyFrame  # the rows of consistent baskets, as `check_rows` passed them
    failures: pl.LazyFrame  # QUARANTINE_SCHEMA: the rows of inconsistent baskets, in the order given

    def lines(self, *keep: str) -> pl.LazyFrame:
        """The typed silver lines of the accepted rows (with the `keep` columns of `check_rows`, e.g. SOURCE_FILE)."""
        return _silver(self.accepted.with_columns(_typed_columns()), keep)


def check_baskets(passed: pl.LazyFrame, engine: Engine) -> BasketCheck:
    """The basket check over rows that passed the row rules: every row of each basket they hold must be among them
    (all the rows, or a partition of whole baskets: the distributed job, ml/spark_lake.py, checks a partition at a
    time)."""
    inconsistent = _inconsistent_baskets(passed, engine)  # a few baskets: held, not streamed
    in_bad_basket = pl.col(BASKET_KEY).is_in(inconsistent[BASKET_KEY].implode())
    basket_failures = (
        passed.filter(in_bad_basket)
        .join(inconsistent.lazy(), on=BASKET_KEY, how="left", maintain_order="left")
        .with_columns(pl.lit("basket_inconsistent").alias("rule"), pl.col("_inconsistent_column").alias("column"))
        .with_columns(_failed_value(), pl.lit(None, dtype=pl.Binary).alias(RAW_LINE))
        .select(*QUARANTINE_SCHEMA)
    )
    return BasketCheck(accepted=passed.filter(~in_bad_basket), failures=basket_failures)


def _finish(passed: pl.LazyFrame, failed: pl.LazyFrame, engine: Engine) -> _Plans:
    """The basket check over all rows that passed the row rules, then the plans of what is accepted and quarantined.
    `passed` and `failed` are each in file and line order (`failed` as `check_rows` leaves it)."""
    check = check_baskets(passed, engine)
    return _Plans(
        lines=check.lines(),
        quarantine=pl.concat([failed, check.failures]),
        accepted_by_file=check.accepted.group_by(SOURCE_FILE).len(),
    )


def validate(raw: pl.DataFrame, ingested: RawInput | None = None) -> ValidationResult:
    """Split raw text rows into typed accepted lines and a quarantine with reasons.

    `ingested` (from `ml.ingest.read`) brings the lines that could not become rows, which
    are quarantined too, and the rows read per file; without it, `raw` is all that was read.
    """
    if ingested is None:
        rows_read = dict(raw.group_by(SOURCE_FILE).len().iter_rows())
        rejected = pl.DataFrame(schema=REJECTED_SCHEMA)
    else:
        rows_read, rejected = ingested.rows_read, ingested.rejected
    checked = check_rows(raw, rejected)
    plans = _finish(checked.passed.lazy(), checked.failed.lazy(), engine="auto")
    del checked
    lines, quarantine, accepted_by_file = pl.collect_all([plans.lines, plans.quarantine, plans.accepted_by_file])
    files = _file_counts(rows_read, accepted_by_file, quarantine.group_by(SOURCE_FILE).len())
    report = _report(lines.lazy(), quarantine.lazy(), files, engine="auto")
    return ValidationResult(lines=lines, quarantine=quarantine, report=report)


class StagedRows:
    """Checked pieces of rows staged as Parquet under `folder` (passed/ and failed/, a part per piece)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.parts = 0
        for side in ("passed", "failed"):
            (folder / side).mkdir(parents=True, exist_ok=True)

    def add(self, raw: pl.DataFrame, rejected: pl.DataFrame) -> None:
        """Checks one piece (`check_rows`) and writes it out."""
        checked = check_rows(raw, rejected)
        name = f"part-{self.parts:05d}.parquet"
        # lz4: the parts are read back once, soon; compressing them harder costs more time than it saves.
        checked.passed.write_parquet(self.folder / "passed" / name, compression="lz4")
        checked.failed.write_parquet(self.folder / "failed" / name, compression="lz4")
        self.parts += 1

    def add_all(self, pieces: Iterable[tuple[pl.DataFrame, pl.DataFrame]]) -> None:
        """Adds every piece of an input (`ml.ingest.InputReader.pieces`), holding two pieces at a time: the next
        piece is read on a thread of its own while this one is checked and written (reading, mostly a
        single-threaded scan of the bytes, and checking then take a core each)."""
        remaining = iter(pieces)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead") as reader:
            next_piece = reader.submit(next, remaining, None)
            while (piece := next_piece.result()) is not None:
                next_piece = reader.submit(next, remaining, None)
                self.add(*piece)
                del piece  # let go of this piece before the one after the next is read

    def scan(self, side: str) -> pl.LazyFrame:
        if not self.parts:
            raise ValueError(f"{self.folder}: no piece was staged")
        return pl.scan_parquet([self.folder / side / f"part-{i:05d}.parquet" for i in range(self.parts)])


def validate_staged(staged: StagedRows, ingested: RawInput, lines_path: Path,
                    quarantine_path: Path) -> ValidationReport:
    """`validate` over staged pieces with Polars' streaming engine: writes the silver lines and the quarantine to
    Parquet files (zstd) and returns the report. `ingested` gives the rows read per file (its lines set aside were
    staged with the pieces)."""
    plans = _finish(staged.scan("passed"), staged.scan("failed"), engine="streaming")
    for path in (lines_path, quarantine_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    # A Parquet sink holds a row group: the quarantine's rows are wide (raw text), so its groups are smaller.
    pl.collect_all([plans.lines.sink_parquet(lines_path, lazy=True),
                    plans.quarantine.sink_parquet(quarantine_path, row_group_size=QUARANTINE_ROW_GROUP, lazy=True)],
                   engine="streaming")
    return written_report(pl.scan_parquet(lines_path), pl.scan_parquet(quarantine_path), ingested.rows_read,
                          plans.accepted_by_file)


def written_report(lines: pl.LazyFrame, quarantine: pl.LazyFrame, rows_read: dict[str, int],
                   accepted_by_file: pl.LazyFrame) -> ValidationReport:
    """The report of silver lines and a quarantine written already (scans of them), with Polars' streaming engine;
    `rows_read`: rows read per file, `accepted_by_file`: SOURCE_FILE, len of the accepted rows."""
    accepted, quarantined = pl.collect_all(
        [accepted_by_file, quarantine.group_by(SOURCE_FILE).len()], engine="streaming"
    )
    files = _file_counts(rows_read, accepted, quarantined)
    return _report(lines, quarantine, files, engine="streaming")


def _file_counts(
    rows_read: dict[str, int], accepted: pl.DataFrame, quarantined: pl.DataFrame
) -> dict[str, dict[str, int]]:
    """Rows read, accepted and quarantined per source file, each counted on its own (`accepted` and `quarantined`:
    SOURCE_FILE, len)."""
    accepted_by_file = dict(accepted.iter_rows())
    quarantined_by_file = dict(quarantined.iter_rows())
    files = sorted({*rows_read, *accepted_by_file, *quarantined_by_file})
    return {
        f: {"read": rows_read.get(f, 0), "accepted": accepted_by_file.get(f, 0),
            "quarantined": quarantined_by_file.get(f, 0)}
        for f in files
    }


def _inconsistent_baskets(rows: pl.LazyFrame, engine: Engine) -> pl.DataFrame:
    """Baskets whose basket-level columns vary, with the first such column."""
    # One hash of all basket-level columns per row finds the few varying baskets fast (a basket varies where its
    # smallest and largest hash differ: two numbers per basket to hold); only those are examined column by column.
    # The varying keys are collected before the second pass: joined in one query, the streaming engine would hold
    # the rows of the second pass until the first had finished.
    fingerprint = pl.col("_fingerprint")
    varying = (
        rows.select(BASKET_KEY, pl.struct(list(BASKET_COLUMNS)).hash(seed=0).alias("_fingerprint"))
        .group_by(BASKET_KEY)
        .agg(fingerprint.min().alias("_low"), fingerprint.max().alias("_high"))
        .filter(pl.col("_low") != pl.col("_high"))
        .select(BASKET_KEY)
        .collect(engine=engine)
    )
    counts = (
        rows.filter(pl.col(BASKET_KEY).is_in(varying[BASKET_KEY].implode()))
        .group_by(BASKET_KEY)
        .agg([pl.col(c).n_unique().alias(c) for c in BASKET_COLUMNS])
    )
    first = pl.lit(None, dtype=pl.String)
    for c in reversed(BASKET_COLUMNS):
        first = pl.when(pl.col(c) > 1).then(pl.lit(c)).otherwise(first)
    return counts.select(BASKET_KEY, first.alias("_inconsistent_column")).collect(engine=engine)


def _report(lines: pl.LazyFrame, quarantine: pl.LazyFrame, files: dict[str, dict[str, int]],
            engine: Engine) -> ValidationReport:
    by_rule = (
        quarantine.group_by("rule", "column").len().sort("rule", "column", nulls_last=False)
        .select(pl.concat_str("rule", pl.lit(":"), "column").fill_null(pl.col("rule")).alias("key"), "len")
    )
    baskets = (
        lines.group_by(BASKET_KEY).agg(pl.first(LABEL), pl.len().alias("rows"))
        .select(pl.len().alias("baskets"), (pl.col(LABEL) == UNCLASSIFIED).sum().alias("unclassified"),
                pl.col("rows").filter(pl.col(LABEL) == UNCLASSIFIED).sum().alias("unclassified_rows"))
    )
    damaged = lines.filter(pl.col(BASKET_KEY).str.starts_with("R"))
    damaged_counts = damaged.select(pl.col(BASKET_KEY).n_unique().alias("keys"), pl.len().alias("rows"))
    damaged_ids = damaged.select(pl.col("BASKET_ID").unique(maintain_order=True).head(3))
    by_rule_frame, basket_counts, damaged_frame, ids, accepted, quarantined = pl.collect_all(
        [by_rule, baskets, damaged_counts, damaged_ids, lines.select(pl.len()), quarantine.select(pl.len())],
        engine=engine,
    )
    report = ValidationReport(
        rows_in=sum(f["read"] for f in files.values()),
        rows_accepted=accepted.item(),
        rows_quarantined=quarantined.item(),
        quarantined_by_rule=dict(zip(by_rule_frame["key"].to_list(), by_rule_frame["len"].to_list(), strict=True)),
        baskets_accepted=basket_counts["baskets"].item(),
        unclassified_baskets=basket_counts["unclassified"].item(),
        unclassified_rows=basket_counts["unclassified_rows"].item(),
        rebuilt_basket_ids=damaged_frame["keys"].item(),
        rows_with_damaged_id=damaged_frame["rows"].item(),
        files=files,
    )
    if report.rows_with_damaged_id:
        report.warnings.append(
            f"{report.rows_with_damaged_id} rows carry a damaged BASKET_ID (e.g. {', '.join(ids['BASKET_ID'])}): "
            f"{report.rebuilt_basket_ids} basket keys were rebuilt from the basket-level columns"
        )
    return report
