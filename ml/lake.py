"""The data lake: raw, silver and gold zones under one root, local or on S3.

The root is a local folder (`./lake`) or an `s3://bucket/prefix` URI; both go through
Arrow's filesystem layer, so the same code writes to either. For an S3-compatible
endpoint other than AWS, Arrow reads `AWS_ENDPOINT_URL` from the environment.

Layout under the root:
  raw/<content-hash>/<file>             the input exactly as received (deduplicated)
  silver/<run>/lines/part-0.parquet     typed, validated lines
  silver/<run>/quarantine/part-0.parquet  rejected rows with the rule they failed
  gold/<run>/baskets/                   basket feature table, hive-partitioned by
                                        STORE_REGION and BASKET_TYPE
  gold/<run>/featurizer/                the fitted feature transformer
  manifests/<run>.json                  lineage and counts of the run

Each table of a run has a folder of its own (silver lines, silver quarantine, gold baskets): a query
engine (Athena, DuckDB; `ml.lake_sql`) reads every file under a table's folder, so no folder holds two
tables' files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ml.checksums import sha256_file

CHUNK = 8 * 1024 * 1024  # bytes copied at a time into the raw zone


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """Arrow filesystem and path for a local path or an s3:// URI."""
    if "://" not in uri:
        path = Path(uri).expanduser().resolve()
        return pafs.LocalFileSystem(), path.as_posix()
    fs, path = pafs.FileSystem.from_uri(uri)
    return fs, path


def arrow_frame(table: pa.Table) -> pl.DataFrame:
    """`pl.from_arrow` of a Table, which is always a DataFrame (only an Arrow array gives a Series); from_arrow is
    typed DataFrame | Series for any input."""
    return cast(pl.DataFrame, pl.from_arrow(table))


SILVER_LINES = "lines/part-0.parquet"
"""A run's validated lines, relative to silver/<run>/."""
SILVER_QUARANTINE = "quarantine/part-0.parquet"
"""A run's rejected rows, relative to silver/<run>/."""


def run_id_for(sha256: str) -> str:
    """A lake run's id, naming its silver and gold folders: the UTC time and the input's hash prefix."""
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{sha256[:8]}"


def join(*parts: str) -> str:
    return "/".join(p.strip("/") if i else p.rstrip("/") for i, p in enumerate(parts) if p)


def silver_runs(fs: pafs.FileSystem, silver: str) -> list[str]:
    """The runs under the folder `silver` (a lake's silver zone) that hold validated lines, oldest first (run ids
    begin with their UTC time); a run still being written, or in the layout before lines/, is not one.

    Found by one listing, with no request for a key that may not exist: on S3 such a request is answered 403,
    not 404, unless the caller may list the bucket without conditions, which the scoring role may not."""
    listed = fs.get_file_info(pafs.FileSelector(silver, recursive=True, allow_not_found=True))
    inside = (info.path[len(silver.rstrip("/")):].strip("/") for info in listed if info.type == pafs.FileType.File)
    return sorted(run for run, _, rest in (path.partition("/") for path in inside) if rest == SILVER_LINES)


@dataclass(frozen=True)
class RawRecord:
    """The raw zone entry of one input: its content hash and where the files are."""

    sha256: str
    bytes: int
    location: str
    files: tuple[str, ...]


class Lake:
    """Reads and writes the zones of one lake root."""

    def __init__(self, root: str):
        self.root = root
        self.fs, self.base = filesystem(root)

    def uri(self, *parts: str) -> str:
        """A location inside the lake, as a URI (or local path) a user can open."""
        inner = join(*parts)
        return join(self.root, inner) if "://" in self.root else join(self.base, inner)

    def _path(self, *parts: str) -> str:
        return join(self.base, *parts)

    def _ensure_dir(self, path: str) -> None:
        parent = path.rsplit("/", 1)[0]
        self.fs.create_dir(parent, recursive=True)

    def put_raw(self, files: tuple[Path, ...]) -> RawRecord:
        """Copy the input files into raw/<hash>/ unless that content is already there."""
        digests = {f.name: sha256_file(f) for f in files}
        combined = hashlib.sha256(
            "".join(f"{name}:{digest}\n" for name, digest in sorted(digests.items())).encode()
        ).hexdigest()
        folder = join("raw", combined[:16])
        for f in files:
            target = self._path(folder, f.name)
            info = self.fs.get_file_info(target)
            if info.type == pafs.FileType.NotFound or info.size != f.stat().st_size:
                self.put_file(f, folder, f.name)
        self.write_json(join(folder, "_source.json"), {"sha256": combined, "files": digests})
        return RawRecord(
            sha256=combined,
            bytes=sum(f.stat().st_size for f in files),
            location=self.uri(folder),
            files=tuple(sorted(digests)),
        )

    def write_parquet(self, frame: pl.DataFrame, *parts: str) -> str:
        path = self._path(*parts)
        self._ensure_dir(path)
        pq.write_table(frame.to_arrow(), path, filesystem=self.fs, compression="zstd")
        return self.uri(*parts)

    def write_silver(self, run_id: str, lines: pl.DataFrame, quarantine: pl.DataFrame) -> tuple[str, str]:
        """A run's silver zone: the validated lines and the quarantine, each in a folder of its own; their URIs."""
        return (self.write_parquet(lines, "silver", run_id, SILVER_LINES),
                self.write_parquet(quarantine, "silver", run_id, SILVER_QUARANTINE))

    def read_parquet(self, *parts: str) -> pl.DataFrame:
        return arrow_frame(pq.read_table(self._path(*parts), filesystem=self.fs))

    def write_partitioned(self, frame: pl.DataFrame | ds.Dataset, partition_by: list[str], *parts: str) -> str:
        """A frame, or an Arrow dataset (e.g. Parquet files, streamed through), hive-partitioned by `partition_by`;
        each partition holds its rows in the input's order (training reads them in that order)."""
        path = self._path(*parts)
        self.fs.create_dir(path, recursive=True)
        ds.write_dataset(
            frame.to_arrow() if isinstance(frame, pl.DataFrame) else frame,
            path,
            filesystem=self.fs,
            format="parquet",
            partitioning=partition_by,
            partitioning_flavor="hive",
            existing_data_behavior="delete_matching",
            preserve_order=True,
        )
        return self.uri(*parts)

    def read_partitioned(self, *parts: str) -> pl.DataFrame:
        dataset = ds.dataset(self._path(*parts), filesystem=self.fs, format="parquet", partitioning="hive")
        return arrow_frame(dataset.to_table())

    def write_json(self, relative: str, payload: Mapping[str, object]) -> str:
        path = self._path(relative)
        self._ensure_dir(path)
        with self.fs.open_output_stream(path) as sink:
            sink.write(json.dumps(payload, indent=2, default=str).encode())
        return self.uri(relative)

    def put_file(self, local: Path, *parts: str) -> str:
        target = self._path(*parts)
        self._ensure_dir(target)
        with local.open("rb") as source, self.fs.open_output_stream(target) as sink:
            shutil.copyfileobj(source, sink, CHUNK)
        return self.uri(*parts)

    def put_folder(self, local: Path, *parts: str) -> str:
        """Copy a local folder (e.g. a fitted transformer) into the lake."""
        for file in sorted(p for p in local.rglob("*") if p.is_file()):
            self.put_file(file, *parts, file.relative_to(local).as_posix())
        return self.uri(*parts)

