"""The Spark job (ml/spark_lake.py) gives the local path's silver lines, quarantine, report, gold rows and featurizer.

One Spark session in local mode (Java 17, 127.0.0.1) runs the job on a damaged synthetic export (bad lines, a bad
row, an inconsistent basket); the same file goes through the local path (staged validation, `plan_gold`). Every
silver line, quarantined row (with its rule), report count, gold value (per BASKET_KEY, bit for bit) and featurizer
file must be equal, and the comparison is shown to catch one changed value. The manifest is accepted by
`retail train --cloud`'s reader, and a missing input exits non-zero naming it.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cli.train import read_manifest
from ml.features import BasketFeaturizer
from ml.ingest import SOURCE_FILE, SOURCE_LINE
from ml.lake import Lake
from ml.pipeline import gold_part, holdout_plan, plan_gold
from ml.progress import StageTimer
from ml.schema import BASKET_KEY
from ml.settings import Settings, rows_per_piece
from tests.lake_parity import same_featurizer, same_rows
from tests.test_streaming_validation import damaged_export, staged_validation

ARROW_BATCH_ROWS = 501
BASKET_CHUNK_LINES = 700
"""The job's basket chunk in the test: several runs of whole baskets per task, each gathered from cut batches."""

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:distutils Version classes:DeprecationWarning")]  # pyspark's own


@pytest.fixture(scope="module")
def spark():
    from ml.spark_lake import session

    spark = session("local[2]", shuffle_partitions=2, java_options="-XX:TieredStopAtLevel=1")
    # Small Arrow batches of an odd size: the batches a task gets cut baskets, which `whole_baskets` puts together.
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(ARROW_BATCH_ROWS))
    yield spark
    spark.stop()


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """The damaged export cut into a folder of weekly files (a task each), one of them empty (a notice, not rows)."""
    whole = tmp_path_factory.mktemp("whole") / "transaction.csv"
    expected = damaged_export(whole)
    header, *rows = whole.read_bytes().split(b"\n")[:-1]  # the file ends with a line ending
    folder = tmp_path_factory.mktemp("export")
    for week, (first, stop) in zip((200601, 200602, 200603, 200604), ((0, 2_000), (2_000, 4_500), (0, 0),
                                                                        (4_500, len(rows))), strict=True):
        (folder / f"transactions_{week}.csv").write_bytes(b"\n".join([header, *rows[first:stop]]) + b"\n")
    return folder, expected


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings(holdout_weeks=8, validation_weeks=4)


@pytest.fixture(scope="module")
def local(export, settings, tmp_path_factory):
    """The local path on the export: staged validation, the holdout plan, `plan_gold`, the saved featurizer."""
    path, _ = export
    work = tmp_path_factory.mktemp("local")
    raw_input, report, lines, quarantine = staged_validation(path, work, piece_bytes=1 << 26)
    plan = holdout_plan(report, lines.lazy(), settings, str(path), "quarantine")
    plans = plan_gold(lines.lazy(), plan.holdout_weeks, settings.seed, rows_per_piece(settings.max_memory_gb))
    gold = pl.concat([gold_part(part, side) for part, side in plans.parts])
    plans.featurizer.save(work / "featurizer")
    return {"report": report, "lines": lines, "quarantine": quarantine, "gold": gold,
            "featurizer": work / "featurizer", "notices": list(raw_input.notices)}


@pytest.fixture(scope="module")
def job(spark, export, settings, tmp_path_factory):
    from ml.spark_lake import run_job

    path, _ = export
    root = tmp_path_factory.mktemp("lake")
    manifest_uri, manifest = run_job(spark, str(path), str(root), settings, timer=StageTimer(quiet=True),
                                     basket_chunk_lines=BASKET_CHUNK_LINES)
    assert json.loads(Path(manifest_uri).read_text()) == json.loads(json.dumps(manifest, default=str))
    lake, run = Lake(str(root)), manifest["run_id"]
    gold = lake.read_partitioned("gold", run, "baskets")
    return {"manifest_uri": manifest_uri, "manifest": manifest, "lake": lake, "run": run, "gold": gold,
            "lines": pl.read_parquet(root / "silver" / run / "lines" / "*.parquet"),
            "quarantine": pl.read_parquet(root / "silver" / run / "quarantine" / "*.parquet"),
            "featurizer": root / "gold" / run / "featurizer"}


def test_the_silver_lines_are_the_local_paths(local, job):
    same_rows(local["lines"], job["lines"], by=local["lines"].columns)
    assert job["lines"].schema == local["lines"].schema


def test_the_run_is_committed_and_scoring_reads_every_line(job, tmp_path):
    from ml.lake import silver_runs
    from ml.score import input_at, load

    silver = Path(job["lake"].base) / "silver"
    assert (silver / job["run"] / "lines" / "_SUCCESS").is_file()
    assert len(list((silver / job["run"] / "lines").glob("part-*.parquet"))) > 1
    assert silver_runs(job["lake"].fs, silver.as_posix()) == [job["run"]]
    loaded = load(input_at(str(silver / job["run"])), tmp_path / "scratch")
    read = loaded.spill.read(loaded.spill.weeks())
    same_rows(job["lines"], read, by=job["lines"].columns)


def test_the_quarantine_holds_the_same_rows_with_the_same_rules(local, job, export):
    _, expected = export
    same_rows(local["quarantine"], job["quarantine"], by=[SOURCE_FILE, SOURCE_LINE])
    assert job["manifest"]["validation"]["quarantined_by_rule"] == expected


def test_the_report_counts_and_notices_are_the_local_paths_and_add_up(local, job):
    report = job["manifest"]["validation"]
    assert report == json.loads(json.dumps(asdict(local["report"])))
    assert len(report["files"]) == 4 and job["manifest"]["input"]["variant"] == "coded"
    assert job["manifest"]["notices"] == local["notices"]
    assert len(local["notices"]) == 1 and "transactions_200603.csv: empty file" in local["notices"][0]
    assert local["report"].counts_add_up
    assert report["rows_in"] == report["rows_accepted"] + report["rows_quarantined"] == 6_002
    assert all(f["read"] == f["accepted"] + f["quarantined"] for f in report["files"].values())


def test_every_gold_value_is_the_local_paths_bit_for_bit(local, job):
    gold = job["gold"].with_columns(pl.col("STORE_REGION", "BASKET_TYPE").cast(pl.String))
    assert gold.height == local["gold"].height == job["manifest"]["zones"]["gold"]["baskets"]
    assert set(gold["split"]) == {"train", "holdout"}
    same_rows(local["gold"], gold, by=[BASKET_KEY])


def test_the_comparison_catches_one_changed_feature_value(local):
    gold = local["gold"]
    feature = next(c for c, t in gold.schema.items() if t == pl.Float64)
    values = gold[feature].to_numpy().copy()
    values[gold.height // 2] = np.nextafter(values[gold.height // 2], np.inf)  # the next float64: one bit
    changed = gold.with_columns(pl.Series(feature, values))
    assert not changed.equals(gold)
    with pytest.raises(AssertionError):
        same_rows(gold, changed, by=[BASKET_KEY])


def test_the_saved_featurizer_is_the_local_paths(local, job):
    same_featurizer(local["featurizer"], job["featurizer"])  # the same files, every table bit for bit
    loaded = BasketFeaturizer.load(job["featurizer"])  # loads as the training entry point will
    assert loaded.feature_names_ and loaded.feature_names_ == BasketFeaturizer.load(local["featurizer"]).feature_names_


def test_the_gold_folders_are_named_as_the_lake_names_them(job):
    root = Path(job["lake"].base) / "gold" / job["run"] / "baskets"
    folders = {p.relative_to(root).as_posix() for p in root.glob("*/*") if p.is_dir()}
    assert folders and all(f.startswith("STORE_REGION=") and "/BASKET_TYPE=" in f for f in folders)
    assert any("BASKET_TYPE=Small Shop" in f for f in folders)  # the value as it is, not Small%20Shop


def test_the_manifest_is_accepted_by_the_cloud_training_reader(job):
    sha256, channel = read_manifest(job["manifest_uri"])
    manifest = job["manifest"]
    assert sha256 == manifest["input"]["sha256"] and channel.endswith(f"/gold/{job['run']}/")
    assert manifest["engine"] == "spark"
    assert set(manifest["zones"]) == {"raw", "silver", "gold"} and set(manifest["seconds"]) >= {"ingest", "features"}
    lineage = json.loads((Path(job["lake"].base) / "gold" / job["run"] / "lineage.json").read_text())
    assert lineage["run_id"] == job["run"] and lineage["input_sha256"] == sha256


def test_a_missing_input_exits_non_zero_naming_it(tmp_path, capsys):
    from ml.spark_lake import main

    missing = tmp_path / "nowhere.csv"
    with pytest.raises(SystemExit) as exited:
        main(["--raw", str(missing), "--lake", str(tmp_path / "lake"), "--master", "local[1]"])
    assert exited.value.code == 2
    assert f"{missing}: no such file or folder" in capsys.readouterr().err


def test_a_lake_root_with_arrow_options_is_refused_before_anything_runs(tmp_path, capsys):
    from ml.spark_lake import main

    with pytest.raises(SystemExit) as exited:
        main(["--raw", str(tmp_path), "--lake", "s3://bucket/lake?region=eu-west-1", "--master", "local[1]"])
    assert exited.value.code == 2
    assert "--lake s3://bucket/lake?region=eu-west-1: the lake job's root takes no options" in capsys.readouterr().err


def test_a_file_a_task_cannot_read_is_named_with_its_problem(spark, settings, tmp_path):
    from pyspark.errors import PythonException

    from ml.spark_lake import run_job, task_input_error

    bad = tmp_path / "transaction.csv"
    bad.write_text("SHOP_WEEK,SHOP_DATE\n200607,20060410\n")
    with pytest.raises(PythonException) as failed:
        run_job(spark, str(bad), str(tmp_path / "lake"), settings, timer=StageTimer(quiet=True))
    message = task_input_error(failed.value)
    assert message is not None and message.startswith(f"{bad}: missing column(s) ")


def test_whole_baskets_never_cuts_a_basket_and_keeps_every_row():
    from ml.spark_lake import whole_baskets

    keys = [f"{b:03d}" for b in range(40) for _ in range(b % 7 + 1)]
    frame = pl.DataFrame({BASKET_KEY: keys, "line": range(len(keys))})
    batches = (frame.slice(i, 9) for i in range(0, frame.height, 9))
    chunks = list(whole_baskets(batches, lines=20))
    assert len(chunks) > 3
    assert_frame_equal(pl.concat(chunks), frame)
    seen = [set(chunk[BASKET_KEY]) for chunk in chunks]
    assert all(not (a & b) for i, a in enumerate(seen) for b in seen[i + 1:])


JOB_FILE = Path(__file__).parents[1] / "ml" / "spark_lake.py"
TASKS_HANDED = """
import runpy, sys
from unittest import mock
import ml.spark_lake as job

class Handed(Exception):
    pass

def spy(frame, task, schema, **arguments):
    print(task.__module__, task.__qualname__)
    raise Handed

job.session = lambda master: mock.MagicMock()  # no JVM: the first task handed over is what is checked
job._map = spy
sys.argv = [sys.argv[1], "--raw", sys.argv[2], "--lake", sys.argv[3]]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except Handed:
    pass
"""


def test_the_file_runs_as_a_spark_submit_entry_point(tmp_path):
    """Run as a file (EMR Serverless's local://.../ml/spark_lake.py), ml/ is first on the path: its calendar.py must
    not shadow the standard library's."""
    done = subprocess.run([sys.executable, str(JOB_FILE), "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0 and "--raw" in done.stdout, done.stderr


def test_run_as_a_file_the_tasks_are_the_modules_functions(tmp_path):
    """The file as `__main__` hands over to ml.spark_lake, so the functions Spark pickles for its tasks are
    ml.spark_lake's (importable on an executor), not `__main__`'s."""
    data = tmp_path / "transaction.csv"
    data.write_text("SHOP_WEEK,SHOP_DATE\n200607,20060410\n")
    done = subprocess.run([sys.executable, "-c", TASKS_HANDED, str(JOB_FILE), str(data), str(tmp_path / "lake")],
                          cwd=Path(__file__).parents[1], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ml.spark_lake", "_ingest_task"]


def test_only_the_job_imports_pyspark():
    code = ("import sys, ml.pipeline, ml.validate, ml.features, ml.lake, cli.main; "
            "sys.exit('pyspark' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_on_s3_the_files_are_found_copied_to_the_raw_zone_and_named_by_their_uri(moto_endpoint, tmp_path):
    """What runs on S3 without Spark here: the driver's listing and raw zone, a task's copy to scratch (a gzip file
    as it is) and the source names it gives its rows."""
    import boto3

    from ml.spark_lake import KIND, _ingest_file, input_files, put_raw
    from ml.synth import SynthConfig, write_synthetic

    _, written = write_synthetic(SynthConfig(rows=600, seed=5, weeks=2), tmp_path / "weeks", weekly=True)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="raw-in", CreateBucketConfiguration={"LocationConstraint": "ap-southeast-1"})
    for path in written:
        s3.upload_file(str(path), "raw-in", f"export/{path.name}")
    s3.put_object(Bucket="raw-in", Key="export/notes.txt", Body=b"not a weekly file")
    files, in_folder = input_files("s3://raw-in/export/")
    assert in_folder and files == [f"s3://raw-in/export/{p.name}" for p in sorted(written)]
    with pytest.raises(Exception, match="s3://raw-in/nothing: no such file or folder"):
        input_files("s3://raw-in/nothing")

    record = put_raw(Lake("s3://raw-in/lake"), "s3://raw-in/export/", files)
    assert record == put_raw(Lake("s3://raw-in/lake"), "s3://raw-in/export/", files)  # the same content: one folder
    local = Lake(str(tmp_path / "lake")).put_raw(tuple(sorted(written)))
    assert record.sha256 == local.sha256 and record.file_sha256 == local.file_sha256
    frames = list(_ingest_file(files[0], in_folder))
    rows = pl.concat(frames[:-1], how="diagonal_relaxed")
    assert set(rows[SOURCE_FILE]) == {files[0]} and rows.filter(pl.col(KIND) == "passed").height > 0
    assert frames[-1][SOURCE_FILE].to_list() == [files[0]] and frames[-1]["_rows_read"].item() == rows.height
    gzipped = f"gz/{written[0].name}.gz"
    s3.put_object(Bucket="raw-in", Key=gzipped, Body=gzip.compress(written[0].read_bytes()))
    assert input_files(f"s3://raw-in/{gzipped}") == ([f"s3://raw-in/{gzipped}"], False)
    from_gzip = pl.concat(list(_ingest_file(f"s3://raw-in/{gzipped}", False))[:-1], how="diagonal_relaxed")
    assert from_gzip.drop(SOURCE_FILE).equals(rows.drop(SOURCE_FILE))


def test_an_input_in_the_raw_zone_is_recorded_where_it_is_and_nothing_is_written_under_raw(moto_endpoint, tmp_path):
    """On AWS the job's role may read raw/ but not write it: an input uploaded to the lake's raw zone is hashed
    where it is (the local path's hash) and no key under raw/ is written."""
    import boto3

    from ml.spark_lake import input_files, put_raw
    from ml.synth import SynthConfig, write_synthetic

    _, written = write_synthetic(SynthConfig(rows=300, seed=6, weeks=2), tmp_path / "weeks", weekly=True)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="raw-zone", CreateBucketConfiguration={"LocationConstraint": "ap-southeast-1"})
    for path in written:
        s3.upload_file(str(path), "raw-zone", f"lake/raw/upload-1/{path.name}")

    def keys() -> dict[str, str]:
        return {o["Key"]: o["ETag"] for o in s3.list_objects_v2(Bucket="raw-zone").get("Contents", [])}

    before = keys()
    raw = "s3://raw-zone/lake/raw/upload-1/"
    files, _ = input_files(raw)
    record = put_raw(Lake("s3://raw-zone/lake"), raw, files)
    assert keys() == before
    local = Lake(str(tmp_path / "lake")).put_raw(tuple(sorted(written)))
    assert record.sha256 == local.sha256 and record.file_sha256 == local.file_sha256
    assert record.location == raw and record.files == local.files and record.bytes == local.bytes
    # Elsewhere the same files are copied in (a local run's raw zone).
    copied = put_raw(Lake("s3://raw-zone/other-lake"), raw, files)
    assert copied.location == f"s3://raw-zone/other-lake/raw/{local.sha256[:16]}"
    assert {k for k in keys() if k.startswith("other-lake/")} == {
        *(f"other-lake/raw/{local.sha256[:16]}/{p.name}" for p in written),
        f"other-lake/raw/{local.sha256[:16]}/_source.json"}


def test_a_bad_file_on_s3_is_named_by_its_uri(moto_endpoint):
    import boto3

    from ml.ingest import InputError
    from ml.spark_lake import _ingest_file

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="bad-in", CreateBucketConfiguration={"LocationConstraint": "ap-southeast-1"})
    s3.put_object(Bucket="bad-in", Key="export/transaction.csv", Body=b"SHOP_WEEK,SHOP_DATE\n200607,20060410\n")
    with pytest.raises(InputError) as failed:
        list(_ingest_file("s3://bad-in/export/transaction.csv", False))
    assert str(failed.value).startswith("s3://bad-in/export/transaction.csv: missing column(s) ")
    assert "spark-lake-" not in str(failed.value)


def test_a_session_without_a_master_still_runs_its_tasks_on_this_interpreter(spark, monkeypatch):
    # Spark's default is `python3` on PATH, which outside an activated venv lacks polars: `retail lake build` failed
    # so in every task when PYSPARK_PYTHON was unset. The session is the running one (getOrCreate), no second JVM.
    from ml.spark_lake import session

    monkeypatch.delenv("PYSPARK_PYTHON", raising=False)
    assert session(None) is spark
    assert os.environ["PYSPARK_PYTHON"] == sys.executable
    assert spark.sparkContext.pythonExec == sys.executable
