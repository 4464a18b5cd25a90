"""A `StackRunner` that records each Pulumi operation instead of running the Pulumi CLI."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class PulumiFailed(RuntimeError):
    """What the recording runner raises for an operation told to fail."""


@dataclass
class RecordingRunner:
    outputs_by_stack: dict[str, dict[str, Any]] = field(default_factory=dict)
    fail_on: set[str] = field(default_factory=set)
    """Operation names that raise PulumiFailed (after being recorded)."""
    command_exit_code: int = 0
    calls: list[tuple] = field(default_factory=list)
    config: dict[str, tuple[dict, dict]] = field(default_factory=dict)
    command_env: dict[str, str] = field(default_factory=dict)

    def _record(self, *call: Any) -> None:
        self.calls.append(call)
        if call[0] in self.fail_on:
            raise PulumiFailed(f"pulumi {call[0]} failed on {call[1]}")

    def select_stack(self, stack: str) -> None:
        self._record("select_stack", stack)

    def create_stack(self, stack: str) -> None:
        self._record("create_stack", stack)

    def set_config(self, stack: str, values: Mapping[str, str], secret: Mapping[str, str]) -> None:
        self.config[stack] = (dict(values), dict(secret))
        self._record("set_config", stack)

    def preview(self, stack: str, policy_config: Path | None) -> None:
        self._record("preview", stack, policy_config.name if policy_config else None)

    def up(self, stack: str, policy_config: Path | None) -> dict[str, Any]:
        self._record("up", stack, policy_config.name if policy_config else None)
        return self.outputs_by_stack.get(stack, {})

    def outputs(self, stack: str) -> dict[str, Any]:
        self._record("outputs", stack)
        return self.outputs_by_stack.get(stack, {})

    def destroy(self, stack: str) -> None:
        self._record("destroy", stack)

    def remove_stack(self, stack: str) -> None:
        self._record("remove_stack", stack)

    def run_command(self, argv: Sequence[str], env: Mapping[str, str]) -> int:
        self.command_env = dict(env)
        self._record("run_command", " ".join(argv))
        return self.command_exit_code
