"""The saved lake queries (ml/queries/) answer, by DuckDB over a local lake, what Polars computes from the same files.

The lake holds two runs landed by the lake code (`ml.labels.land`: raw zone, validation, silver),
from two synthetic files of different sizes and seeds, so a query that read the other run, or
both, would answer differently. Each expectation is computed by another route than the SQL's
(a week-by-week loop for the unseen products, distinct counts per group for the label mix).
The views' `run` column and partitions are checked on gold and predictions files written by
`Lake.write_partitioned`, and a filter on `run` is shown to keep DuckDB off another run's files.
Parsing each query with sqlglot in the Trino and DuckDB dialects is not done: sqlglot is not
installed here.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from ml.labels import land
from ml.lake import SILVER_LINES, Lake
from ml.lake_queries import LAKE_QUERIES, LakeQuery, lake_query, parse
from ml.lake_sql import LakeQueryError, connect, newest_run, run_query, tables_read
from ml.schema import BASKET_KEY, LABEL
from ml.synth import SynthConfig, generate
from tests.helpers import write_text_csv

WEEK = "SHOP_WEEK"
QUERY_FILES = Path(__file__).resolve().parents[1] / "ml" / "queries"


def synthetic_csv(path: Path, rows: int, seed: int) -> Path:
    """A synthetic export of 8 weeks over 300 products, so products come back week after week."""
    frame = pl.from_arrow(generate(SynthConfig(rows=rows, seed=seed, weeks=8, products=300)))
    return write_text_csv(frame.select(pl.all().cast(pl.String)), path)


def two_run_lake(root: Path) -> tuple[str, str]:
    """A lake with two silver runs landed from two different files; their ids, oldest first."""
    lake = Lake(str(root / "lake"))
    runs = [land(synthetic_csv(root / f"in-{seed}.csv", rows, seed), lake).run_id
            for rows, seed in ((3_000, 5), (2_000, 6))]
    assert len(set(runs)) == 2
    return runs[0], runs[1]


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> tuple[str, tuple[str, str]]:
    root = tmp_path_factory.mktemp("lake-queries")
    runs = two_run_lake(root)
    return str(root / "lake"), runs


def silver_lines(lake_root: str, run: str) -> pl.DataFrame:
    return pl.read_parquet(f"{lake_root}/silver/{run}/{SILVER_LINES}")


def answer(name: str, lake_root: str, run: str) -> pl.DataFrame:
    return pl.DataFrame(run_query(lake_query(name), run, lake_root))


# ---- the query files ----------------------------------------------------------------------------------------------
def test_every_query_file_is_a_saved_query_with_a_description_and_one_run_parameter():
    assert sorted(q.name for q in LAKE_QUERIES) == sorted(p.stem for p in QUERY_FILES.glob("*.sql"))
    assert {"weekly_label_mix", "unseen_product_rate", "spend_by_region_format"} <= {q.name for q in LAKE_QUERIES}
    for query in LAKE_QUERIES:
        assert 0 < len(query.description) <= 1024, query.name  # Athena's limit on a named query's description
        assert query.sql.lstrip().upper().startswith(("SELECT", "WITH")), query.name
        assert query.sql.count("?") == 1 and ";" not in query.sql, query.name
        assert re.search(r"WHERE\s+run\s*=\s*\?", query.sql), query.name  # Athena takes `?` in a WHERE clause only
        assert '"' not in query.sql, query.name  # unquoted names: Glue keeps them lower-case, DuckDB matches any case
        assert tables_read(query), query.name


def test_a_query_file_s_leading_comment_is_its_description_and_the_rest_its_sql():
    query = parse("q", "-- What it answers,\n--   on two lines.\nSELECT 1\nFROM t -- not the description\n")
    assert query == LakeQuery("q", "What it answers, on two lines.", "SELECT 1\nFROM t -- not the description")


def test_an_unknown_query_name_is_a_key_error_naming_the_known_ones():
    with pytest.raises(KeyError, match="no saved lake query 'nope'; known: .*weekly_label_mix"):
        lake_query("nope")


# ---- answers against Polars ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", [0, 1])
def test_weekly_label_mix_counts_each_week_s_baskets_by_label(lake, which):
    lake_root, runs = lake
    lines = silver_lines(lake_root, runs[which])
    week_baskets = lines.group_by(WEEK).agg(pl.col(BASKET_KEY).n_unique().alias("week_baskets"))
    expected = (lines.group_by(WEEK, LABEL).agg(pl.col(BASKET_KEY).n_unique().alias("baskets"))
                .join(week_baskets, on=WEEK)
                .select(pl.col(WEEK).alias("shop_week"), pl.col(LABEL).alias("label"), "baskets",
                        (pl.col("baskets") / pl.col("week_baskets")).alias("share"))
                .sort("shop_week", "label"))
    got = answer("weekly_label_mix", lake_root, runs[which])
    assert_frame_equal(got, expected, check_dtypes=False)
    assert got["baskets"].sum() == lines[BASKET_KEY].n_unique()


@pytest.mark.parametrize("which", [0, 1])
def test_unseen_product_rate_counts_products_no_earlier_week_of_the_run_held(lake, which):
    lake_root, runs = lake
    lines = silver_lines(lake_root, runs[which])
    seen: set[str] = set()
    rows = []
    for week in sorted(lines[WEEK].unique()):
        products = lines.filter(pl.col(WEEK) == week)["PROD_CODE"].to_list()
        unseen_lines = sum(product not in seen for product in products)
        distinct = set(products)
        unseen = distinct - seen
        rows.append({"shop_week": week, "lines": len(products), "unseen_lines": unseen_lines,
                     "unseen_line_rate": unseen_lines / len(products), "products": len(distinct),
                     "unseen_products": len(unseen), "unseen_product_rate": len(unseen) / len(distinct)})
        seen |= distinct
    got = answer("unseen_product_rate", lake_root, runs[which])
    assert_frame_equal(got, pl.DataFrame(rows), check_dtypes=False)
    assert got["unseen_product_rate"][0] == 1.0 and 0 < got["unseen_product_rate"][-1] < 1  # products come back


@pytest.mark.parametrize("which", [0, 1])
def test_spend_by_region_format_sums_the_lines_spend_and_counts_baskets(lake, which):
    lake_root, runs = lake
    lines = silver_lines(lake_root, runs[which])
    expected = (lines.group_by("STORE_REGION", "STORE_FORMAT")
                .agg(pl.col(BASKET_KEY).n_unique().alias("baskets"), pl.col("SPEND").sum().alias("spend"))
                .select(pl.col("STORE_REGION").alias("store_region"), pl.col("STORE_FORMAT").alias("store_format"),
                        "baskets", "spend", (pl.col("spend") / pl.col("baskets")).alias("spend_per_basket"),
                        (pl.col("spend") / lines["SPEND"].sum()).alias("spend_share"))
                .sort("store_region", "store_format"))
    got = answer("spend_by_region_format", lake_root, runs[which])
    assert_frame_equal(got, expected, check_dtypes=False, rel_tol=1e-9)
    assert got["baskets"].sum() == lines[BASKET_KEY].n_unique()  # a basket has one store


# ---- the views ----------------------------------------------------------------------------------------------------
def test_the_newest_silver_run_is_the_default_run(lake):
    lake_root, runs = lake
    assert newest_run(lake_root) == max(runs)


def test_a_filter_on_run_reads_that_run_s_files_only(lake, tmp_path):
    lake_root, runs = lake
    copy = shutil.copytree(lake_root, tmp_path / "lake")
    broken = copy / "silver" / "29991231T000000Z-broken" / SILVER_LINES
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not parquet at all")
    got = answer("weekly_label_mix", str(copy), runs[0])
    assert_frame_equal(got, answer("weekly_label_mix", lake_root, runs[0]))
    with connect(str(copy)) as connection, pytest.raises(Exception, match="29991231T000000Z-broken"):
        connection.sql("SELECT COUNT(*) FROM silver_lines WHERE SHOP_WEEK > 0").fetchall()  # all runs: fails


def test_gold_has_its_partitions_and_run_as_columns_and_predictions_run_only(tmp_path):
    lake = Lake(str(tmp_path))
    gold = {"run-a": pl.DataFrame({"BASKET_KEY": ["1", "2", "3"], "n_lines": [2, 1, 4], "share_D1": [0.5, 0.0, 1.0],
                                   "STORE_REGION": ["E01", "E01", "W02"], "BASKET_TYPE": ["Top Up"] * 3}),
            "run-b": pl.DataFrame({"BASKET_KEY": ["9"], "n_lines": [3], "share_D7": [1.0],  # other divisions
                                   "STORE_REGION": ["N03"], "BASKET_TYPE": ["Full Shop"]})}
    for run, frame in gold.items():
        lake.write_partitioned(frame, ["STORE_REGION", "BASKET_TYPE"], "gold", run, "baskets")
    predictions = pl.DataFrame({"BASKET_KEY": ["1", "2"], "prediction": ["LA", "MM"], "week": [200607, 200608]})
    lake.write_partitioned(predictions, ["week"], "predictions", "score-1", "baskets")
    lake.write_partitioned(predictions, ["week"], "predictions", "service")  # the service's log: not a run
    with connect(str(tmp_path)) as connection:
        got = pl.DataFrame(connection.sql("SELECT run, BASKET_KEY, STORE_REGION, BASKET_TYPE, n_lines, share_D1, "
                                          "share_D7 FROM gold_baskets").to_arrow_table())
        scored = pl.DataFrame(connection.sql("SELECT * FROM predictions").to_arrow_table())
    expected = pl.concat([frame.with_columns(run=pl.lit(run)) for run, frame in gold.items()], how="diagonal")
    assert_frame_equal(got.sort("BASKET_KEY"), expected.select(got.columns).sort("BASKET_KEY"), check_dtypes=False)
    # As Glue declares it: the files' columns and run, not the week=YYYYWW folders (the rows hold SHOP_WEEK).
    assert_frame_equal(scored.sort("BASKET_KEY"), predictions.drop("week").with_columns(run=pl.lit("score-1")))


# ---- what cannot run ----------------------------------------------------------------------------------------------
def test_a_run_the_lake_does_not_hold_is_named(lake):
    lake_root, _ = lake
    with pytest.raises(LakeQueryError, match=r"run '20000101T000000Z-none': .* no silver/20000101T000000Z-none/lines/"):
        run_query(lake_query("weekly_label_mix"), "20000101T000000Z-none", lake_root)


def test_a_missing_or_remote_lake_and_a_table_without_files_are_named(tmp_path):
    with pytest.raises(LakeQueryError, match="no such folder"):
        run_query(lake_query("weekly_label_mix"), "run", str(tmp_path / "nowhere"))
    with pytest.raises(LakeQueryError, match="local lake only"):
        run_query(lake_query("weekly_label_mix"), "run", "s3://bucket/lake")
    with pytest.raises(LakeQueryError, match=r"weekly_label_mix reads silver_lines: .* has no silver/\*/lines/"):
        run_query(lake_query("weekly_label_mix"), "run", str(tmp_path))
    with pytest.raises(LakeQueryError, match="no pipeline run under silver/ holds lines yet"):
        newest_run(str(tmp_path))
