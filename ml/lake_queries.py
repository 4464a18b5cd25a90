"""The saved queries on the lake: one SELECT each, run locally by DuckDB (`ml.lake_sql`) and on AWS by Athena.

Each query is a file `ml/queries/<name>.sql`, packaged with the wheel: its leading `--` comment
lines are the description, the rest is the statement. The statement reads the lake's tables
(`silver_lines`, `gold_baskets`, `predictions`; `ml.lake_sql.TABLES`) and is written in the SQL
both Athena engine v3 (Trino) and DuckDB run unchanged: unquoted column names (Glue stores them
lower-case, DuckDB matches them case-insensitively), lower-case output names, CAST(... AS DOUBLE)
before a division of counts (Trino divides integers as integers), no engine-only functions, no
trailing semicolon. It holds exactly one `?`, in a WHERE clause as Athena requires: the run id, so
every query names one run (Athena's partition projection of `run` needs that equality).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files

COMMENT = "--"


@dataclass(frozen=True)
class LakeQuery:
    """A saved query: its name (the file's), what it answers, and its SQL with one `?` for the run id."""

    name: str
    description: str
    sql: str


def parse(name: str, text: str) -> LakeQuery:
    """A query file's text as a LakeQuery: the leading comment lines, joined, are its description."""
    lines = text.strip().splitlines()
    leading = 0
    while leading < len(lines) and lines[leading].startswith(COMMENT):
        leading += 1
    description = " ".join(line.removeprefix(COMMENT).strip() for line in lines[:leading])
    return LakeQuery(name, description, "\n".join(lines[leading:]).strip())


def _load() -> tuple[LakeQuery, ...]:
    folder = files("ml").joinpath("queries")
    return tuple(parse(entry.name.removesuffix(".sql"), entry.read_text(encoding="utf-8"))
                 for entry in sorted(folder.iterdir(), key=lambda entry: entry.name) if entry.name.endswith(".sql"))


LAKE_QUERIES: tuple[LakeQuery, ...] = _load()


def lake_query(name: str) -> LakeQuery:
    """The saved query called `name`; a KeyError naming the known ones when there is none."""
    for query in LAKE_QUERIES:
        if query.name == name:
            return query
    raise KeyError(f"no saved lake query {name!r}; known: {', '.join(q.name for q in LAKE_QUERIES)}")
