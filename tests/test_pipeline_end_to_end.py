"""The local lifecycle end to end on a small synthetic file."""

import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest

from ml.families import FAMILIES
from ml.lake import SILVER_LINES, SILVER_QUARANTINE, Lake
from ml.registry import Registry
from tests.conftest import SMALL_ROWS

pytestmark = pytest.mark.slow


def test_pipeline_registers_a_champion_that_clears_the_gate(small_run):
    registration = small_run.result.registration
    assert registration["promoted"] is True
    assert registration["champion_version"] == registration["version"]
    assert small_run.result.training["gate"]["passed"] is True
    assert Registry(small_run.settings).champion_version() == registration["version"]


def test_manifest_counts_add_up_to_the_input_and_to_what_the_zones_hold(small_run):
    manifest = json.loads(Path(small_run.result.manifest_uri).read_text())
    validation, zones = manifest["validation"], manifest["zones"]
    assert validation["rows_in"] == zones["raw"]["rows"] == SMALL_ROWS  # every data row of the input, read once
    assert validation["rows_in"] == validation["rows_accepted"] + validation["rows_quarantined"]
    lake = Lake(small_run.settings.lake_root)
    run = small_run.result.run_id
    silver = lake.read_parquet("silver", run, SILVER_LINES)
    assert silver.height == zones["silver"]["rows"] == validation["rows_accepted"]
    assert lake.read_parquet("silver", run, SILVER_QUARANTINE).height == zones["silver"]["quarantined_rows"]
    gold = lake.read_partitioned("gold", run, "baskets")
    assert gold.height == zones["gold"]["baskets"] == zones["gold"]["train_baskets"] + zones["gold"]["holdout_baskets"]
    assert set(manifest["seconds"]) >= {"ingest", "validate", "features", "train", "register"}


def test_manifest_input_hash_is_the_content_hash_of_the_files_kept_in_the_raw_zone(small_run):
    manifest = json.loads(Path(small_run.result.manifest_uri).read_text())
    digest = hashlib.sha256(small_run.data.read_bytes()).hexdigest()
    name = small_run.data.name
    assert manifest["input"]["files"] == [name]
    assert manifest["input"]["bytes"] == small_run.data.stat().st_size
    # The input's hash is over "<file>:<sha256 of its bytes>" lines, so it names the content, not the path.
    assert manifest["input"]["sha256"] == hashlib.sha256(f"{name}:{digest}\n".encode()).hexdigest()
    raw = Path(manifest["zones"]["raw"]["location"])
    assert hashlib.sha256((raw / name).read_bytes()).hexdigest() == digest
    lineage = json.loads((Path(small_run.settings.lake_root) / "gold" / small_run.result.run_id / "lineage.json")
                         .read_text())
    assert lineage["input_sha256"] == manifest["input"]["sha256"]


def test_manifest_git_commit_names_the_checkout_the_pipeline_ran_in(small_run):
    """The commit is HEAD of the working directory (`-dirty` when tracked files had changed); `unknown` outside git."""
    manifest = json.loads(Path(small_run.result.manifest_uri).read_text())
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    if head.returncode != 0:
        assert manifest["git_commit"] == "unknown"
        return
    commit = manifest["git_commit"].removesuffix("-dirty")
    assert re.fullmatch(r"[0-9a-f]{40}", commit), manifest["git_commit"]
    # HEAD itself, or (others may commit while the session runs) one of its ancestors.
    ancestor = subprocess.run(["git", "merge-base", "--is-ancestor", commit, "HEAD"], check=False)
    assert ancestor.returncode == 0, f"{commit} is not HEAD ({head.stdout.strip()}) nor an ancestor of it"


def test_git_commit_is_head_clean_or_dirty_and_unknown_outside_a_checkout(tmp_path, monkeypatch):
    from ml.lineage import git_commit

    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # no repository above tmp_path counts
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    (repo / "a.txt").write_text("one\n")
    subprocess.run([*git, "add", "a.txt"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], cwd=repo, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                          check=True).stdout.strip()
    assert git_commit(repo) == head
    (repo / "untracked.txt").write_text("not part of the commit\n")
    assert git_commit(repo) == head, "untracked files do not make the tree dirty"
    (repo / "a.txt").write_text("two\n")
    assert git_commit(repo) == f"{head}-dirty"
    outside = tmp_path / "outside"
    outside.mkdir()
    assert git_commit(outside) == "unknown"


def test_the_same_pipeline_runs_on_weekly_files_with_the_original_header(tmp_path):
    from ml.pipeline import run_pipeline
    from ml.progress import StageTimer
    from ml.synth import SynthConfig, generate, with_original_header, write_weekly
    from tests.conftest import settings_under

    folder = tmp_path / "weekly"
    files = write_weekly(with_original_header(generate(SynthConfig(rows=20_000, seed=9))), folder, crlf=True)
    # All four families, as `retail pipeline run` trains by default (the other tests train two: TEST_FAMILIES).
    settings = settings_under(tmp_path / "run", holdout_weeks=20, families="")
    result = run_pipeline(folder, settings, StageTimer(quiet=True))
    assert sorted(row["family"] for row in result.training["leaderboard"]) == sorted(FAMILIES)
    assert len(result.training["xgboost_search"]["trials"]) == settings.xgb_trials
    assert result.training["lineage"]["input_sha256"] in (result.report_dir / "model_card.md").read_text()
    manifest = json.loads(Path(result.manifest_uri).read_text())
    assert manifest["input"]["variant"] == "original"
    assert len(manifest["input"]["files"]) == len(files)
    assert result.validation.rows_in == 20_000 == result.validation.rows_accepted
    assert result.registration["version"] == "1"
