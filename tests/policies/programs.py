"""Ways to change what the programs register, for the deploy-check tests.

- `without_depends_on`: make one resource class drop (some of) its explicit `depends_on`,
  as if the line had been deleted from the component;
- `edited`: a copy of a recorded run with one resource's input replaced (for checks that
  only read inputs, such as the alarm producers);
- `without`: a copy of a run without some resources.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

import pulumi

from infra.offline import OfflineRun


def without_depends_on(
    monkeypatch, module: Any, class_name: str, drop: Callable[[Any], bool] = lambda dependency: True
) -> None:
    """Resources of `module.class_name` are created without the `depends_on` entries `drop` selects."""
    original = getattr(module, class_name)

    class WithoutDependsOn(original):
        def __init__(self, resource_name, *args, opts: pulumi.ResourceOptions | None = None, **kwargs):
            if opts is not None and opts.depends_on:
                listed = opts.depends_on if isinstance(opts.depends_on, list) else [opts.depends_on]
                opts = copy.copy(opts)
                opts.depends_on = [d for d in listed if not drop(d)]
            super().__init__(resource_name, *args, opts=opts, **kwargs)

    monkeypatch.setattr(module, class_name, WithoutDependsOn)


def edited(run: OfflineRun, name: str, path: tuple[str | int, ...], value: Any) -> OfflineRun:
    """A copy of `run` where resource `name` has input `path` set to `value` (removed when value is None)."""
    resources = []
    for record in run.resources:
        if record.name == name:
            inputs = copy.deepcopy(record.inputs)
            target = inputs
            for key in path[:-1]:
                target = target[key]
            if value is None:
                target.pop(path[-1], None)
            else:
                target[path[-1]] = value
            record = dataclasses.replace(record, inputs=inputs)
        resources.append(record)
    return dataclasses.replace(run, resources=resources)


def without(run: OfflineRun, keep: Callable[[Any], bool]) -> OfflineRun:
    return dataclasses.replace(run, resources=[r for r in run.resources if keep(r)])
