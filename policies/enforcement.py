"""Per-stack enforcement levels, read from pulumi-policy's policy config file format.

`policies/config/<stack>.json` maps `"all"` and rule names to a level, or to an object with
an `enforcementLevel`; it is the very file `pulumi preview --policy-pack-config` takes, so
the offline check and the Pulumi CLI enforce the same levels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from policies.model import Enforcement, Rule

CONFIG_DIR = Path(__file__).parent / "config"


def config_path(stack: str, config_dir: Path = CONFIG_DIR) -> Path:
    return config_dir / f"{stack}.json"


def levels_for(rules: list[Rule], config: dict) -> dict[str, Enforcement]:
    """Each rule's level: its own entry, else `all`, else the rule's default."""
    known = {rule.name for rule in rules} | {"all"}
    default: Enforcement | None = None
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"unknown rule name(s) in the policy config: {unknown}; known rules: {sorted(known)}")

    def level(entry: object, where: str) -> Enforcement:
        if isinstance(entry, dict) and "enforcementLevel" not in entry and where in by_name:
            return default or by_name[where].enforcement  # an object giving only the rule's settings
        value = entry.get("enforcementLevel") if isinstance(entry, dict) else entry
        try:
            return Enforcement(value)
        except ValueError:
            choices = ", ".join(e.value for e in Enforcement)
            raise ValueError(f"{where}: enforcement level {value!r} is not one of {choices}") from None

    by_name = {rule.name: rule for rule in rules}
    default = level(config["all"], "all") if "all" in config else None
    return {
        rule.name: level(config[rule.name], rule.name) if rule.name in config else (default or rule.enforcement)
        for rule in rules
    }


def load_levels(rules: list[Rule], stack: str, config_dir: Path = CONFIG_DIR) -> dict[str, Enforcement]:
    """The levels of `stack` from `config_dir/<stack>.json`; the rules' defaults if the stack has no file."""
    path = config_path(stack, config_dir)
    if not path.is_file():
        return {rule.name: rule.enforcement for rule in rules}
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    try:
        return levels_for(rules, config)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def settings_for(rules: list[Rule], config: dict) -> dict[str, dict[str, Any]]:
    """The configured settings of each rule with a `config_schema`: its object's keys besides `enforcementLevel`.

    The format is pulumi-policy's (`{"<rule>": {"enforcementLevel": ..., "<setting>": ...}}`);
    a setting the rule's schema does not declare, or of the wrong type, is an error here as
    it is for the Pulumi CLI.
    """
    settings: dict[str, dict[str, Any]] = {}
    for rule in rules:
        entry = config.get(rule.name)
        schema = getattr(rule, "config_schema", None) or {}
        given = {k: v for k, v in entry.items() if k != "enforcementLevel"} if isinstance(entry, dict) else {}
        unknown = sorted(set(given) - set(schema))
        if unknown:
            raise ValueError(f"{rule.name}: unknown setting(s) {unknown}; it takes {sorted(schema) or 'none'}")
        for key, value in given.items():
            if schema[key].get("type") == "number" and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise ValueError(f"{rule.name}: setting {key} must be a number, not {value!r}")
        if schema:
            settings[rule.name] = rule.settings(given)  # type: ignore[union-attr]
    return settings


def load_settings(rules: list[Rule], stack: str, config_dir: Path = CONFIG_DIR) -> dict[str, dict[str, Any]]:
    """Each configurable rule's settings for `stack` (its schema's defaults where the file gives none)."""
    path = config_path(stack, config_dir)
    config = json.loads(path.read_text()) if path.is_file() else {}
    try:
        return settings_for(rules, config)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
