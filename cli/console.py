"""Terminal output shared by the commands: errors go to stderr on one line, never as markup."""

from __future__ import annotations

from rich.console import Console

err_console = Console(stderr=True)


def print_error(message: object) -> None:
    err_console.print(f"error: {message}", style="red", soft_wrap=True, markup=False, highlight=False)
