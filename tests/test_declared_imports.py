"""Every library the wheel's packages import is one the wheel declares itself, not one it gets through another.

A module imported directly but installed only as a dependency of a declared one (botocore through boto3, starlette
through FastAPI) works until that dependency stops requiring it, or requires a version our code does not support,
and the wheel test cannot see it: the library is in the closure pip installs. So the imports are read from the
source (inside functions too, `if TYPE_CHECKING:` blocks aside), each is mapped to the installed distribution
whose files hold it, and that distribution must be named in pyproject.toml's dependencies or one of its extras.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import sys
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGES = PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
NOT_DECLARED_ON_PURPOSE = {
    "pyspark": "the Spark lake job runs in Spark's image (Dockerfile.lake), which brings pyspark; a local Spark "
               "build needs the dev group (README)",
}


def _under_type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """In the body of an `if TYPE_CHECKING:` (not its `else`, which runs)."""
    while node in parents:
        child, node = node, parents[node]
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING") \
                and child in node.body:
            return True
    return False


def imported_modules(source: str) -> Iterator[tuple[str, int]]:
    """The absolute imports of `source` (module, line) that run: top level and inside functions."""
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        if not _under_type_checking(node, parents):
            yield from ((name, node.lineno) for name in names)


@functools.cache
def module_owners() -> dict[str, set[str]]:
    """Installed file prefixes (`yaml`, `google/protobuf`, `six`) to the normalized names of the distributions
    holding files under them."""
    owners: dict[str, set[str]] = {}
    for distribution in importlib.metadata.distributions():
        name = canonicalize_name(distribution.metadata["Name"])
        for file in distribution.files or []:
            parts = file.parts
            if not parts or parts[0].endswith((".dist-info", ".data")) or parts[0] in ("..", "__pycache__"):
                continue
            prefixes = [parts[0].split(".")[0]] if len(parts) == 1 else [parts[0], "/".join(parts[:2])]
            for prefix in prefixes:
                owners.setdefault(prefix, set()).add(name)
    return owners


def owner_of(module: str, owners: dict[str, set[str]]) -> set[str]:
    """The distributions holding `module`: by its first two components where a distribution owns that folder (the
    namespace package `google` is shared: `google.protobuf` is protobuf's), else by its top-level name."""
    top, _, rest = module.partition(".")
    second = f"{top}/{rest.partition('.')[0]}"
    return owners[second] if rest and second in owners else owners.get(top, set())


def declared_distributions() -> set[str]:
    """The distributions the wheel names: its dependencies and every extra's (the self-referencing `all` aside)."""
    project = PYPROJECT["project"]
    extras = project["optional-dependencies"].values()
    requirements = [*project["dependencies"], *(requirement for extra in extras for requirement in extra)]
    return {canonicalize_name(Requirement(r).name) for r in requirements} - {canonicalize_name(project["name"])}


def undeclared_imports(files: Iterable[tuple[str, str]], declared: set[str], owners: dict[str, set[str]],
                       first_party: set[str]) -> list[str]:
    """`file:line imports module (distribution)` for each import of `files` (name, source) that is neither the
    standard library, nor the project's, nor from a declared distribution, nor exempted on purpose."""
    found = []
    for name, source in files:
        for module, line in imported_modules(source):
            top = module.partition(".")[0]
            if top in (*sys.stdlib_module_names, *first_party, *NOT_DECLARED_ON_PURPOSE, "__future__"):
                continue
            distributions = owner_of(module, owners)
            if not distributions & declared:
                found.append(f"{name}:{line} imports {module} ({', '.join(sorted(distributions)) or 'not installed'})")
    return found


def wheel_sources() -> list[tuple[str, str]]:
    return [(path.relative_to(ROOT).as_posix(), path.read_text()) for package in PACKAGES
            for path in sorted((ROOT / package).rglob("*.py"))]


def test_every_library_the_wheel_imports_is_declared_by_the_wheel():
    found = undeclared_imports(wheel_sources(), declared_distributions(), module_owners(), set(PACKAGES))
    assert not found, "imported but not declared in pyproject.toml (dependencies or an extra):\n" + "\n".join(found)


def test_a_library_received_only_through_another_is_reported_with_its_line():
    """The check itself, on the defect it was written for: botocore imported where only boto3 is declared; the
    same import under TYPE_CHECKING passes, its `else` does not; a namespace package's declared member and the standard
    library pass."""
    source = ("from __future__ import annotations\nimport json\nfrom typing import TYPE_CHECKING\n"
              "from google.protobuf import struct_pb2\n"
              "if TYPE_CHECKING:\n    import starlette\nelse:\n    import semver\n"
              "def f():\n    from botocore.exceptions import ClientError\n")
    found = undeclared_imports([("infra/x.py", source)], {"boto3", "protobuf"}, module_owners(), set(PACKAGES))
    assert found == ["infra/x.py:8 imports semver (semver)", "infra/x.py:10 imports botocore.exceptions (botocore)"]
