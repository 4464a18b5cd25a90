"""bench/serve.py's pure helpers: pacing verdicts, issue 11's target checks (the batch target once per body format),
the Arrow batch body it sends and the machine reference it times (no servers, no wrk)."""

from __future__ import annotations

import gc
import json

import pytest

import bench.serve
from api.arrow_body import parse_arrow_batch
from api.body import parse_batch
from api.schemas import EXAMPLE_BASKET
from api.settings import ApiSettings
from bench.serve import (
    PACED_RATE,
    REFERENCE_REPEATS,
    Pacing,
    Result,
    arrow_stream,
    check_targets,
    machine_reference,
    pacing_lines,
    score_targets,
)


def result(name: str = "run", requests: int = 1000, seconds: float = 1.0, failed: int = 0, p50: float = 1.0,
           p95: float = 2.0, p99: float = 3.0) -> Result:
    return Result(name, requests, seconds, failed, timeouts=0, late=0, mean_ms=p50, p50_ms=p50, p95_ms=p95,
                  p99_ms=p99)


def targets(peer: Result | None = None, pacing: Pacing | None = None, arrow_batch: Result | None = None, **changes):
    """The checks on runs that meet every target, but for `changes`."""
    runs = {"ours": result(requests=1300), "idle": result(p50=1.2), "paced": result(requests=500, p99=4.0),
            "batch": result(requests=50, p95=25.0)} | changes
    pacing = pacing or Pacing(PACED_RATE, 16, 1.0, 500, runs["paced"].throughput, 0)
    return check_targets(runs["ours"], peer, runs["idle"], runs["paced"], pacing, runs["batch"], 16, arrow_batch)


def pacing(achieved: float, late: int = 0) -> Pacing:
    return Pacing(500, 16, 10.0, round(achieved * 10), achieved, late)


def test_pacing_within_ten_percent_is_on_target_and_further_is_warned_about():
    assert pacing(455).on_target and pacing(545).on_target
    short = pacing(440)
    assert not short.on_target and round(short.gap, 3) == -0.12
    assert not any("WARNING" in line for line in pacing_lines("run", pacing(498, late=40)))
    assert any("WARNING" in line and "440 req/s" in line for line in pacing_lines("run", short))
    assert round(short.noise, 4) == round(5000**-0.5, 4)  # 500 req/s for 10 s: about 1.4%


def test_many_late_sends_are_warned_about_and_fail_the_paced_target():
    late = pacing(500, late=51)  # just over 1% of 5000
    assert late.on_target and any("waited for a free connection" in line for line in pacing_lines("run", late))
    checked = targets(pacing=late)[2]
    assert checked.met is False and "waited for a connection" in checked.note


def test_all_targets_met():
    checked = targets(peer=result(requests=100))
    assert [t.met for t in checked] == [True, True, True, True]
    assert checked[0].value == 13.0


def test_each_target_can_fail_on_its_own_number():
    checked = targets(peer=result(requests=200), idle=result(p50=1.6), paced=result(requests=500, p99=10.0),
                      batch=result(requests=30, p95=30.0))
    assert [t.met for t in checked] == [False, False, False, False]  # 6.5x; 1.6 > 1.5; 10 is not < 10; 30 not < 30


def test_skip_peer_leaves_the_ratio_unmeasured():
    ratio = targets()[0]
    assert ratio.met is None and ratio.value is None and "not measured" in ratio.row()


def test_failed_requests_or_an_off_target_rate_mean_not_met():
    assert targets(batch=result(requests=50, p95=25.0, failed=3))[3].met is False
    assert targets(peer=result(requests=100, failed=1))[0].met is False
    off = targets(pacing=Pacing(PACED_RATE, 16, 1.0, 300, 300, 0))[2]
    assert off.met is False and "achieved 300 req/s" in off.note


def test_the_batch_target_is_checked_once_per_body_format():
    checked = targets(arrow_batch=result(requests=60, p95=24.0))
    assert [t.text.rsplit(", ", 1)[-1] for t in checked[3:]] == ["JSON body", "Arrow body"]
    assert [t.met for t in checked[3:]] == [True, True]
    slow_json = targets(batch=result(requests=30, p95=41.0), arrow_batch=result(requests=60, p95=24.0))
    assert [t.met for t in slow_json[3:]] == [False, True]  # each format on its own number
    failed = targets(arrow_batch=result(requests=60, p95=24.0, failed=2))[4]
    assert failed.met is False and "2 failed requests" in failed.note


def test_the_arrow_batch_body_reads_as_the_json_batch():
    baskets = [{**EXAMPLE_BASKET, "BASKET_ID": f"B{i}", "SHOP_HOUR": i % 24} for i in range(30)]
    expected = parse_batch(json.dumps({"baskets": baskets}).encode(), "application/json")
    assert parse_arrow_batch(arrow_stream(baskets), 1000, 500) == expected


def test_the_batch_runs_alternate_the_body_formats_and_the_target_takes_the_slower_round():
    from bench.serve import BATCH_ROUNDS, slowest

    assert [order[0] for order in BATCH_ROUNDS] == ["JSON", "Arrow"]  # each format first in one round
    assert all(sorted(order) == ["Arrow", "JSON"] for order in BATCH_ROUNDS)
    rounds = [result("#1", p95=24.0), result("#2", p95=31.0)]
    assert slowest(rounds).name == "#2"
    assert not targets(arrow_batch=slowest(rounds))[-1].met


def test_the_machine_reference_times_the_parse_and_score_of_each_body_and_takes_them_in_turn(monkeypatch):
    """On a clock that moves 1 ms between any two readings, every call takes 1 ms, so the p50s are 1.0 ms; the
    scoring sees the single bodies in turn and the batch's baskets, with the collector set as the service sets it,
    and the collector is as it was afterwards."""
    ticks = iter(range(10**9))
    monkeypatch.setattr(bench.serve.time, "perf_counter", lambda: next(ticks) / 1000)
    scored: list[tuple[int, str, int]] = []
    frozen_while_scoring: set[bool] = set()

    class Bundle:
        def score_columns(self, columns):
            scored.append((columns.baskets, columns.header["STORE_FORMAT"][0], gc.get_threshold()[0]))
            if not frozen_while_scoring:  # gc.get_freeze_count walks every frozen object: 0.17 s in a late worker
                frozen_while_scoring.add(gc.get_freeze_count() > frozen_before)

    formats = ["LS", "MS", "SS"]
    singles = [json.dumps({**EXAMPLE_BASKET, "STORE_FORMAT": f}).encode() for f in formats]
    batch = json.dumps({"baskets": [EXAMPLE_BASKET] * 7}).encode()
    before, frozen_before = gc.get_threshold(), gc.get_freeze_count()
    served = ApiSettings().gc_gen0_threshold
    assert machine_reference(Bundle(), singles, batch, served) == pytest.approx({"one basket": 1.0, "batch": 1.0})
    assert gc.get_threshold() == before
    assert frozen_while_scoring == {True}  # what the process made before is out of the full collections
    assert gc.get_freeze_count() >= frozen_before  # a freeze the caller made (tests/conftest.py) is left standing
    singles_scored = [store for baskets, store, _ in scored if baskets == 1]
    assert len(singles_scored) == REFERENCE_REPEATS["one basket"] + 1  # a warm-up call, then the repeats
    assert singles_scored[:4] == ["LS", "MS", "SS", "LS"]
    assert sum(baskets == 7 for baskets, _, _ in scored) == REFERENCE_REPEATS["batch"] + 1
    assert {threshold for _, _, threshold in scored} == {served}


def test_the_scoring_targets_read_bench_score_s_report_and_say_when_it_was_not_run():
    fast, slow = ({"baskets_per_second": rate, "peak_rss_bytes": peak} for rate, peak in ((130_373, 1.44e9),
                                                                                          (99_999, 2.0e9)))
    assert [(t.value, t.met) for t in score_targets(fast)] == [(130.373, True), (1.44, True)]
    assert [t.met for t in score_targets(slow)] == [False, False]
    assert [(t.value, t.met, t.note) for t in score_targets(None)] == [(None, None, "--skip-score")] * 2
    assert "130.37 k/s  met" in score_targets(fast)[0].row()
