"""The Pulumi Automation API behind `retail infra up|preview --live|destroy|ephemeral` and `retail train --cloud`.

Every operation goes through a `StackRunner`, a small seam over `pulumi.automation`:
`AutomationRunner` drives the real Pulumi CLI; tests use a recording runner and assert
the exact sequence of operations. The Pulumi CLI is found with `shutil.which("pulumi")`;
without it `require_cli` stops with how to install it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from infra.config import NAMESPACE, read_stack_file

POLICY_PACK_DIR = Path(__file__).resolve().parent.parent / "policies"
INSTALL_HINT = "install it with `curl -fsSL https://get.pulumi.com | sh` (or see https://www.pulumi.com/docs/install/)"


class PulumiCliMissing(RuntimeError):
    """The Pulumi CLI is not on PATH; the message says which command needed it and how to install it."""


def require_cli(command: str) -> str:
    """The path of the `pulumi` executable, or PulumiCliMissing naming `command`."""
    path = shutil.which("pulumi")
    if path is None:
        raise PulumiCliMissing(f"The Pulumi CLI is required for `{command}`: {INSTALL_HINT}")
    return path


class StackRunner(Protocol):
    """The Pulumi operations this module needs, one stack at a time."""

    def select_stack(self, stack: str) -> None: ...
    def create_stack(self, stack: str) -> None: ...
    def set_config(self, stack: str, values: Mapping[str, str], secret: Mapping[str, str]) -> None: ...
    def preview(self, stack: str, policy_config: Path | None) -> None: ...
    def up(self, stack: str, policy_config: Path | None) -> dict[str, Any]: ...
    def outputs(self, stack: str) -> dict[str, Any]: ...
    def destroy(self, stack: str) -> None: ...
    def remove_stack(self, stack: str) -> None: ...
    def run_command(self, argv: Sequence[str], env: Mapping[str, str]) -> int: ...


@dataclass
class AutomationRunner:
    """`StackRunner` over `pulumi.automation`: a local project (`work_dir`) or an inline `program`."""

    work_dir: Path
    project_name: str | None = None
    program: Callable[[], None] | None = None
    echo: Callable[[str], None] = print

    def _stack(self, stack: str, create: bool = False):
        from pulumi import automation as auto

        if self.program is None:
            factory = auto.create_stack if create else auto.select_stack
            return factory(stack, work_dir=str(self.work_dir))
        factory = auto.create_or_select_stack if create else auto.select_stack
        return factory(
            stack,
            project_name=self.project_name,
            program=self.program,
            opts=auto.LocalWorkspaceOptions(work_dir=str(self.work_dir)),
        )

    def _policy(self, policy_config: Path | None) -> dict[str, list[str]]:
        if policy_config is None:
            return {}
        return {"policy_packs": [str(POLICY_PACK_DIR)], "policy_pack_configs": [str(policy_config)]}

    def select_stack(self, stack: str) -> None:
        self._stack(stack)

    def create_stack(self, stack: str) -> None:
        self._stack(stack, create=True)

    def set_config(self, stack: str, values: Mapping[str, str], secret: Mapping[str, str]) -> None:
        from pulumi import automation as auto

        config = {k: auto.ConfigValue(v) for k, v in values.items()}
        config |= {k: auto.ConfigValue(v, secret=True) for k, v in secret.items()}
        self._stack(stack).set_all_config(config)

    def preview(self, stack: str, policy_config: Path | None) -> None:
        self._stack(stack).preview(on_output=self.echo, **self._policy(policy_config))

    def up(self, stack: str, policy_config: Path | None) -> dict[str, Any]:
        result = self._stack(stack).up(on_output=self.echo, **self._policy(policy_config))
        return {key: output.value for key, output in result.outputs.items()}

    def outputs(self, stack: str) -> dict[str, Any]:
        return {key: output.value for key, output in self._stack(stack).outputs().items()}

    def destroy(self, stack: str) -> None:
        self._stack(stack).destroy(on_output=self.echo)

    def remove_stack(self, stack: str) -> None:
        self._stack(stack).workspace.remove_stack(stack)

    def run_command(self, argv: Sequence[str], env: Mapping[str, str]) -> int:
        return subprocess.run(list(argv), env={**os.environ, **env}, check=False).returncode


def policy_config_for(stack: str) -> Path:
    """The enforcement levels a stack's deploys run the pack with (dev's for stacks without a file)."""
    path = POLICY_PACK_DIR / "config" / f"{stack}.json"
    return path if path.is_file() else POLICY_PACK_DIR / "config" / "dev.json"


def preview(runner: StackRunner, stack: str) -> None:
    runner.select_stack(stack)
    runner.preview(stack, policy_config_for(stack))


def up(runner: StackRunner, stack: str) -> dict[str, Any]:
    runner.select_stack(stack)
    return runner.up(stack, policy_config_for(stack))


def destroy(runner: StackRunner, stack: str) -> None:
    runner.select_stack(stack)
    runner.destroy(stack)


def output_env(outputs: Mapping[str, Any]) -> dict[str, str]:
    """Stack outputs for a command: `PULUMI_OUTPUT_<NAME>` (strings as-is, the rest as JSON) and all in one JSON."""
    env = {"PULUMI_OUTPUTS_JSON": json.dumps(outputs, sort_keys=True, default=str)}
    for key, value in outputs.items():
        env[f"PULUMI_OUTPUT_{key.upper()}"] = value if isinstance(value, str) else json.dumps(value, default=str)
    return env


def ephemeral_stack_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_." else "-" for c in name.lower()).strip("-")
    if not cleaned:
        raise ValueError(f"--name {name!r} has no letters or digits; use e.g. the branch name")
    return f"ephemeral-{cleaned}"


def ephemeral(runner: StackRunner, name: str, command: Sequence[str], project_dir: Path) -> int:
    """New stack from the dev config, up, run `command` against its outputs; always destroy and remove it.

    Returns the command's exit code. The stack is destroyed and removed whatever happened
    (a failed up, a failed command, Ctrl-C); a failure there is raised after the attempt.
    """
    if not command:
        raise ValueError("give the command to run after `--`, e.g. retail infra ephemeral --name pr-42 -- pytest")
    stack = ephemeral_stack_name(name)
    dev = read_stack_file(project_dir, "dev")
    runner.create_stack(stack)
    try:
        runner.set_config(stack, dev.config, {f"{NAMESPACE}:apiKeys": secrets.token_urlsafe(24)})
        outputs = runner.up(stack, policy_config_for("dev"))
        return runner.run_command(command, output_env(outputs))
    finally:
        try:
            runner.destroy(stack)
        finally:
            runner.remove_stack(stack)
