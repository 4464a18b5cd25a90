"""Alarm producers: every CloudWatch alarm watches a metric something in the deployment produces.

An alarm on a metric nobody sends never fires (or, treating missing data as breaching,
always fires), and nothing in a preview says so. The alarms live in the platform project;
what produces their metrics lives in the service project. So this is a deployment-wide
check over every run, reported like a policy rule:

- `RetailMlops/Inference` (`ml.metric_names`): the API writes one EMF line per request
  to stdout (api/emf.py), `retail score` one per run (cli/score.py, the weekly
  batch-scoring CronJob) and `retail monitor` one per run (cli/monitor.py, the weekly
  monitoring CronJob); CloudWatch turns those lines into metrics only once they
  reach CloudWatch Logs as raw JSON with the `json/emf` format
  (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html,
  https://docs.fluentbit.io/manual/pipeline/outputs/cloudwatch). A producer is therefore
  all of: the metric name is in the contract (ml/metric_names.py) and among what its
  publisher declares (api/emf.py `PUBLISHED_METRICS` for the API's metrics, ml/emf.py
  `SCORING_RUN_METRICS` for the scorer's and `MONITOR_RUN_METRICS` for the monitor's); the
  alarm's dimensions are exactly `Environment` (the only dimension set any of them publishes:
  CloudWatch matches dimension sets exactly); a workload of the publisher's kind (a Deployment
  for the API, a CronJob for the scorer and the monitor) whose container sets
  `RETAIL_EMF_ENABLED=true` and `RETAIL_ENVIRONMENT` to the alarm's Environment and, for a
  command, runs it (`cli.score`, `cli.monitor` among its command and args: the scorer's
  CronJob does not produce the monitor's metrics); and an aws-for-fluent-bit Helm release
  that sends each line unchanged (`cloudWatchLogs.logKey: log`, `logFormat: json/emf`) to
  the log group the platform exports as `inferenceLogGroupName` (which the deployment
  creates), tails that workload's namespace (`input.path`, comma-separated patterns
  allowed) and runs where its pods run: it tolerates every taint of the node groups the
  workload's pods fit (or, when no node group of the deployment admits them, every
  NoSchedule/NoExecute taint they tolerate). A DaemonSet without that toleration is never
  scheduled on those nodes, so their lines are never read: the batch pods' lines on the
  tainted batch nodes were lost that way.
- `AWS/Events` `TriggeredRules`: EventBridge counts matches per rule; the producer is the
  enabled EventRule its `RuleName` dimension names
  (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-monitoring.html).
- Any other namespace: no producer is known here, which is itself a finding, so a new
  alarm comes with a producer rule in this module.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from infra.offline import OfflineRun
from ml import metric_names as m
from policies.deployment import DeploymentView, Node, tolerates
from policies.findings import Finding
from policies.graph import CRON_JOB, DEPLOYMENT, HELM_RELEASE
from policies.model import as_list
from policies.rules.kubernetes import containers, env_of, pod_spec

CHECK = "alarm-producers"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
EVENT_RULE = "aws:cloudwatch/eventRule:EventRule"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
SHIPPER_CHART = "aws-for-fluent-bit"
LOG_GROUP_OUTPUT = "inferenceLogGroupName"
EMF_ENABLED_ENV = "RETAIL_EMF_ENABLED"
ENVIRONMENT_ENV = "RETAIL_ENVIRONMENT"
API_METRICS = frozenset(
    {m.REQUEST_LATENCY_MS, m.REQUEST_COUNT, m.SERVER_ERROR_COUNT, m.INPUT_DRIFT_SCORE, m.PREDICTION_COUNT, m.HEARTBEAT}
)
"""The metric names ml/metric_names.py defines for the API."""
SCORING_METRICS = frozenset({m.SCORING_RUN_FAILED, m.BASKETS_SCORED})
"""The metric names ml/metric_names.py defines for `retail score` runs."""
MONITOR_METRICS = frozenset({
    m.MONITOR_RUN_FAILED, m.MONITORED_BASKETS, m.MONITORED_ACCURACY, m.MONITORED_MACRO_F1,
    m.MONITORED_MIN_CLASS_PRECISION, m.MONITORED_DRIFT_PSI, m.CHALLENGER_MARGIN, m.RETRAIN_NEEDED,
    m.MONITORED_JOIN_COVERAGE,
})
"""The metric names ml/metric_names.py defines for `retail monitor` runs."""
CONTRACT_METRICS = API_METRICS | SCORING_METRICS | MONITOR_METRICS
"""Every metric name of ml/metric_names.py."""
BLOCKING_EFFECTS = ("NoSchedule", "NoExecute")
"""Taint effects that keep a pod without the toleration off a node (PreferNoSchedule only discourages it)."""
SHIPPER_DEFAULTS = {"path": "/var/log/containers/*.log", "logGroupName": "/aws/eks/fluentbit-cloudwatch/logs"}
"""aws/eks-charts stable/aws-for-fluent-bit values.yaml defaults for what the values leave out (chart 0.2.0)."""


def published_metrics() -> frozenset[str] | None:
    """The metric names api/emf.py publishes (its `PUBLISHED_METRICS`), or None when it cannot be imported here.
    tests/api/test_observability.py checks the declaration against the lines the API writes."""
    try:
        from api import emf
    except ImportError:
        return None
    return frozenset(emf.PUBLISHED_METRICS)


def scoring_published_metrics() -> frozenset[str] | None:
    """The metric names a `retail score` run publishes (ml/emf.py `SCORING_RUN_METRICS`), or None if not importable."""
    try:
        from ml import emf
    except ImportError:
        return None
    return frozenset(emf.SCORING_RUN_METRICS)


def monitor_published_metrics() -> frozenset[str] | None:
    """The metric names a `retail monitor` run may publish (ml/emf.py `MONITOR_RUN_METRICS`), or None if not
    importable."""
    try:
        from ml import emf
    except ImportError:
        return None
    return frozenset(emf.MONITOR_RUN_METRICS)


@dataclass(frozen=True)
class Publisher:
    """What writes a group of the contract's metrics, and the workload it runs as."""

    what: str
    declared_in: str
    workload_type: str
    workload_kind: str
    deployed_by: str
    metrics: frozenset[str]
    command: str | None = None
    """The module its container runs (a token of its command or args), when its kind of workload runs others too."""


API = Publisher(
    "the API", "api/emf.py (PUBLISHED_METRICS)", DEPLOYMENT, "Deployment", "infra/inference.py", API_METRICS
)
SCORER = Publisher(
    "retail score", "ml/emf.py (SCORING_RUN_METRICS)", CRON_JOB, "CronJob", "infra/batch_scoring.py", SCORING_METRICS,
    "cli.score",
)
MONITOR = Publisher(
    "retail monitor", "ml/emf.py (MONITOR_RUN_METRICS)", CRON_JOB, "CronJob", "infra/monitoring_schedule.py",
    MONITOR_METRICS, "cli.monitor",
)
PUBLISHERS = (API, SCORER, MONITOR)


@dataclass(frozen=True)
class WatchedMetric:
    namespace: str
    name: str
    dimensions: Mapping[str, Any]

    def __str__(self) -> str:
        dimensions = ", ".join(f"{k}={v}" for k, v in sorted(self.dimensions.items()))
        return f"{self.namespace}/{self.name} ({dimensions or 'no dimensions'})"


def watched_metrics(alarm: Node) -> list[WatchedMetric]:
    """The metrics an alarm reads: its single metric, or each metric of its metric queries (not expressions)."""
    if alarm.get("metricName"):
        return [_metric(alarm.inputs)]
    return [_metric(q["metric"]) for q in alarm.get("metricQueries", default=[]) if q.get("metric")]


def _metric(spec: Mapping[str, Any]) -> WatchedMetric:
    namespace, name = str(spec.get("namespace") or ""), str(spec.get("metricName") or "")
    return WatchedMetric(namespace, name, spec.get("dimensions") or {})


@dataclass(frozen=True)
class Problem:
    message: str
    fix: str


def producer_findings(
    runs: Sequence[OfflineRun],
    published: frozenset[str] | None = None,
    scoring_published: frozenset[str] | None = None,
    monitor_published: frozenset[str] | None = None,
) -> list[Finding]:
    """One finding per metric of an alarm that nothing in `runs` produces.

    `published`: what the API publishes (default api/emf.py's); `scoring_published` and `monitor_published`:
    what a scoring and a monitoring run publish (default ml/emf.py's).
    """
    view = DeploymentView(runs)
    published = {
        API: published_metrics() if published is None else published,
        SCORER: scoring_published_metrics() if scoring_published is None else scoring_published,
        MONITOR: monitor_published_metrics() if monitor_published is None else monitor_published,
    }
    findings = []
    for alarm in view.of_type(ALARM):
        metrics = watched_metrics(alarm)
        if not metrics:
            findings.append(Finding(CHECK, alarm.name, f"{ALARM} names no metric", "Give the alarm a metric."))
        for metric in metrics:
            for problem in _problems(view, alarm, metric, published):
                message = f"{ALARM} watches {metric}, which nothing in the deployment produces: {problem.message}"
                findings.append(Finding(CHECK, alarm.name, message, problem.fix))
    return findings


def _problems(
    view: DeploymentView, alarm: Node, metric: WatchedMetric, published: Mapping[Publisher, frozenset[str] | None]
) -> list[Problem]:
    if metric.namespace == m.NAMESPACE:
        return _emf_problems(view, alarm, metric, published)
    if (metric.namespace, metric.name) == ("AWS/Events", "TriggeredRules"):
        return _event_rule_problems(view, metric)
    return [
        Problem(
            f"policies/producers.py knows no producer for namespace {metric.namespace!r}",
            "Add the metric's producer rule to policies/producers.py, or remove the alarm.",
        )
    ]


def _event_rule_problems(view: DeploymentView, metric: WatchedMetric) -> list[Problem]:
    name = metric.dimensions.get("RuleName")
    rules = [r for r in view.of_type(EVENT_RULE) if name in r.identities()]
    if not rules:
        return [
            Problem(
                f"no EventRule in the deployment is named {name!r}",
                "Take the RuleName dimension from the EventRule's name output.",
            )
        ]
    if all(r.get("state") == "DISABLED" or r.get("isEnabled") is False for r in rules):
        return [Problem(f"the EventRule {name!r} is disabled", "Enable the rule (state ENABLED).")]
    return []


def _emf_problems(
    view: DeploymentView, alarm: Node, metric: WatchedMetric, published: Mapping[Publisher, frozenset[str] | None]
) -> list[Problem]:
    problems = []
    publisher = next((p for p in PUBLISHERS if metric.name in p.metrics), None)
    if publisher is None:
        problems.append(
            Problem(
                f"{metric.name!r} is not a metric of ml/metric_names.py",
                "Use a metric name from ml.metric_names.",
            )
        )
        publisher = API
    elif published[publisher] is not None and metric.name not in published[publisher]:
        declared = published[publisher]
        problems.append(
            Problem(
                f"{publisher.declared_in.split()[0]} does not publish {metric.name!r} "
                f"(it publishes {', '.join(sorted(declared))})",
                f"Publish {metric.name} from {publisher.what} ({publisher.declared_in}) or drop the alarm.",
            )
        )
    if set(metric.dimensions) != {m.DIMENSION_ENVIRONMENT}:
        problems.append(
            Problem(
                f"{publisher.what} publishes with the one dimension {m.DIMENSION_ENVIRONMENT}, and CloudWatch "
                "matches dimension sets exactly",
                f"Give the alarm exactly the dimension {m.DIMENSION_ENVIRONMENT}.",
            )
        )
    environment = metric.dimensions.get(m.DIMENSION_ENVIRONMENT)
    workloads = [w for w in view.of_type(publisher.workload_type) if _emits_emf(w, environment, publisher.command)]
    if not workloads:
        running = f" that runs {publisher.command}" if publisher.command else ""
        problems.append(
            Problem(
                f"no {publisher.workload_kind} runs a container with {EMF_ENABLED_ENV}=true and "
                f"{ENVIRONMENT_ENV}={environment}{running}",
                f"Run {publisher.what} with {EMF_ENABLED_ENV}=true and {ENVIRONMENT_ENV} equal to the alarm's "
                f"Environment ({publisher.deployed_by}).",
            )
        )
    group = _exported_log_group(view, alarm)
    if group is None:
        problems.append(
            Problem(
                f"no project exports {LOG_GROUP_OUTPUT}, the log group {publisher.what}'s lines must reach",
                f"Export {LOG_GROUP_OUTPUT} from the platform (infra/platform.py).",
            )
        )
    elif not any(group in g.identities() for g in view.of_type(LOG_GROUP)):
        problems.append(
            Problem(
                f"the exported log group {group!r} is created by no project",
                "Create the log group in the platform (infra/observability.py).",
            )
        )
    elif workloads:
        problems.extend(_shipping_problems(view, workloads, group))
    return problems


def _emits_emf(workload: Node, environment: Any, command: str | None) -> bool:
    return any(
        str(env_of(c).get(EMF_ENABLED_ENV, "")).lower() == "true" and env_of(c).get(ENVIRONMENT_ENV) == environment
        and (command is None or command in {str(t) for t in (*as_list(c.get("command")), *as_list(c.get("args")))})
        for c in containers(workload.resource)
    )


def _exported_log_group(view: DeploymentView, alarm: Node) -> str | None:
    """The log group the alarm's own project exports, else the one any project exports."""
    for run in (alarm.run, *view.runs):
        if run.stack_outputs.get(LOG_GROUP_OUTPUT):
            return str(run.stack_outputs[LOG_GROUP_OUTPUT])
    return None


def shipper_gaps(release: Node, group: str) -> list[str]:
    """Why an aws-for-fluent-bit release does not turn the API's lines into metrics in `group` (empty: it does)."""
    values = release.get("values", default={}) or {}
    logs = values.get("cloudWatchLogs") or {}
    gaps = []
    if logs.get("enabled", True) is False:
        gaps.append("cloudWatchLogs is disabled")
    if logs.get("logGroupName", SHIPPER_DEFAULTS["logGroupName"]) != group:
        gaps.append(f"ships to {logs.get('logGroupName', SHIPPER_DEFAULTS['logGroupName'])!r}, not {group!r}")
    if logs.get("logKey") != "log":
        gaps.append(f"sends the whole record (logKey {logs.get('logKey')!r}), so the EMF JSON is nested in a string")
    if logs.get("logFormat") != "json/emf":
        gaps.append(f"sets logFormat {logs.get('logFormat')!r}, not 'json/emf'")
    tail = values.get("input") or {}
    if tail.get("enabled", True) is False:
        gaps.append("its tail input is disabled")
    if not re.search(r"(?im)^\s*read_from_head\s+(on|true)\s*$", str(tail.get("extraInputs") or "")):
        gaps.append("reads a log file found at its start from the file's end (Read_from_Head off): the lines a pod "
                    "wrote before Fluent Bit started on its node, such as a short job's on a new node, are lost")
    return gaps


def tail_patterns(release: Node) -> list[str]:
    """The release's tail input `Path` patterns (Fluent Bit accepts several, comma-separated)."""
    path = ((release.get("values", default={}) or {}).get("input") or {}).get("path") or SHIPPER_DEFAULTS["path"]
    return [p.strip() for p in str(path).split(",") if p.strip()]


def tails_namespace(release: Node, namespace: str) -> bool:
    """The release's tail path covers container logs of `namespace` (`/var/log/containers/<pod>_<ns>_<c>-<id>.log`)."""
    log = f"/var/log/containers/pod_{namespace}_container-0123456789abcdef.log"
    return any(fnmatch.fnmatch(log, pattern) for pattern in tail_patterns(release))


Taint = tuple[str, str, str]
"""(key, value, effect in Kubernetes spelling)."""


def workload_taints(view: DeploymentView, workload: Node) -> set[Taint]:
    """The blocking taints of the nodes `workload`'s pods may run on.

    Those of the deployment's node groups that admit its pods (nodeSelector and tolerations); when none
    does (a deployment without the platform, or a workload that fits no group), the taints its pods
    tolerate, read from its NoSchedule/NoExecute tolerations that name a key.
    """
    spec = pod_spec(workload.resource)
    selector, tolerations = spec.get("nodeSelector") or {}, as_list(spec.get("tolerations"))
    groups = [g for g in view.node_groups() if g.admits(selector, tolerations)]
    if groups:
        return {t for g in groups for t in g.taints if t[2] in BLOCKING_EFFECTS}
    return {
        (str(t["key"]), str(t.get("value") or ""), str(t.get("effect") or "NoSchedule"))
        for t in tolerations
        if t.get("key") and t.get("effect") in (None, "", *BLOCKING_EFFECTS)
    }


def untolerated(release: Node, taints: set[Taint]) -> list[Taint]:
    """The taints among `taints` the release's DaemonSet pods do not tolerate (chart value `tolerations`)."""
    tolerations = as_list((release.get("values", default={}) or {}).get("tolerations"))
    return sorted(t for t in taints if not any(tolerates(tol, *t) for tol in tolerations))


def _shipping_problems(view: DeploymentView, workloads: list[Node], group: str) -> list[Problem]:
    shippers = [r for r in view.of_type(HELM_RELEASE) if str(r.get("chart", default="")).endswith(SHIPPER_CHART)]
    fix = (
        f"Install {SHIPPER_CHART} tailing the workload's namespace with cloudWatchLogs.logKey 'log', logFormat "
        f"'json/emf' and logGroupName from the platform's {LOG_GROUP_OUTPUT} (infra/addons.py LogShipping)."
    )
    if not shippers:
        return [Problem(f"no {SHIPPER_CHART} release ships the workloads' stdout to CloudWatch Logs", fix)]
    shipping = [s for s in shippers if not shipper_gaps(s, group)]
    if not shipping:
        gaps = "; ".join(f"{s.name} {', '.join(shipper_gaps(s, group))}" for s in shippers)
        return [Problem(gaps, fix)]
    problems = []
    for workload in workloads:
        namespace = str(workload.get("metadata", "namespace", default="default"))
        tailing = [s for s in shipping if tails_namespace(s, namespace)]
        if not tailing:
            problems.append(Problem(f"no log shipper tails namespace {namespace}", fix))
            continue
        taints = workload_taints(view, workload)
        missing = {s.name: untolerated(s, taints) for s in tailing}
        if all(missing.values()):
            named = "; ".join(
                f"{name} does not tolerate {', '.join(f'{k}={v}:{e}' for k, v, e in gaps)}"
                for name, gaps in missing.items()
            )
            problems.append(
                Problem(
                    f"{named}, a taint of the nodes {workload.name}'s pods run on, so its DaemonSet never runs "
                    "there and their lines are never shipped",
                    "Give the shipper a toleration of each taint of those nodes (aws-for-fluent-bit value "
                    "`tolerations`; infra/addons.py LogShipping node_taints from the platform's batchNodeTaints).",
                )
            )
            continue
        return []  # one producing workload whose lines reach the log group is enough
    return problems
