"""The scorer role allows every S3 request `retail score` makes, as the CronJob runs it.

The CronJob's command (`python -m cli.score`, as the inference image ships `retail score`)
runs in a child process against moto's S3 (a real HTTP endpoint; moto does not enforce IAM)
with the CronJob's arguments and environment: the silver lines of the shared small
pipeline run, found through `lake/silver/latest/`, its champion bundle under the serving prefix.
Every request the server receives is turned into the IAM request S3 authorises it as
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-with-s3-policy-actions.html:
HeadBucket and ListObjectsV2 are s3:ListBucket, HeadObject and GetObject s3:GetObject,
PutObject and the multipart upload calls s3:PutObject) and evaluated against the policy
the BatchScoring component renders (policies.documents.allows, the deploy checks'
evaluator). A request the role does not allow would be AccessDenied on AWS.

KMS is not exercised (moto's buckets here are not SSE-KMS); the role's data-key statement
is checked by `retail infra check` (batch-job-s3-access).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, unquote

import pytest

from infra.batch_scoring import COMMAND, BatchScoring, BatchScoringArgs
from infra.config import BatchScoringConfig
from ml.lake import SILVER_LINES
from policies.documents import Need, allows

from .conftest import PROJECT_DIR
from .helpers import build, statements

LAKE, ARTIFACTS = "scoring-contract-lake", "scoring-contract-artifacts"  # unique on the shared moto server
BUNDLE_PREFIX = "models/price-sensitivity/serving/test"
REGION = "ap-southeast-1"


ACCESS_DENIED = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied'
                 b'</Message></Error>')
"""S3's answer to a request the caller's policy does not allow (403)."""


class RecordingS3:
    """A moto server that keeps (method, path, query, status) of every request it serves, and answers S3's 403
    AccessDenied to a GET of a path in `refused`, as S3 answers a role that may not read it."""

    def __init__(self) -> None:
        from moto.moto_server.threaded_moto_server import ThreadedMotoServer

        self.requests: list[tuple[str, str, str, int]] = []
        self.refused: set[str] = set()
        recorder = self

        class Server(ThreadedMotoServer):
            def _server_entry(self) -> None:
                from moto.moto_server.threaded_moto_server import MotoRequestHandler
                from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
                from werkzeug.serving import make_server

                app = DomainDispatcherApplication(create_backend_app)

                def recording(environ, start_response):
                    path, query = unquote(environ.get("PATH_INFO", "")), environ.get("QUERY_STRING", "")
                    def answered(status, headers, *exc_info):
                        recorder.requests.append((environ["REQUEST_METHOD"], path, query, int(status.split()[0])))
                        return start_response(status, headers, *exc_info)

                    if environ["REQUEST_METHOD"] == "GET" and path in recorder.refused:
                        answered("403 Forbidden", [("Content-Type", "application/xml")])
                        return [ACCESS_DENIED]
                    return app(environ, answered)

                self._server = make_server(
                    self._ip_address, self._port, recording, True, request_handler=MotoRequestHandler
                )
                self._server_ready_event.set()
                self._server.serve_forever()

        self.server = Server(ip_address="127.0.0.1", port=0, verbose=False)


@contextmanager
def recording_s3_server() -> Iterator[RecordingS3]:
    """A started RecordingS3, with fake credentials and its endpoint in the environment while it runs."""
    recording = RecordingS3()
    recording.server.start()
    host, port = recording.server.get_host_and_port()
    patch = pytest.MonkeyPatch()
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
    }.items():
        patch.setenv(name, value)
    try:
        yield recording
    finally:
        patch.undo()
        recording.server.stop()


@pytest.fixture(scope="module")
def s3():
    with recording_s3_server() as recording:
        yield recording


def iam_request(method: str, path: str, query: str, status: int) -> tuple[str, str, dict[str, str]]:
    """(action, resource ARN, condition context) S3 authorises a path-style request as. A HEAD or GET of a key
    answered 404 needs s3:ListBucket with no s3:prefix: without it S3 answers 403 (API_HeadObject, Permissions)."""
    bucket, _, key = path.lstrip("/").partition("/")
    params = parse_qs(query, keep_blank_values=True)
    if not key:
        if method == "HEAD":
            return "s3:ListBucket", f"arn:aws:s3:::{bucket}", {}  # HeadBucket
        if method == "GET":
            return "s3:ListBucket", f"arn:aws:s3:::{bucket}", {"s3:prefix": params.get("prefix", [""])[0]}
        if method == "POST" and "delete" in params:
            return "s3:DeleteObject", f"arn:aws:s3:::{bucket}/*", {}
        return f"s3:{method}Bucket", f"arn:aws:s3:::{bucket}", {}
    arn = f"arn:aws:s3:::{bucket}/{key}"
    if method in ("GET", "HEAD") and status == 404:
        return "s3:ListBucket", f"arn:aws:s3:::{bucket}", {}
    if method in ("GET", "HEAD"):
        return "s3:GetObject", arn, {}
    if method == "DELETE":
        return ("s3:AbortMultipartUpload" if "uploadId" in params else "s3:DeleteObject"), arn, {}
    return "s3:PutObject", arn, {}  # PutObject, CreateMultipartUpload, UploadPart, CompleteMultipartUpload


@pytest.fixture(scope="module")
def scorer_statements() -> list[dict]:
    args = BatchScoringArgs(
        environment="test", region=REGION, image="registry/inference@sha256:" + "0" * 64,
        lake_bucket=LAKE, lake_bucket_arn=f"arn:aws:s3:::{LAKE}",
        bundle_uri=f"s3://{ARTIFACTS}/{BUNDLE_PREFIX}/{'0' * 64}/", bundle_bucket_arn=f"arn:aws:s3:::{ARTIFACTS}",
        bundle_prefix=BUNDLE_PREFIX,
        bundle_sha256="0" * 64, data_kms_key_arn=f"arn:aws:kms:{REGION}:123456789012:key/data",
        oidc_provider_arn="arn:aws:iam::123456789012:oidc-provider/oidc.eks.example/id/X",
        oidc_issuer="oidc.eks.example/id/X", node_labels={}, node_taints=[], vpc_cidr="10.0.0.0/16", s3_cidrs=[],
        sizing=BatchScoringConfig(),
    )  # fmt: skip
    run = build(lambda: BatchScoring("batch", args))
    (cron_job,) = run.of_type("kubernetes:batch/v1:CronJob")
    (policy,) = run.of_type("aws:iam/rolePolicy:RolePolicy")
    container = cron_job.inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == list(COMMAND)
    return statements(policy)


@pytest.fixture(scope="module")
def scoring_run(s3, small_run, tmp_path_factory):
    """`retail score` as the CronJob runs it; returns (exit code, output, the requests it made)."""
    import boto3

    from api.model_source import RegistrySource

    client = boto3.client("s3")
    for bucket in (LAKE, ARTIFACTS):
        client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    silver = Path(small_run.settings.lake_root) / "silver" / small_run.result.run_id / SILVER_LINES
    # `silver/latest/` is the newest run holding lines: an older run, this run, and a newer run still being written.
    client.upload_file(str(silver), LAKE, f"lake/silver/20000101T000000Z-00000000/{SILVER_LINES}")
    client.upload_file(str(silver), LAKE, f"lake/silver/{small_run.result.run_id}/{SILVER_LINES}")
    client.put_object(Bucket=LAKE, Key="lake/silver/29991231T000000Z-00000000/_writing", Body=b"")
    source = RegistrySource(small_run.settings)
    bundle = source.fetch(source.fingerprint())
    for file in sorted(p for p in bundle.folder.rglob("*") if p.is_file()):
        key = f"{BUNDLE_PREFIX}/{bundle.sha256}/{file.relative_to(bundle.folder).as_posix()}"
        client.upload_file(str(file), ARTIFACTS, key)
    s3.requests.clear()

    scratch = tmp_path_factory.mktemp("batch-scoring")
    env = {
        **os.environ,
        "RETAIL_LAKE_ROOT": f"s3://{LAKE}/lake",
        "RETAIL_MODEL_SHA256": bundle.sha256,
        "RETAIL_MODEL_CACHE_DIR": str(scratch / "retail-models"),
        "RETAIL_WORK_DIR": str(scratch / "work"),
    }
    python, *module = COMMAND
    assert python == "python"
    arguments = ["--input", f"s3://{LAKE}/lake/silver/latest/", "--bundle",
                 f"s3://{ARTIFACTS}/{BUNDLE_PREFIX}/{bundle.sha256}/"]
    done = subprocess.run(
        [sys.executable, *module, *arguments], env=env, cwd=PROJECT_DIR, capture_output=True, text=True, timeout=600
    )
    return done.returncode, done.stdout + done.stderr, list(s3.requests)


def test_the_command_succeeds_as_the_cron_job_runs_it(scoring_run):
    exit_code, output, _ = scoring_run
    assert exit_code == 0, output


def test_it_reads_silver_and_the_bundle_and_writes_predictions(scoring_run, small_run):
    _, _, requests = scoring_run
    asked = {(action, arn.split(":::", 1)[1].split("/")[0] + "/" + "/".join(arn.split("/")[1:3]))
             for action, arn, _ in (iam_request(*r) for r in requests)}  # fmt: skip
    assert ("s3:GetObject", f"{LAKE}/lake/silver") in asked
    read = {arn for action, arn, _ in (iam_request(*r) for r in requests) if action == "s3:GetObject"}
    silver_read = {arn.split("/lake/silver/", 1)[1] for arn in read if "/lake/silver/" in arn}
    # silver/latest/ is the newest run holding lines (a newer folder without them is only listed).
    assert f"{small_run.result.run_id}/{SILVER_LINES}" in silver_read
    assert f"20000101T000000Z-00000000/{SILVER_LINES}" not in silver_read
    # Nothing asks for a key that does not exist: S3 answers that 403 to a role whose listing is conditioned.
    assert not {key for key in silver_read if key.startswith(("latest/", "29991231T000000Z-00000000/lines"))}
    assert ("s3:GetObject", f"{ARTIFACTS}/models/price-sensitivity") in asked
    assert ("s3:PutObject", f"{LAKE}/lake/predictions") in asked


def test_each_file_it_writes_is_one_put_and_no_multipart_upload_is_opened(scoring_run):
    """Its files are small: each is one PutObject, none a multipart upload, which a failed write would leave open
    (the role may not abort one) and which takes three requests a file."""
    _, _, requests = scoring_run
    multipart = [f"{m} {path}?{query}" for m, path, query, _ in requests
                 if {"uploads", "uploadId"} & parse_qs(query, keep_blank_values=True).keys()]
    assert multipart == []
    puts = [path for method, path, _, status in requests if method == "PUT" and status == 200]
    written = [path for path in puts if "/lake/predictions/" in path]
    assert written and len(written) == len(set(written))
    assert any(path.endswith("/manifest.json") for path in written)


def test_the_scorer_role_allows_every_request_it_makes(scoring_run, scorer_statements):
    _, _, requests = scoring_run
    denied = sorted(
        {
            f"{action} on {arn} {json.dumps(context) if context else ''}".strip()
            for action, arn, context in (iam_request(*r) for r in requests)
            if allows(scorer_statements, Need((action,), resources=(arn,), context=context))
        }
    )
    assert denied == [], "AccessDenied on AWS:\n" + "\n".join(denied)
