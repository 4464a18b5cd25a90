"""A challenger in shadow: the champion answers every request, the challenger scores the same baskets afterwards.

The prediction routes hand each answered request's baskets to `submit` (a deque append, as
the prediction log's `record`). Every `interval` seconds the shadow thread takes what waits,
scores it with the challenger loaded at that moment, in calls of up to `max_batch_baskets`
(one featurizer call for many requests costs far less per basket than one per request, as in
`api.batcher`), and hands the probabilities to the prediction log with role `challenger`,
for the same baskets (ids and weeks) as the champion's rows.

Memory is bounded by lines, what a waiting request's columns cost (a basket holds 1 to 500
lines): at most `max_lines` lines wait, a request counting `REQUEST_LINES` more than its own
lines; beyond that a request's baskets are not given to the challenger,
and are counted (`retail_shadow_baskets_total{outcome="over_limit"}`), so the challenger costs
the champion nothing but the CPU its own scoring takes. Readiness never depends on it: until
a challenger is loaded (or when none can be) its baskets are counted as `not_loaded`.

At shutdown (`close`) what waits is scored until a deadline; what still waits then is counted
as `shutdown`, so a backlog cannot hold the pod past its grace period (api/shutdown.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator

from api.metrics import BACKGROUND_CPU, SHADOW_BASKETS
from api.model_store import ModelStore
from api.prediction_log import LoggedBaskets, PredictionLog
from ml.compiled import BasketColumns
from ml.prediction_log import CHALLENGER

log = logging.getLogger("retail.api.shadow")
REQUEST_LINES = 6
"""What a waiting request costs beside its lines, in lines: its columns' own lists and dicts take ~2.2 KB, a line
~370 bytes (tracemalloc over `api.body.parse_single`: 2.6 KB for a 1-line basket, 184 KB for a 500-line one)."""
_Job = tuple[LoggedBaskets, BasketColumns]


class ShadowScorer:
    def __init__(self, challenger: ModelStore, predictions: PredictionLog, interval: float, max_lines: int,
                 max_batch_baskets: int):
        self.challenger, self.predictions = challenger, predictions
        self.interval, self.max_lines, self.max_batch_baskets = interval, max_lines, max_batch_baskets
        self._pending: deque[_Job] = deque()
        self._lock = threading.Lock()
        self._held = 0  # lines submitted and not yet scored (or given up)
        self._stopping = threading.Event()
        self._deadline = float("inf")  # monotonic time after which what waits is given up (set by `close`)
        self._thread = threading.Thread(target=self._run, name="shadow-scoring", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self, seconds: float) -> bool:
        """Score what waits for at most `seconds`, count the rest as `shutdown` and stop; False (and logged) when a
        scoring call still ran at the deadline."""
        self._deadline = time.monotonic() + seconds
        self._stopping.set()
        self._thread.join(seconds)
        if self._thread.is_alive():
            log.warning("challenger scoring still ran at the shutdown's deadline", extra={"seconds": seconds})
            return False
        return True

    def submit(self, baskets: LoggedBaskets, columns: BasketColumns) -> None:
        """Baskets the champion answered, for the challenger to score later; never waits."""
        lines = _lines(columns)
        with self._lock:
            held = self._held + lines <= self.max_lines
            if held:
                self._held += lines
                self._pending.append((baskets, columns))
        if not held:
            SHADOW_BASKETS.labels("over_limit").inc(len(baskets.ids))

    def _run(self) -> None:
        cpu = BACKGROUND_CPU.labels("shadow")
        stopping = False
        while not stopping:
            stopping = self._stopping.wait(self.interval)
            started = time.thread_time()
            self._score_waiting()
            cpu.inc(time.thread_time() - started)

    def _score_waiting(self) -> None:
        jobs = []
        while self._pending:
            jobs.append(self._pending.popleft())
        for calls in _calls(jobs, self.max_batch_baskets):
            count = sum(len(baskets.ids) for baskets, _ in calls)
            try:
                outcome = "shutdown" if time.monotonic() >= self._deadline else self._score(calls)
                SHADOW_BASKETS.labels(outcome).inc(count)
            except Exception:  # the challenger's failure is the challenger's: counted, logged, never answered
                log.exception("challenger scoring failed", extra={"baskets": count})
                SHADOW_BASKETS.labels("failed").inc(count)
            finally:
                with self._lock:
                    self._held -= sum(_lines(columns) for _, columns in calls)

    def _score(self, calls: list[_Job]) -> str:
        """Score the jobs in one call and log the rows; the outcome to count them under."""
        model = self.challenger.current
        if model is None:
            return "not_loaded"
        columns = BasketColumns.concat([columns for _, columns in calls])
        _, probabilities = model.bundle.score_columns(columns)
        if len(probabilities) != columns.baskets:
            raise RuntimeError(f"the challenger returned {len(probabilities)} rows for {columns.baskets} baskets")
        start = 0
        for baskets, _ in calls:
            end = start + len(baskets.ids)
            self.predictions.record(CHALLENGER, model, baskets, probabilities[start:end])
            start = end
        return "scored"


def _lines(columns: BasketColumns) -> int:
    """What a waiting request counts against `max_lines`."""
    return columns.offsets[-1] + REQUEST_LINES


def _calls(jobs: list[_Job], max_baskets: int) -> Iterator[list[_Job]]:
    """Consecutive jobs in groups of at most `max_baskets` baskets (a bigger job alone)."""
    group: list[_Job] = []
    size = 0
    for job in jobs:
        baskets = len(job[0].ids)
        if group and size + baskets > max_baskets:
            yield group
            group, size = [], 0
        group.append(job)
        size += baskets
    if group:
        yield group
