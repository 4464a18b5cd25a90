"""The data lake: raw, silver and gold zones under one root, local or on S3.

The root is a local folder (`./lake`) or an `s3://bucket/prefix` URI; both go through
Arrow's filesystem layer, so the same code writes to either. For an S3-compatible
endpoint other than AWS, Arrow reads `AWS_ENDPOINT_URL` from the environment.

Layout under the root:
  raw/<content-hash>/<file>             the input exactly as received (deduplicated)
  silver/<run>/lines/part-0.parquet     typed, validated lines (the Spark job, ml.spark_lake, writes
                                        lines/part-*.parquet and lines/_SUCCESS: readers take the folder)
  silver/<run>/quarantine/part-0.parquet  rejected rows with the rule they failed
  gold/<run>/baskets/                   basket feature table, hive-partitioned by
                                        STORE_REGION and BASKET_TYPE (folders named by the
                                        values as they are: BASKET_TYPE=Small Shop/)
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
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

CHUNK = 8 * 1024 * 1024  # bytes copied at a time into the raw zone


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """Arrow filesystem and path for a local path or an s3:// URI.

    For s3:// the region is the environment's when it names one and the URI has no options of its own (AWS_REGION,
    else AWS_DEFAULT_REGION; EMR Serverless and SageMaker set AWS_REGION): without it Arrow asks for the bucket's
    region first, with an unsigned HeadBucket to AWS's public endpoint (unless an endpoint is set). The lake's buckets
    are in the stack's region; a bucket in another region is read by unsetting both.

    Its writes open no multipart upload for a small file (`allow_delayed_open`,
    https://github.com/apache/arrow/issues/40557): a file under pyarrow's part size (10 MB) is one PutObject when it
    is closed, where it would otherwise be CreateMultipartUpload, UploadPart and CompleteMultipartUpload, and a write
    that fails leaves no upload open (the batch scorer's and the service's roles may not abort one; the buckets'
    lifecycle rule does, after 7 days). A larger file still goes up in parts. A URI that sets `allow_delayed_open`
    keeps its own setting. Either way a stream's close sends what it holds, also when the `with` block around it
    failed, so what is written is made in full before the stream is opened."""
    if "://" not in uri:
        path = Path(uri).expanduser().resolve()
        return pafs.LocalFileSystem(), path.as_posix()
    if uri.startswith("s3://"):
        location, _, query = uri.partition("?")
        options = [query] if query else []  # the URI's own, as Arrow reads them
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region and not query:
            options.append(f"region={region}")
        if not re.search(r"(?:^|&)allow_delayed_open=", query):
            options.append("allow_delayed_open=true")
        uri = f"{location}?{'&'.join(options)}"
    fs, path = pafs.FileSystem.from_uri(uri)
    return fs, path


def path_info(fs: pafs.FileSystem, path: str) -> tuple[pafs.FileType, list[pafs.FileInfo]]:
    """What is at `path` (a file, a folder or nothing) and, for a folder, what it holds (one level down); a trailing
    `/` changes nothing, as on a local path.

    On S3 found by listings only, as `silver_runs` finds runs: the prefix `path/`, then, when nothing is under it,
    the folder `path` is in (its entry named `path`). A HEAD of `path` would be a request for a key that may not exist,
    answered 403 rather than 404 to a role that may list the bucket only under given prefixes, and Arrow takes
    anything but 404 as an error. A prefix holding nothing is nothing (S3 has no empty folders)."""
    if fs.type_name != "s3":
        info = fs.get_file_info(path)
        return info.type, fs.get_file_info(pafs.FileSelector(path)) if info.type == pafs.FileType.Directory else []
    path = path.rstrip("/")
    held = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    if held:
        return pafs.FileType.Directory, held
    parent = path.rpartition("/")[0]
    if not parent:  # a bucket, whose "parent" would be the account's bucket list
        return pafs.FileType.NotFound, []
    listed = fs.get_file_info(pafs.FileSelector(parent, allow_not_found=True))
    return next((i.type for i in listed if i.path == path and i.type == pafs.FileType.File),
                pafs.FileType.NotFound), []


def file_names(fs: pafs.FileSystem, folder: str) -> set[str]:
    """The names of the files directly in `folder`, none when there is no such folder (one listing: no request for a
    key that may not exist, see `path_info`)."""
    if fs.type_name != "s3" and fs.get_file_info(folder).type != pafs.FileType.Directory:  # a file: not listable
        return set()
    listed = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    return {info.base_name for info in listed if info.type == pafs.FileType.File}


def arrow_frame(table: pa.Table) -> pl.DataFrame:
    """`pl.from_arrow` of a Table, which is always a DataFrame (only an Arrow array gives a Series); from_arrow is
    typed DataFrame | Series for any input."""
    return cast(pl.DataFrame, pl.from_arrow(table))


SILVER_LINES = "lines/part-0.parquet"
"""A run's validated lines as the local pipeline writes them, relative to silver/<run>/."""
SILVER_LINES_FOLDER = "lines"
"""The folder of a run's validated lines, relative to silver/<run>/: SILVER_LINES, or the Spark job's part files."""
SPARK_COMMITTED = f"{SILVER_LINES_FOLDER}/_SUCCESS"
"""The marker Spark's committer writes into the lines folder once every part file is in place (ml.spark_lake)."""
LINES_WRITTEN = (SILVER_LINES, SPARK_COMMITTED)
"""Either file, relative to silver/<run>/, says a run's lines are all written (`silver_runs`, ml.score.input_at)."""
SILVER_QUARANTINE = "quarantine/part-0.parquet"
"""A run's rejected rows, relative to silver/<run>/."""


def run_id_for(sha256: str) -> str:
    """A lake run's id, naming its silver and gold folders: the UTC time and the input's hash prefix."""
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{sha256[:8]}"


def join(*parts: str) -> str:
    return "/".join(p.strip("/") if i else p.rstrip("/") for i, p in enumerate(parts) if p)


def split_options(uri: str) -> tuple[str, str]:
    """A URI's location and its Arrow options with their `?` (`s3://bucket/lake?region=eu-west-1` -> `s3://bucket/lake`,
    `?region=eu-west-1`); a local path and no options for a local path (`?` may be part of a file name)."""
    if "://" not in uri:
        return uri, ""
    location, mark, options = uri.partition("?")
    return location, mark + options


def join_uri(root: str, *parts: str) -> str:
    """`join` for a root that may be a URI with Arrow's options: the parts go into its path and the options stay at
    the end, where `filesystem` reads them."""
    location, options = split_options(root)
    return join(location, *parts) + options


def silver_runs(fs: pafs.FileSystem, silver: str) -> list[str]:
    """The runs under the folder `silver` (a lake's silver zone) that hold validated lines, oldest first (run ids
    begin with their UTC time): the local pipeline's SILVER_LINES, or a Spark job's committed lines folder
    (SPARK_COMMITTED). A run still being written, or in the layout before lines/, is not one.

    Found by one listing, with no request for a key that may not exist: on S3 such a request is answered 403,
    not 404, unless the caller may list the bucket without conditions, which the scoring role may not."""
    listed = fs.get_file_info(pafs.FileSelector(silver, recursive=True, allow_not_found=True))
    inside = (info.path[len(silver.rstrip("/")):].strip("/") for info in listed if info.type == pafs.FileType.File)
    return sorted({run for run, _, rest in (path.partition("/") for path in inside) if rest in LINES_WRITTEN})


def silver_line_files(fs: pafs.FileSystem, lines: str) -> list[str]:
    """The Parquet files of a run's lines folder (`silver/<run>/lines`), in name order; Spark's markers and
    hidden files (names starting with `_` or `.`, which Arrow's datasets skip too) are not lines."""
    listed = fs.get_file_info(pafs.FileSelector(lines, allow_not_found=True))
    return sorted(info.path for info in listed if info.type == pafs.FileType.File
                  and info.base_name.endswith(".parquet") and not info.base_name.startswith(("_", ".")))


HIVE_VALUE = re.compile(r"[A-Za-z0-9_-](?:[A-Za-z0-9 ._-]*[A-Za-z0-9_-])?")
"""A partition value that names its hive folder (`<COLUMN>=<value>`) and S3 key as it is: letters, digits, `_` and
`-`, with spaces and dots inside (ml.schema's domains of the partition columns: `E01`, `Small Shop`). Nothing that
would make another folder (`/`), split the name (`=`), decode to another value in a reader that URI-decodes folder
names (`%`, `+`), split Athena's comma-separated enum projection (`,`), or that S3 asks to avoid or handle specially
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-keys.html) but the space inside."""
NULL_FOLDER = "__HIVE_DEFAULT_PARTITION__"
"""The folder value hive readers read as null (pyarrow's and DuckDB's default), so not a value either."""


def check_partition_values(source: ds.Dataset, partition_by: list[str]) -> None:
    """Raises ValueError naming the column and value when a partition column of `source` holds a null or a value
    whose text (a number's too) `HIVE_VALUE` refuses. Reads the partition columns only, a batch at a time."""
    seen: dict[str, set[str | None]] = {column: set() for column in partition_by}
    for batch in source.to_batches(columns=partition_by):
        for column in partition_by:
            seen[column].update(pc.unique(batch.column(column).cast(pa.string())).to_pylist())
    for column, values in seen.items():
        for value in sorted(values, key=str):
            if value is None or value == NULL_FOLDER or not HIVE_VALUE.fullmatch(value):
                raise ValueError(
                    f"{column}={value!r} cannot name a partition folder as it is: a partition value is letters, "
                    "digits, `_` or `-`, with spaces or dots inside (no `/`, `=`, `%`, `,` and not null); "
                    f"fix the value or partition by another column")


def hive_folders(source: ds.Dataset, partition_by: list[str]) -> ds.Scanner:
    """`source`'s rows with each partition column holding its folder's name, `<COLUMN>=<value>`, for a directory
    partitioning to write as it is."""
    def folder(column: str) -> pc.Expression:
        return pc.binary_join_element_wise(pc.scalar(f"{column}="), ds.field(column).cast(pa.string()), pc.scalar(""))

    return source.scanner(columns={name: folder(name) if name in partition_by else ds.field(name)
                                   for name in source.schema.names})


def combined_sha256(digests: Mapping[str, str]) -> str:
    """An input's content hash, naming its raw zone folder: of its files' names and SHA-256 digests."""
    listing = "".join(f"{name}:{digest}\n" for name, digest in sorted(digests.items()))
    return hashlib.sha256(listing.encode()).hexdigest()


def file_name(file: str | Path) -> str:
    """The name of a file given as a path or an s3:// URI (without the URI's options)."""
    return split_options(str(file))[0].rstrip("/").rsplit("/", 1)[-1]


def hashed_file(file: str | Path) -> tuple[str, int]:
    """A file's SHA-256 and size in bytes, as stored (a path or an s3:// URI; a .gz is hashed as it is)."""
    fs, path = filesystem(str(file))
    digest = hashlib.sha256()
    with fs.open_input_file(path) as source:  # random access: no decompression, and its size known from the open
        # CHUNK at a time, not hashlib.file_digest: its 256 KiB reads are each a ranged GET on S3 (Arrow's S3 files
        # are unbuffered), 32 times the requests.
        while block := source.read(CHUNK):
            digest.update(block)
        return digest.hexdigest(), source.size()


@dataclass(frozen=True)
class RawRecord:
    """The raw zone entry of one input: its content hash and where the files are."""

    sha256: str
    bytes: int
    location: str
    files: tuple[str, ...]
    file_sha256: tuple[tuple[str, str], ...] = ()
    """Each file's name and SHA-256, in name order (what `combined_sha256` hashed)."""

    @classmethod
    def of(cls, hashed: Mapping[str, tuple[str, int]], location: str) -> RawRecord:
        """The record of files hashed by `hashed_file` (name -> (SHA-256, bytes)) that lie at `location`."""
        digests = {name: digest for name, (digest, _) in hashed.items()}
        return cls(sha256=combined_sha256(digests), bytes=sum(size for _, size in hashed.values()), location=location,
                   files=tuple(sorted(digests)), file_sha256=tuple(sorted(digests.items())))


class Lake:
    """Reads and writes the zones of one lake root."""

    def __init__(self, root: str):
        self.root = root
        self.fs, self.base = filesystem(root)

    def uri(self, *parts: str) -> str:
        """A location inside the lake, as a URI (or local path) a user can open."""
        return join_uri(self.root, *parts) if "://" in self.root else join(self.base, *parts)

    def _path(self, *parts: str) -> str:
        return join(self.base, *parts)

    @property
    def local(self) -> bool:
        """Whether the root is a local folder (not an object store)."""
        return isinstance(self.fs, pafs.LocalFileSystem)

    def ensure_parent(self, path: str) -> None:
        """Makes the folder a file at `path` goes into, on the local filesystem only. S3 has no folders: an object's
        PUT needs no parent, and pyarrow's `create_dir` there sends HeadBucket (which needs s3:ListBucket without
        conditions) and PUTs `<prefix>/` marker objects outside the zones a role may write."""
        if self.local:
            self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)

    def put_raw(self, files: Sequence[str | Path]) -> RawRecord:
        """Copy the input files (paths or s3:// URIs) into raw/<hash>/ byte for byte, unless that content is already
        there."""
        hashed = {file_name(f): hashed_file(f) for f in files}
        unplaced = RawRecord.of(hashed, location="")
        folder = join("raw", unplaced.sha256[:16])
        for f in files:
            target = self._path(folder, file_name(f))
            info = self.fs.get_file_info(target)
            if info.type == pafs.FileType.NotFound or info.size != hashed[file_name(f)][1]:
                self._copy_in(str(f), target)
        self.write_json(join(folder, "_source.json"), {"sha256": unplaced.sha256, "files": dict(unplaced.file_sha256)})
        return replace(unplaced, location=self.uri(folder))

    def write_parquet(self, frame: pl.DataFrame, *parts: str) -> str:
        path = self._path(*parts)
        self.ensure_parent(path)
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
        each partition holds its rows in the input's order (training reads them in that order).

        A partition's folder is `<COLUMN>=<value>` with the value as it is (`BASKET_TYPE=Small Shop`), so that
        Athena's enum projection of the raw values finds it (infra/lake_tables.py). pyarrow's hive partitioning
        percent-encodes the value when it writes (`Small%20Shop`, whatever its `segment_encoding`, which only
        governs reading), so the folder names are written by a directory partitioning over `<COLUMN>=<value>`
        strings instead (`hive_folders`). Readers that decode hive folder names (pyarrow's and Polars' `hive`,
        DuckDB's hive_partitioning) read a folder of either spelling as the same value. Every value is checked
        (`check_partition_values`) before anything is written."""
        source = ds.dataset(frame.to_arrow()) if isinstance(frame, pl.DataFrame) else frame
        check_partition_values(source, partition_by)
        path = self._path(*parts)
        if self.local:
            self.fs.create_dir(path, recursive=True)
        ds.write_dataset(
            hive_folders(source, partition_by),
            path,
            filesystem=self.fs,
            format="parquet",
            partitioning=ds.DirectoryPartitioning(pa.schema([(column, pa.string()) for column in partition_by])),
            existing_data_behavior="delete_matching",
            preserve_order=True,
            create_dir=self.local,  # on S3 no folder markers (see `ensure_parent`)
        )
        return self.uri(*parts)

    def read_partitioned(self, *parts: str) -> pl.DataFrame:
        dataset = ds.dataset(self._path(*parts), filesystem=self.fs, format="parquet", partitioning="hive")
        return arrow_frame(dataset.to_table())

    def write_json(self, relative: str, payload: Mapping[str, object]) -> str:
        return self.write_bytes(relative, json.dumps(payload, indent=2, default=str).encode())

    def write_bytes(self, relative: str, data: bytes) -> str:
        """`data` as the file `relative` (made in full before its stream opens: a stream's close publishes what it
        holds); its URI."""
        path = self._path(relative)
        self.ensure_parent(path)
        with self.fs.open_output_stream(path) as sink:
            sink.write(data)
        return self.uri(relative)

    def put_file(self, local: Path, *parts: str) -> str:
        self._copy_in(str(local), self._path(*parts))
        return self.uri(*parts)

    def _copy_in(self, source: str, target: str) -> None:
        """A file (path or s3:// URI) copied to `target` in this lake, byte for byte: neither side (de)compressed
        by its extension, which Arrow's streams do unless told not to (a .csv.gz would be gzipped again). Streamed
        through this process also from S3 to S3 (no server-side copy, so no 5 GB limit of one CopyObject)."""
        fs, path = filesystem(source)
        self.ensure_parent(target)
        with fs.open_input_stream(path, compression=None) as reader, \
                self.fs.open_output_stream(target, compression=None) as sink:
            shutil.copyfileobj(reader, sink, CHUNK)

    def put_folder(self, local: Path, *parts: str) -> str:
        """Copy a local folder (e.g. a fitted transformer) into the lake."""
        for file in sorted(p for p in local.rglob("*") if p.is_file()):
            self.put_file(file, *parts, file.relative_to(local).as_posix())
        return self.uri(*parts)

