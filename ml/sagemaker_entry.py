"""Entry point of the training image (`Dockerfile.training`): SageMaker runs `docker run <image> train`.

Decision: SageMaker runs an image built from this repository, not a framework container
in script mode. The image holds `ml/` and the dependencies of uv.lock's core and
`training` groups; there is no sagemaker-training toolkit, no requirements.txt and no code
tarball, so the code that trains is exactly the code the image tag (`train-<code version>`)
names. This module is the image's ENTRYPOINT (`python -m ml.sagemaker_entry`) and speaks
SageMaker's container contract for custom training images:

- `/opt/ml/input/config/hyperparameters.json`: the job's hyperparameters, every value a
  string; each `name: value` becomes ml.train's `--name value` (underscores in a name
  read as dashes), so `families`, `xgb-trials`, `xgboost-max-depth`, ... all work; `retail train
  --cloud` always sets `gate-min-accuracy`, `gate-min-macro-f1` and `gate-min-class-precision`, the
  thresholds it registers the version by, so the gate verdict in the job's report is judged by them;
- `/opt/ml/input/data/train/`: the `train` channel (a gold folder of the lake);
- `/opt/ml/model/`: the bundle; SageMaker tars it into model.tar.gz;
- `/opt/ml/output/data/`: reports (leaderboard, model card, confusion matrices);
- `/opt/ml/output/failure`: why the job failed; SageMaker shows it as `FailureReason`;
- `/opt/ml/checkpoints/`: the local checkpoint folder of spot training (unused: a run takes
  minutes, so an interrupted job starts again from the data);
- `/opt/ml/input/config/resourceconfig.json`: the job's hosts (ml/cluster.py).

A job on several instances (InstanceCount > 1) trains XGBoost distributed (ml/cluster.py): the
first host of the sorted list starts XGBoost's tracker, every host writes its share of the channel's
training baskets (ml/channel_share.py) and joins XGBoost's collective, the fits run over all shares,
and the first host alone scores the holdout and writes the bundle and the reports. SageMaker merges
every host's /opt/ml/model (and /opt/ml/output/data) into one archive and asks only that names do
not clash ("How Amazon SageMaker Processes Training Output",
https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo-envvariables.html),
so the other hosts write nothing there. Only the xgboost family trains distributed: a multi-host job
whose `families` hyperparameter names any other fails at once, on every host, saying so.

Any error writes the failure file and exits non-zero. `--root` moves `/opt/ml` elsewhere,
for tests and for running the image's command on a laptop.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ml.cluster import Hosts

DEFAULT_ROOT = Path("/opt/ml")
CHANNEL = "train"
PATH_FLAGS = ("train", "model-dir", "output-data-dir")
"""ml.train flags this entry point fills from SageMaker's folders; a hyperparameter may not set them."""
MAX_REASON = 1024
"""SageMaker keeps at most this many characters of the failure file as FailureReason."""


class EntryError(Exception):
    """The job cannot run as configured; the message goes to the failure file."""


@dataclass(frozen=True)
class SageMakerPaths:
    """Where SageMaker puts inputs and collects outputs, under one root (`/opt/ml` in the job)."""

    root: Path

    @property
    def hyperparameters(self) -> Path:
        return self.root / "input" / "config" / "hyperparameters.json"

    @property
    def channel(self) -> Path:
        return self.root / "input" / "data" / CHANNEL

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def output_data(self) -> Path:
        return self.root / "output" / "data"

    @property
    def failure(self) -> Path:
        return self.root / "output" / "failure"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def resource_config(self) -> Path:
        return self.root / "input" / "config" / "resourceconfig.json"


def read_hyperparameters(path: Path) -> dict[str, str]:
    """The job's hyperparameters; a job started without any has no file, which means none."""
    if not path.is_file():
        return {}
    values = json.loads(path.read_text())
    if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
        raise EntryError(f"{path} must map names to strings, as SageMaker writes it; got {values!r}")
    return values


def train_argv(hyperparameters: Mapping[str, str], paths: SageMakerPaths) -> list[str]:
    """ml.train's command line: SageMaker's folders, then one `--name value` per hyperparameter."""
    argv = ["--train", str(paths.channel), "--model-dir", str(paths.model), "--output-data-dir", str(paths.output_data)]
    for name, value in sorted(hyperparameters.items()):
        flag = name.strip().lstrip("-").replace("_", "-")
        if flag in PATH_FLAGS:
            raise EntryError(f"hyperparameter {name!r} would override the folder SageMaker provides; remove it")
        argv += [f"--{flag}", value]
    return argv


def _parse_train_args(argv: list[str]) -> argparse.Namespace:
    """ml.train's parser on `argv`; its usage error (it exits 2) becomes an EntryError with argparse's message."""
    from ml.train import parse_args

    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return parse_args(argv)
    except SystemExit as exit_:
        sys.stderr.write(captured.getvalue())
        message = captured.getvalue().strip().splitlines()
        raise EntryError(f"invalid hyperparameters: {message[-1] if message else f'exit {exit_.code}'}") from None


def run(paths: SageMakerPaths) -> None:
    """Train from the channel into the model folder; raises on any problem."""
    from ml.cluster import read_hosts

    if not paths.channel.is_dir():
        raise EntryError(f"no '{CHANNEL}' channel at {paths.channel}: give the job an input channel named '{CHANNEL}'")
    args = _parse_train_args(train_argv(read_hyperparameters(paths.hyperparameters), paths))
    hosts = read_hosts(paths.resource_config)
    try:
        summary = _train_single(args) if hosts.size == 1 else _train_distributed(args, paths, hosts)
    except SystemExit as exit_:  # ml.train refuses unknown families with SystemExit("unknown families: ...")
        if exit_.code in (None, 0):
            return
        raise EntryError(str(exit_.code)) from None
    if summary is not None:
        print(f"winner={summary['winner']}; gate_passed={summary['gate']['passed']}", flush=True)


def _train_single(args: argparse.Namespace) -> dict[str, Any]:
    from ml.train import train

    return train(args)


def _train_distributed(args: argparse.Namespace, paths: SageMakerPaths, hosts: Hosts) -> dict[str, Any] | None:
    """This host's part of a multi-host job; the summary on the leader, None on the others."""
    from ml.channel_share import require_every_basket, write_share
    from ml.cluster import Cluster, ClusterError, ClusterSettings
    from ml.train import fit_families, report, requested_families

    started = time.perf_counter()
    try:
        requested_families(args, hosts.size)
    except ValueError as error:
        raise EntryError(str(error)) from None
    print(f"{hosts.current}: host {hosts.rank + 1} of {hosts.size} ({', '.join(hosts.names)}); "
          f"the leader is {hosts.leader}", flush=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"retail-share-{hosts.current}-"))  # /tmp: SageMaker's scratch space
    try:
        with Cluster(hosts, ClusterSettings()) as cluster:
            share = write_share(paths.channel, scratch / CHANNEL, hosts.rank, hosts.size)
            with cluster.joined() as peers:
                require_every_basket(paths.channel, share, peers)
                fits = fit_families(args, peers, train_dir=share.folder)
    except ClusterError as error:
        raise EntryError(str(error)) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if not hosts.is_leader:
        print(f"{hosts.current} trained on its share; {hosts.leader} writes the model and the reports", flush=True)
        return None
    return report(args, fits, started)


def write_failure(paths: SageMakerPaths, reason: str) -> None:
    """Leave `reason` where SageMaker reads it; never mask the original error if that fails."""
    try:
        paths.failure.parent.mkdir(parents=True, exist_ok=True)
        paths.failure.write_text(reason[:MAX_REASON])
    except OSError as error:
        print(f"could not write {paths.failure}: {error}", file=sys.stderr)


class JobStopped(EntryError):
    """SageMaker sent SIGTERM (StopTrainingJob, a spot interruption or the stopping condition)."""


def _stopped(signum: int, _frame: object) -> None:
    """As PID 1 the process gets no default SIGTERM handling: stop now, with a reason, not after SIGKILL."""
    raise JobStopped(f"stopped by signal {signal.Signals(signum).name} before the model was written")


def main(argv: Sequence[str] | None = None) -> int:
    """`train [--root DIR]`: 0 when the model was written, 1 (with the failure file) otherwise."""
    parser = argparse.ArgumentParser(prog="python -m ml.sagemaker_entry", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["train"], help="what SageMaker asks the image to do")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="SageMaker's folder (default: /opt/ml)")
    options = parser.parse_args(argv)
    paths = SageMakerPaths(options.root)
    signal.signal(signal.SIGTERM, _stopped)
    try:
        run(paths)
    except EntryError as error:
        print(f"training failed: {error}", file=sys.stderr)
        write_failure(paths, str(error))
        return 1
    except Exception as error:  # anything else: the job failed; say what, keep the traceback in the log
        traceback.print_exc()
        write_failure(paths, f"{type(error).__name__}: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
