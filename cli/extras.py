"""Which extras of the installed `retail-mlops` a command lacks: checked before it starts, or named when a library
it imports is missing.

The wheel's core dependencies run `retail --help` and `retail lake queries`; most commands need an extra
(`pip install 'retail-mlops[serve]'`, or `[all]`). A library's import name often differs from its distribution's
(`yaml` from pyyaml, `botocore` from a dependency of boto3), so a missing module is not mapped to an extra by name:
the message names the extras whose requirements are not installed, and a missing module with every extra installed
is a fault, reported as it is. A command whose needs do not depend on a library's import calls `require_extras`
first (reading the installed metadata takes about 50 ms).
"""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Mapping

DISTRIBUTION = "retail-mlops"
EVERYTHING = "all"
"""The extra holding every other extra's requirements (the build writes them out in the wheel's metadata)."""


def _installed(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def missing_extras() -> list[str]:
    """The extras of the installed distribution, `all` aside, with a requirement that is not installed, in the
    metadata's order; empty when every one is installed or the distribution itself is not."""
    from packaging.requirements import Requirement

    try:
        metadata = importlib.metadata.metadata(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return []
    requirements = list(map(Requirement, metadata.get_all("Requires-Dist") or []))
    return [extra for extra in metadata.get_all("Provides-Extra") or [] if extra != EVERYTHING and any(
        requirement.marker is not None and requirement.marker.evaluate({"extra": extra})
        and not _installed(requirement.name) for requirement in requirements)]


def missing_extra_message(error: ModuleNotFoundError) -> str | None:
    """What to tell the user when `error` is a top-level library missing while extras are not installed; None for
    anything else (a missing submodule of an installed package, or a module missing with every extra installed: a
    fault, to be reported as it is)."""
    if not error.name or "." in error.name:
        return None
    extras = missing_extras()
    if not extras:
        return None
    return (f"retail: this command needs {error.name}, which is not installed; the extras not installed here: "
            f"{', '.join(extras)}. pip install '{DISTRIBUTION}[{EVERYTHING}]' installs every command's libraries")


def require_extras(command: str, *extras: str, without: Mapping[str, str] | None = None) -> None:
    """Exit 1 naming those of `extras` whose requirements are not all installed, before the command does any work.
    `without` maps an extra to the option that does without it (`retail demo --no-serve`), which the message offers
    when every missing extra has one.

    Called first thing by the commands that need an extra whatever their options (`retail pipeline run`, every
    `retail infra` command) or for the options given (`retail demo` serves at the end unless `--no-serve`): without
    it, a missing library surfaces at the first import that needs it, after minutes of work (`retail demo` synthesised
    the data first), or in another process's traceback (`retail serve` execs the server).
    """
    missing = missing_extras()
    lacking = [extra for extra in extras if extra in missing]
    if lacking:
        names = ", ".join(f"'{extra}'" for extra in lacking)
        options = [without[extra] for extra in lacking if extra in (without or {})]
        instead = f", or run {command} {' '.join(options)}" if len(options) == len(lacking) else ""
        print(f"retail: {command} needs the {names} extra{'s' if len(lacking) > 1 else ''}, not installed here: "
              f"pip install '{DISTRIBUTION}[{','.join(lacking)}]'{instead}", file=sys.stderr)
        raise SystemExit(1)
