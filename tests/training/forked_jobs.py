"""Training jobs (`python -m ml.sagemaker_entry train`) forked from one interpreter that imported what a job imports.

A fresh interpreter spends about 2.8 s of CPU importing XGBoost, scikit-learn and Polars before a job does anything;
tests/training/test_distributed_training.py starts nine jobs at once on a 2-core machine. Each fork runs the entry
point as `python -m` runs it (`runpy.run_module` as `__main__`, with its own argv, environment and working folder),
its output on a pipe of its own (a FIFO) and its exit status that of the process, so a test reads, kills and waits
for it as it would a `subprocess.Popen`.

The launcher imports and forks on one thread, before anything has started a thread pool of Polars or OpenMP (fork
copies no threads; both create theirs on first use, in the job). OpenMP reads OMP_NUM_THREADS when it is loaded,
in the launcher, so the jobs' value is the launcher's: `Launcher(env)` takes the environment it is started with.
The launcher freezes what it imported out of the collector's sight (`gc.freeze`, as Python's documentation advises
before a fork), so the jobs' collections do not touch, and copy, every page of it. Paired against fresh interpreters
(two rounds each, alternated), the module took 24.5-28.0 s and 33-38 s of CPU, against 34.6-39.1 s and 55-62 s.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

LAUNCHER = """
import gc, json, os, runpy, sys, traceback
import ml.sagemaker_entry, ml.train
gc.freeze()

def run(job):
    output = os.open(job["output"], os.O_WRONLY)
    pid = os.fork()
    if pid:
        os.close(output)
        return pid
    code = 1
    try:
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.close(output)
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        os.chdir(job["cwd"])
        os.environ.clear()
        os.environ.update(job["env"])
        sys.argv = [job["module"], *job["args"]]
        try:
            runpy.run_module(job["module"], run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as stop:
            if isinstance(stop.code, int) or stop.code is None:
                code = stop.code or 0
            else:
                print(stop.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

for line in sys.stdin:
    if line.strip() == "started":
        break
    print(run(json.loads(line)), flush=True)
while True:
    try:
        pid, status = os.wait()
    except ChildProcessError:
        break
    print(pid, os.waitstatus_to_exitcode(status), flush=True)
"""


class ForkedJob:
    """One forked job, read, killed and waited for as a `subprocess.Popen` in text mode with stderr on stdout."""

    def __init__(self, pid: int, output: IO[str], launcher: Launcher):
        self.pid = pid
        self.stdout = output
        self.returncode: int | None = None
        self._launcher = launcher

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        if not self._launcher.exited(self.pid).wait(timeout):
            raise subprocess.TimeoutExpired(f"job {self.pid}", timeout or 0)
        self.returncode = self._launcher.codes[self.pid]
        return self.returncode

    def communicate(self, timeout: float | None = None) -> tuple[str, None]:
        """Everything the job writes until it closes its output, then its exit; TimeoutExpired past `timeout` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        chunks = []
        descriptor = self.stdout.fileno()
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([descriptor], [], [], left)[0]:
                raise subprocess.TimeoutExpired(f"job {self.pid}", timeout or 0)
            chunk = os.read(descriptor, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        self.stdout.close()
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return b"".join(chunks).decode(), None


class Launcher:
    """Forks each job `start` is given from one interpreter (started with `env`); `started()` once every job is:
    from then on the launcher waits for its jobs and reports each exit status."""

    def __init__(self, env: Mapping[str, str], cwd: Path):
        self.codes: dict[int, int] = {}
        self._exits: dict[int, threading.Event] = {}
        self._lock = threading.Lock()
        self._folder = tempfile.TemporaryDirectory(prefix="forked-jobs-")
        self._cwd = cwd
        self._process = subprocess.Popen([sys.executable, "-c", LAUNCHER], cwd=cwd, env=dict(env), text=True,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._reports: threading.Thread | None = None

    def start(self, module: str, args: Sequence[str], env: Mapping[str, str]) -> ForkedJob:
        """`python -m module *args` in `env`, forked."""
        assert self._process.stdin is not None and self._process.stdout is not None
        fifo = Path(self._folder.name) / f"job-{len(self._exits)}"
        os.mkfifo(fifo)
        self._process.stdin.write(json.dumps({"module": module, "args": list(args), "env": dict(env),
                                              "cwd": str(self._cwd), "output": str(fifo)}) + "\n")
        self._process.stdin.flush()
        output = open(fifo, encoding="utf-8")  # noqa: SIM115 - the job's stdout, closed by communicate()
        pid = int(self._process.stdout.readline())
        self.exited(pid)
        return ForkedJob(pid, output, self)

    def started(self) -> None:
        """Every job is started: the launcher now waits for them."""
        assert self._process.stdin is not None
        self._process.stdin.write("started\n")
        self._process.stdin.close()
        self._reports = threading.Thread(target=self._read_exits, daemon=True)
        self._reports.start()

    def exited(self, pid: int) -> threading.Event:
        with self._lock:
            return self._exits.setdefault(pid, threading.Event())

    def close(self) -> None:
        """Kills what is still running and removes the FIFOs."""
        for pid, event in list(self._exits.items()):
            if not event.is_set():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self._process.stdin is not None and not self._process.stdin.closed:
            self._process.stdin.close()  # no more jobs: it waits for those it forked, then exits
        self._process.wait(30)
        self._folder.cleanup()

    def _read_exits(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            pid, code = map(int, line.split())
            self.codes[pid] = code
            self.exited(pid).set()
