"""Progress display and timing of pipeline stages (rich spinners with elapsed time)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


class StageTimer:
    """Shows each stage while it runs and keeps its wall-clock seconds."""

    def __init__(self, console: Console | None = None, quiet: bool = False):
        self.console = console or Console(stderr=True)
        self.quiet = quiet
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str, description: str) -> Iterator[None]:
        started = time.perf_counter()
        if self.quiet:
            yield
        else:
            with Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description}"),
                BarColumn(bar_width=None, pulse_style="cyan"),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            ) as progress:
                progress.add_task(description, total=None)
                yield
        self.seconds[name] = round(time.perf_counter() - started, 2)
        if not self.quiet:
            self.console.print(f"[green]✓[/] {description} [dim]({self.seconds[name]:.1f} s)[/]")
