"""The service's prediction log: a row per scored basket (`ml.prediction_log`), written as Parquet off the request path.

A prediction route hands the log what it scored (`record`): the baskets' ids and fiscal weeks (as
`api.body` parsed them, never the request body), the model and the array of probabilities, as one
tuple appended to a deque. Nothing is converted, written or waited for on the request path. A
writer thread takes everything waiting every `COLLECT_SECONDS`, turns it into rows (one
`prediction_rows` call per model and role, not one per request) and writes them once `flush_rows`
rows wait or the oldest has waited `flush_seconds`, when asked (`flush`) and at shutdown (`close`).

Memory is bounded per role: at most `max_rows` champion rows and `max_rows` challenger rows are
held, so the challenger's rows never take the champion's room. A request that would go beyond is
not logged, and its rows are counted (`retail_prediction_log_rows_total{outcome="over_limit"}`),
so a writer that falls behind never slows the service. A write that fails is logged, its rows
counted as `failed`, and the next write is tried as usual; so is any other error of the writer
thread, which keeps running. `retail_prediction_log_held_rows{role}` shows what waits: a writer
that stopped writing shows there before rows are dropped.

Files: `<root>/week=YYYYWW/part-<UTC time>-<writer>-<n>.parquet`, one per week of the baskets each
write holds; `writer` is random per process, so worker processes and pods never write the same
name. The root is a local folder or an s3:// URI (by default the lake's `predictions/service`).
Each file is written whole or not at all (`ml.prediction_log.write_whole`): locally under a hidden
name in `<root>/.partial/` (what a killed process leaves there is removed at the next start once
an hour old), then renamed; on S3 as one PutObject of bytes serialised beforehand, with no
directory markers, so writing needs s3:PutObject under the root and nothing else.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import polars as pl
import pyarrow.fs as pafs

from api.metrics import BACKGROUND_CPU, PREDICTION_LOG_HELD, PREDICTION_LOG_ROWS
from api.model_store import LoadedModel
from ml.lake import filesystem, join
from ml.prediction_log import (
    CHALLENGER,
    CHAMPION,
    SERVICE,
    WEEK,
    Role,
    prediction_rows,
    week_folder,
    write_whole,
)

log = logging.getLogger("retail.api.prediction_log")
COLLECT_SECONDS = 0.25
"""How often the writer takes what the routes recorded."""
PARTIALS = ".partial"
"""The folder under a local root where files are written before they are renamed into their week."""
STALE_PARTIAL_SECONDS = 3600.0
"""A partial file this old was left by a process killed while writing it (a write takes well under a second)."""


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
    """Where the rows go: Parquet files under a root, one per week of each write."""

    def __init__(self, root: str):
        self.root = root
        self.fs, self.base = filesystem(root)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        self.partials = join(self.base, PARTIALS) if self.local else None
        self.writer = uuid.uuid4().hex[:12]
        self._writes = 0

    def remove_stale_partials(self, older_than: float = STALE_PARTIAL_SECONDS) -> int:
        """Remove the partial files a killed process left (local roots only); returns how many."""
        if self.partials is None or not os.path.isdir(self.partials):
            return 0
        removed = 0
        for entry in os.scandir(self.partials):
            if entry.is_file() and time.time() - entry.stat().st_mtime > older_than:
                os.remove(entry.path)
                removed += 1
        return removed

    def write(self, week: int, rows: pl.DataFrame) -> str:
        """Write one week's rows as one file; returns its path."""
        self._writes += 1
        name = f"part-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%fZ}-{self.writer}-{self._writes:06d}.parquet"
        path = join(self.base, week_folder(week), name)
        write_whole(self.fs, path, rows.to_arrow(), self.partials)
        return path


class PredictionLog:
    def __init__(self, files: ServiceLogFiles, flush_rows: int, flush_seconds: float, max_rows: int):
        self.files = files
        self.flush_rows, self.flush_seconds = flush_rows, flush_seconds
        self.max_rows = max_rows
        self._pending: deque[_Entry] = deque()
        self._lock = threading.Lock()  # guards the counts below
        self._held: dict[Role, int] = {CHAMPION: 0, CHALLENGER: 0}  # recorded, not yet written (or given up)
        self._rows: list[pl.DataFrame] = []  # collected, not yet written
        self._buffered = 0  # rows in `_rows`
        self._oldest = 0.0  # monotonic time the oldest of them was collected
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._flushes: deque[threading.Event] = deque()  # `flush` calls waiting for the next write
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)

    def start(self) -> None:
        stale = self.files.remove_stale_partials()
        if stale:
            log.info("removed partial prediction log files a stopped process left", extra={"files": stale})
        self._thread.start()

    def flush(self, timeout: float) -> bool:
        """Write what was recorded before this call; False when that took longer than `timeout` seconds."""
        done = threading.Event()
        self._flushes.append(done)
        self._wake.set()
        return done.wait(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Write what is held and stop the writer; False (and logged) when that took longer than `timeout`."""
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("prediction log not written at shutdown in time: its rows are lost",
                      extra={"seconds": timeout, "held_rows": dict(self._held), "root": self.files.root})
            return False
        return True

    def record(self, role: Role, model: LoadedModel, baskets: LoggedBaskets, probabilities: np.ndarray) -> None:
        """Log the baskets `model` scored (probabilities in `model.bundle.classes` order); never waits for the
        writer. Rows over the role's memory limit are counted and dropped."""
        rows = len(baskets.ids)
        with self._lock:
            held = self._held[role] + rows <= self.max_rows
            if held:
                self._held[role] += rows
                self._pending.append(_Entry(role, model, baskets, probabilities, time.time()))
        if not held:
            PREDICTION_LOG_ROWS.labels(role, "over_limit").inc(rows)

    def _run(self) -> None:
        cpu = BACKGROUND_CPU.labels("prediction_log")
        stopping = False
        while not stopping:
            self._wake.wait(COLLECT_SECONDS)
            self._wake.clear()
            stopping = self._stopping.is_set()
            started = time.thread_time()
            self._turn(stopping)
            cpu.inc(time.thread_time() - started)

    def _turn(self, stopping: bool) -> None:
        """One turn of the writer: collect what was recorded, and write when due, asked to, or stopping."""
        flushes = [self._flushes.popleft() for _ in range(len(self._flushes))]
        try:
            self._collect()
            if stopping or flushes or self._due():
                self._write()
        except Exception:  # a bug: the rows it concerns are counted, the writer goes on
            log.exception("prediction log writer failed; its collected rows are dropped")
            self._drop_collected()
        for role, held in self._held.items():
            PREDICTION_LOG_HELD.labels(role).set(held)
        for done in flushes:
            done.set()

    def _due(self) -> bool:
        return bool(self._buffered) and (self._buffered >= self.flush_rows
                                         or time.monotonic() - self._oldest >= self.flush_seconds)

    def _collect(self) -> None:
        """Everything recorded so far, as rows."""
        entries = [self._pending.popleft() for _ in range(len(self._pending))]
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
                self._release(role, sum(len(entry.baskets.ids) for entry in group), "failed")
                continue
            self._rows.append(rows)
            self._buffered += rows.height

    def _write(self) -> None:
        """Write the collected rows, a file per week; a week whose file fails is counted and the others go on."""
        if not self._rows:
            return
        weeks = pl.concat(self._rows).partition_by(WEEK, as_dict=True)
        self._rows, self._buffered = [], 0
        for (week,), rows in weeks.items():
            outcome = "written"
            try:
                self.files.write(int(week), rows)
            except Exception as exc:  # S3 or disk: these rows are lost, the service goes on
                log.warning("prediction log write failed", extra={"rows": rows.height, "root": self.files.root,
                                                                   "error": f"{type(exc).__name__}: {exc}"})
                outcome = "failed"
            self._settle(rows, outcome)

    def _drop_collected(self) -> None:
        for rows in self._rows:
            self._settle(rows, "failed")
        self._rows, self._buffered = [], 0

    def _settle(self, rows: pl.DataFrame, outcome: str) -> None:
        for role, count in rows.group_by("role").len().iter_rows():
            self._release(role, count, outcome)

    def _release(self, role: Role, rows: int, outcome: str) -> None:
        """`rows` of `role` are no longer held: written, or lost (`outcome`)."""
        PREDICTION_LOG_ROWS.labels(role, outcome).inc(rows)
        with self._lock:
            self._held[role] -= rows


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
