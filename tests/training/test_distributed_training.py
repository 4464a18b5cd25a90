"""Multi-instance training for real: several `python -m ml.sagemaker_entry train` processes on 127.0.0.1, one per
host of a resourceconfig.json, train XGBoost together through its collective; the leader alone writes the model,
which scores the holdout like a single-process fit on the same rows; a host started before its leader's tracker
listens still joins; a host that dies, the leader included, fails the others quickly with a failure file of the
collective's reason; the hosts refuse together a fit one of them has no class's rows for.

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
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from threadpoolctl import threadpool_limits

from ml.bundle import load_bundle
from ml.channel import GoldChannel
from ml.channel_share import Share, require_every_basket, share_of, write_share
from ml.cluster import Cluster, ClusterError, ClusterSettings, Hosts, Peers, read_hosts, resolve
from ml.sagemaker_entry import SageMakerPaths, main, run
from ml.selection import agreed_validation_rows
from tests.helpers import gold_channel

pytestmark = pytest.mark.slow

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
    gold_channel(folder)
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
    per core each, XGBoost's threads spin while they wait for the other host, and a fit takes ten times as long).
    Each host has a /tmp of its own, as each container does: a host killed mid-job leaves its scratch there."""
    scratch = paths.root / "tmp"
    scratch.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(scratch), "OMP_NUM_THREADS": "1", "RETAIL_CLUSTER_TRACKER_PORT": str(port),
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
    """From the kill of the job's doomed host (`dies/...`, `leader_dies/...`), else from the jobs' start, to this
    process's exit."""

    @property
    def model_files(self) -> list[Path]:
        return list(self.paths.model.rglob("*")) if self.paths.model.exists() else []


def read_until(process: subprocess.Popen, text: str) -> str:
    """`process`'s output up to and including the first line holding `text`."""
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if text in line:
            break
    return "".join(lines)


@pytest.fixture(scope="module")
def runs(channel, tmp_path_factory) -> dict[str, Run]:
    """At once, to share the waiting: a two-host job and a single-host job of the same hyperparameters on the same
    channel (the latter in this process); a two-host job that searches (`searched/...`); a
    two-host job whose second host is killed once it joined (`dies/...`), and one whose leader is (`leader_dies/...`);
    the leader of a two-host job whose other host never starts (`alone`)."""
    root = tmp_path_factory.mktemp("jobs")
    long_fit = {**HYPERPARAMETERS, "xgb-trials": "0", "xgboost-n-estimators": "20000"}
    paths = {host: opt_ml(root / host, channel, HYPERPARAMETERS, host) for host in HOSTS}
    paths["single"] = opt_ml(root / "single", channel, HYPERPARAMETERS)
    paths |= {f"searched/{host}": opt_ml(root / "searched" / host, channel, SEARCHED, host) for host in HOSTS}
    for job in ("dies", "leader_dies"):
        paths |= {f"{job}/{host}": opt_ml(root / job / host, channel, long_fit, host) for host in HOSTS}
    paths["alone"] = opt_ml(root / "alone", channel, HYPERPARAMETERS, "algo-1")
    ports = {job: free_port() for job in ("", "searched/", "dies/", "leader_dies/")}
    processes = {f"{job}{host}": start(paths[f"{job}{host}"], port) for job, port in ports.items() for host in HOSTS}
    processes["alone"] = start(paths["alone"], free_port(), bootstrap_seconds=3)
    started, killed_at = time.monotonic(), {}
    doomed = {name: processes.pop(name) for name in ("dies/algo-2", "leader_dies/algo-1")}

    def kill_once_joined(name: str) -> None:
        """Killed as soon as it joined: until then its job's hosts spin on a fit that other jobs wait for cores of."""
        read_until(doomed[name], "joined the collective")
        killed_at[name.split("/")[0]] = time.monotonic()
        doomed[name].kill()
        doomed[name].wait()

    def finished(name: str) -> Run:
        output, _ = processes[name].communicate(timeout=90)
        since = killed_at.get(name.split("/")[0], started)
        return Run(paths[name], processes[name].returncode, output, time.monotonic() - since)

    with ThreadPoolExecutor(len(processes) + len(doomed) + 1) as waiting:  # each exit timed as it happens
        kills = waiting.map(kill_once_joined, list(doomed))
        exits = waiting.map(finished, list(processes))
        single = waiting.submit(run_single, paths["single"])
        list(kills)
        return dict(zip(processes, exits, strict=True)) | {"single": single.result()}


def run_single(paths: SageMakerPaths) -> Run:
    """The image's single-host job, in this process (an interpreter fewer to start), with one OpenMP thread like the
    processes (OpenMP's limit is the calling thread's; its printing goes to pytest's capture)."""
    begun = time.monotonic()
    with threadpool_limits(1, user_api="openmp"):
        run(paths)
    return Run(paths, 0, "", time.monotonic() - begun)


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


def test_a_host_started_before_its_leaders_tracker_listens_joins_once_it_does(capsys):
    """algo-2 tries to join before algo-1 started its tracker (SageMaker starts the containers one by one) and keeps
    trying; the two then join and exchange. One thread per host: XGBoost's collective is per thread."""
    settings = ClusterSettings(host_addresses=dict.fromkeys(HOSTS, "127.0.0.1"), tracker_port=free_port(),
                               bootstrap_seconds=20)
    sums: dict[str, int] = {}

    def host(name: str) -> None:
        with Cluster(Hosts(name, HOSTS), settings) as cluster, cluster.joined() as peers:
            sums[name] = int(peers.reduce(np.array([peers.rank + 1]), "sum")[0])

    early = threading.Thread(target=host, args=("algo-2",))
    early.start()
    printed = ""
    while "does not answer yet" not in printed:
        assert early.is_alive(), printed
        time.sleep(0.05)
        printed += capsys.readouterr().out
    leader = threading.Thread(target=host, args=("algo-1",))
    leader.start()
    for thread in (early, leader):
        thread.join(30)
    printed += capsys.readouterr().out
    assert sums == {"algo-1": 3, "algo-2": 3}
    assert f"algo-2: algo-1's tracker at 127.0.0.1:{settings.tracker_port} does not answer yet" in printed
    assert printed.index("does not answer yet") < printed.index("algo-2 joined the collective as rank 1 of 2")


def failed_fast(run: Run, host: str, rank: int) -> str:
    """The failure reason of `run`, a host of a two-host job whose other host was killed once it joined, after
    checking that it exited 1 within 15 s blaming the other host."""
    assert run.code == 1, run.output
    assert run.seconds < 15
    reason = run.paths.failure.read_text()
    assert reason.startswith(f"the collective of 2 hosts failed on {host} (rank {rank}): another host probably "
                             "stopped"), reason
    return reason


def test_a_host_that_dies_fails_the_others_at_once_with_a_failure_file(runs):
    """The second host is killed once it joined; the leader's next allreduce finds its socket closed."""
    failed_fast(runs["dies/algo-1"], "algo-1", 0)
    assert runs["dies/algo-1"].model_files == []


def test_a_leader_that_dies_fails_the_others_at_once_with_the_collectives_reason(runs):
    """The leader, and its tracker with it, is killed once every host joined: the other host's exchange fails, and
    leaving the collective, which cannot reach the tracker, neither delays that (XGBoost retried it 90 s) nor
    replaces its reason."""
    reason = failed_fast(runs["leader_dies/algo-2"], "algo-2", 1)
    assert "shutdown" not in reason.lower()
    assert "algo-2 could not leave XGBoost's collective cleanly" in runs["leader_dies/algo-2"].output


def test_a_host_that_never_joins_fails_the_leader_after_the_bootstrap_timeout(runs):
    alone = runs["alone"]
    assert alone.code == 1, alone.output
    # From its start: importing the training stack and reading the channel, then the 3 s the tracker waits, not
    # the 900 s default. The start alone took 39 s once, beside this module's eight other hosts and a second worker
    # on two cores, so the ceiling only tells the two timeouts apart.
    assert alone.seconds < 60
    assert alone.paths.failure.read_text().startswith("the collective of 2 hosts failed on algo-1 (rank 0)")


def in_two_threads(task: Callable[[Peers], object]) -> list[object]:
    """`task` run as both hosts of a real collective (XGBoost's is per thread: one thread per host, one tracker);
    what each returned, or the exception it raised."""
    from xgboost import collective
    from xgboost.tracker import RabitTracker

    tracker = RabitTracker(n_workers=2, host_ip="127.0.0.1", port=0, sortby="task", timeout=20)
    tracker.start()
    results: list[object] = [None, None]

    def host(rank: int) -> None:
        collective.init(**tracker.worker_args(), dmlc_task_id=f"{rank:05d}", dmlc_timeout=20)
        try:
            results[rank] = task(Peers(rank, 2, HOSTS[rank]))
        except Exception as error:
            results[rank] = error
        finally:
            collective.finalize()

    threads = [threading.Thread(target=host, args=(rank,)) for rank in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    tracker.wait_for(20)
    return results


def test_a_host_without_one_class_before_the_window_fails_every_host_alike():
    """XGBoost would infer two classes on the host without UM rows and three on the other; both refuse, alike."""
    labels = {0: np.array([0, 1, 2, 0, 1, 2]), 1: np.array([0, 1, 0, 1, 2, 2])}  # host 1: UM (2) only in the window
    window = np.array([False, False, False, False, True, True])

    def rows(peers: Peers) -> object:
        return agreed_validation_rows(labels[peers.rank], window, 100, np.random.default_rng(0), peers)

    first, second = in_two_threads(rows)
    assert isinstance(first, ValueError) and isinstance(second, ValueError), (first, second)
    assert str(first) == str(second)
    assert "the fewest a host has: LA 2, MM 1, UM 0 before, 2 within" in str(first)


def test_a_multi_host_job_of_other_families_fails_on_every_host_saying_why(channel, tmp_path):
    paths = opt_ml(tmp_path, channel, {"families": "xgboost,logistic_regression"}, "algo-2")
    assert main(["train", "--root", str(paths.root)]) == 1
    assert paths.failure.read_text().startswith(
        "a training job on 2 instances trains the xgboost family only (the others cannot train distributed), "
        "but families is 'xgboost,logistic_regression'")


def test_each_basket_goes_to_exactly_one_hosts_share(channel, tmp_path):
    shares = [GoldChannel(write_share(channel, tmp_path / str(rank), rank, 3).folder).train_side(10**9, 0)
              for rank in range(3)]
    whole = GoldChannel(channel).train_side(10**9, 0)
    assert sum(s.available for s in shares) == whole.available
    assert min(s.available for s in shares) > whole.available / 3 * 0.8
    stacked = np.concatenate([s.x for s in shares])
    assert len(np.unique(stacked, axis=0)) == len(np.unique(whole.x, axis=0))


def test_hosts_whose_shares_miss_a_basket_fail_alike_naming_the_counts(channel, tmp_path):
    shares = [write_share(channel, tmp_path / str(rank), rank, 2) for rank in range(2)]
    assert in_two_threads(lambda peers: require_every_basket(channel, shares[peers.rank], peers)) == [None, None]
    short = [shares[0], Share(shares[1].folder, shares[1].baskets - 1)]
    errors = in_two_threads(lambda peers: require_every_basket(channel, short[peers.rank], peers))
    whole = GoldChannel(channel).count("train")
    assert [str(e) for e in errors] == [f"the 2 hosts' shares hold {whole - 1:,} training baskets but the channel has "
                                        f"{whole:,}: the hosts do not see the same channel, or do not deal its "
                                        "baskets alike"] * 2


def test_a_dictionary_encoded_key_is_dealt_as_the_plain_key():
    keys = pa.array([f"basket-{i}" for i in range(200)])
    assert share_of(keys.dictionary_encode(), 1, 3).equals(share_of(keys, 1, 3))


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
