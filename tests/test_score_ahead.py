"""`ml.score._ahead`: chunks are read back and validated on a second thread, one ahead of the chunk being scored."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from ml.score import _ahead


def test_results_come_in_order_each_made_on_another_thread_one_ahead_at_most():
    started: list[int] = []
    threads: set[str] = set()
    ready = {i: threading.Event() for i in range(6)}

    def square(i: int) -> int:
        started.append(i)
        threads.add(threading.current_thread().name)
        ready[i].set()
        return i * i

    seconds = Counter()
    got = []
    for i, (item, result) in enumerate(_ahead(square, list(range(6)), seconds)):
        got.append((item, result))
        if i + 1 < 6:  # the next one is made while the caller holds this one
            assert ready[i + 1].wait(5)
        time.sleep(0.01)
        assert started == list(range(min(i + 2, 6)))  # and not the one after it
    assert got == [(i, i * i) for i in range(6)]
    assert threading.current_thread().name not in threads
    assert seconds["wait"] >= 0


def test_an_error_is_raised_to_the_caller_at_its_item_and_later_items_are_not_made():
    started: list[int] = []

    def fail_at_two(i: int) -> int:
        started.append(i)
        if i == 2:
            raise ValueError("chunk 2 is bad")
        return i

    got = []
    with pytest.raises(ValueError, match="chunk 2 is bad"):
        for item, _ in _ahead(fail_at_two, list(range(6)), Counter()):
            got.append(item)
    assert got == [0, 1]
    assert started == [0, 1, 2]


def test_closing_waits_for_the_result_being_made():
    making, made = threading.Event(), threading.Event()

    def slow(i: int) -> int:
        if i == 1:
            making.set()
            time.sleep(0.2)
            made.set()
        return i

    results = _ahead(slow, [0, 1, 2], Counter())
    assert next(results) == (0, 0)
    assert making.wait(5)
    results.close()
    assert made.is_set()


def test_no_items_give_no_results():
    assert list(_ahead(lambda i: i, [], Counter())) == []
