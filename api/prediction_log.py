"""The service's prediction log: a row per scored basket (`ml.prediction_log`), written as Parquet off the request path.

A prediction route hands the log what it scored (`record`): the baskets' ids and weeks (as
`api.body` parsed them), the model and the array of probabilities, as one tuple appended to a
deque. Nothing is converted, written or waited for
on the request path. A writer thread takes everything waiting every `COLLECT_SECONDS`,
turns it into rows (one `prediction_rows` call per model and role, not one per request) and
writes them once `flush_rows` rows wait or the oldest has waited `flush_seconds`, and at
shutdown (`close`).

Memory is bounded: at most `max_rows` rows are held; a request that would go beyond is not
logged, and its rows are counted
(`retail_prediction_log_rows_total{outcome="over_limit"}`), so a writer that falls behind
never slows the service. A write that fails is logged, its rows counted as `failed`, and
the next write is tried as usual.

Files: `<root>/date=YYYY-MM-DD/week=YYYYWW/part-<UTC time>-<writer>-<n>.parquet`, by the
day the baskets were scored and their week; `writer` is random per process, so worker
processes and pods never write the same name. The root is a local folder or an s3:// URI
(by default the lake's `predictions/service`); on S3 each file is one object put under its
key, with no directory markers, so writing needs s3:PutObject under the root and nothing else.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import polars as pl
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from api.metrics import BACKGROUND_CPU, PREDICTION_LOG_ROWS
from api.model_store import LoadedModel
from ml.lake import filesystem, join
from ml.prediction_log import SERVICE, WEEK, Role, prediction_rows

log = logging.getLogger("retail.api.prediction_log")
COLLECT_SECONDS = 0.25
"""How often the writer takes what the routes recorded (and lets go of their request bodies)."""


@dataclass(frozen=True)
class LoggedBaskets:
    """A request's baskets as the log keeps them: their ids and fiscal weeks (`api.body.ParsedBaskets`')."""

    ids: list[str | None]
    weeks: list[int]


class _Entry(NamedTuple):
    role: Role
    model: LoadedModel
    baskets: LoggedBaskets
    probabilities: np.ndarray
    scored_at: float  # seconds since the epoch


class ServiceLogFiles:
    """Where the rows go: Parquet files under a root, one per day and week of each write."""

    def __init__(self, root: str):
        self.root = root
        self.fs, self.base = filesystem(root)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        self.writer = uuid.uuid4().hex[:12]
        self._writes = 0

    def write(self, rows: pl.DataFrame) -> list[str]:
        """Write the rows; returns the paths written."""
        self._writes += 1
        name = f"part-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%fZ}-{self.writer}-{self._writes:06d}.parquet"
        days = rows["scored_at"].dt.date().alias("date")
        written = []
        for (day, week), part in rows.with_columns(days).partition_by("date", WEEK, as_dict=True).items():
            path = join(self.base, f"date={day}", f"week={week}", name)
            if self.local:  # a reader (retail monitor) never sees half a file: written aside, then renamed
                self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
                partial = path.rsplit("/", 1)[0] + "/." + name + ".partial"
                with self.fs.open_output_stream(partial) as sink:
                    pq.write_table(part.drop("date").to_arrow(), sink, compression="zstd")
                self.fs.move(partial, path)
            else:  # an S3 object appears whole, when its upload completes
                with self.fs.open_output_stream(path) as sink:
                    pq.write_table(part.drop("date").to_arrow(), sink, compression="zstd")
            written.append(path)
        return written


class PredictionLog:
    def __init__(self, files: ServiceLogFiles, flush_rows: int, flush_seconds: float, max_rows: int):
        self.files = files
        self.flush_rows, self.flush_seconds = flush_rows, flush_seconds
        self.max_rows = max_rows
        self._pending: deque[_Entry] = deque()
        self._lock = threading.Lock()  # guards the count below
        self._held_rows = 0  # recorded and not yet written (or given up)
        self._rows: list[pl.DataFrame] = []  # collected, not yet written
        self._buffered = 0  # rows in `_rows`
        self._oldest = 0.0  # monotonic time the oldest of them was collected
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Write what is held and stop the writer."""
        self._stopping.set()
        self._thread.join()

    def record(self, role: Role, model: LoadedModel, baskets: LoggedBaskets, probabilities: np.ndarray) -> None:
        """Log the baskets `model` scored (probabilities in `model.bundle.classes` order); never waits for the
        writer. Rows over the memory limits are counted and dropped."""
        rows = len(baskets.ids)
        with self._lock:
            held = self._held_rows + rows <= self.max_rows
            if held:
                self._held_rows += rows
                self._pending.append(_Entry(role, model, baskets, probabilities, time.time()))
        if not held:
            PREDICTION_LOG_ROWS.labels(role, "over_limit").inc(rows)

    def _run(self) -> None:
        cpu = BACKGROUND_CPU.labels("prediction_log")
        stopping = False
        while not stopping:
            stopping = self._stopping.wait(COLLECT_SECONDS)
            started = time.thread_time()
            self._collect()
            if stopping or (self._buffered and (self._buffered >= self.flush_rows
                                                or time.monotonic() - self._oldest >= self.flush_seconds)):
                self._write()
            cpu.inc(time.thread_time() - started)

    def _collect(self) -> None:
        """Everything recorded so far, as rows."""
        entries = []
        while self._pending:
            entries.append(self._pending.popleft())
        if not entries:
            return
        groups: dict[tuple[Role, int], list[_Entry]] = {}
        for entry in entries:
            groups.setdefault((entry.role, id(entry.model)), []).append(entry)
        if not self._buffered:
            self._oldest = time.monotonic()
        for (role, _), group in groups.items():
            try:
                rows = _rows(role, group)
            except Exception:  # a bug, never the service's to pay for: counted, logged, and the log goes on
                log.exception("prediction log rows not made", extra={"role": role})
                self._give_up(role, sum(len(entry.baskets.ids) for entry in group))
                continue
            self._rows.append(rows)
            self._buffered += rows.height

    def _write(self) -> None:
        if not self._rows:
            return
        rows = pl.concat(self._rows)
        self._rows, self._buffered = [], 0
        try:
            self.files.write(rows)
        except Exception as exc:  # S3 or disk: these rows are lost, the service goes on
            log.warning("prediction log write failed", extra={"rows": rows.height, "root": self.files.root,
                                                               "error": f"{type(exc).__name__}: {exc}"})
            for role, count in rows.group_by("role").len().iter_rows():
                self._give_up(role, count)
            return
        for role, count in rows.group_by("role").len().iter_rows():
            PREDICTION_LOG_ROWS.labels(role, "written").inc(count)
        with self._lock:
            self._held_rows -= rows.height

    def _give_up(self, role: Role, rows: int) -> None:
        PREDICTION_LOG_ROWS.labels(role, "failed").inc(rows)
        with self._lock:
            self._held_rows -= rows


def _rows(role: Role, entries: list[_Entry]) -> pl.DataFrame:
    """The rows of entries scored by one model in one role."""
    model = entries[0].model
    counts = [len(entry.baskets.ids) for entry in entries]
    micros = np.repeat(np.asarray([entry.scored_at for entry in entries]) * 1e6, counts).astype(np.int64)
    identity = {"model_version": model.version, "model_family": model.family, "bundle_sha256": model.sha256}
    return prediction_rows(
        [key for entry in entries for key in entry.baskets.ids],
        [week for entry in entries for week in entry.baskets.weeks],
        np.concatenate([entry.probabilities for entry in entries]),
        model.bundle.classes,
        identity,
        SERVICE,
        role,
        pl.Series(micros).cast(pl.Datetime("us", "UTC")),
    )
