"""A request checked against a botocore service model: what boto3 checks before sending, and what it leaves to the
service.

`parameter_problems` is botocore's ParamValidator (required members, types, minimum lengths and values).
`model_problems` walks the same shapes for the rest: unknown members, enum values, `pattern` (a full match, with
the `regex` module, which knows the `\\p{...}` classes the models use), maximum lengths, list and map sizes and
integer bounds. Glue's name patterns are Java regular expressions that write the supplementary range as surrogate
pairs; it is read as the code points U+10000 to U+10FFFF.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

import regex
from botocore.model import Shape
from botocore.validate import ParamValidator

JAVA_SUPPLEMENTARY = r"\uD800\uDC00-\uDBFF\uDFFF"


def parameter_problems(request: dict, shape: Shape) -> list[str]:
    report = ParamValidator().validate(request, shape)
    return report.generate_report().splitlines() if report.has_errors() else []


def model_problems(request: dict, shape: Shape, path: str) -> list[str]:
    return list(_walk(request, shape, path))


@cache
def _pattern(text: str) -> regex.Pattern:
    return regex.compile(text.replace(JAVA_SUPPLEMENTARY, r"\U00010000-\U0010FFFF"))


def _walk(value: Any, shape: Shape, path: str) -> Iterator[str]:
    meta = shape.metadata
    if shape.type_name == "structure":
        for name, member in value.items():
            if name not in shape.members:
                yield f"{path}.{name}: not a member of {shape.name}"
            else:
                yield from _walk(member, shape.members[name], f"{path}.{name}")
    elif shape.type_name == "list":
        yield from _size(len(value), meta, f"{path}: {len(value)} items")
        for index, item in enumerate(value):
            yield from _walk(item, shape.member, f"{path}[{index}]")
    elif shape.type_name == "map":
        yield from _size(len(value), meta, f"{path}: {len(value)} entries")
        for key, item in value.items():
            yield from _walk(key, shape.key, f"{path} key {key!r}")
            yield from _walk(item, shape.value, f"{path}[{key!r}]")
    elif shape.type_name == "string":
        if shape.enum and value not in shape.enum:
            yield f"{path}: {value!r} is not one of {shape.name}'s values"
        if "pattern" in meta and _pattern(meta["pattern"]).fullmatch(value) is None:
            yield f"{path}: {value!r} does not match {meta['pattern']!r}"
        yield from _size(len(value), meta, f"{path}: length {len(value)}")
    elif shape.type_name in ("integer", "long"):
        yield from _size(value, meta, f"{path}: {value}")


def _size(size: int, meta: dict, what: str) -> Iterator[str]:
    if size < meta.get("min", size):
        yield f"{what} is below the minimum {meta['min']}"
    if size > meta.get("max", size):
        yield f"{what} is above the maximum {meta['max']}"
