"""Multi-instance training for real: several `python -m ml.sagemaker_entry train` processes on 127.0.0.1, one per
host of a resourceconfig.json, train XGBoost together through its collective; the leader alone writes the model,
which scores the holdout like a single-process fit on the same rows, and a host that dies fails the others quickly
with a failure file.

Each host has its own /opt/ml root; the host names resolve through RETAIL_CLUSTER_HOST_ADDRESSES and the tracker
listens on a free port (RETAIL_CLUSTER_TRACKER_PORT), so several jobs can run on one machine at once.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from ml.bundle import load_bundle
from ml.channel import GoldChannel
from ml.channel_share import write_share
from ml.cluster import ClusterError, ClusterSettings, Hosts, read_hosts, resolve
from ml.lake import Lake
from ml.pipeline import PARTITIONS, build_gold
from ml.sagemaker_entry import SageMakerPaths, main
from ml.validate import validate
from tests.helpers import canonical_text

REPO = Path(__file__).resolve().parents[2]
HOSTS = ("algo-1", "algo-2")
HYPERPARAMETERS = {"families": "xgboost", "xgb-trials": "0", "xgboost-n-estimators": "40",
                   "xgboost-max-depth": "3", "xgboost-learning-rate": "0.1",
                   "xgboost-subsample": "1.0", "xgboost-colsample-bytree": "1.0"}
"""Fixed parameters, no row or column sampling: a distributed and a single-process fit differ only by the histogram
bins (XGBoost merges the hosts' quantile sketches), so their predictions can be compared basket by basket. Trees of
depth 3 for 2,816 training baskets: at the default depth 6 (learning rate 0.2) they fit noise that a bin edge
decides, and the two fits agreed on 97.2% of the holdout's 285 baskets; at depth 3, on 99.6%."""
SEARCHED = {"families": "xgboost", "xgb-trials": "1"}
"""One trial of the XGBoost search (early stopping on the validation weeks), every host running it together."""


@pytest.fixture(scope="module")
def channel(tmp_path_factory) -> Path:
    """A small gold channel laid out as the pipeline writes it (partitioned baskets, featurizer, lineage)."""
    folder = tmp_path_factory.mktemp("channel")
    gold = build_gold(validate(canonical_text(20_000, seed=21)).lines, 12, seed=0)
    Lake(str(folder)).write_partitioned(gold.baskets, PARTITIONS, "baskets")
    gold.featurizer.save(folder / "featurizer")
    (folder / "lineage.json").write_text(json.dumps({"run_id": "test", "validation_weeks": 4}))
    return folder


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def opt_ml(root: Path, channel: Path, hyperparameters: dict[str, str], host: str | None = None,
           hosts: tuple[str, ...] = HOSTS) -> SageMakerPaths:
    """/opt/ml as SageMaker lays it out for `host` of `hosts` (no resourceconfig.json without a host)."""
    paths = SageMakerPaths(root)
    shutil.copytree(channel, paths.channel)
    paths.hyperparameters.parent.mkdir(parents=True)
    paths.hyperparameters.write_text(json.dumps(hyperparameters))
    if host is not None:
        paths.resource_config.write_text(json.dumps(
            {"current_host": host, "hosts": list(reversed(hosts)), "network_interface_name": "eth0"}))
    return paths


def start(paths: SageMakerPaths, port: int, bootstrap_seconds: int = 30) -> subprocess.Popen:
    """The image's command for `paths`; one OpenMP thread, as the hosts share this machine's cores (with a thread
    per core each, XGBoost's threads spin while they wait for the other host, and a fit takes ten times as long)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RETAIL_CLUSTER_TRACKER_PORT": str(port),
           "RETAIL_CLUSTER_BOOTSTRAP_SECONDS": str(bootstrap_seconds),
           "RETAIL_CLUSTER_HOST_ADDRESSES": json.dumps(dict.fromkeys(HOSTS, "127.0.0.1"))}
    return subprocess.Popen([sys.executable, "-m", "ml.sagemaker_entry", "train", "--root", str(paths.root)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@dataclass
class Run:
    paths: SageMakerPaths
    code: int
    output: str
    seconds: float
    """From the start of the fixture's waiting (after the doomed host was killed) to this process's exit."""

    @property
    def model_files(self) -> list[Path]:
        return list(self.paths.model.rglob("*")) if self.paths.model.exists() else []


@pytest.fixture(scope="module")
def runs(channel, tmp_path_factory) -> dict[str, Run]:
    """At once, to share the waiting: a two-host job and a single-host job of the same hyperparameters on the same
    channel; a two-host job that searches (`searched/...`); a two-host job whose second host is killed once it
    joined (`dies/...`); the leader of a two-host job whose other host never starts (`alone`)."""
    root = tmp_path_factory.mktemp("jobs")
    long_fit = {**HYPERPARAMETERS, "xgb-trials": "0", "xgboost-n-estimators": "20000"}
    paths = {host: opt_ml(root / host, channel, HYPERPARAMETERS, host) for host in HOSTS}
    paths["single"] = opt_ml(root / "single", channel, HYPERPARAMETERS)
    paths |= {f"searched/{host}": opt_ml(root / "searched" / host, channel, SEARCHED, host) for host in HOSTS}
    paths |= {f"dies/{host}": opt_ml(root / "dies" / host, channel, long_fit, host) for host in HOSTS}
    paths["alone"] = opt_ml(root / "alone", channel, HYPERPARAMETERS, "algo-1")
    job, searched, dies = free_port(), free_port(), free_port()
    processes = {name: start(paths[name], job) for name in (*HOSTS, "single")}
    processes |= {f"searched/{host}": start(paths[f"searched/{host}"], searched) for host in HOSTS}
    processes |= {f"dies/{host}": start(paths[f"dies/{host}"], dies) for host in HOSTS}
    processes["alone"] = start(paths["alone"], free_port(), bootstrap_seconds=3)
    doomed = processes.pop("dies/algo-2")
    assert doomed.stdout is not None
    for line in doomed.stdout:
        if "joined the collective" in line:
            break
    doomed.kill()
    doomed.wait()
    started, done = time.monotonic(), {}
    for name, process in processes.items():
        output, _ = process.communicate(timeout=90)
        done[name] = Run(paths[name], process.returncode, output, time.monotonic() - started)
    return done


def holdout_predictions(model_dir: Path, channel: Path) -> tuple[np.ndarray, np.ndarray]:
    bundle = load_bundle(model_dir)
    pieces = list(GoldChannel(channel).holdout_pieces())
    x, y = np.concatenate([p.x for p in pieces]), np.concatenate([p.y for p in pieces])
    return bundle.probabilities(x).argmax(axis=1), y


def summary_of(run: Run) -> dict:
    return json.loads((run.paths.output_data / "summary.json").read_text())


def test_every_host_of_a_two_host_job_exits_0(runs):
    for rank, host in enumerate(HOSTS):
        assert runs[host].code == 0, runs[host].output
        assert f"{host} joined the collective as rank {rank} of 2" in runs[host].output
        assert not runs[host].paths.failure.exists()


def test_the_leader_alone_writes_the_model_and_the_reports(runs):
    leader, other = runs["algo-1"], runs["algo-2"]
    assert load_bundle(leader.paths.model).meta["family"] == "xgboost"
    assert (leader.paths.output_data / "summary.json").is_file()
    assert other.model_files == []
    assert not other.paths.output_data.exists()
    assert "algo-2 trained on its share; algo-1 writes the model and the reports" in other.output


def test_the_summary_counts_every_hosts_training_baskets(runs, channel):
    train_sample = summary_of(runs["algo-1"])["data"]["train_sample"]
    assert train_sample["available"] == train_sample["used"] == GoldChannel(channel).count("train")
    assert train_sample["hosts"] == 2


def test_the_distributed_model_scores_like_a_single_process_fit_on_the_same_rows(runs, channel):
    assert runs["single"].code == 0, runs["single"].output
    distributed, _ = holdout_predictions(runs["algo-1"].paths.model, channel)
    single, _ = holdout_predictions(runs["single"].paths.model, channel)
    assert (distributed == single).mean() >= 0.98
    f1 = {name: summary_of(runs[name])["metrics"]["macro_f1"] for name in ("algo-1", "single")}
    assert abs(f1["algo-1"] - f1["single"]) <= 0.02, f1


def test_the_hosts_search_together_and_train_the_trial_they_chose(runs):
    for host in HOSTS:
        assert runs[f"searched/{host}"].code == 0, runs[f"searched/{host}"].output
    leader = runs["searched/algo-1"].paths
    search = json.loads((leader.output_data / "xgboost_search.json").read_text())
    (trial,) = search["trials"]
    rounds = load_bundle(leader.model).model.get_booster().num_boosted_rounds()
    assert rounds == trial["trees"] == search["best_params"]["n_estimators"]


def test_a_host_that_dies_fails_the_others_at_once_with_a_failure_file(runs):
    """The second host is killed once it joined; the leader's next allreduce finds its socket closed."""
    leader = runs["dies/algo-1"]
    assert leader.code == 1, leader.output
    assert leader.seconds < 15
    reason = leader.paths.failure.read_text()
    assert reason.startswith("the collective of 2 hosts failed on rank 0: another host probably stopped"), reason
    assert leader.model_files == []


def test_a_host_that_never_joins_fails_the_leader_after_the_bootstrap_timeout(runs):
    alone = runs["alone"]
    assert alone.code == 1, alone.output
    assert alone.seconds < 20
    assert alone.paths.failure.read_text().startswith("the collective of 2 hosts failed on rank 0")


def test_a_multi_host_job_of_other_families_fails_on_every_host_saying_why(channel, tmp_path):
    paths = opt_ml(tmp_path, channel, {"families": "xgboost,logistic_regression"}, "algo-2")
    assert main(["train", "--root", str(paths.root)]) == 1
    assert paths.failure.read_text().startswith(
        "a training job on 2 instances trains the xgboost family only (the others cannot train distributed), "
        "but families is 'xgboost,logistic_regression'")


def test_each_basket_goes_to_exactly_one_hosts_share(channel, tmp_path):
    shares = [GoldChannel(write_share(channel, tmp_path / str(rank), rank, 3)).train_side(10**9, 0)
              for rank in range(3)]
    whole = GoldChannel(channel).train_side(10**9, 0)
    assert sum(s.available for s in shares) == whole.available
    assert min(s.available for s in shares) > whole.available / 3 * 0.8
    stacked = np.concatenate([s.x for s in shares])
    assert len(np.unique(stacked, axis=0)) == len(np.unique(whole.x, axis=0))


def test_resourceconfig_names_the_hosts_sorted_with_the_first_as_leader(tmp_path):
    path = tmp_path / "resourceconfig.json"
    path.write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-3", "algo-1", "algo-2"],
                                "network_interface_name": "eth0"}))
    hosts = read_hosts(path)
    assert hosts == Hosts("algo-1", ("algo-1", "algo-2", "algo-3"), "eth0")
    assert (hosts.rank, hosts.size, hosts.is_leader) == (0, 3, True)
    assert read_hosts(tmp_path / "absent.json").size == 1


def test_a_resourceconfig_whose_current_host_is_not_listed_is_refused(tmp_path):
    path = tmp_path / "resourceconfig.json"
    path.write_text(json.dumps({"current_host": "algo-9", "hosts": ["algo-1", "algo-2"]}))
    with pytest.raises(ClusterError, match="current_host 'algo-9' must be one of"):
        read_hosts(path)


def test_host_addresses_replace_dns_only_when_set():
    assert resolve("algo-1", ClusterSettings(host_addresses={"algo-1": "127.0.0.1"})) == "127.0.0.1"
    assert resolve("localhost", ClusterSettings()) in {"127.0.0.1", "127.0.1.1"}
    with pytest.raises(ClusterError, match="no address for host 'algo-2'"):
        resolve("algo-2", ClusterSettings(host_addresses={"algo-1": "127.0.0.1"}))
