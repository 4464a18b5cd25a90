"""The hosts of a multi-instance SageMaker training job, joined into XGBoost's collective (its Rabit tracker).

SageMaker's contract for a custom training image (Developer Guide, "How Amazon SageMaker AI Provides Training
Information", section "Distributed Training Configuration",
https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo-running-container.html): every
container of a job finds `/opt/ml/input/config/resourceconfig.json` with

- `current_host`: this container's name on the job's network (e.g. `algo-2`);
- `hosts`: every container's name, sorted (e.g. `["algo-1", "algo-2"]`), by which containers address each other;
- `network_interface_name`: the interface the container network uses (e.g. `eth0`; MPI and NCCL need it, XGBoost's
  TCP collective does not).

The guide says not to rely on /etc/hosts or /etc/hostname and that a name may not resolve at once, so every host's
name is resolved first, retried until `ClusterSettings.resolve_seconds` (AWS's own sagemaker-xgboost-container waits
for every host likewise). A job without the file, or with one host, is a single-host job.

The first host of the sorted list is the leader: it starts XGBoost's tracker (`xgboost.tracker.RabitTracker`) on
the address its name resolves to, at `ClusterSettings.tracker_port`; every host then joins the collective with its
index in the sorted list as task id, so XGBoost's ranks are the list's order (rank 0 is the leader). SageMaker does
not start the containers at once, so a host may try to join before the leader's tracker listens: joining is retried
in Python until `bootstrap_seconds` (XGBoost's own retries sleep 2, 4, 6 ... s before attempts 2, 3, 4 ... and reuse
the refused socket, whose next attempt fails with "Software caused connection abort" even once the tracker listens,
so they are set to one attempt). Inside the collective XGBoost's `hist` training allreduces the histograms of every
host's rows, so the trees are the same on every host.

How a failure reaches the other hosts:

- a host whose process dies (an error, a kill, out of memory) has its sockets closed by the kernel: the others' next
  allreduce fails within a second ("Ring Allreduce failed");
- a host that vanishes without closing its sockets (a lost instance, a cut network) is noticed only when an
  operation times out: up to `bootstrap_seconds` (900 s, XGBoost's `dmlc_timeout`) for the operation under way;
- a host that never joins fails the others after `bootstrap_seconds`.

Each time `CollectiveFailed` names the host it is raised on and what to look at, and leaving the collective after a
failure (XGBoost's finalize, which talks to the tracker, gone with a dead leader) never replaces that first error.

Tests run several hosts on 127.0.0.1: `RETAIL_CLUSTER_HOST_ADDRESSES` (JSON, name -> address) replaces DNS when set
and `RETAIL_CLUSTER_TRACKER_PORT` picks a free port; a job on SageMaker sets neither.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ClusterError(Exception):
    """The hosts of the job cannot train together as configured; the message says why."""


class CollectiveFailed(ClusterError):
    """Joining or using XGBoost's collective failed, most often because another host stopped."""


class ClusterSettings(BaseSettings):
    """How the hosts find each other (RETAIL_CLUSTER_TRACKER_PORT, ...); SageMaker jobs use the defaults."""

    model_config = SettingsConfigDict(env_prefix="RETAIL_CLUSTER_")

    tracker_port: int = Field(9099, ge=1, le=65535)
    """The port the leader's tracker listens on; every host must know it before the tracker starts."""
    bootstrap_seconds: int = Field(900, ge=1)
    """How long a host keeps trying to join (the leader's tracker may not listen yet) and the tracker waits for
    every host (the hosts write their share of the channel first); also the timeout of each collective operation
    (XGBoost's `dmlc_timeout`), which bounds how long a host that vanished without closing its sockets goes
    unnoticed."""
    connect_attempts: int = Field(1, ge=1)
    """XGBoost's own attempts at each connection (to the tracker when joining and when leaving, to the other hosts
    when joining); attempt k first sleeps 2(k-1) s, so n attempts take n(n-1) s when nothing answers. One: joining is
    retried in Python until `bootstrap_seconds`, and leaving after the leader died then fails at once instead of
    holding the first error back for 90 s (XGBoost's default of 10)."""
    resolve_seconds: float = Field(900, ge=0)
    """How long the hosts' names may take to resolve, all of them together (SageMaker: names may not resolve at
    once)."""
    host_addresses: dict[str, str] = Field(default_factory=dict)
    """Host name -> address, replacing DNS when set: for tests on one machine (JSON in the environment)."""


@dataclass(frozen=True)
class Hosts:
    """This container and all the job's containers, sorted as SageMaker sorts them."""

    current: str
    names: tuple[str, ...]
    network_interface: str | None = None

    @property
    def size(self) -> int:
        return len(self.names)

    @property
    def rank(self) -> int:
        return self.names.index(self.current)

    @property
    def leader(self) -> str:
        return self.names[0]

    @property
    def is_leader(self) -> bool:
        return self.current == self.leader


SINGLE_HOST = Hosts("local", ("local",))


def read_hosts(path: Path) -> Hosts:
    """The hosts `resourceconfig.json` at `path` names; a single host when there is no file."""
    if not path.is_file():
        return SINGLE_HOST
    config = json.loads(path.read_text())
    current, names = config.get("current_host"), config.get("hosts")
    if not isinstance(current, str) or not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ClusterError(f"{path} must give current_host (a name) and hosts (a list of names); got {config!r}")
    if len(set(names)) != len(names) or current not in names:
        raise ClusterError(f"{path}: current_host {current!r} must be one of the distinct hosts {names!r}")
    interface = config.get("network_interface_name")
    return Hosts(current, tuple(sorted(names)), interface if isinstance(interface, str) else None)


def resolve(host: str, settings: ClusterSettings, deadline: float | None = None) -> str:
    """The address of `host`: `settings.host_addresses` when set, else DNS, retried until `deadline` (a
    `time.monotonic()` instant; default: `resolve_seconds` from now)."""
    if settings.host_addresses:
        if host not in settings.host_addresses:
            raise ClusterError(f"RETAIL_CLUSTER_HOST_ADDRESSES has no address for host {host!r}")
        return settings.host_addresses[host]
    if deadline is None:
        deadline = time.monotonic() + settings.resolve_seconds
    while True:
        try:
            return socket.gethostbyname(host)
        except OSError as error:
            if time.monotonic() >= deadline:
                raise ClusterError(f"host {host!r} did not resolve within {settings.resolve_seconds:g} s: "
                                   f"{error}") from None
            time.sleep(1)


def resolve_all(hosts: Hosts, settings: ClusterSettings) -> dict[str, str]:
    """Every host's address, all within one `resolve_seconds`: a name resolves once its container is on the job's
    network, so the hosts are all there before any joins."""
    deadline = time.monotonic() + settings.resolve_seconds
    return {name: resolve(name, settings, deadline) for name in hosts.names}


ReduceOp = Literal["sum", "min", "max"]


@dataclass(frozen=True)
class Peers:
    """This process's place among the hosts training together; `SOLO` is a single-host job."""

    rank: int = 0
    size: int = 1
    host: str = "local"

    @property
    def is_leader(self) -> bool:
        return self.rank == 0

    def reduce(self, values: np.ndarray, op: ReduceOp) -> np.ndarray:
        """`values` combined element-wise over every host (XGBoost's allreduce); `values` itself on one host."""
        if self.size == 1:
            return values
        from xgboost import collective

        ops = {"sum": collective.Op.SUM, "min": collective.Op.MIN, "max": collective.Op.MAX}
        try:
            reduced: np.ndarray = collective.allreduce(np.ascontiguousarray(values), ops[op])
        except Exception as error:  # xgboost.core.XGBoostError: a peer is gone
            raise CollectiveFailed(_failure(self, error)) from None
        return reduced

    def pooled(self, y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
        """Labels and predictions with the confusion matrix of every host's together, for metrics over all hosts'
        rows: the pairs are grouped by (label, prediction), which no metric of them depends on."""
        if self.size == 1:
            return y_true, y_pred
        confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
        np.add.at(confusion, (y_true, y_pred), 1)
        counts = self.reduce(confusion, "sum").ravel()
        cells = np.arange(n_classes * n_classes)
        return np.repeat(cells // n_classes, counts), np.repeat(cells % n_classes, counts)


SOLO = Peers()


COLLECTIVE_SOURCE = "/collective/"
"""Part of the source path XGBoost names at the head of an error of its collective (src/collective/result.cc, where a
failed operation is raised): an XGBoostError from a fit that names it is a failed exchange with the other hosts, any
other (a bad parameter, say) is the fit's own."""
TRACKER_UNREACHABLE = "Failed to connect to the tracker"
"""XGBoost's words when joining found nothing listening at the tracker's address (yet)."""


def _failure(peers: Peers, error: BaseException) -> str:
    return (f"the collective of {peers.size} hosts failed on {peers.host} (rank {peers.rank}): another host probably "
            f"stopped (see the other hosts' failure reasons and logs); XGBoost said: {_reasons(error)}")


def _reasons(error: BaseException) -> str:
    """XGBoost's chain of reasons (its `- ` lines) without the stack trace, on one line."""
    detail = str(error).strip().splitlines()
    reasons = [line.strip("- ") for line in detail if line.startswith("- ")] or detail[:1]
    return " / ".join(reasons)[:400]


class Cluster:
    """The hosts of one job: the leader's tracker from `__enter__` to `__exit__`, the collective in `joined`."""

    def __init__(self, hosts: Hosts, settings: ClusterSettings):
        self.hosts, self.settings = hosts, settings
        self.tracker: Any = None
        self.tracker_address = ""

    def __enter__(self) -> Cluster:
        """Resolve every host and, on the leader, start the tracker before anything else, so the other hosts find it
        listening whenever they are ready."""
        self.tracker_address = resolve_all(self.hosts, self.settings)[self.hosts.leader]
        if self.hosts.is_leader:
            from xgboost.tracker import RabitTracker

            try:
                self.tracker = RabitTracker(n_workers=self.hosts.size, host_ip=self.tracker_address,
                                            port=self.settings.tracker_port, sortby="task",
                                            timeout=self.settings.bootstrap_seconds)
                self.tracker.start()
            except Exception as error:  # XGBoostError: the port is taken, the address is not this host's
                raise ClusterError(f"the leader {self.hosts.current} could not start XGBoost's tracker at "
                                   f"{self.tracker_address}:{self.settings.tracker_port}: "
                                   f"{str(error).strip().splitlines()[-1]}") from None
        return self

    @contextmanager
    def joined(self) -> Iterator[Peers]:
        """This host in XGBoost's collective, as rank = its index among the sorted hosts. An XGBoostError of the
        collective raised inside (a fit whose allreduce lost a peer) leaves as `CollectiveFailed`."""
        from xgboost import collective
        from xgboost.core import XGBoostError

        peers = Peers(self.hosts.rank, self.hosts.size, self.hosts.current)
        self._join(peers)
        failed = True
        try:
            if (collective.get_rank(), collective.get_world_size()) != (peers.rank, peers.size):
                raise ClusterError(f"XGBoost's tracker gave {self.hosts.current} rank {collective.get_rank()} of "
                                   f"{collective.get_world_size()}, expected {peers.rank} of {peers.size}")
            print(f"{self.hosts.current} joined the collective as rank {peers.rank} of {peers.size}", flush=True)
            yield peers
            failed = False
        except XGBoostError as error:
            if COLLECTIVE_SOURCE not in str(error).split("\n", 1)[0]:
                raise
            raise CollectiveFailed(_failure(peers, error)) from None
        finally:
            self._leave(failed)

    def _join(self, peers: Peers) -> None:
        """XGBoost's init; on the other hosts, retried while the leader's tracker does not listen yet, until
        `bootstrap_seconds` (the leader's own tracker listens from the start, and stops after `bootstrap_seconds`
        if not every host joined)."""
        from xgboost import collective
        from xgboost.core import XGBoostError

        args: dict[str, int | str | None] = {
            "dmlc_communicator": "rabit",
            "dmlc_tracker_uri": self.tracker_address,
            "dmlc_tracker_port": self.settings.tracker_port,
            "dmlc_task_id": f"{self.hosts.rank:05d}",  # the tracker sorts by task id: ranks follow the host list
            "dmlc_retry": self.settings.connect_attempts,
            "dmlc_timeout": self.settings.bootstrap_seconds,
        }
        tracker = f"{self.hosts.leader}'s tracker at {self.tracker_address}:{self.settings.tracker_port}"
        deadline = time.monotonic() + self.settings.bootstrap_seconds
        attempts = 0
        while True:
            try:
                collective.init(**args)
                return
            except XGBoostError as error:
                if self.hosts.is_leader or TRACKER_UNREACHABLE not in str(error):  # its own tracker gave up
                    raise CollectiveFailed(_failure(peers, error)) from None
                attempts += 1
                if time.monotonic() >= deadline:
                    raise CollectiveFailed(
                        f"{self.hosts.current} could not reach {tracker} in {self.settings.bootstrap_seconds} s "
                        f"({attempts} attempts; RETAIL_CLUSTER_BOOTSTRAP_SECONDS): the leader did not start, or "
                        f"stopped before every host joined (see its log); XGBoost said: {_reasons(error)}") from None
            if attempts == 1:
                print(f"{self.hosts.current}: {tracker} does not answer yet; retrying for up to "
                      f"{self.settings.bootstrap_seconds} s", flush=True)
            time.sleep(1)

    def _leave(self, after_failure: bool) -> None:
        """XGBoost's finalize, which tells the tracker this host leaves. After a failure the tracker may be gone with
        the leader: its error is printed, never raised, so the job's reason stays the first error."""
        from xgboost import collective

        try:
            collective.finalize()
        except Exception as error:  # XGBoostError
            message = f"{self.hosts.current} could not leave XGBoost's collective cleanly: {_reasons(error)}"
            if not after_failure:
                raise CollectiveFailed(message) from None
            print(f"{message} (after the failure reported)", file=sys.stderr, flush=True)

    def __exit__(self, *exc_info: object) -> None:
        """The leader waits (bounded) for the tracker to see every host leave; after a failure it only frees it."""
        if self.tracker is None:
            return
        tracker, self.tracker = self.tracker, None
        if exc_info[0] is not None:
            return  # the error on its way out says what happened; the tracker goes with the process
        try:
            tracker.wait_for(self.settings.bootstrap_seconds)
        except Exception as error:
            raise CollectiveFailed(f"XGBoost's tracker on {self.hosts.current} did not shut down cleanly: "
                                   f"{str(error).strip().splitlines()[-1]}") from None
