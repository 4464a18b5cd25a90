"""Every S3 request the lake job's own code makes on AWS (ml/spark_lake.py's driver and tasks, ml/lake.py, Polars),
recorded on moto's server and judged against the dev stack's job role policy: all are allowed, none writes under
raw/, reads manifests/ or puts a folder marker.

The job runs from the lake's raw zone, as `retail lake build --cloud` runs it, once for each of INPUTS (a folder with
and without a trailing `/`, one file): the input listed (`input_files`), recorded where it is (`put_raw`), each file
read by its ingest task (`_ingest_file`), the silver lines, the quarantine and the gold baskets read back by Polars
(`_scan`), the featurizer and the lineage written under gold/ and the manifest under manifests/ (`Lake`). The moto
server logs each request it answers (werkzeug); each is mapped to the IAM action S3 authorizes it as (the Service
Authorization Reference's S3 actions), with the object or bucket and `s3:prefix` for a listing, a request for a key
answered 404 as the unconditioned listing S3 requires to answer 404 rather than 403, and judged by
policies.documents.allows. Spark's own reads and writes of silver/ and gold/ (EMRFS on EMR Serverless) cannot run
here: the role's silver/ and gold/ grants are tests/infra/test_lake_engine.py's, and docs/aws.md lists EMRFS's
requests as not verified.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import boto3
import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from api.app import prediction_log
from api.settings import ApiSettings
from ml.ingest import InputError
from ml.lake import Lake, file_name, filesystem
from ml.monitor_report import ReportStore
from ml.score import ScoringInput, input_at, load, transaction_files
from ml.spark_lake import _ingest_file, _scan, input_files, put_raw
from ml.synth import SynthConfig, write_synthetic
from policies.documents import Need, allows
from tests.infra.helpers import statements

REGION = "ap-southeast-1"
RUN = "20260105T000000Z-1a2b3c4d"
COLOUR = r"(?:\x1b\[[0-9;]*m)*"  # werkzeug colours some request lines
REQUEST_LINE = re.compile(rf'"{COLOUR}(GET|HEAD|PUT|POST|DELETE) (\S+) HTTP/[\d.]+{COLOUR}" (\d{{3}})')


@dataclass(frozen=True)
class Request:
    method: str
    bucket: str
    key: str
    query: dict[str, list[str]]
    status: int

    def __str__(self) -> str:
        query = "?" + "&".join(self.query) if self.query else ""
        return f"{self.method} {self.bucket}/{self.key}{query} {self.status}"


def parsed(line: str) -> Request | None:
    """The request of a werkzeug log line (path-style addressing, as boto3, Arrow and Polars use with an endpoint)."""
    found = REQUEST_LINE.search(line)
    if found is None:
        return None
    target = urlsplit(found[2])
    bucket, _, key = unquote(target.path).lstrip("/").partition("/")
    return Request(found[1], bucket, key, parse_qs(target.query, keep_blank_values=True), int(found[3]))


def need(request: Request) -> Need:
    """What S3 authorizes `request` as: the action, the resource, and `s3:prefix` for a listing.

    A HEAD or GET of a key answered 404 needs s3:ListBucket on the bucket with no `s3:prefix`: without it S3 answers
    403, not 404 (https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html, Permissions), and Arrow takes
    any answer but 404 as an error. A role that may list only under given prefixes makes such a request fail."""
    bucket = f"arn:aws:s3:::{request.bucket}"
    query, method = request.query, request.method
    if not request.key:
        if method == "HEAD":  # HeadBucket
            return Need(("s3:ListBucket",), resources=(bucket,))
        if method == "GET" and "location" in query:
            return Need(("s3:GetBucketLocation",), resources=(bucket,))
        if method == "GET":  # ListObjects(V2): the prefix is the condition key, absent when none is given
            context = {"s3:prefix": query["prefix"][0]} if "prefix" in query else {}
            return Need(("s3:ListBucket",), resources=(bucket,), context=context)
        raise AssertionError(f"a bucket request the test does not map: {request}")
    obj = (f"{bucket}/{request.key}",)
    if method == "GET" and "uploadId" in query:
        return Need(("s3:ListMultipartUploadParts",), resources=obj)
    if method in ("GET", "HEAD") and request.status == 404:
        return Need(("s3:ListBucket",), resources=(bucket,))
    if method in ("GET", "HEAD"):
        return Need(("s3:GetObject",), resources=obj)
    if method in ("PUT", "POST"):  # PutObject, CreateMultipartUpload, UploadPart, CompleteMultipartUpload
        return Need(("s3:PutObject",), resources=obj)
    if method == "DELETE":
        return Need(("s3:AbortMultipartUpload" if "uploadId" in query else "s3:DeleteObject",), resources=obj)
    raise AssertionError(f"an object request the test does not map: {request}")


class Recorder(logging.Handler):
    """The requests moto's server answers, from its werkzeug log."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.requests: list[Request] = []

    def emit(self, record: logging.LogRecord) -> None:
        request = parsed(record.getMessage())
        if request is not None:
            self.requests.append(request)


INPUTS = {"folder/": "upload-1/", "folder": "upload-1", "file": "upload-1/{first}"}
"""The raw inputs the job is driven with (under the lake's raw/): a folder given with and without a trailing `/`, and
one of its files."""


@pytest.fixture(scope="module")
def lake_bucket(dev, moto_endpoint, tmp_path_factory) -> tuple[str, str]:
    """The dev stack's lake bucket (on the session's moto server, which no other test gives that bucket) holding an
    upload of weekly files and what Spark would have written of a run; returns it and the first weekly file's name."""
    bucket = dev.stack_outputs["lakeBuckets"]["raw"]
    scratch = tmp_path_factory.mktemp("lake-job-requests")
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    _, weekly = write_synthetic(SynthConfig(rows=300, seed=6, weeks=2), scratch / "weeks", weekly=True)
    for path in weekly:
        s3.upload_file(str(path), bucket, f"lake/raw/upload-1/{path.name}")
    # What Spark's committer leaves in a run's silver lines, quarantine and gold baskets (written here by boto3:
    # Spark's S3 client is EMRFS)
    pl.DataFrame({"BASKET_ID": [1, 2]}).write_parquet(scratch / "part.parquet")
    for table in ("silver/{run}/lines", "silver/{run}/quarantine",
                  "gold/{run}/baskets/STORE_REGION=E01/BASKET_TYPE=Small Shop"):
        folder = f"lake/{table.format(run=RUN)}"
        s3.upload_file(str(scratch / "part.parquet"), bucket, f"{folder}/part-00000.parquet")
        s3.put_object(Bucket=bucket, Key=f"{folder.split('/STORE_REGION=')[0]}/_SUCCESS", Body=b"")
    return bucket, sorted(path.name for path in weekly)[0]


@pytest.fixture(scope="module", params=sorted(INPUTS))
def job_requests(request, lake_bucket) -> list[Request]:
    """The requests of one run of the job's S3 code on the lake, from one of INPUTS."""
    bucket, first = lake_bucket
    recorder = Recorder()
    werkzeug = logging.getLogger("werkzeug")
    level = werkzeug.level
    werkzeug.setLevel(logging.INFO)
    werkzeug.addHandler(recorder)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ALLOW_HTTP", "true")  # Polars' object store talks plain HTTP to moto only when allowed
        try:
            run_the_job_s_s3_code(f"s3://{bucket}/lake", INPUTS[request.param].format(first=first))
        finally:
            werkzeug.removeHandler(recorder)
            werkzeug.setLevel(level)
    return recorder.requests


def run_the_job_s_s3_code(lake_root: str, upload: str) -> None:
    """ml/spark_lake.py's S3 steps of one run from `<lake_root>/raw/<upload>`, in run_job's order, Spark's writes
    left out."""
    lake = Lake(lake_root)
    raw = f"{lake_root}/raw/{upload}"
    files, in_folder = input_files(raw)
    assert in_folder == (not upload.endswith(".csv")), (raw, files)
    put_raw(lake, raw, files)
    for uri in files:  # each ingest task's read
        list(_ingest_file(uri, in_folder))
    for table in ("silver", RUN, "lines"), ("silver", RUN, "quarantine"), ("gold", RUN, "baskets"):  # the scans
        _scan(lake.uri(*table)).collect()  # of _validate's report, the holdout plan, and _features' counts
    with tempfile.TemporaryDirectory() as featurizer:
        (Path(featurizer) / "featurizer.json").write_text("{}")
        lake.put_folder(Path(featurizer), "gold", RUN, "featurizer")
    lake.write_json(f"gold/{RUN}/lineage.json", {"run_id": RUN})
    lake.write_json(f"manifests/{RUN}.json", {"run_id": RUN})


def test_the_job_s_code_made_the_requests_a_run_makes(job_requests):
    """Not vacuous: the input was listed and read, and the gold and manifest objects were written."""
    requests = job_requests
    kinds = {(need(r).actions[0], r.key.split("/")[1] if "/" in r.key else r.query.get("prefix", [""])[0])
             for r in requests}
    assert {("s3:ListBucket", "lake/raw/upload-1/"), ("s3:GetObject", "raw"), ("s3:GetObject", "silver"),
            ("s3:PutObject", "gold"), ("s3:PutObject", "manifests")} <= kinds, kinds
    scanned = {r.query["prefix"][0] for r in requests if "prefix" in r.query}
    assert {f"lake/{zone}/{RUN}/{table}/" for zone, table in
            (("silver", "lines"), ("silver", "quarantine"), ("gold", "baskets"))} <= scanned, scanned


def test_every_request_is_one_the_job_role_allows(dev, job_requests):
    requests = job_requests
    policy = statements(dev.named("retail-dev-lake-engine-job-access"))
    denied = {str(r): allows(policy, need(r)) for r in requests}
    assert {request: why for request, why in denied.items() if why} == {}


def test_the_job_writes_nothing_under_raw_reads_no_manifest_and_makes_no_folder_marker(job_requests):
    requests = job_requests
    writes = [r for r in requests if r.method in ("PUT", "POST", "DELETE")]
    assert [str(r) for r in writes if r.key.startswith("lake/raw/")] == []
    assert [str(r) for r in writes if r.key.endswith("/") or r.key.endswith("_$folder$")] == []
    assert [str(r) for r in requests if r.method in ("GET", "HEAD") and r.key.startswith("lake/manifests/")] == []


def test_no_request_asks_for_a_key_that_is_not_there_nor_for_the_bucket_s_region(job_requests):
    """A 404 needs an unconditioned s3:ListBucket (`need`); a HeadBucket is how Arrow asks a bucket's region when
    `ml.lake.filesystem` gives none (on AWS unsigned, to the public endpoint, so never seen here: this checks only
    that none reached this endpoint)."""
    requests = job_requests
    assert [str(r) for r in requests if r.status == 404] == []
    assert [str(r) for r in requests if r.method == "HEAD" and not r.key] == []


def test_s3_filesystems_take_the_environment_s_region(monkeypatch):
    """AWS_REGION (as EMR Serverless and SageMaker set it), else AWS_DEFAULT_REGION: Arrow then does not ask the
    bucket's region. Neither set: the URI as it is (an endpoint set, so that Arrow asks nothing here either)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-southeast-1")
    fs, path = filesystem("s3://some-bucket/lake/raw/upload-1/")
    assert (fs.region, path) == ("eu-central-1", "some-bucket/lake/raw/upload-1")
    monkeypatch.delenv("AWS_REGION")
    assert filesystem("s3://some-bucket/lake")[0].region == "ap-southeast-1"
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    assert filesystem("s3://some-bucket/lake")[0].region == pafs.FileSystem.from_uri("s3://some-bucket/lake")[0].region


def options_of(uri: str) -> dict:
    """The options of the S3 filesystem `filesystem` makes for `uri`, as the filesystem pickles them."""
    return filesystem(uri)[0].__reduce__()[1][0]


def test_s3_filesystems_put_a_small_file_whole_and_keep_the_uri_s_own_options(monkeypatch):
    """Every S3 filesystem of the lake opens an upload only once a file outgrows a part (`allow_delayed_open`); the
    options a URI sets are Arrow's to read, as they are, its own `allow_delayed_open` included."""
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    assert options_of("s3://some-bucket/lake")["allow_delayed_open"] is True
    options = options_of("s3://some-bucket/lake?region=us-west-2&endpoint_override=http://127.0.0.1:9")
    assert (options["allow_delayed_open"], options["region"], options["endpoint_override"]) == (
        True, "us-west-2", "http://127.0.0.1:9")
    assert options_of("s3://some-bucket/lake?allow_delayed_open=false&region=us-west-2")["allow_delayed_open"] is False
    with pytest.raises(pa.ArrowInvalid, match="Unexpected query parameter"):
        filesystem("s3://some-bucket/dir?x/file")  # a key holding `?`: refused by Arrow, not read as another path


def test_a_lake_root_with_options_names_what_it_writes_with_them_at_the_end(lake_bucket, monkeypatch):
    """A lake root carrying Arrow's options (`?region=...`): the URIs the lake gives for what it writes, and the
    service's prediction log under it, put the zone's path before the options, so that each opens what was written
    (joined after them, the path was read as part of the last option's value)."""
    bucket, _ = lake_bucket
    root = f"s3://{bucket}/lake-with-options?region={REGION}"
    uri = Lake(root).write_json("reports/run-1.json", {"baskets": 3})
    assert uri == f"s3://{bucket}/lake-with-options/reports/run-1.json?region={REGION}"
    fs, path = filesystem(uri)
    with fs.open_input_stream(path) as written:
        assert json.loads(written.read()) == {"baskets": 3}
    monkeypatch.setenv("RETAIL_LAKE_ROOT", root)
    log = prediction_log(ApiSettings(prediction_log_enabled=True))
    assert log is not None
    assert log.files.root == f"s3://{bucket}/lake-with-options/predictions/service?region={REGION}"
    assert log.files.base == f"{bucket}/lake-with-options/predictions/service"


def test_scoring_inputs_and_monitoring_reports_named_by_uris_with_options_keep_them(lake_bucket):
    """`retail score` inputs and `retail monitor` reports given as URIs with Arrow's options: a silver run, the newest
    (`silver/latest/`), a run's lines file and a folder of weekly files are found and named with the options at the
    end, and a report's URI is joined before them."""
    bucket, first = lake_bucket
    lake, options = f"s3://{bucket}/lake", f"?region={REGION}"
    run = ScoringInput(f"{lake}/silver/{RUN}{options}", silver=True)
    assert input_at(f"{lake}/silver/{RUN}{options}") == run
    assert input_at(f"{lake}/silver/latest/{options}") == run
    assert input_at(f"{lake}/silver/{RUN}/lines/part-00000.parquet{options}").silver
    _, files = transaction_files(f"{lake}/raw/upload-1{options}")
    assert files[0][0] == f"{lake}/raw/upload-1/{first}{options}"
    assert file_name(files[0][0]) == first
    assert ReportStore(f"{lake}/monitoring{options}").uri("week=200620", "report.json") == (
        f"{lake}/monitoring/week=200620/report.json{options}")


def test_a_gzipped_input_named_with_options_is_read_whole(lake_bucket, tmp_path):
    """`retail score --input s3://.../x.csv.gz?region=...` decompresses the file (its name is read without the
    options): the same rows as the plain file."""
    bucket, first = lake_bucket
    s3 = boto3.client("s3", region_name=REGION)
    text = s3.get_object(Bucket=bucket, Key=f"lake/raw/upload-1/{first}")["Body"].read()
    s3.put_object(Bucket=bucket, Key="inputs/week.csv.gz", Body=gzip.compress(text))
    options = f"?region={REGION}"
    gzipped = load(input_at(f"s3://{bucket}/inputs/week.csv.gz{options}"), tmp_path / "gzipped")
    plain = load(input_at(f"s3://{bucket}/lake/raw/upload-1/{first}{options}"), tmp_path / "plain")
    assert gzipped.spill.rows == plain.spill.rows
    assert sum(plain.spill.rows.values()) > 0


def test_inputs_on_s3_are_found_by_listing_with_a_local_path_s_answers(lake_bucket):
    """`input_files` and batch scoring's `input_at` on S3: the answers and messages of a local path (a missing input,
    a folder without weekly files, a file with a trailing `/`, a run's silver lines), and no request answered 404."""
    bucket, first = lake_bucket
    lake = f"s3://{bucket}/lake"
    recorder = Recorder()
    werkzeug = logging.getLogger("werkzeug")
    level = werkzeug.level
    werkzeug.setLevel(logging.INFO)
    werkzeug.addHandler(recorder)
    try:
        for missing in (f"{lake}/raw/upload-2", f"{lake}/raw/upload-2/", f"{lake}/raw/upload-1/transactions"):
            with pytest.raises(InputError, match=f"{missing}: no such file or folder"):
                input_files(missing)
        with pytest.raises(InputError, match="folder holds no weekly files"):
            input_files(f"{lake}/silver/{RUN}/lines/")
        assert input_at(f"{lake}/silver/{RUN}/") == ScoringInput(f"{lake}/silver/{RUN}/", silver=True)
        assert input_at(f"{lake}/raw/upload-1/") == ScoringInput(f"{lake}/raw/upload-1/", silver=False)
        assert input_at(f"{lake}/raw/upload-1/{first}") == ScoringInput(f"{lake}/raw/upload-1/{first}", silver=False)
        assert input_files(f"{lake}/raw/upload-1/{first}/") == ([f"{lake}/raw/upload-1/{first}/"], False)
    finally:
        werkzeug.removeHandler(recorder)
        werkzeug.setLevel(level)
    assert recorder.requests and [str(r) for r in recorder.requests if r.status == 404] == []
