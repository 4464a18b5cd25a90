"""Request coalescing (api/batcher.py): what waits is scored together, within the cap and one model at a time; an
error (or a call returning the wrong number of rows) reaches the requests of its call only; a request that went away
holds up no other; the last call's largest drift is kept for the metrics; a large request finding the scorer idle is
scored on the event loop, one arriving while a call runs waits and is coalesced, and a small one always waits."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from types import SimpleNamespace
from typing import Any, TypeVar

import numpy as np
import pytest

from api.batcher import Batcher
from api.metrics import INPUT_DRIFT
from ml.compiled import BasketColumns
from tests.api.conftest import scoring_calls

CLASSES = ["LA", "MM", "UM"]
T = TypeVar("T")


def baskets(count: int) -> BasketColumns:
    """`count` baskets of one line each; the fake scorer reads only how many there are."""
    return BasketColumns(header={}, lines={}, offsets=list(range(count + 1)))


class FakeModel:
    """A loaded model whose scoring call records what it was given: row i of a call's probabilities is
    (call number, i, 0), so a request's rows tell which call scored it and where."""

    def __init__(self, calls: list[tuple[str, int]], name: str = "champion", fail: bool = False):
        self.name, self.calls, self.fail = name, calls, fail
        self.threads: list[str] = []  # the thread of each call
        self.bundle = SimpleNamespace(classes=CLASSES, score_columns=self.score_columns)
        self.drift = SimpleNamespace(observe=lambda matrix: None)

    def score_columns(self, columns: BasketColumns) -> tuple[np.ndarray, np.ndarray]:
        self.calls.append((self.name, columns.baskets))
        self.threads.append(threading.current_thread().name)
        if self.fail:
            raise RuntimeError(f"{self.name} cannot score")
        rows = np.array([[len(self.calls), i, 0] for i in range(columns.baskets)], dtype=float)
        return rows, rows


def run(scenario: Coroutine[Any, Any, T]) -> T:
    """The scenario on a loop of its own. Not `asyncio.run`: that leaves the thread with no event loop set, and
    Pulumi's mocks, which later modules on the same xdist worker use, ask the thread for one."""
    loop = asyncio.new_event_loop()
    try:  # a request the batcher never answers fails the test in seconds, not at pytest's timeout
        return loop.run_until_complete(asyncio.wait_for(scenario, 10))
    finally:
        loop.close()


NEVER_INLINE = 10**9


async def started(max_baskets: int = 2048, inline_min_baskets: int = NEVER_INLINE) -> Batcher:
    batcher = Batcher(max_baskets, inline_min_baskets)
    batcher.start()
    return batcher


def test_requests_waiting_together_are_scored_in_one_call_each_getting_its_rows():
    async def scenario():
        calls: list[tuple[str, int]] = []
        model, batcher = FakeModel(calls), await started()
        answers = await asyncio.gather(*(batcher.predict(model, baskets(n)) for n in (1, 3, 2)))
        await batcher.stop()
        return calls, answers

    calls, answers = run(scenario())
    assert calls == [("champion", 6)]
    assert [a[:, 1].tolist() for a in answers] == [[0.0], [1.0, 2.0, 3.0], [4.0, 5.0]]


def test_a_call_takes_no_more_baskets_than_the_cap_and_never_splits_a_request():
    async def scenario():
        calls: list[tuple[str, int]] = []
        model, batcher = FakeModel(calls), await started(max_baskets=4)
        answers = await asyncio.gather(*(batcher.predict(model, baskets(n)) for n in (3, 1, 2, 4)))
        await batcher.stop()
        return calls, answers

    calls, answers = run(scenario())
    assert calls == [("champion", 4), ("champion", 2), ("champion", 4)]
    assert [a[:, 0].tolist() for a in answers] == [[1, 1, 1], [1], [2, 2], [3, 3, 3, 3]]


def test_requests_holding_another_model_are_scored_in_a_call_of_their_own():
    async def scenario():
        calls: list[tuple[str, int]] = []
        old, new, batcher = FakeModel(calls, "old"), FakeModel(calls, "new"), await started()
        await asyncio.gather(batcher.predict(old, baskets(1)), batcher.predict(old, baskets(1)),
                             batcher.predict(new, baskets(1)), batcher.predict(old, baskets(1)))
        await batcher.stop()
        return calls

    assert run(scenario()) == [("old", 2), ("new", 1), ("old", 1)]


def test_a_scoring_error_reaches_the_requests_of_its_call_and_the_next_call_is_scored():
    async def scenario():
        calls: list[tuple[str, int]] = []
        broken, working, batcher = FakeModel(calls, "broken", fail=True), FakeModel(calls), await started()
        answers = await asyncio.gather(batcher.predict(broken, baskets(1)), batcher.predict(broken, baskets(2)),
                                       batcher.predict(working, baskets(1)), return_exceptions=True)
        later = await batcher.predict(working, baskets(1))
        await batcher.stop()
        return calls, answers, later

    calls, answers, later = run(scenario())
    assert [str(a) if isinstance(a, Exception) else a.shape for a in answers] == [
        "broken cannot score", "broken cannot score", (1, 3)]
    assert calls == [("broken", 3), ("champion", 1), ("champion", 1)]
    assert later.shape == (1, 3)


def test_a_request_that_went_away_does_not_hold_up_the_others():
    async def scenario():
        calls: list[tuple[str, int]] = []
        model, batcher = FakeModel(calls), await started()
        gone = asyncio.ensure_future(batcher.predict(model, baskets(2)))
        staying = asyncio.ensure_future(batcher.predict(model, baskets(1)))
        await asyncio.sleep(0)  # both are queued
        gone.cancel()
        answer = await staying
        later = await batcher.predict(model, baskets(2))
        await batcher.stop()
        return calls, answer, later, gone

    calls, answer, later, gone = run(scenario())
    assert gone.cancelled()
    assert calls == [("champion", 3), ("champion", 2)]
    assert answer[:, 1].tolist() == [2.0]  # its own row, after the two of the request that went away
    assert later[:, :2].tolist() == [[2.0, 0.0], [2.0, 1.0]]


def test_a_scoring_call_that_returns_the_wrong_number_of_rows_fails_every_request_of_the_call():
    async def scenario():
        calls: list[tuple[str, int]] = []
        model, batcher = FakeModel(calls), await started()
        scoring = model.score_columns
        model.bundle.score_columns = lambda columns: tuple(part[:-1] for part in scoring(columns))
        answers = await asyncio.gather(batcher.predict(model, baskets(1)), batcher.predict(model, baskets(2)),
                                       return_exceptions=True)
        await batcher.stop()
        return answers

    assert [str(a) for a in run(scenario())] == ["the featurizer returned 2 rows for 3 baskets"] * 2


def test_the_largest_drift_of_the_last_call_is_kept_for_the_metrics():
    async def scenario():
        calls: list[tuple[str, int]] = []
        model, batcher = FakeModel(calls), await started()
        seen: list[float | None] = []
        model.drift.observe = lambda matrix: None if len(matrix) < 2 else {"a": 0.1, "b": 0.3 * len(matrix)}
        for count in (1, 2, 3):
            await batcher.predict(model, baskets(count))
            seen.append(batcher.drift_score)
        await batcher.stop()
        return seen

    try:
        assert run(scenario()) == [None, 0.6, pytest.approx(0.9)]
        gauge = {sample.labels["feature"]: sample.value
                 for metric in INPUT_DRIFT.collect() for sample in metric.samples}
        assert gauge["a"] == 0.1 and gauge["b"] == pytest.approx(0.9)
    finally:  # the gauge is the process's: leave no made-up feature in it for later tests
        for feature in ("a", "b"):
            INPUT_DRIFT.remove(feature)


def test_a_large_request_finding_the_scorer_idle_is_scored_on_the_loop_and_a_small_one_on_the_thread():
    async def scenario():
        calls: list[tuple[str, int]] = []
        model, batcher = FakeModel(calls), await started(inline_min_baskets=3)
        large = await batcher.predict(model, baskets(3))
        small = await batcher.predict(model, baskets(2))
        await batcher.stop()
        return model.threads, large, small

    counted = {path: scoring_calls(path)[1] for path in ("loop", "thread")}
    threads, large, small = run(scenario())
    assert threads[0] == threading.current_thread().name and threads[1].startswith("scoring")
    assert large[:, :2].tolist() == [[1.0, 0.0], [1.0, 1.0], [1.0, 2.0]] and small[:, 0].tolist() == [2.0, 2.0]
    assert {path: scoring_calls(path)[1] - counted[path] for path in counted} == {"loop": 3, "thread": 2}


def test_a_large_request_arriving_while_a_call_runs_waits_and_is_coalesced_with_what_waits():
    async def scenario():
        calls: list[tuple[str, int]] = []
        model, batcher = FakeModel(calls), await started(inline_min_baskets=3)
        entered, release = threading.Event(), threading.Event()
        scoring = model.bundle.score_columns
        model.bundle.score_columns = lambda columns: (entered.set(), release.wait(10), scoring(columns))[2]
        first = asyncio.ensure_future(batcher.predict(model, baskets(1)))
        await asyncio.to_thread(entered.wait, 10)  # the first call is running on the scoring thread
        waiting = [asyncio.ensure_future(batcher.predict(model, baskets(n))) for n in (3, 4)]
        await asyncio.sleep(0)
        release.set()
        answers = await asyncio.gather(first, *waiting)
        await batcher.stop()
        return calls, model.threads, answers

    calls, threads, answers = run(scenario())
    assert calls == [("champion", 1), ("champion", 7)]
    assert all(name.startswith("scoring") for name in threads)
    assert [a[:, 1].tolist() for a in answers[1:]] == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0, 6.0]]


def test_a_scoring_error_leaves_large_requests_scored_on_the_loop_and_one_queued_behind_others_waits():
    async def scenario():
        calls: list[tuple[str, int]] = []
        broken, model, batcher = FakeModel(calls, "broken", fail=True), FakeModel(calls), await started(
            inline_min_baskets=3)
        with pytest.raises(RuntimeError):
            await batcher.predict(broken, baskets(1))  # on the thread
        await batcher.predict(model, baskets(3))  # the error left the scorer idle: on the loop
        queued = [batcher.predict(model, baskets(1)), batcher.predict(model, baskets(3))]
        await asyncio.gather(*queued)  # the large one found a request queued: it waits and is coalesced
        await batcher.stop()
        return calls, model.threads

    calls, threads = run(scenario())
    assert calls == [("broken", 1), ("champion", 3), ("champion", 4)]
    assert threads[0] == threading.current_thread().name and threads[1].startswith("scoring")
