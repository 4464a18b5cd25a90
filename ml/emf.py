"""CloudWatch embedded metric format (EMF): the one place that formats a metric line.

An EMF line is a JSON object whose `_aws` member tells CloudWatch Logs which of its other
members are metrics (namespace, dimension sets, metric names and units); CloudWatch Logs
extracts those metrics from log events it receives with the `json/emf` format
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html).
Every line here is in `ml.metric_names.NAMESPACE` with the single dimension `Environment`,
the contract the alarms (infra/observability.py) are written against.

Three publishers use it: the inference API (api/emf.py, one line per request and a heartbeat),
`retail score` (cli/score.py, one line per run: `scoring_run`) and `retail monitor` (cli/monitor.py,
one line per run: `monitor_run`); the last two may not import from api. On EKS, Fluent Bit
ships the containers' stdout unchanged to CloudWatch Logs.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TextIO

from ml import metric_names as names

try:  # the inference image and the development environment have orjson (the `serve` group)
    import orjson

    def _dumps(record: dict[str, object]) -> str:
        return orjson.dumps(record).decode()

except ImportError:  # pragma: no cover - the core dependencies alone (the training image)

    def _dumps(record: dict[str, object]) -> str:
        return json.dumps(record, separators=(",", ":"))


Metric = tuple[str, str, float]
"""(name, CloudWatch unit, value)."""

SCORING_RUN_METRICS = frozenset({names.SCORING_RUN_FAILED, names.BASKETS_SCORED})
"""Every metric `scoring_run` writes (the policy check that every alarm has a producer reads it)."""

MONITOR_RUN_METRICS = frozenset({
    names.MONITOR_RUN_FAILED, names.MONITORED_BASKETS, names.MONITORED_ACCURACY, names.MONITORED_MACRO_F1,
    names.MONITORED_MIN_CLASS_PRECISION, names.MONITORED_DRIFT_PSI, names.CHALLENGER_MARGIN, names.RETRAIN_NEEDED,
    names.MONITORED_JOIN_COVERAGE,
})
"""Every metric `monitor_run` may write."""
MONITOR_UNITS = {names.MONITOR_RUN_FAILED: "Count", names.MONITORED_BASKETS: "Count", names.RETRAIN_NEEDED: "Count"}
"""Units of the counts among them; the others (ratios, PSI) have none."""


def emf_line(environment: str, metrics: Sequence[Metric], timestamp_ms: int | None = None) -> str:
    """One EMF line (no newline): `metrics` in the contract's namespace, dimension Environment=`environment`."""
    record: dict[str, object] = {
        "_aws": {
            "Timestamp": int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": names.NAMESPACE,
                    "Dimensions": [[names.DIMENSION_ENVIRONMENT]],
                    "Metrics": [{"Name": name, "Unit": unit} for name, unit, _ in metrics],
                }
            ],
        },
        names.DIMENSION_ENVIRONMENT: environment,
        **{name: value for name, _, value in metrics},
    }
    return _dumps(record)


def write(environment: str, metrics: Sequence[Metric], stream: TextIO | None = None) -> None:
    """Write one EMF line to `stream` (default stdout) and flush it, so it is shipped even if the process dies next."""
    stream = stream or sys.stdout
    stream.write(emf_line(environment, metrics) + "\n")
    stream.flush()


def scoring_run(environment: str, failed: bool, baskets_scored: int, stream: TextIO | None = None) -> None:
    """The line a `retail score` run writes when it ends: whether it failed, and how many baskets it scored."""
    write(
        environment,
        [(names.SCORING_RUN_FAILED, "Count", int(failed)), (names.BASKETS_SCORED, "Count", baskets_scored)],
        stream,
    )


def monitor_run(
    environment: str, failed: bool, figures: Mapping[str, float | None], stream: TextIO | None = None
) -> None:
    """The line a `retail monitor` run writes when it ends: whether it failed, and each of `figures` (names of
    MONITOR_RUN_METRICS) that has a value; a figure the week could not give (None) is left out."""
    unknown = set(figures) - MONITOR_RUN_METRICS
    if unknown:
        raise ValueError(f"not monitor metrics: {sorted(unknown)}")
    metrics: list[Metric] = [(names.MONITOR_RUN_FAILED, "Count", int(failed))]
    metrics += [(name, MONITOR_UNITS.get(name, "None"), value) for name, value in figures.items() if value is not None]
    write(environment, metrics, stream)
