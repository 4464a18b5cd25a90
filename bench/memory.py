"""Peak resident memory of the benchmark's own process, sampled in a background thread."""

from __future__ import annotations

import threading
import time

import psutil


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
