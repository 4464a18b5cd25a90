"""Reading raw transaction exports into one frame of untyped (string) columns.

Accepts a CSV, a gzipped CSV, or a folder of weekly `transactions_YYYYWW.csv` files,
with either header variant (see `ml.schema`) and LF or CRLF line endings. Every value is
read as text so that validation, not the CSV parser, decides what is wrong with a value
and can quarantine the row instead of failing the run. Each row keeps its source file
and line number (the header is line 1). In a folder, a weekly file that is empty (no
bytes, or a header and no line after it) is read as 0 rows and announced in `notices`;
an empty single file, or a folder of only empty files, stops the run.

A line that cannot become a row does not stop the run either: each file's bytes are
scanned first, and such a line is set aside with its file, line number, rule, what is
wrong (`value`) and its raw bytes without the line ending (`_RAW_LINE`), for validation
to quarantine. A line gets the first of these rules that it breaks:

- `invalid_utf8`: the line is not valid UTF-8;
- `blank_line`: the line is empty;
- `repeated_header`: the line is a header row again (files joined with `cat`);
- `stray_carriage_return`: a carriage return (CR) that is not part of a CRLF line ending:
  a line break to some readers and not to others (Python's `csv` refuses it outside quotes,
  Polars reads it as text), so where the row ends is unclear; no column holds one;
- `unbalanced_quotes`: an odd number of `"`, so a quoted field is not closed (no column
  of this data holds a line break or a quote, so a row never spans lines);
- `bad_quoting`: the line breaks the strict CSV rules (Python's `csv` with `strict=True`),
  mostly text after a closing quote (`"ab"c`), which Polars' reader refuses for the whole
  file while the lenient rules make it one field;
- `too_many_fields` / `too_few_fields`: the line splits into more or fewer fields than
  the header (CSV-aware: a comma inside a quoted field does not separate).

The clean lines, and only those, go to Polars' CSV reader; for every file
`rows_read == rows parsed + lines set aside`.

A file is read in pieces of whole lines (`PIECE_BYTES` at a time, gzip decompressed as it
is read), each scanned and parsed on its own with the header line in front, so reading
holds one piece, not the file: `InputReader.pieces` hands them out one by one (the
pipeline validates and stages each before the next is read), `read` gathers them into
one frame. Rows and lines set aside keep the line number they have in the file. The header line must be readable (UTF-8,
strict CSV without a stray CR, the expected columns, each once), or the run stops
with `InputError` naming the file; no byte input ends `read` with another exception.

Why scan before reading instead of using a reader option: Polars' reader fails the whole
file on one undecodable byte or one line with too many fields, pads a short line with
nulls without a word, and its `ignore_errors` / `truncate_ragged_lines` do not say which
line they dropped or changed; pyarrow's `invalid_row_handler` reports ragged rows, but
with no line number when it reads in parallel, and never undecodable ones. The scan
finds line ends and counts separators per line with NumPy over the bytes; only lines
holding a quote are split by Python's `csv` module, only files holding a CR that is not
part of a CRLF have their carriage returns counted per line, and only files holding a
non-ASCII byte are decoded (by Python's strict UTF-8 codec, with `surrogateescape`
marking the bytes it rejects). A clean ASCII export thus costs two vectorised passes
(line ends, commas) and four byte searches (a quote, a carriage return, a non-ASCII
byte, the header's first name); a CRLF one counts its carriage returns once more.
"""

from __future__ import annotations

import csv
import gzip
import re
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import polars as pl

from ml.schema import (
    CANONICAL_COLUMNS,
    CODED_COLUMNS,
    ORIGINAL_COLUMNS,
    ORIGINAL_SEGMENT_NAMES,
    SEG_1_DECODE,
    SEG_2_DECODE,
)

SOURCE_FILE = "_SOURCE_FILE"
SOURCE_LINE = "_SOURCE_LINE"
RAW_LINE = "_RAW_LINE"
WEEKLY_FILE = re.compile(r"^transactions_(\d{6})\.csv(\.gz)?$")

# Rules for lines that cannot become a row, in the order they are checked.
LINE_RULES = (
    "invalid_utf8", "blank_line", "repeated_header", "stray_carriage_return", "unbalanced_quotes", "bad_quoting",
    "too_many_fields", "too_few_fields",
)
REJECTED_SCHEMA = {SOURCE_FILE: pl.String, SOURCE_LINE: pl.Int64, "rule": pl.String, "value": pl.String,
                   RAW_LINE: pl.Binary}

UTF8_BOM = b"\xef\xbb\xbf"
NEWLINE, CARRIAGE_RETURN, COMMA, QUOTE = (ord(c) for c in "\n\r,\"")
SCAN_CHUNK = 1 << 22  # bytes per vectorised step: bounds the scan's temporary arrays, stays in cache
PIECE_BYTES = 16 * SCAN_CHUNK  # bytes of whole lines read, scanned and parsed at a time (64 MiB, ~400k rows)
ESCAPED_BYTE = re.compile("[\udc80-\udcff]")  # what `surrogateescape` makes of a byte UTF-8 rejects


class InputError(Exception):
    """The input cannot be read at all: the run stops with this message."""


class InputUnavailable(Exception):
    """The input could not be read this time, though nothing says it is wrong: the storage refused or failed a
    request (S3's throttling, a timeout, a dropped connection, a credential that lapsed, access denied) or a file
    went between its listing and its reading. A command exits 1 on it, which the scheduled Jobs retry; an
    InputError exits 2, on which they fail at once, a retry reading the same."""


AWS_ERROR = "AWS Error"
"""What pyarrow's S3 errors say: Arrow's S3 filesystem words every failed request "AWS Error <kind> during <operation>
operation: ..." (its s3_internal ErrorToStatus)."""


def storage_failed(error: BaseException) -> bool:
    """Whether reading failed in the storage rather than on what was read: an operating-system error (an errno: EIO,
    a file gone between its listing and its reading) or one of S3's, which pyarrow raises as OSError once its own
    retries are spent, its text saying "AWS Error" (throttling, a timeout, a dropped connection, access denied:
    "AWS Error NETWORK_CONNECTION during HeadObject operation: ..."). Not the OSErrors of content: Arrow raises a
    corrupt Parquet file's errors as OSError with no errno ("Couldn't deserialize thrift", "Corrupt snappy
    compressed data"), and gzip.BadGzipFile is an OSError; nor EOFError, zlib.error (cut short, not gzip) or
    ArrowInvalid and the like (data Arrow refuses)."""
    return (isinstance(error, OSError) and not isinstance(error, gzip.BadGzipFile)
            and (error.errno is not None or AWS_ERROR in str(error)))


class EmptyFile(InputError):
    """A file holds no data line: fatal for a single file, a notice for one week of a folder."""


def _no_rejected_lines() -> pl.DataFrame:
    return pl.DataFrame(schema=REJECTED_SCHEMA)


@dataclass(frozen=True)
class RawInput:
    """The files of one input, the header variant found in them, and what was read."""

    files: tuple[Path, ...]
    variant: str  # "coded" (seg_1/seg_2), "original" (CUST_PRICE_SENSITIVITY/CUST_LIFESTAGE) or "mixed"
    rows_read: dict[str, int] = field(default_factory=dict)  # data lines (header excluded), by file
    rejected: pl.DataFrame = field(default_factory=_no_rejected_lines)  # lines set aside, REJECTED_SCHEMA
    notices: tuple[str, ...] = ()  # what was read other than asked and why: an empty weekly file, read as 0 rows


def discover(path: Path) -> tuple[Path, ...]:
    """The files that make up an input: the file itself, or a folder's weekly files."""
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_file():
        return (path,)
    weekly = sorted(p for p in path.iterdir() if WEEKLY_FILE.match(p.name))
    if not weekly:
        raise InputError(f"{path}: folder holds no weekly files named transactions_YYYYWW.csv")
    return tuple(weekly)


class Readable(Protocol):
    """A binary stream read forward: what `pieces` reads."""

    def read(self, size: int = -1, /) -> bytes: ...


def pieces(stream: Readable, piece_bytes: int) -> Iterator[tuple[bytes, int]]:
    """The stream as (its header line + whole data lines, how many data lines come before them), at most
    `piece_bytes` of lines at a time (more only for a line longer than that). A stream without a data line gives
    its header alone (or nothing, when it is empty), for `_header` and `_scan` to say so. Ingestion and batch
    scoring (ml/score.py) both read their input this way.
    """
    header: bytes | None = None
    pending = b""
    lines_before, yielded = 0, False
    while True:
        block = stream.read(piece_bytes)
        pending += block
        if header is None:
            end = pending.find(b"\n")
            if end == -1 and block:
                continue  # a header longer than a block
            header, pending = (pending, b"") if end == -1 else (pending[:end + 1], pending[end + 1:])
        while len(pending) > piece_bytes:
            cut = pending.rfind(b"\n", 0, piece_bytes) + 1 or pending.find(b"\n", piece_bytes) + 1
            if cut == 0:
                break  # a line longer than a piece, not ended yet
            yield header + pending[:cut], lines_before
            lines_before += pending.count(b"\n", 0, cut)
            pending, yielded = pending[cut:], True
        if not block:  # the end of the stream
            if pending or not yielded:
                yield header + pending, lines_before
            return


def _pieces(path: Path, piece_bytes: int) -> Iterator[tuple[bytes, int]]:
    """`pieces` of a file (gzip or plain); an unreadable file is an InputError that names it."""
    try:
        with gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb") as stream:
            yield from pieces(stream, piece_bytes)
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise InputError(f"{path}: unreadable ({exc})") from exc


def _parse_fields(line: str) -> list[str]:
    """The fields of one line by the strict CSV rules; raises `csv.Error` on a line that breaks them."""
    return next(csv.reader([line], strict=True), [])


def _header(path: Path, data: bytes) -> tuple[int, int, list[str]]:
    """Where the header starts (after a byte-order mark), where the data lines start, and its names."""
    start = len(UTF8_BOM) if data.startswith(UTF8_BOM) else 0
    end = data.find(b"\n", start)
    end = len(data) if end == -1 else end
    try:
        line = data[start:end].removesuffix(b"\r").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path}: unreadable (the header line is not UTF-8 text: byte 0x{data[start + exc.start]:02X} "
            f"at position {exc.start + 1}; is the file compressed or binary?)"
        ) from exc
    if not line.strip():
        if data[end:].strip():
            raise InputError(f"{path}: unreadable (the first line is blank, not a header row)")
        raise EmptyFile(f"{path}: empty file (no header row)")
    if "\r" in line:
        where = ("the file uses CR-only line endings; convert them to LF or CRLF" if end == len(data)
                 else "the header line holds a carriage return (\\r) that does not end it")
        raise InputError(f"{path}: unreadable ({where})")
    try:
        names = [name.strip() for name in _parse_fields(line)]
    except csv.Error as exc:
        raise InputError(f"{path}: unreadable (the header line is not valid CSV: {exc})") from exc
    repeated = sorted(repr(name) for name, count in Counter(names).items() if count > 1)
    if repeated:
        raise InputError(f"{path}: the header names column(s) {', '.join(repeated)} more than once")
    return start, min(end + 1, len(data)), names


def _variant_of(names: list[str]) -> str | None:
    for variant, expected in (("coded", CODED_COLUMNS), ("original", ORIGINAL_COLUMNS)):
        if set(expected) <= set(names):
            return variant
    return None


def header_variant(path: Path, names: list[str]) -> str:
    """Which header variant a file uses; raises naming the missing columns otherwise."""
    variant = _variant_of(names)
    if variant:
        return variant
    coded_missing = [c for c in CODED_COLUMNS if c not in names]
    original_missing = [c for c in ORIGINAL_COLUMNS if c not in names]
    missing = min(coded_missing, original_missing, key=len)
    raise InputError(f"{path}: missing column(s) {', '.join(missing)}")


@dataclass
class _Lines:
    """The data lines of one file's bytes: where each starts and ends (line ending excluded)."""

    starts: np.ndarray
    ends: np.ndarray
    crlf: np.ndarray  # true where the line ends with CRLF (or is the last and ends with CR)

    def __len__(self) -> int:
        return len(self.starts)


def _find_lines(buffer: np.ndarray, body: int) -> _Lines:
    chunks = [np.flatnonzero(buffer[i:i + SCAN_CHUNK] == NEWLINE) + i for i in range(body, len(buffer), SCAN_CHUNK)]
    newlines = np.concatenate(chunks) if chunks else np.empty(0, np.int64)
    starts = np.concatenate([[body], newlines + 1]).astype(np.int64)
    ends = np.concatenate([newlines, [len(buffer)]]).astype(np.int64)
    if starts[-1] == len(buffer):  # the file ends with a line ending: no line after it
        starts, ends = starts[:-1], ends[:-1]
    before_end = np.maximum(ends - 1, 0)
    crlf = (ends > starts) & (buffer[before_end] == CARRIAGE_RETURN)
    return _Lines(starts, ends - crlf, crlf)


def _chunks(lines: _Lines, size: int) -> list[tuple[int, int, int, int]]:
    """Runs of whole lines of about SCAN_CHUNK bytes: (first line, stop line, first byte, stop byte)."""
    n = len(lines)
    if n == 0:
        return []
    edges = np.unique(np.searchsorted(lines.starts, np.arange(lines.starts[0], size, SCAN_CHUNK)))
    # A boundary inside the last line finds no line start after it (index n): that line belongs to the run before.
    edges = edges[edges < n].tolist()
    stops = [*edges[1:], n]
    return [(first, stop, int(lines.starts[first]), int(lines.starts[stop]) if stop < n else size)
            for first, stop in zip(edges, stops, strict=True)]


def _count_per_line(buffer: np.ndarray, lines: _Lines, byte: int) -> np.ndarray:
    """How often `byte` occurs in each line (its ending included), a chunk of whole lines at a time."""
    counts = np.zeros(len(lines), np.int64)
    for first, stop, low, high in _chunks(lines, len(buffer)):
        hits = np.flatnonzero(buffer[low:high] == byte)
        bounds = np.append(lines.starts[first:stop] - low, high - low)
        counts[first:stop] = np.diff(np.searchsorted(hits, bounds))
    return counts


def _stray_carriage_returns(data: bytes, buffer: np.ndarray, lines: _Lines, body: int) -> np.ndarray:
    """Per line, whether it holds a carriage return other than the one of its CRLF ending."""
    # No pass per line when there is none (a search), or as many as CRLF line endings (a count).
    if data.find(b"\r", body) == -1 or data.count(b"\r", body) == np.count_nonzero(lines.crlf):
        return np.zeros(len(lines), bool)
    return _count_per_line(buffer, lines, CARRIAGE_RETURN) > lines.crlf


def _quoting_problems(data: bytes, lines: _Lines, quoted: np.ndarray, fields: np.ndarray) -> dict[int, str]:
    """Splits the `quoted` lines by the strict CSV rules into `fields`; returns those that break them, and how."""
    problems = {}
    for i in quoted:
        try:
            fields[i] = len(_parse_fields(data[lines.starts[i]:lines.ends[i]].decode("utf-8", "replace")))
        except csv.Error as exc:
            after_quote = "expected after" in str(exc)
            problems[int(i)] = f"text after a closing quote ({exc})" if after_quote else f"not valid CSV ({exc})"
    return problems


def _undecodable(data: bytes, lines: _Lines) -> dict[int, str]:
    """Lines that are not valid UTF-8: line index -> the first rejected byte and where it is."""
    if data.isascii():
        return {}
    found: dict[int, str] = {}
    for first, _, low, high in _chunks(lines, len(data)):
        # Whole lines decode alone: a line ending is never part of a multi-byte character.
        text = data[low:high].decode("utf-8", "surrogateescape")
        line, counted_to = first, 0
        match = ESCAPED_BYTE.search(text)
        while match:
            at = match.start()
            line += text.count("\n", counted_to, at)
            line_start = text.rfind("\n", 0, at) + 1
            position = len(text[line_start:at].encode("utf-8", "surrogateescape")) + 1
            found[line] = f"byte 0x{ord(match.group()) - 0xDC00:02X} at position {position} is not UTF-8"
            next_line = text.find("\n", at)
            if next_line == -1:
                break
            counted_to = next_line
            match = ESCAPED_BYTE.search(text, next_line)
    return found


def _repeated_headers(data: bytes, lines: _Lines, first_name: str) -> list[int]:
    """Lines after the header that are a header row again (of either variant)."""
    # A line that starts with the header's first name (perhaps quoted, perhaps after a
    # byte-order mark) is parsed; an unnamed first column starts a header with a comma.
    needle = first_name.encode() or b","
    found = []
    at = data.find(needle, int(lines.starts[0]) if len(lines) else len(data))
    while at != -1:
        index = int(np.searchsorted(lines.starts, at, side="right")) - 1
        if data[lines.starts[index]:at] in (b"", b'"', UTF8_BOM, UTF8_BOM + b'"'):
            text = data[lines.starts[index]:lines.ends[index]].decode("utf-8", "replace").lstrip("\ufeff")
            try:
                names = [name.strip() for name in _parse_fields(text)]
            except csv.Error:  # not a header: the rules for data lines will say what it is
                names = []
            if _variant_of(names):
                found.append(index)
        at = data.find(needle, at + 1)
    return found


@dataclass
class _Scan:
    """One file's data lines: their count, which are set aside and why, and the clean ones."""

    rows_read: int
    rejected: pl.DataFrame
    clean: np.ndarray  # one boolean per data line


def _scan(path: Path, data: bytes, body: int, names: list[str], first_line: int) -> tuple[_Scan, _Lines]:
    """The data lines of `data` (from byte `body`), numbered from `first_line` in the file."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    lines = _find_lines(buffer, body)
    fields = _count_per_line(buffer, lines, COMMA) + 1
    quotes = np.zeros(len(lines), np.int64)
    bad_quoting = {}
    if data.find(b'"', body) != -1:
        quotes = _count_per_line(buffer, lines, QUOTE)
        bad_quoting = _quoting_problems(data, lines, np.flatnonzero((quotes > 0) & (quotes % 2 == 0)), fields)
    stray_carriage_return = _stray_carriage_returns(data, buffer, lines, body)
    del buffer
    expected = len(names)
    rule = np.zeros(len(lines), np.int8)  # 0 = clean, else 1 + index in LINE_RULES
    # Later assignments win: they go from the last rule to the first.
    rule[fields < expected] = LINE_RULES.index("too_few_fields") + 1
    rule[fields > expected] = LINE_RULES.index("too_many_fields") + 1
    rule[list(bad_quoting)] = LINE_RULES.index("bad_quoting") + 1
    rule[quotes % 2 == 1] = LINE_RULES.index("unbalanced_quotes") + 1
    rule[stray_carriage_return] = LINE_RULES.index("stray_carriage_return") + 1
    rule[_repeated_headers(data, lines, names[0])] = LINE_RULES.index("repeated_header") + 1
    rule[lines.ends == lines.starts] = LINE_RULES.index("blank_line") + 1
    undecodable = _undecodable(data, lines)
    rule[list(undecodable)] = LINE_RULES.index("invalid_utf8") + 1

    records = []
    for i in np.flatnonzero(rule):
        name = LINE_RULES[rule[i] - 1]
        what = {
            "invalid_utf8": undecodable.get(int(i)),
            "blank_line": "empty line",
            "repeated_header": "the header row again",
            "stray_carriage_return": "a carriage return (\\r) that does not end the line",
            "bad_quoting": bad_quoting.get(int(i)),
            "unbalanced_quotes": f"an odd number of quote characters ({quotes[i]}): a quoted field is not closed",
        }.get(name, f"{fields[i]} fields, the header has {expected}")
        records.append((str(path), int(i) + first_line, name, what, data[lines.starts[i]:lines.ends[i]]))
    rejected = pl.DataFrame(records, schema=REJECTED_SCHEMA, orient="row") if records else _no_rejected_lines()
    return _Scan(rows_read=len(lines), rejected=rejected, clean=rule == 0), lines


def _clean_bytes(data: bytes, header_start: int, body: int, lines: _Lines, clean: np.ndarray) -> bytes:
    """The header and the clean lines, as they are in the file."""
    if clean.all():
        return data if header_start == 0 else data[header_start:]
    view = memoryview(data)
    pieces = [view[header_start:body]]
    # Runs of consecutive clean lines are copied in one piece each.
    change = np.flatnonzero(np.diff(np.concatenate([[False], clean, [False]]).astype(np.int8)))
    for first, stop in zip(change[::2], change[1::2], strict=True):
        low = lines.starts[first]
        high = lines.starts[stop] if stop < len(lines) else len(data)
        pieces.append(view[low:high])  # each run ends with its last line's ending, if it has one
    return b"".join(pieces)


def _read_piece(path: Path, data: bytes, lines_before: int) -> tuple[str, pl.DataFrame, _Scan]:
    """One piece of a file (its header line, then data lines; `lines_before` data lines come before them)."""
    header_start, body, names = _header(path, data)
    variant = header_variant(path, names)
    first_line = lines_before + 2  # the header is line 1
    scan, lines = _scan(path, data, body, names, first_line)
    if scan.rows_read == 0:
        raise EmptyFile(f"{path}: empty file (a header but no rows)")
    clean_bytes = _clean_bytes(data, header_start, body, lines, scan.clean)
    del data
    try:
        frame = pl.read_csv(clean_bytes, infer_schema=False)
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError) as exc:
        raise InputError(f"{path}: unreadable as CSV ({exc})") from exc
    del clean_bytes
    expected = int(scan.clean.sum())
    if frame.height != expected:  # a bug in the scan, never bad input: fail rather than misnumber rows
        raise RuntimeError(f"{path}: the CSV reader found {frame.height} rows in {expected} clean lines")
    frame.columns = names
    line_numbers = pl.Series(SOURCE_LINE, np.flatnonzero(scan.clean) + first_line, dtype=pl.Int64)
    frame = to_canonical(frame, variant).with_columns(pl.lit(str(path)).alias(SOURCE_FILE), line_numbers)
    return variant, frame, scan


def to_canonical(frame: pl.DataFrame, variant: str) -> pl.DataFrame:
    """The canonical columns, in order, from a frame of either header variant."""
    if variant == "coded":
        return frame.select(CODED_COLUMNS).rename(ORIGINAL_SEGMENT_NAMES).with_columns(
            _decode("CUST_PRICE_SENSITIVITY", SEG_1_DECODE),
            _decode("CUST_LIFESTAGE", SEG_2_DECODE),
        )
    return frame.select(ORIGINAL_COLUMNS)


def _decode(column: str, mapping: dict[str, str]) -> pl.Expr:
    """Coded segment values to their meaning; unknown codes pass through for validation."""
    return pl.col(column).replace(mapping).alias(column)


class InputReader:
    """Reads an input a piece at a time (see the module): `pieces` hands out each piece's rows and the lines set
    aside in it; `raw_input` then says what was read (rows per file, header variant, notices)."""

    def __init__(self, path: Path, piece_bytes: int = PIECE_BYTES):
        self.path = path
        self.files = discover(path)
        self.piece_bytes = piece_bytes
        self.rows_read = {str(f): 0 for f in self.files}
        self.variants: set[str] = set()
        self.notices: list[str] = []

    def pieces(self) -> Iterator[tuple[pl.DataFrame, pl.DataFrame]]:
        """(rows as text columns in canonical order plus source columns, lines set aside in REJECTED_SCHEMA) per
        piece. In a folder, an empty weekly file is a notice; an empty single file, or only empty ones, stop."""
        empty = 0
        for f in self.files:
            try:
                for data, lines_before in _pieces(f, self.piece_bytes):
                    variant, frame, scan = _read_piece(f, data, lines_before)
                    del data
                    self.variants.add(variant)
                    self.rows_read[str(f)] += scan.rows_read
                    yield frame.select([*CANONICAL_COLUMNS, SOURCE_FILE, SOURCE_LINE]), scan.rejected
            except EmptyFile as exc:
                if not self.path.is_dir():
                    raise
                self.notices.append(f"{exc}: read as 0 rows")
                empty += 1
        if empty == len(self.files):
            raise InputError(f"{self.path}: every weekly file is empty ({len(self.files)} found)")

    def raw_input(self, rejected: pl.DataFrame | None = None) -> RawInput:
        """What was read, once `pieces` is exhausted; `rejected`: the lines set aside, if the caller kept them."""
        kinds = sorted(self.variants)
        return RawInput(
            files=self.files,
            variant=kinds[0] if len(kinds) == 1 else "mixed",
            rows_read=dict(self.rows_read),
            rejected=_no_rejected_lines() if rejected is None else rejected,
            notices=tuple(self.notices),
        )


def read(path: Path, piece_bytes: int = PIECE_BYTES) -> tuple[RawInput, pl.DataFrame]:
    """All parsed rows of an input as text columns in canonical order, plus source columns.

    The lines set aside and the rows read per file come with the `RawInput`.
    """
    reader = InputReader(path, piece_bytes)
    frames, rejected = zip(*reader.pieces(), strict=True)
    frame = pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]
    return reader.raw_input(pl.concat(rejected)), frame
