"""The featurizer's fit over a scan holds no line-sized state: exact medians in bounded pieces, few tier pairs.

Medians taken a bucket of groups at a time (`ml.medians.bucketed_medians`) or by radix selection
(`selected_medians`) must be Polars' own medians bit for bit (even and odd counts, repeated values, negative
values, nulls), and a bucket must hold about the rows it is sized for. Fitting over a scan of silver lines must run
no streaming query that falls back to Polars' in-memory engine (an `in-memory-map` node in its physical plan, as
Polars' median has), and tier estimation must receive the (basket, product) pairs of the products without an exact
tier only.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from ml.features import BasketFeaturizer
from ml.medians import bucketed_medians, selected_median, selected_medians
from ml.schema import BASKET_KEY
from ml.tiers import ESTIMATED, ProductTiers, TierLines
from ml.validate import validate
from tests.helpers import canonical_text


def values_in_groups(seed: int) -> pl.DataFrame:
    """Groups of every size from 1 up, of continuous, rounded (repeated) and signed values, with nulls."""
    rng = np.random.default_rng(seed)
    n = 4_000
    values = {0: rng.lognormal(size=n), 1: np.round(rng.normal(size=n) * 3, 1),
              2: rng.choice([0.0, 1.0, 2.5, 1e-300, -7.0, 1e300], n)}[seed % 3]
    group = np.minimum(rng.geometric(0.05, n), 60).astype(str)
    return pl.DataFrame({"g": group, "v": values}).with_columns(
        pl.when(pl.int_range(pl.len()) % 17 == 3).then(None).otherwise(pl.col("v")).alias("v"),
        pl.when(pl.int_range(pl.len()) % 101 == 5).then(None).otherwise(pl.col("g")).alias("g"),
    )


@pytest.mark.parametrize("seed", range(6))
def test_medians_in_pieces_are_polars_medians_bit_for_bit(seed):
    frame = values_in_groups(seed)
    expected = frame.group_by("g").agg(pl.col("v").median().alias("m")).sort("g", nulls_last=False)
    selected = selected_medians(frame.lazy(), ["g"], "v", "m").sort("g", nulls_last=False)
    assert_frame_equal(selected, expected.drop_nulls("m"), check_exact=True)
    bucketed = bucketed_medians(frame.lazy(), ["g"], "v", "m", frame.height, 300).sort("g", nulls_last=False)
    assert_frame_equal(bucketed, expected, check_exact=True)
    assert selected_median(frame.lazy(), "v") == frame["v"].median()
    assert selected_median(frame.lazy().filter(pl.lit(False)), "v") is None


def test_a_bucket_holds_about_the_rows_it_is_sized_for(monkeypatch):
    frame = values_in_groups(0)
    held = []
    collect = pl.LazyFrame.collect

    def counting(self, *args, **kwargs):
        result = collect(self, *args, **kwargs)
        held.append(result.height)
        return result

    monkeypatch.setattr(pl.LazyFrame, "collect", counting)
    bucketed_medians(frame.lazy(), ["g"], "v", "m", frame.height, 400)
    assert len(held) == 10 and sum(held) == frame.height
    assert max(held) < 1.5 * 400 + 200, held  # the largest group has about 200 rows


@pytest.fixture(scope="module")
def silver(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("silver") / "lines.parquet"
    validate(canonical_text(20_000, seed=4)).lines.write_parquet(path)
    return path


def test_fitting_over_a_scan_runs_no_query_that_falls_back_to_the_in_memory_engine(silver, monkeypatch):
    nodes: list[str] = []
    collect, collect_all = pl.LazyFrame.collect, pl.collect_all

    def physical_nodes(query: pl.LazyFrame) -> list[str]:
        graph = query.show_graph(engine="streaming", plan_stage="physical", raw_output=True)
        assert isinstance(graph, str)
        return [label.split("\\n")[0] for label in re.findall(r'label="([^"]*)"', graph)]

    def watched(self, *args, **kwargs):
        if kwargs.get("engine") == "streaming":
            nodes.extend(physical_nodes(self))
        return collect(self, *args, **kwargs)

    def watched_all(queries, *args, **kwargs):
        if kwargs.get("engine") == "streaming":
            for query in queries:
                nodes.extend(physical_nodes(query))
        return collect_all(queries, *args, **kwargs)

    monkeypatch.setattr(pl.LazyFrame, "collect", watched)
    monkeypatch.setattr(pl, "collect_all", watched_all)
    BasketFeaturizer(seed=7).fold_parts(pl.scan_parquet(silver), rows_per_piece=5_000)
    assert "multi-scan[parquet]" in nodes and "group-by" in nodes  # the watch saw the fit's queries
    assert "in-memory-map" not in nodes


def test_tier_estimation_receives_the_pairs_of_products_without_an_exact_tier_only(silver, monkeypatch):
    received = []
    estimate = ProductTiers._estimate

    def watched(self, pairs, exact, start):
        received.append(pairs)
        return estimate(self, pairs, exact, start)

    monkeypatch.setattr(ProductTiers, "_estimate", watched)
    lines = pl.read_parquet(silver)
    tiers = ProductTiers().fit(TierLines.from_lines(lines.lazy()))
    (pairs,) = received
    estimated = tiers.products_.with_row_index("p").filter(pl.col("tier_kind") == ESTIMATED)
    assert set(np.unique(pairs.product)) <= set(estimated["p"].to_list())
    expected = lines.filter(pl.col("PROD_CODE").is_in(estimated["PROD_CODE"].implode())).select(
        BASKET_KEY, "PROD_CODE").unique().height
    assert len(pairs.product) == expected
    assert 0 < expected < lines.select(BASKET_KEY, "PROD_CODE").unique().height
    assert (pairs.basket.dtype, pairs.product.dtype, pairs.lines.dtype) == (np.uint32, np.uint32, np.uint16)
