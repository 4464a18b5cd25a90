"""Which extra of the installed `retail-mlops` provides a library a command could not import.

The wheel's core dependencies run `retail --help` and `retail lake queries`; most commands need an extra
(`pip install 'retail-mlops[serve]'`, or `[all]` for every command). A command whose library is missing fails
in an import: `missing_extra_message` turns that into a message naming the extra to install.
"""

from __future__ import annotations

import importlib.metadata
import re

DISTRIBUTION = "retail-mlops"
EVERYTHING = "all"
"""The extra holding every other extra's requirements (the build writes them out in the wheel's metadata)."""


def _normalized(name: str) -> str:
    """A distribution's name as pip compares names (PEP 503); a module's `_` reads as `-`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def extras_providing(module: str) -> list[str]:
    """The extras of the installed distribution, `all` aside, that list a requirement named as `module`'s top-level
    package, in the metadata's order; empty when none does or the distribution is not installed."""
    from packaging.markers import Marker
    from packaging.requirements import Requirement

    try:
        declared = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        return []
    wanted = _normalized(module.partition(".")[0])
    extras = [e for e in importlib.metadata.metadata(DISTRIBUTION).get_all("Provides-Extra") or [] if e != EVERYTHING]
    providing: list[str] = []
    for requirement in map(Requirement, declared):
        marker: Marker | None = requirement.marker
        if _normalized(requirement.name) != wanted or marker is None:
            continue
        providing += [extra for extra in extras if extra not in providing and marker.evaluate({"extra": extra})]
    return providing


def missing_extra_message(error: ModuleNotFoundError) -> str | None:
    """What to tell the user when `error` names a library an extra provides; None for any other missing module (a
    fault, to be reported as it is)."""
    extras = extras_providing(error.name or "")
    if not extras:
        return None
    install = " or ".join(f"pip install '{DISTRIBUTION}[{extra}]'" for extra in extras)
    return (f"retail: this command needs {error.name}, which is not installed: {install} "
            f"('{DISTRIBUTION}[{EVERYTHING}]' installs what every command needs)")
