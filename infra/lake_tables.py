"""The lake's three tables as Glue declares them: where each run's files are, their columns, their partitions.

      silver_lines   <root>/silver/${run}/lines/                                   validated lines
      gold_baskets   <root>/gold/${run}/baskets/STORE_REGION=${store_region}/BASKET_TYPE=${basket_type}/
      predictions    <root>/predictions/${run}/baskets/                             `retail score`'s rows

<root> is the lake root, `s3://<lake bucket>/<lake prefix>`. `ml.lake_sql.TABLES` names the same tables, zones and
folders for DuckDB over a local lake (tests/infra/test_lake_catalog.py checks that they agree).

Every table has the partition column `run` (the id of the run that wrote it: a pipeline run's for silver and gold,
a `retail score` run's for predictions), projected with type `injected`: a query names its run in the WHERE clause
(a literal, or the `?` of a saved query given as an execution parameter) and Athena reads that run's folder only.
Partition projection (https://docs.aws.amazon.com/athena/latest/ug/partition-projection.html) needs no partitions
registered in Glue: `projection.enabled`, `projection.<column>.type` (and `.values` for an
enum), and `storage.location.template`, which must hold a `${column}` for every partition column and end with a
slash (https://docs.aws.amazon.com/athena/latest/ug/partition-projection-setting-up.html). A query without a run
fails with CONSTRAINT_VIOLATION rather than reading every run
(https://docs.aws.amazon.com/athena/latest/ug/partition-projection-dynamic-id-partitioning.html).

gold_baskets has two more partition columns, enums of ml.schema's domains, because ml.lake writes the basket
table hive-partitioned by them and keeps them out of the files. Its folders name each value as it is
(`BASKET_TYPE=Small Shop/`, `Lake.write_partitioned`, which refuses a value that cannot name a folder and an S3 key
as it is: no `/`, `=`, `%` or `,`), and Athena puts an enum value into the template as it is (Trino's projection
escapes no value when `storage.location.template` is set), so the enum's values are ml.schema's domain values and
`basket_type` reads `Small Shop`, as DuckDB does locally. A value outside the enum is no error: Athena reads no
partition and returns no rows (https://docs.aws.amazon.com/athena/latest/ug/partition-projection.html), so the
enum lists the domains whole. Runs written before the folders were unencoded have `BASKET_TYPE=Small%20Shop/`,
which this table does not find (their `Small Shop`, `Top Up` and `Full Shop` baskets read as none); local readers
(pyarrow, Polars, DuckDB) decode either spelling to `Small Shop`.

predictions' `run` is the id of a `retail score` run (ml/score.py `run_id_now`: its UTC time and a random suffix),
not a pipeline run: its folders are not silver's or gold's, so joining predictions to silver_lines on `run`
matches nothing; join on the basket (`basket_key`) within the runs each side names. The service's prediction log
(`predictions/service/week=YYYYWW/`, ml/prediction_log.py) has no `baskets/` folder, so the table does not read
it: `run = 'service'` resolves to `predictions/service/baskets/`, which holds nothing.

predictions is not partitioned by week: its week=YYYYWW folders lie below the run's partition, which Athena reads
with its subfolders (a table over CloudTrail's AWSLogs/<account>/CloudTrail/ reads the region/year/month/day
folders below it: https://docs.aws.amazon.com/athena/latest/ug/cloudtrail-logs.html), and each row holds its week
in SHOP_WEEK. Projecting the week as an integer range would list every number of a range of years in each query,
about half of them empty folders, which the projection page advises against; as `injected` it would make every
query name one week. (DuckDB's view has a `week` column from the folder names; Athena's table has not.)

Columns come from the code that writes the files: silver_lines from ml.schema (names, order, integer or float)
and the widths ml.validate casts to (`SILVER_TYPES`); predictions from ml.prediction_log's Arrow schema; gold
from the names ml.features gives its fixed features (per label, per tier, price and composition), its
pass-through columns and the pipeline's `split`. Left out of gold are the columns whose names depend on the
fitted data: a `share_<division>` per division the fit saw and a `<COLUMN>=<value>` per vocabulary value (names
with `=` and spaces, which Athena's column names cannot hold). A test writes each table's files with the project's
own writers and compares (tests/infra/test_lake_catalog.py). Athena reads Parquet by column name, so a declared
column a file lacks (the tier features of a baseline run) reads as NULL. Glue names are lowercase, as Athena
wants them (https://docs.aws.amazon.com/athena/latest/ug/tables-databases-columns-names.html); Athena matches
the files' upper-case names to them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow as pa

from ml.features import HEADER_NUMERICS
from ml.prediction_log import ARROW_SCHEMA as PREDICTION_SCHEMA
from ml.schema import BASKET_KEY, CANONICAL_COLUMNS, DOMAINS, FLOAT_COLUMNS, INTEGER_COLUMNS, LABEL, LABELS
from ml.tiers import TIERS

RUN = "run"
"""Every table's first partition column: the lake run id, in the path right below the zone."""
PARQUET_INPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"


SILVER_TYPES: Mapping[str, pa.DataType] = {"SHOP_DATE": pa.date32(), "SHOP_WEEKDAY": pa.int8(),
                                           "SHOP_HOUR": pa.int8()}
"""The columns ml.validate writes narrower than ml.schema's kinds say (a date; one-byte weekday and hour);
the other integers are int32."""


def silver_schema() -> pa.Schema:
    """The silver lines file's columns: ml.schema's canonical columns and the basket key."""

    def arrow(column: str) -> pa.DataType:
        if column in SILVER_TYPES:
            return SILVER_TYPES[column]
        if column in INTEGER_COLUMNS:
            return pa.int32()
        return pa.float64() if column in FLOAT_COLUMNS else pa.string()

    return pa.schema([(c, arrow(c)) for c in (*CANONICAL_COLUMNS, BASKET_KEY)])


def gold_schema() -> pa.Schema:
    """The basket table's columns whose names the code fixes (ml.features, ml.pipeline's `split`), in its order."""
    per_label = [f"{stat}_{c}" for c in LABELS for stat in ("mean_p", "max_p", "min_p", "mean_log_lift", "share_top")]
    price = ["mean_log_price_index", "min_log_price_index", "max_log_price_index", "share_cheap_lines",
             "mean_log_product_index"]
    composition = ["n_lines", "total_quantity", "log_total_spend", "mean_line_spend", "share_unseen_products",
                   "n_divisions"]
    tiers = [f"{kind}_{t}" for kind in ("tier_share", "tier_hard_share", "tier_exact_share") for t in TIERS]
    tiers += ["tier_d", "tier_hard_d", "tier_exact_lines", "tier_estimated_lines", "tier_unseen_lines",
              "tier_uncertainty", "tier_min_confidence"]
    features = [*HEADER_NUMERICS, *per_label, *price, *composition, *tiers, "no_card"]
    return pa.schema([(BASKET_KEY, pa.string()), ("SHOP_WEEK", pa.int32()), (LABEL, pa.string()),
                      *[(f, pa.float64()) for f in features], ("split", pa.string())])


GLUE_TYPES: Mapping[pa.DataType, str] = {
    pa.int8(): "tinyint", pa.int16(): "smallint", pa.int32(): "int", pa.int64(): "bigint",
    pa.float32(): "float", pa.float64(): "double", pa.bool_(): "boolean", pa.date32(): "date",
    pa.string(): "string", pa.large_string(): "string",
}


def glue_type(arrow: pa.DataType) -> str:
    """The Hive type Athena reads a Parquet column of `arrow` type as. A timestamp must be in milliseconds: Athena
    engine v3 handles that precision only, and a file of another fails the query ("Precision mismatch in Timestamp
    columns causes serialization error", https://docs.aws.amazon.com/athena/latest/ug/engine-versions-reference-0003.html)."""
    if isinstance(arrow, pa.TimestampType):
        if arrow.unit != "ms":
            raise ValueError(f"{arrow}: Athena engine v3 reads timestamps in milliseconds only; write them as "
                             "timestamp[ms]")
        return "timestamp"
    if arrow not in GLUE_TYPES:
        raise ValueError(f"no Glue type for the Arrow type {arrow}")
    return GLUE_TYPES[arrow]


@dataclass(frozen=True)
class Partition:
    """A projected partition column below the run, and its folder in the path."""

    name: str
    values: tuple[str, ...]
    """The enum's values, as the folders name them (`<folder>=<value>`, unencoded)."""
    folder: str
    """The folder's name before `=`."""


@dataclass(frozen=True)
class LakeTable:
    """A table over one zone of the lake: `<root>/<zone>/${run}/<folder>/` and its partition folders below."""

    name: str
    zone: str
    folder: str
    schema: pa.Schema
    description: str
    partitions: tuple[Partition, ...] = ()
    run_of: str = "pipeline run"
    """What wrote a run's folder: `run` is that run's id."""

    def location(self, root: str) -> str:
        return f"{root}/{self.zone}/"

    def template(self, root: str) -> str:
        below = "".join(f"{p.folder}=${{{p.name}}}/" for p in self.partitions)
        return f"{root}/{self.zone}/${{{RUN}}}/{self.folder}/{below}"

    def parameters(self, root: str) -> dict[str, str]:
        """The table properties: Parquet, and partition projection (`run` injected, the others enums)."""
        projection = {f"projection.{RUN}.type": "injected"}
        for p in self.partitions:
            projection |= {f"projection.{p.name}.type": "enum", f"projection.{p.name}.values": ",".join(p.values)}
        return {"classification": "parquet", "EXTERNAL": "TRUE", "projection.enabled": "true", **projection,
                "storage.location.template": self.template(root)}

    def columns(self) -> list[dict[str, str]]:
        return [{"name": f.name.lower(), "type": glue_type(f.type)} for f in self.schema]

    def partition_keys(self) -> list[dict[str, str]]:
        run = {"name": RUN, "type": "string", "comment": f"the {self.run_of} id: name one in the WHERE clause"}
        return [run, *({"name": p.name, "type": "string", "comment": f"folder {p.folder}=<value>"}
                       for p in self.partitions)]


def _enum(column: str) -> Partition:
    return Partition(column.lower(), DOMAINS[column], column)


TABLES = (
    LakeTable("silver_lines", "silver", "lines", silver_schema(), "Validated transaction lines of a pipeline run"),
    LakeTable("gold_baskets", "gold", "baskets", gold_schema(),
              "Basket feature table of a pipeline run (fixed features; per-division and one-hot columns left out)",
              (_enum("STORE_REGION"), _enum("BASKET_TYPE"))),
    LakeTable("predictions", "predictions", "baskets", PREDICTION_SCHEMA,
              "One row per basket scored by a `retail score` run (weeks in week=YYYYWW folders below the run)",
              run_of="`retail score` run"),
)
