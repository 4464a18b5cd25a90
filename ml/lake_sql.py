"""The lake's tables as DuckDB views, in process over a local lake, and the saved queries run on them.

The tables are those the Glue catalog declares on AWS, with the same names and a string column
`run`, the lake run id, read from each file's path (the folder below the zone):

  silver_lines   silver/<run>/lines/*.parquet                                  validated lines
  gold_baskets   gold/<run>/baskets/STORE_REGION=../BASKET_TYPE=../*.parquet    basket features
  predictions    predictions/<run>/baskets/week=YYYYWW/*.parquet                `retail score`'s predictions

Gold's `key=value` folder names are columns too (DuckDB's hive partitioning), as in Glue, and read
the same: the folders name the values as they are (`BASKET_TYPE=Small Shop`, ml.lake), and DuckDB
decodes the percent-encoded folders of runs written before (`Small%20Shop`) to the same value. The
predictions' `week=` folders are not columns, as Glue's table has none (each row holds its
SHOP_WEEK). One difference remains, in gold: Glue leaves out the columns whose names depend on the
run's data (a share per division, one-hot columns), which DuckDB reads; the saved queries use none.
Because of those columns gold's files are read by column name. A filter on `run` is applied to the
list of files before any is opened (DuckDB prunes files by filters on the file name), so a query
that names one run reads that run's files only. The predictions' `run` is a `retail score` run's
id, not a pipeline run's, so it never equals silver's or gold's. The service's log
(`predictions/service/week=..`) is not a run's `baskets/`, so not in `predictions`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from ml.lake import SILVER_LINES_FOLDER, Lake, silver_runs
from ml.lake_queries import LakeQuery


@dataclass(frozen=True)
class LakeTable:
    """A table of the lake: its files are `<zone>/<run>/<folder>/**/*.parquet`."""

    name: str
    zone: str
    folder: str
    partitioned: bool = False  # `key=value` folders below `folder` are columns
    by_name: bool = False  # its runs' files may differ in columns: read by column name

    def pattern(self, run: str = "*") -> str:
        """The glob of the table's files (of one run, or all), relative to the lake root."""
        return f"{self.zone}/{run}/{self.folder}/**/*.parquet"


TABLES = (
    LakeTable("silver_lines", "silver", SILVER_LINES_FOLDER),
    LakeTable("gold_baskets", "gold", "baskets", partitioned=True, by_name=True),
    LakeTable("predictions", "predictions", "baskets"),
)


class LakeQueryError(Exception):
    """A saved query cannot run on this lake: the lake, the run or a table's files are missing."""


def local_base(lake_root: str) -> str:
    """The lake root as an absolute local folder; a LakeQueryError when it is on S3 or does not exist."""
    if "://" in lake_root:
        raise LakeQueryError(f"lake {lake_root}: the saved queries run here over a local lake only; on AWS they are "
                             "Athena named queries over the Glue catalog of the lake")
    base = Lake(lake_root).base
    if not Path(base).is_dir():
        raise LakeQueryError(f"lake {lake_root}: no such folder")
    return base


def newest_run(lake_root: str) -> str:
    """The newest pipeline run of the local lake at `lake_root` holding silver lines (`ml.lake.silver_runs`)."""
    base = local_base(lake_root)
    runs = silver_runs(Lake(lake_root).fs, f"{base}/silver")
    if not runs:
        raise LakeQueryError(f"lake {lake_root}: no pipeline run under silver/ holds lines yet; give the run, or run "
                             "`retail pipeline run` first")
    return runs[-1]


def tables_read(query: LakeQuery) -> tuple[LakeTable, ...]:
    """The tables a query names."""
    return tuple(table for table in TABLES if re.search(rf"\b{table.name}\b", query.sql, re.IGNORECASE))


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def view_sql(table: LakeTable, base: str) -> str:
    """The CREATE VIEW of a table over the lake folder `base`: its files' columns, partitions, and `run`."""
    zone = f"{base}/{table.zone}/"
    options = (f"filename = true, hive_partitioning = {str(table.partitioned).lower()}"
               + (", union_by_name = true" if table.by_name else ""))
    return (f"CREATE VIEW {table.name} AS SELECT * EXCLUDE (filename), "
            f"split_part(substr(filename, {len(zone) + 1}), '/', 1) AS run "
            f"FROM read_parquet({_literal(f'{base}/{table.pattern()}')}, {options})")


def has_files(base: str, table: LakeTable) -> bool:
    """Whether the lake folder `base` holds a file of `table`."""
    return next(Path(base).glob(table.pattern()), None) is not None


def connect(lake_root: str, tables: tuple[LakeTable, ...] = TABLES, max_memory_gb: float | None = None,
            scratch: Path | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with a view of each of `tables` that has files in the local lake at `lake_root`; at
    most `max_memory_gb` of memory, spilling to `scratch` beyond it."""
    base = local_base(lake_root)
    config: dict[str, str | bool | int | float | list[str]] = {}
    if max_memory_gb is not None:
        config["memory_limit"] = f"{max_memory_gb}GB"
    if scratch is not None:
        config["temp_directory"] = str(scratch)
    connection = duckdb.connect(config=config)
    for table in tables:
        if has_files(base, table):
            connection.execute(view_sql(table, base))
    return connection


def run_query(query: LakeQuery, run: str, lake_root: str, max_memory_gb: float | None = None,
              scratch: Path | None = None) -> pa.Table:
    """A saved query's answer for one run of the local lake at `lake_root`, with the run id bound to its `?`.

    A LakeQueryError when the lake is missing or on S3, a table the query reads has no files, or the run has
    none of them."""
    tables = tables_read(query)
    base = local_base(lake_root)
    empty = [table for table in tables if not has_files(base, table)]
    if empty:
        raise LakeQueryError("; ".join(f"{query.name} reads {table.name}: the lake at {lake_root} has no "
                                       f"{table.pattern()} yet" for table in empty))
    if not any(Path(base, table.zone, run, table.folder).is_dir() for table in tables):
        folders = ", ".join(f"{table.zone}/{run}/{table.folder}/" for table in tables)
        raise LakeQueryError(f"run {run!r}: the lake at {lake_root} has no {folders}")
    with connect(lake_root, tables, max_memory_gb, scratch) as connection:
        relation = connection.sql(query.sql, params=[run])
        assert relation is not None  # a SELECT gives a relation
        return relation.to_arrow_table()
