"""A `StackRunner` that records each Pulumi operation instead of running the Pulumi CLI.

Runners of one deployment share a `Journal`, so a test sees the order of operations
across the platform and the service projects. A runner can be told to fail an
operation (always, or its first N calls), and a `destroy` hook lets a test model what
`pulumi destroy` would do to real resources (e.g. in moto).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class PulumiFailed(RuntimeError):
    """What the recording runner raises for an operation told to fail."""


@dataclass
class Journal:
    calls: list[tuple] = field(default_factory=list)


@dataclass(eq=False)
class RecordingRunner:
    project: str = "platform"
    journal: Journal = field(default_factory=Journal)
    outputs_by_stack: dict[str, dict[str, Any]] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)
    fail_on: dict[str, int] = field(default_factory=dict)
    """Operation name -> how many of its calls fail (a large number: every call)."""
    on_destroy: Callable[[str], None] | None = None
    """Called by `destroy` with the stack; raising makes that destroy fail, as `pulumi destroy` would."""
    command_exit_code: int = 0
    config: dict[str, tuple[dict, dict]] = field(default_factory=dict)
    config_files: dict[str, str] = field(default_factory=dict)
    """Stack -> the text of the --config-file its last up/preview got."""
    command_env: dict[str, str] = field(default_factory=dict)

    @property
    def calls(self) -> list[tuple]:
        return [call[1:] for call in self.journal.calls if call[0] == self.project]

    def _record(self, *call: Any) -> None:
        self.journal.calls.append((self.project, *call))
        if self.fail_on.get(call[0], 0) > 0:
            self.fail_on[call[0]] -= 1
            raise PulumiFailed(f"pulumi {call[0]} failed on {call[1]}")

    def _keep(self, stack: str, config_file: Path | None) -> None:
        if config_file is not None:
            self.config_files[stack] = config_file.read_text()

    def select_stack(self, stack: str) -> None:
        self._record("select_stack", stack)

    def create_stack(self, stack: str) -> None:
        self._record("create_stack", stack)

    def set_config(self, stack: str, values: Mapping[str, str], secret: Mapping[str, str]) -> None:
        self.config[stack] = (dict(values), dict(secret))
        self._record("set_config", stack)

    def preview(self, stack: str, policy_config: Path | None, config_file: Path | None = None) -> None:
        self._keep(stack, config_file)
        self._record("preview", stack, policy_config.name if policy_config else None)

    def up(self, stack: str, policy_config: Path | None, config_file: Path | None = None) -> dict[str, Any]:
        self._keep(stack, config_file)
        self._record("up", stack, policy_config.name if policy_config else None)
        return self.outputs_by_stack.get(stack, {})

    def outputs(self, stack: str) -> dict[str, Any]:
        self._record("outputs", stack)
        return self.outputs_by_stack.get(stack, {})

    def secret_output_names(self, stack: str) -> set[str]:
        return set(self.secret_outputs)

    def refresh(self, stack: str) -> None:
        self._record("refresh", stack)

    def destroy(self, stack: str, config_file: Path | None = None) -> None:
        self._record("destroy", stack)
        if self.on_destroy is not None:
            self.on_destroy(stack)

    def remove_stack(self, stack: str, force: bool = False) -> None:
        self._record("remove_stack", stack, "force" if force else "")

    def run_command(self, argv: Sequence[str], env: Mapping[str, str]) -> int:
        self.command_env = dict(env)
        self._record("run_command", " ".join(argv))
        return self.command_exit_code
