"""Logs, alerts, dashboard and budget for one environment.

CloudWatch limits on the alarms' windows (PutMetricAlarm, `Period`): Period x EvaluationPeriods is at
most seven days (604,800 s), and at most one day for a period under an hour; a wall clock evaluation
window needs a period of 60, 300, 3,600, 86,400 or 604,800 s
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html,
https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_WallClockWindow.html,
https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/alarm-evaluation-window.html).
`check_alarm_window` enforces both here, so a stack that breaks them fails its preview, not its `up`.

A wall clock window of one week runs from Monday 00:00 to Monday 00:00 in its time zone: "a 1-week period
aligns to Monday 00:00 (the start of the ISO 8601 week)", and these alignment points are fixed; a data point
counts only once the period holding it has ended (the "Wall clock window" section of alarm-evaluation-window,
https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/alarm-evaluation-window.html#wall-clock-window,
read in the docs.amazonaws.cn copy of that page). The missed-run alarms use the batch jobs' own time zone, so
their weeks are the CronJobs' weeks (`infra.config.weekly_minute` counts minutes from Monday 00:00 too).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra.config import ThresholdsConfig
from infra.iam import policy_document
from ml import metric_names as m

MAX_EVALUATION_SECONDS = 7 * 86_400
"""Period x EvaluationPeriods CloudWatch accepts for periods of an hour or more (one day below an hour)."""
SHORT_PERIOD_MAX_EVALUATION_SECONDS = 86_400
WALL_CLOCK_PERIODS = frozenset({60, 300, 3_600, 86_400, 604_800})
"""The periods a wall clock evaluation window supports."""
WEEK_SECONDS = 604_800
DAY_SECONDS = 86_400
WEEKLY_RANGE = "-P12W"
"""What the dashboard's weekly widgets show when it loads: the last twelve weeks (one point a week each)."""


def check_alarm_window(period: int, evaluation_periods: int, wall_clock: bool = False) -> None:
    """Raise ValueError when CloudWatch would refuse an alarm with this period and number of evaluation periods."""
    total = period * evaluation_periods
    limit = SHORT_PERIOD_MAX_EVALUATION_SECONDS if period < 3_600 else MAX_EVALUATION_SECONDS
    if total > limit:
        raise ValueError(f"period {period} s x {evaluation_periods} evaluation periods = {total} s exceeds "
                         f"CloudWatch's {limit} s")
    if wall_clock and period not in WALL_CLOCK_PERIODS:
        raise ValueError(f"a wall clock window needs a period of {sorted(WALL_CLOCK_PERIODS)} s, not {period}")


@dataclass
class ObservabilityArgs:
    environment: str
    region: str
    account_id: pulumi.Input[str]
    logs_kms_key_arn: pulumi.Input[str]
    log_retention_days: int = 30
    latency_p95_threshold_ms: int = 200
    error_rate_threshold_percent: float = 1.0
    drift_threshold: float = 0.2
    heartbeat_missing_breaches: bool = True
    batch_time_zone: str = "Etc/UTC"
    """The weekly batch jobs' time zone (`retail:observability.batchTimeZone`, which their CronJobs read from the
    platform's `batchTimeZone` output): the missed-run alarms' weeks start on Monday 00:00 there."""
    monthly_budget_usd: int = 500
    budget_alert_percents: Sequence[int] = (80, 100)
    alert_emails: Sequence[str] = ()
    thresholds: ThresholdsConfig = field(default_factory=ThresholdsConfig)
    """`retail:thresholds`: the gate's accuracy, macro-F1 and class precision and the monitor's drift threshold the
    monitored week's figures are alarmed at; the monitoring CronJob judges the week by the same values (the
    platform exports them as `thresholds`), not by any deployer's RETAIL_GATE_* or RETAIL_MONITOR_*."""


class Observability(pulumi.ComponentResource):
    """Where the platform's signals go and who hears about them.

    - The inference log group (`/retail/<env>/inference`), KMS-encrypted, with retention.
    - An SNS topic, KMS-encrypted, that only CloudWatch, EventBridge and Budgets in this
      account may publish to; each `alert_emails` address is subscribed.
    - Alarms on the API's metrics (`ml.metric_names`): p95 latency over the
      threshold in 3 of 5 minutes, 5xx rate over the threshold in 3 of 5 minutes,
      hourly input drift over the threshold, and a heartbeat alarm when the service
      sends no heartbeat for 5 minutes (missing data breaches unless
      `heartbeat_missing_breaches` is off, e.g. for a dev stack scaled to zero); and on
      failed SageMaker training jobs, which an EventBridge rule catches and also forwards
      to the topic. The request alarms treat missing data as "no traffic".
    - Two alarms on the weekly batch-scoring run (`retail score` writes `ScoringRunFailed`
      0/1 and `BasketsScored` when a run ends; cli/score.py): `batch-scoring-failed` when a
      run failed in the last day, and `batch-scoring-missed` when a calendar week (Monday to
      Monday in `batch_time_zone`) ended without any finished run (missing data breaches
      like the heartbeat's, so it is off where `heartbeat_missing_breaches` is).
    - Six alarms on the weekly monitoring run (`retail monitor` writes `MonitorRunFailed` 0/1 and the
      champion's figures for the week; cli/monitor.py, ml/emf.py): the week's macro-F1, accuracy and lowest
      class precision below the promotion gate's thresholds and its largest PSI above the monitor's drift
      threshold (the monitor sends them only for a week with its minimum of labelled baskets; each alarm keeps
      its state until the next such week), `monitor-failed` and, like batch scoring, `monitor-missed`.
    - A dashboard of those signals, and a monthly cost budget for resources tagged
      `environment=<env>`, alerting on actual spend at each `budget_alert_percents`
      and on forecast spend over 100%.
    """

    log_group_name: pulumi.Output[str]
    alert_topic_arn: pulumi.Output[str]
    dashboard_name: pulumi.Output[str]
    alarm_names: list[pulumi.Output[str]]
    rollback_alarm_names: list[pulumi.Output[str]]
    """The alarms that say a release of the served model should be rolled back: API latency, 5xx rate, heartbeat."""

    def __init__(self, name: str, args: ObservabilityArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("retail:infra:Observability", name, None, opts)
        self._name, self._args = name, args
        child = pulumi.ResourceOptions(parent=self)
        self._dimensions = {m.DIMENSION_ENVIRONMENT: args.environment}
        self.log_group = aws.cloudwatch.LogGroup(
            f"{name}-inference-logs",
            name=f"/retail/{args.environment}/inference",
            retention_in_days=args.log_retention_days,
            kms_key_id=args.logs_kms_key_arn,
            opts=child,
        )
        self.topic = self._alert_topic()
        self.training_rule = self._training_failure_rule()
        latency, error_rate, drift, heartbeat = (
            self._latency_alarm(), self._error_rate_alarm(), self._drift_alarm(), self._heartbeat_alarm()
        )
        rollback_alarms = [latency, error_rate, heartbeat]
        alarms = [
            latency,
            error_rate,
            drift,
            heartbeat,
            self._training_failure_alarm(),
            self._run_failed_alarm(
                "batch-scoring-failed", m.SCORING_RUN_FAILED,
                "A batch scoring run (retail score, the weekly CronJob) failed in the last day",
            ),
            *self._monitored_week_alarms(),
            self._run_failed_alarm(
                "monitor-failed", m.MONITOR_RUN_FAILED,
                "A monitoring run (retail monitor, the weekly CronJob) failed in the last day: no figures for the week",
            ),
        ]
        # Without "missing data breaches" a missed-run alarm could never fire (a sample count below 1 only exists
        # as missing data), so such a stack gets none.
        if args.heartbeat_missing_breaches:
            alarms += [
                self._run_missed_alarm(
                    "batch-scoring-missed", m.SCORING_RUN_FAILED,
                    "No batch scoring run (retail score, the weekly CronJob) finished in the last calendar week",
                ),
                self._run_missed_alarm(
                    "monitor-missed", m.MONITOR_RUN_FAILED,
                    "No monitoring run (retail monitor, the weekly CronJob) finished in the last calendar week",
                ),
            ]
        self.dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=f"{name}-platform",
            dashboard_body=self._dashboard_body(),
            opts=child,
        )
        self._budget()
        self.log_group_name = self.log_group.name
        self.alert_topic_arn = self.topic.arn
        self.dashboard_name = self.dashboard.dashboard_name
        self.alarm_names = [a.name for a in alarms]
        self.rollback_alarm_names = [a.name for a in rollback_alarms]
        self.register_outputs(
            {
                "log_group_name": self.log_group_name,
                "alert_topic_arn": self.alert_topic_arn,
                "dashboard_name": self.dashboard_name,
                "alarm_names": self.alarm_names,
                "rollback_alarm_names": self.rollback_alarm_names,
            }
        )

    def _alert_topic(self) -> aws.sns.Topic:
        child = pulumi.ResourceOptions(parent=self)
        topic = aws.sns.Topic(f"{self._name}-alerts", kms_master_key_id=self._args.logs_kms_key_arn, opts=child)
        self.topic_policy = aws.sns.TopicPolicy(
            f"{self._name}-alerts-policy",
            arn=topic.arn,
            policy=policy_document(
                [
                    {
                        "Sid": "AlertPublishers",
                        "Effect": "Allow",
                        "Principal": {
                            "Service": [
                                "cloudwatch.amazonaws.com",
                                "events.amazonaws.com",
                                "budgets.amazonaws.com",
                            ]
                        },
                        "Action": "sns:Publish",
                        "Resource": topic.arn,
                        "Condition": {"StringEquals": {"aws:SourceAccount": self._args.account_id}},
                    }
                ]
            ),
            opts=child,
        )
        for i, email in enumerate(self._args.alert_emails):
            aws.sns.TopicSubscription(
                f"{self._name}-alerts-email-{i}",
                topic=topic.arn,
                protocol="email",
                endpoint=email,
                opts=child,
            )
        return topic

    def _alarm(
        self, suffix: str, description: str, missing: str = "notBreaching", **settings
    ) -> aws.cloudwatch.MetricAlarm:
        if "period" in settings:
            check_alarm_window(
                settings["period"], settings["evaluation_periods"], wall_clock="evaluation_window" in settings
            )
        return aws.cloudwatch.MetricAlarm(
            f"{self._name}-{suffix}",
            name=f"{self._name}-{suffix}",
            alarm_description=description,
            alarm_actions=[self.topic.arn],
            ok_actions=[self.topic.arn],
            treat_missing_data=missing,
            opts=pulumi.ResourceOptions(parent=self),
            **settings,
        )

    def _latency_alarm(self) -> aws.cloudwatch.MetricAlarm:
        threshold = self._args.latency_p95_threshold_ms
        return self._alarm(
            "api-latency-p95",
            f"Inference API p95 latency above {threshold} ms in 3 of the last 5 minutes",
            namespace=m.NAMESPACE,
            metric_name=m.REQUEST_LATENCY_MS,
            dimensions=self._dimensions,
            extended_statistic=m.LATENCY_PERCENTILE,
            period=60,
            evaluation_periods=5,
            datapoints_to_alarm=3,
            comparison_operator="GreaterThanThreshold",
            threshold=threshold,
        )

    def _error_rate_alarm(self) -> aws.cloudwatch.MetricAlarm:
        threshold = self._args.error_rate_threshold_percent

        def total(query_id: str, metric_name: str) -> dict:
            return {
                "id": query_id,
                "return_data": False,
                "metric": {
                    "namespace": m.NAMESPACE,
                    "metric_name": metric_name,
                    "dimensions": self._dimensions,
                    "period": 60,
                    "stat": "Sum",
                },
            }

        return self._alarm(
            "api-5xx-rate",
            f"Inference API 5xx responses above {threshold}% in 3 of the last 5 minutes",
            metric_queries=[
                total("requests", m.REQUEST_COUNT),
                total("errors", m.SERVER_ERROR_COUNT),
                {
                    "id": "error_rate",
                    "expression": "IF(requests > 0, 100 * errors / requests, 0)",
                    "label": "5xx rate (%)",
                    "return_data": True,
                },
            ],
            evaluation_periods=5,
            datapoints_to_alarm=3,
            comparison_operator="GreaterThanThreshold",
            threshold=threshold,
        )

    def _drift_alarm(self) -> aws.cloudwatch.MetricAlarm:
        threshold = self._args.drift_threshold
        return self._alarm(
            "input-drift",
            f"Largest feature PSI of live inputs above {threshold} over the last hour",
            namespace=m.NAMESPACE,
            metric_name=m.INPUT_DRIFT_SCORE,
            dimensions=self._dimensions,
            statistic="Maximum",
            period=3600,
            evaluation_periods=1,
            comparison_operator="GreaterThanThreshold",
            threshold=threshold,
        )

    def _heartbeat_alarm(self) -> aws.cloudwatch.MetricAlarm:
        return self._alarm(
            "api-heartbeat",
            "The inference API sent no heartbeat for 5 minutes: no serving process is alive",
            missing="breaching" if self._args.heartbeat_missing_breaches else "notBreaching",
            namespace=m.NAMESPACE,
            metric_name=m.HEARTBEAT,
            dimensions=self._dimensions,
            statistic="SampleCount",
            period=60,
            evaluation_periods=5,
            datapoints_to_alarm=5,
            comparison_operator="LessThanThreshold",
            threshold=1,
        )

    def _run_failed_alarm(self, suffix: str, metric_name: str, description: str) -> aws.cloudwatch.MetricAlarm:
        """ALARM when any run of a weekly CronJob that ended in the last day failed (`metric_name`, 0/1 per run,
        maximum 1): `ScoringRunFailed` of `retail score`, `MonitorRunFailed` of `retail monitor`.

        A sliding one-day window (86,400 s x 1, within the seven-day limit): the alarm fires as soon as the
        failed run's line arrives and stays in ALARM for a day, then returns to OK on its own. A pod attempt
        that failed and was retried successfully also fires it (each attempt is a run of the command). No
        data (the other six days of the week) is not breaching: no run, no failure. A monitoring run
        (`--week pending`) fails when it errs, exits 2 (an input fault, e.g. the served bundle missing or not
        the pinned one) or exits 3 (a data fault: the week's keys do not join its labels); a week still waiting
        for its labels is not a failure, it is judged by a later run. Only a run that reaches its EMF line
        counts: one that dies before it (invalid RETAIL_* settings or arguments, an OOM kill, the active
        deadline, a spot loss without a retry) sends nothing, and shows up as missed (`_run_missed_alarm`),
        not as failed.
        """
        return self._alarm(
            suffix,
            description,
            namespace=m.NAMESPACE,
            metric_name=metric_name,
            dimensions=self._dimensions,
            statistic="Maximum",
            period=DAY_SECONDS,
            evaluation_periods=1,
            comparison_operator="GreaterThanOrEqualToThreshold",
            threshold=1,
        )

    def _run_missed_alarm(self, suffix: str, metric_name: str, description: str) -> aws.cloudwatch.MetricAlarm:
        """ALARM when a whole calendar week passed without a finished run of a weekly CronJob (`metric_name`
        sample count 0). Both CronJobs run in the batch time zone, `batch_time_zone` here: one config value,
        the platform's `retail:observability.batchTimeZone`, which the service's CronJobs read from its output.

        Every run that ends, failed or not, sends one sample of its `...RunFailed` metric, so the sample count is
        the number of finished runs. The run is weekly, and CloudWatch evaluates at most seven days (604,800 s)
        for periods of an hour or more: a sliding seven-day window would go to ALARM every week the run ended
        a little later than the week before (no sample in the last 604,800 s for those minutes). So the
        window is a wall clock one of one week (period 604,800 s x 1 evaluation period, the maximum and a
        period wall clock windows support): it covers Monday 00:00 to Monday 00:00 in the CronJob's time zone
        (CloudWatch aligns a one-week wall clock period to Monday 00:00, the start of the ISO 8601 week, in the
        window's time zone: see the module docstring) and is judged once the week is over, so a week with one
        run anywhere in it is OK and a week without is reported at the start of the next (about a week after
        the missed schedule at worst). The schedule must start and finish a run inside one such week (the
        default, Mondays 03:00, does; `infra.config.ServiceConfig` refuses a monitoring schedule that could end
        after Sunday midnight). A run killed before it could write its line (deadline, OOM, spot loss without
        retry, or a monitoring run that failed before its EMF line, e.g. on invalid settings) counts as missed.
        A new stack is in ALARM from its first evaluation until a week holding a run has ended (up to two weeks):
        the first weeks have no run to report. Only stacks where missing data breaches get this alarm.
        """
        return self._alarm(
            suffix,
            description,
            missing="breaching",
            namespace=m.NAMESPACE,
            metric_name=metric_name,
            dimensions=self._dimensions,
            statistic="SampleCount",
            period=WEEK_SECONDS,
            evaluation_periods=1,
            evaluation_window={"wall_clock_window": {"timezone": self._args.batch_time_zone}},
            comparison_operator="LessThanThreshold",
            threshold=1,
        )

    # --- the weekly monitoring run ---------------------------------------------------------------------------------
    def _monitored_week_alarms(self) -> list[aws.cloudwatch.MetricAlarm]:
        """The week's figures against the thresholds `retail monitor` judges them by (`retail:thresholds`)."""
        gate, drift = self._args.thresholds.gate, self._args.thresholds.monitor.drift_psi
        return [
            self._monitored_alarm("monitored-macro-f1", m.MONITORED_MACRO_F1, "Minimum", "LessThanThreshold",
                                  gate.min_macro_f1, "champion's macro-F1 below the gate's"),
            self._monitored_alarm("monitored-accuracy", m.MONITORED_ACCURACY, "Minimum", "LessThanThreshold",
                                  gate.min_accuracy, "champion's accuracy below the gate's"),
            self._monitored_alarm("monitored-class-precision", m.MONITORED_MIN_CLASS_PRECISION, "Minimum",
                                  "LessThanThreshold", gate.min_class_precision,
                                  "champion's lowest class precision below the gate's"),
            self._monitored_alarm("monitored-drift", m.MONITORED_DRIFT_PSI, "Maximum", "GreaterThanThreshold",
                                  drift, "champion's largest feature PSI above the drift threshold"),
        ]

    def _monitored_alarm(
        self, suffix: str, metric_name: str, statistic: str, comparison: str, threshold: float, what: str
    ) -> aws.cloudwatch.MetricAlarm:
        """ALARM while the latest judged week's figure breaches `threshold`.

        `retail monitor` sends the week's figures once, when its weekly run ends, and only for a week it judges:
        one where the champion answered at least `min_baskets` labelled baskets (cli/monitor.py `figures`, with
        RETAIL_MONITOR_MIN_BASKETS from `retail:thresholds`). That is the one place the minimum applies; the
        alarm reads the figure as sent. The period is a day, and missing data keeps the state (`ignore`): the
        six days without a run, and a week not judged, leave the alarm where the last judged week put it, so
        it stays in ALARM until a judged week is within the threshold. A week the monitor could not give a
        figure for sends none (ml/emf.py).
        """
        minimum = self._args.thresholds.monitor.min_baskets
        return self._alarm(
            suffix,
            f"The monitored week's {what} ({threshold}); retail monitor sends it only for a week with at least "
            f"{minimum} labelled baskets",
            missing="ignore",
            namespace=m.NAMESPACE,
            metric_name=metric_name,
            dimensions=self._dimensions,
            statistic=statistic,
            period=DAY_SECONDS,
            evaluation_periods=1,
            comparison_operator=comparison,
            threshold=threshold,
        )

    def _training_failure_rule(self) -> aws.cloudwatch.EventRule:
        child = pulumi.ResourceOptions(parent=self)
        rule = aws.cloudwatch.EventRule(
            f"{self._name}-training-failed",
            description="A SageMaker training job failed",
            event_pattern=json.dumps(
                {
                    "source": ["aws.sagemaker"],
                    "detail-type": ["SageMaker Training Job State Change"],
                    "detail": {"TrainingJobStatus": ["Failed"]},
                }
            ),
            opts=child,
        )
        aws.cloudwatch.EventTarget(
            f"{self._name}-training-failed-to-sns", rule=rule.name, arn=self.topic.arn, opts=child
        )
        return rule

    def _training_failure_alarm(self) -> aws.cloudwatch.MetricAlarm:
        return self._alarm(
            "training-job-failed",
            "At least one SageMaker training job failed in the last 5 minutes",
            namespace="AWS/Events",
            metric_name="TriggeredRules",
            dimensions={"RuleName": self.training_rule.name},
            statistic="Sum",
            period=300,
            evaluation_periods=1,
            comparison_operator="GreaterThanOrEqualToThreshold",
            threshold=1,
        )

    def _dashboard_body(self) -> pulumi.Output[str]:
        region, env, gate = self._args.region, self._args.environment, self._args.thresholds.gate

        def widget(title: str, metrics: list, y: int, x: int = 0, **props) -> dict:
            return {
                "type": "metric",
                "x": x,
                "y": y,
                "width": 12,
                "height": 6,
                "properties": {"title": title, "region": region, "metrics": metrics, **props},
            }

        api = [m.NAMESPACE]
        dim = [m.DIMENSION_ENVIRONMENT, env]
        latency = [
            [*api, m.REQUEST_LATENCY_MS, *dim, {"stat": stat, "label": stat}]
            for stat in ("p50", m.LATENCY_PERCENTILE, "p99")
        ]
        judged_figures = [
            [*api, name, *dim, {"stat": "Minimum", "label": label}]
            for name, label in (
                (m.MONITORED_ACCURACY, "accuracy"),
                (m.MONITORED_MACRO_F1, "macro-F1"),
                (m.MONITORED_MIN_CLASS_PRECISION, "lowest class precision"),
                (m.CHALLENGER_MARGIN, "challenger's macro-F1 margin"),
            )
        ]
        # A week with labelled baskets but no figures was not judged (fewer than the minimum).
        judged_figures.append([*api, m.MONITORED_BASKETS, *dim,
                               {"stat": "Minimum", "label": "labelled baskets", "yAxis": "right"}])
        widgets = [
            widget(
                "API latency (ms)",
                latency,
                0,
                period=60,
                annotations={"horizontal": [{"value": self._args.latency_p95_threshold_ms}]},
            ),
            widget(
                "Requests and 5xx",
                [
                    [*api, m.REQUEST_COUNT, *dim, {"stat": "Sum"}],
                    [*api, m.SERVER_ERROR_COUNT, *dim, {"stat": "Sum"}],
                ],
                0,
                x=12,
                period=60,
            ),
            widget(
                "Input drift (max PSI)",
                [[*api, m.INPUT_DRIFT_SCORE, *dim, {"stat": "Maximum"}]],
                6,
                period=3600,
                annotations={"horizontal": [{"value": self._args.drift_threshold}]},
            ),
            widget(
                "Failed training jobs",
                [["AWS/Events", "TriggeredRules", "RuleName", self.training_rule.name]],
                6,
                x=12,
                stat="Sum",
                period=300,
            ),
            widget(
                "Batch scoring runs (daily)",
                [
                    [*api, m.SCORING_RUN_FAILED, *dim, {"stat": "SampleCount", "label": "finished runs"}],
                    [*api, m.SCORING_RUN_FAILED, *dim, {"stat": "Sum", "label": "failed runs"}],
                ],
                12,
                period=DAY_SECONDS,
                start=WEEKLY_RANGE,
            ),
            widget(
                "Baskets scored per run",
                [[*api, m.BASKETS_SCORED, *dim, {"stat": "Maximum"}]],
                12,
                x=12,
                period=DAY_SECONDS,
                start=WEEKLY_RANGE,
            ),
            widget(
                "Monitored week: champion vs the gate",
                judged_figures,
                18,
                period=DAY_SECONDS,
                start=WEEKLY_RANGE,
                annotations={"horizontal": [
                    {"value": gate.min_accuracy, "label": "min accuracy"},
                    {"value": gate.min_macro_f1, "label": "min macro-F1"},
                    {"value": gate.min_class_precision, "label": "min class precision"},
                ]},
            ),
            widget(
                "Monitored week: drift, retraining, runs",
                [
                    [*api, m.MONITORED_DRIFT_PSI, *dim, {"stat": "Maximum", "label": "largest PSI"}],
                    [*api, m.RETRAIN_NEEDED, *dim, {"stat": "Maximum", "label": "retrain needed"}],
                    [*api, m.MONITOR_RUN_FAILED, *dim, {"stat": "SampleCount", "label": "finished runs"}],
                    [*api, m.MONITOR_RUN_FAILED, *dim, {"stat": "Sum", "label": "failed runs"}],
                ],
                18,
                x=12,
                period=DAY_SECONDS,
                start=WEEKLY_RANGE,
                annotations={"horizontal": [
                    {"value": self._args.thresholds.monitor.drift_psi, "label": "drift threshold"}]},
            ),
        ]
        # Without a `start` the dashboard opens on its default range of a few hours, where a weekly point is rarely
        # seen: the weekly widgets set their own (a widget's `start`, the last twelve weeks). `periodOverride`
        # `inherit` keeps each graph's own period; the default, `auto`, fits every period to the time range
        # (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/CloudWatch-Dashboard-Body-Structure.html).
        return pulumi.Output.json_dumps({"widgets": widgets, "periodOverride": "inherit"})

    def _budget(self) -> None:
        args = self._args
        actual = [
            {
                "comparison_operator": "GREATER_THAN",
                "notification_type": "ACTUAL",
                "threshold": percent,
                "threshold_type": "PERCENTAGE",
                "subscriber_sns_topic_arns": [self.topic.arn],
            }
            for percent in args.budget_alert_percents
        ]
        forecast = {
            "comparison_operator": "GREATER_THAN",
            "notification_type": "FORECASTED",
            "threshold": 100,
            "threshold_type": "PERCENTAGE",
            "subscriber_sns_topic_arns": [self.topic.arn],
        }
        aws.budgets.Budget(
            f"{self._name}-monthly-budget",
            budget_type="COST",
            time_unit="MONTHLY",
            limit_amount=str(args.monthly_budget_usd),
            limit_unit="USD",
            cost_filters=[{"name": "TagKeyValue", "values": [f"user:environment${args.environment}"]}],
            notifications=[*actual, forecast],
            # Budgets may publish only once the topic policy admits it.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.topic_policy]),
        )
