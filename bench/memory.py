"""Peak resident memory of the benchmark's own process, sampled in a background thread, overall and per stage."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import psutil
from rich.console import Console

from ml.progress import StageTimer


class MemorySampler:
    """Peak RSS of this process, sampled every `interval` seconds between `start` and `stop`."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.process = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def start(self) -> None:
        self.reset()
        self._thread.start()

    def stop(self) -> int:
        """Stops sampling; the peak since the last `reset` or `take`."""
        self._stop.set()
        self._thread.join()
        return max(self.peak, self.process.memory_info().rss)

    def reset(self) -> None:
        """Starts a new window at the current RSS."""
        self.peak = self.process.memory_info().rss

    def take(self) -> int:
        """The peak since the last `reset` or `take`; starts a new window."""
        peak = max(self.peak, self.process.memory_info().rss)
        self.reset()
        return peak


class MeasuredTimer(StageTimer):
    """A StageTimer that also keeps each stage's peak RSS."""

    def __init__(self, sampler: MemorySampler, console: Console):
        super().__init__(console)
        self.sampler = sampler
        self.peak_bytes: dict[str, int] = {}

    @contextmanager
    def stage(self, name: str, description: str):
        self.sampler.reset()
        with super().stage(name, description):
            yield
        self.peak_bytes[name] = self.sampler.take()
