"""`retail score`: batch scoring of whole weeks into the lake's predictions zone (ml/score.py, cli/score.py)."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import boto3
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from ml import ingest
from ml.bundle import bundle_digest, load_bundle
from ml.lake import SILVER_LINES
from ml.registry import Registry
from ml.schema import BASKET_KEY, LABEL
from ml.score import ScoringInput, load, plan_chunks, unreadable
from ml.synth import SynthConfig, generate, write_weekly
from ml.validate import validate
from tests.conftest import settings_env
from tests.helpers import synthetic_text, write_text_csv

pytestmark = pytest.mark.slow

runner = CliRunner()


@pytest.fixture(scope="module")
def retail(small_run):
    # Imported once the pipeline has loaded skops: skops imported after pulumi_aws (cli.main -> cli.train ->
    # infra) spends ~25 s walking the loaded modules.
    from cli.main import app

    return app


@pytest.fixture(scope="module")
def env(small_run, tmp_path_factory) -> dict[str, str]:
    return settings_env(tmp_path_factory.mktemp("score"), registry=small_run.settings, COLUMNS="200")


@pytest.fixture(scope="module")
def bundle_folder(small_run) -> Path:
    return Registry(small_run.settings).download()


def run_score(retail, env, *args: str, code: int = 0) -> dict:
    """Runs `retail score`; returns the run's manifest (or {} when it stopped before writing one)."""
    before = set(Path(env["RETAIL_LAKE_ROOT"]).glob("predictions/*/manifest.json"))
    result = runner.invoke(retail, ["score", *args], env=env)
    assert result.exit_code == code, result.output
    written = set(Path(env["RETAIL_LAKE_ROOT"]).glob("predictions/*/manifest.json")) - before
    manifest = json.loads(written.pop().read_text()) if written else {}
    return manifest | {"output": result.output}


def predictions(manifest: dict) -> pl.DataFrame:
    return pl.from_arrow(ds.dataset(manifest["outputs"]["predictions"], format="parquet", partitioning="hive")
                         .to_table())


def quarantine(manifest: dict) -> pl.DataFrame:
    return pl.from_arrow(ds.dataset(manifest["outputs"]["quarantine"], format="parquet").to_table())


def validated(path: Path):
    raw_input, raw = ingest.read(path)
    return validate(raw, raw_input)


@pytest.fixture(scope="module")
def scored_csv(retail, env, small_run) -> dict:
    """The small run's CSV scored with the champion, a few weeks per chunk."""
    return run_score(retail, env, "--input", str(small_run.data), "--chunk-lines", "5000")


@pytest.fixture(scope="module")
def tiny_csv(tmp_path_factory) -> Path:
    return write_text_csv(synthetic_text(3_000, seed=11), tmp_path_factory.mktemp("tiny") / "tiny.csv")


def test_a_csv_is_scored_into_one_partition_per_week(scored_csv):
    scored = predictions(scored_csv)
    folders = sorted(p.name for p in Path(scored_csv["outputs"]["predictions"]).iterdir())
    assert folders == [f"week={w}" for w in sorted(scored["SHOP_WEEK"].unique())]
    assert (scored["week"] == scored["SHOP_WEEK"]).all()
    assert scored_csv["counts"]["weeks"] == len(folders) > 50
    assert set(scored.columns) >= {BASKET_KEY, "SHOP_WEEK", "prediction", "probability_LA", "probability_MM",
                                   "probability_UM", "model_version", "model_family", "bundle_sha256"}


def test_every_valid_basket_is_scored_once_and_the_counts_add_up(scored_csv, small_run):
    counts, scored = scored_csv["counts"], predictions(scored_csv)
    expected = validated(small_run.data)
    assert counts["lines_read"] == counts["lines_accepted"] + counts["lines_quarantined"] == expected.report.rows_in
    assert counts["lines_accepted"] == expected.report.rows_accepted
    assert counts["baskets_scored"] == expected.lines[BASKET_KEY].n_unique() == scored.height
    assert scored[BASKET_KEY].is_unique().all()
    assert sum(counts["baskets_by_week"].values()) == counts["baskets_scored"]
    assert set(scored_csv["seconds"]) >= {"load", "validate", "predict", "write", "total"}


def test_predictions_are_the_bundles_own_predict_proba(scored_csv, small_run, bundle_folder):
    bundle = load_bundle(bundle_folder)
    features, probabilities = bundle.predict_proba(validated(small_run.data).lines)
    expected = pl.DataFrame({BASKET_KEY: features[BASKET_KEY],
                             **{f"expected_{c}": probabilities[:, i] for i, c in enumerate(bundle.classes)}})
    joined = predictions(scored_csv).join(expected, on=BASKET_KEY, how="full")
    assert joined.height == expected.height
    for c in bundle.classes:
        np.testing.assert_allclose(joined[f"probability_{c}"], joined[f"expected_{c}"], rtol=1e-6)
    argmax = joined.select(pl.concat_list([f"expected_{c}" for c in bundle.classes]).list.arg_max()).to_series()
    assert joined["prediction"].to_list() == np.asarray(bundle.classes)[argmax.to_numpy()].tolist()
    champion = Registry(small_run.settings).champion_version()
    assert set(joined["model_version"]) == {champion}
    assert set(joined["model_family"]) == {bundle.meta["family"]}
    assert set(joined["bundle_sha256"]) == {bundle_digest(bundle_folder)}
    assert scored_csv["model"]["source"].endswith("@champion")


def test_a_weekly_folder_is_scored_week_by_week(retail, env, bundle_folder, tmp_path):
    files = write_weekly(generate(SynthConfig(rows=4_000, seed=5)), tmp_path / "weekly")
    manifest = run_score(retail, env, "--input", str(tmp_path / "weekly"), "--bundle", str(bundle_folder))
    weeks = sorted(int(f.stem.removeprefix("transactions_")) for f in files)
    assert sorted(predictions(manifest)["week"].unique()) == weeks
    counts = manifest["counts"]
    assert set(counts["files"]) == {str(f) for f in files}
    assert all(c["read"] == c["accepted"] + c["quarantined"] for c in counts["files"].values())
    assert counts["baskets_scored"] == validated(tmp_path / "weekly").lines[BASKET_KEY].n_unique()


def test_a_version_number_or_a_bundle_folder_chooses_the_model(retail, env, tiny_csv, bundle_folder, small_run):
    version = Registry(small_run.settings).champion_version()
    by_version = run_score(retail, env, "--input", str(tiny_csv), "--model", version)
    assert set(predictions(by_version)["model_version"]) == {version}
    by_folder = run_score(retail, env, "--input", str(tiny_csv), "--bundle", str(bundle_folder))
    digest = bundle_digest(bundle_folder)
    assert set(predictions(by_folder)["model_version"]) == {f"sha256:{digest[:12]}"}
    assert set(predictions(by_folder)["bundle_sha256"]) == {digest}
    assert by_folder["model"]["source"] == str(bundle_folder)


def test_a_bundle_pinned_to_another_sha256_exits_2(retail, env, tiny_csv, bundle_folder):
    result = run_score(retail, env, "--input", str(tiny_csv), "--bundle", str(bundle_folder),
                       "--bundle-sha256", "0" * 64, code=2)
    assert "is not the pinned RETAIL_MODEL_SHA256" in result["output"]


def test_an_unknown_version_exits_2_naming_it(retail, env, tiny_csv):
    result = run_score(retail, env, "--input", str(tiny_csv), "--model", "404", code=2)
    assert "basket-price-sensitivity/404: no such version" in result["output"]


def test_a_missing_input_exits_2_naming_it(retail, env, tmp_path):
    result = run_score(retail, env, "--input", str(tmp_path / "nowhere.csv"), code=2)
    assert "nowhere.csv: no such file or folder" in result["output"]


def test_a_truncated_gzip_exits_2_naming_it(retail, env, tiny_csv, tmp_path, bundle_folder):
    packed = gzip.compress(tiny_csv.read_bytes())
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(packed[: len(packed) // 2])
    result = run_score(retail, env, "--input", str(broken), "--bundle", str(bundle_folder), code=2)
    assert "broken.csv.gz: unreadable" in result["output"]


def test_a_corrupt_silver_file_exits_2_for_the_job_to_fail_at_once(retail, env, bundle_folder, tmp_path):
    """A Parquet file whose page header is overwritten: pyarrow raises an OSError without an errno, which a retry
    would read the same."""
    lines = pl.DataFrame({BASKET_KEY: ["1"] * 300, "SHOP_WEEK": [200601] * 300, "PROD_CODE": ["PRD0900001"] * 300})
    broken = tmp_path / "lines.parquet"
    lines.write_parquet(broken, compression="snappy")
    data = bytearray(broken.read_bytes())
    data[4:44] = b"\xff" * 40  # the first page's header, right after the magic bytes
    broken.write_bytes(bytes(data))
    result = run_score(retail, env, "--input", str(broken), "--bundle", str(bundle_folder), code=2)
    assert "lines.parquet: unreadable" in result["output"]


def test_an_input_that_fails_with_an_io_error_exits_1_for_the_job_to_retry(retail, env, bundle_folder):
    """/proc/self/mem is a file whose first bytes cannot be read (address 0 is not mapped): an I/O error (EIO), as
    pyarrow's OSError for S3's throttling or a dropped connection once its retries are spent (the cases below).
    Exit 1, which the CronJob's pod failure policy retries; exit 2 would fail the Job."""
    result = run_score(retail, env, "--input", "/proc/self/mem", "--bundle", str(bundle_folder), code=1)
    assert "/proc/self/mem: could not be read" in result["output"]


@pytest.mark.parametrize("error, exit_code", [
    (OSError("When reading information for key 'k' in bucket 'b': AWS Error NETWORK_CONNECTION during HeadObject "
             "operation: curlCode: 28, Timeout was reached"), 1),
    (OSError("AWS Error SLOW_DOWN during GetObject operation: Please reduce your request rate."), 1),
    (FileNotFoundError(2, "No such file or directory"), 1),
    (OSError(5, "Input/output error"), 1),
    (OSError("Couldn't deserialize thrift: Variable-length int over 10 bytes."), 2),
    (OSError("Corrupt snappy compressed data."), 2),
    (gzip.BadGzipFile("Not a gzipped file (b'BA')"), 2),
    (EOFError("Compressed file ended before the end-of-stream marker was reached"), 2),
    (pa.ArrowInvalid("Parquet magic bytes not found in footer"), 2),
])
def test_errors_of_the_storage_are_retried_and_errors_of_the_content_are_not(error, exit_code):
    """The errors as pyarrow, the operating system and gzip raise them (the Parquet ones as pyarrow words a corrupt
    page header and a corrupt page)."""
    raised = unreadable("s3://lake/x", error)
    assert isinstance(raised, ingest.InputUnavailable if exit_code == 1 else ingest.InputError)
    assert str(raised).startswith("s3://lake/x: ") and str(error) in str(raised)


def test_bad_lines_and_rows_are_quarantined_and_the_run_goes_on(retail, env, bundle_folder, tmp_path):
    frame = synthetic_text(600, seed=11)
    lines = write_text_csv(frame, tmp_path / "t.csv").read_text().splitlines()
    lines[4] += ",extra"  # line 5: one field too many
    lines[7] = lines[7].replace(frame["PROD_CODE"][6], "PRD-1")  # line 8: a malformed product code
    (tmp_path / "broken.csv").write_text("\n".join(lines) + "\n")
    manifest = run_score(retail, env, "--input", str(tmp_path / "broken.csv"), "--bundle", str(bundle_folder))
    counts, rejected = manifest["counts"], quarantine(manifest)
    assert counts["lines_read"] == 600 == counts["lines_accepted"] + counts["lines_quarantined"]
    assert dict(zip(rejected["_SOURCE_LINE"], rejected["rule"], strict=True))[5] == "too_many_fields"
    assert dict(zip(rejected["_SOURCE_LINE"], rejected["rule"], strict=True))[8] == "bad_code"
    assert sum(counts["quarantined_by_rule"].values()) == counts["lines_quarantined"] == rejected.height
    expected = validated(tmp_path / "broken.csv")
    assert counts["baskets_scored"] == expected.lines[BASKET_KEY].n_unique() > 0


def test_unlabelled_lines_are_scored_like_labelled_ones(retail, env, bundle_folder, tiny_csv, tmp_path):
    unlabelled = write_text_csv(pl.read_csv(tiny_csv, infer_schema=False).with_columns(
        pl.lit(None, pl.String).alias(LABEL)), tmp_path / "unlabelled.csv")
    labelled = run_score(retail, env, "--input", str(tiny_csv), "--bundle", str(bundle_folder))
    blank = run_score(retail, env, "--input", str(unlabelled), "--bundle", str(bundle_folder))
    assert blank["counts"]["lines_without_label"] == blank["counts"]["lines_read"] == 3_000
    assert blank["counts"]["baskets_scored"] == labelled["counts"]["baskets_scored"]
    columns = [BASKET_KEY, "prediction", "probability_LA", "probability_MM", "probability_UM"]
    # Equal up to the last bits: a random forest sums its trees' votes in whatever order its threads finish.
    assert_frame_equal(predictions(blank).select(columns).sort(BASKET_KEY),
                       predictions(labelled).select(columns).sort(BASKET_KEY), check_exact=False, rel_tol=1e-9)


def test_a_basket_id_under_two_weeks_is_quarantined_whole_as_validate_does(retail, env, bundle_folder, tmp_path):
    frame = synthetic_text(3_000, seed=11)
    first_week, last_week = frame["SHOP_WEEK"].min(), frame["SHOP_WEEK"].max()
    sizes = frame.filter(pl.col("SHOP_WEEK") == first_week).group_by("BASKET_ID").len()
    key = sizes.filter(pl.col("len") > 2).sort("BASKET_ID")["BASKET_ID"][0]
    other = frame.filter(pl.col("SHOP_WEEK") == last_week).row(0, named=True)  # a valid date, chunks away
    first = pl.int_range(pl.len()) == frame.with_row_index().filter(pl.col("BASKET_ID") == key)["index"][0]
    moved = frame.with_columns([pl.when(first).then(pl.lit(other[c])).otherwise(pl.col(c)).alias(c)
                                for c in ("SHOP_WEEK", "SHOP_DATE", "SHOP_WEEKDAY")])
    path = write_text_csv(moved, tmp_path / "moved.csv")
    manifest = run_score(retail, env, "--input", str(path), "--bundle", str(bundle_folder), "--chunk-lines", "500")
    expected = validated(path)
    assert sorted(quarantine(manifest)["_SOURCE_LINE"]) == sorted(expected.quarantine["_SOURCE_LINE"])
    assert set(quarantine(manifest)["rule"]) == {"basket_inconsistent"}
    assert manifest["counts"]["baskets_scored"] == expected.lines[BASKET_KEY].n_unique()
    assert key not in set(predictions(manifest)[BASKET_KEY])


def test_quarantine_parts_are_numbered_by_chunk_the_same_on_every_run(retail, env, bundle_folder, tmp_path):
    """Chunks are validated on a second thread ahead of scoring: the parts still come in chunk order."""
    frame = synthetic_text(3_000, seed=11)
    weeks = frame["SHOP_WEEK"].unique().sort()
    bad = pl.col("SHOP_WEEK").is_in([weeks[0], weeks[-1]]) & (pl.int_range(pl.len()).over("SHOP_WEEK") == 0)
    path = write_text_csv(frame.with_columns(pl.when(bad).then(pl.lit("PRD-1")).otherwise(pl.col("PROD_CODE"))
                                             .alias("PROD_CODE")), tmp_path / "bad-first-and-last-week.csv")
    spill = load(ScoringInput(str(path)), tmp_path / "scratch").spill
    chunks = len(plan_chunks(spill.weeks(), spill.rows, 500))
    assert chunks > 3
    runs = [run_score(retail, env, "--input", str(path), "--bundle", str(bundle_folder), "--chunk-lines", "500")
            for _ in range(2)]
    parts = [sorted(p.name for p in Path(m["outputs"]["quarantine"]).iterdir()) for m in runs]
    assert parts[0] == parts[1] == ["part-0000.parquet", f"part-{chunks - 1:04d}.parquet"]
    assert quarantine(runs[0]).equals(quarantine(runs[1]))
    assert set(quarantine(runs[0])["rule"]) == {"bad_code"}
    assert runs[0]["counts"] == runs[1]["counts"]


def test_pieces_of_a_file_give_the_rows_and_line_numbers_ingest_gives(tmp_path):
    lines = write_text_csv(synthetic_text(2_000, seed=4), tmp_path / "t.csv").read_text().splitlines()
    for at in (1, 2, 500, 1_999):
        lines[at] += ",extra"
    lines.insert(1_000, "")
    path = tmp_path / "pieces.csv"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    loaded = load(ScoringInput(str(path)), tmp_path / "scratch", piece_bytes=8_192)
    raw_input, raw = ingest.read(path)
    spilled = loaded.spill.read(loaded.spill.weeks()).sort(ingest.SOURCE_LINE)
    assert spilled.equals(raw.sort(ingest.SOURCE_LINE))
    assert loaded.rejected.sort(ingest.SOURCE_LINE).equals(raw_input.rejected.sort(ingest.SOURCE_LINE))
    assert loaded.files[str(path)]["rows_read"] == raw_input.rows_read[str(path)] == 2_001


def test_a_silver_run_is_scored_as_validated(retail, env, small_run, bundle_folder):
    silver = Path(small_run.settings.lake_root) / "silver" / small_run.result.run_id
    lake = Path(env["RETAIL_LAKE_ROOT"])
    shutil.copytree(silver, lake / "silver" / "copied-run", dirs_exist_ok=True)
    by_id = run_score(retail, env, "--silver", "copied-run", "--bundle", str(bundle_folder))
    by_folder = run_score(retail, env, "--input", f"{silver}/", "--bundle", str(bundle_folder))
    lines = pl.read_parquet(silver / SILVER_LINES)
    for manifest in (by_id, by_folder):
        assert manifest["input"]["kind"] == "silver"
        assert manifest["counts"]["lines_read"] == manifest["counts"]["lines_accepted"] == lines.height
        assert manifest["counts"]["baskets_scored"] == lines[BASKET_KEY].n_unique()


def test_input_bundle_and_lake_on_s3(retail, env, moto_endpoint, bundle_folder, tmp_path):
    frame = synthetic_text(3_000, seed=11)
    first_weeks = frame["SHOP_WEEK"].unique().sort()[:3].to_list()
    three_weeks = write_text_csv(frame.filter(pl.col("SHOP_WEEK").is_in(first_weeks)), tmp_path / "three-weeks.csv")
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="retail-score", CreateBucketConfiguration={"LocationConstraint": "ap-southeast-1"})
    s3.upload_file(str(three_weeks), "retail-score", "incoming/three-weeks.csv")
    for file in (p for p in bundle_folder.rglob("*") if p.is_file()):
        s3.upload_file(str(file), "retail-score", f"serving/{file.relative_to(bundle_folder).as_posix()}")
    s3_env = env | {"RETAIL_LAKE_ROOT": "s3://retail-score/lake"}
    result = runner.invoke(retail, ["score", "--input", "s3://retail-score/incoming/three-weeks.csv",
                                    "--bundle", "s3://retail-score/serving/"], env=s3_env)
    assert result.exit_code == 0, result.output
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="retail-score", Prefix="lake/")["Contents"]]
    manifest = next(k for k in keys if k.endswith("/manifest.json"))
    counts = json.loads(s3.get_object(Bucket="retail-score", Key=manifest)["Body"].read())["counts"]
    assert counts["baskets_scored"] == validated(three_weeks).lines[BASKET_KEY].n_unique()
    assert counts["weeks"] == 3
    assert sum(k.startswith("lake/predictions/") and "/baskets/week=" in k for k in keys) == counts["weeks"]
    assert not [k for k in keys if k.endswith("/")]  # no directory markers: the scorer's role may only put files


def test_a_runs_files_are_written_under_a_hidden_name_and_renamed_so_a_reader_never_sees_half(tmp_path, monkeypatch):
    import os

    from ml.lake import Lake
    from ml.score import RunOutput

    renamed = []
    replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: renamed.append((a, b)) or replace(a, b))
    uri = RunOutput(Lake(str(tmp_path)), "run").parquet(pl.DataFrame({"x": [1]}), "baskets", "week=200601", "p.parquet")
    week = tmp_path / "predictions" / "run" / "baskets" / "week=200601"
    assert renamed == [(f"{week}/.p.parquet.partial", f"{week}/p.parquet")]
    assert uri.endswith("week=200601/p.parquet") and [p.name for p in week.iterdir()] == ["p.parquet"]
