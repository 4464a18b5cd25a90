"""CloudWatch metric contract between the publishers (the inference API, batch scoring) and the alarms.

Plain constants only, so the API and the scorer can import this module without pulling in Pulumi.
The API publishes one datapoint per request (e.g. as CloudWatch Embedded Metric Format
log lines) in `NAMESPACE` with the single dimension `DIMENSION_ENVIRONMENT`; CloudWatch
derives the p95 itself from the raw latencies, so no pre-aggregated percentile is sent.
`retail score` (cli/score.py, the weekly batch-scoring CronJob) publishes one datapoint per
run, when the run ends, in the same namespace with the same single dimension.

| Metric                   | Unit         | Value per datapoint                                  |
|--------------------------|--------------|------------------------------------------------------|
| `REQUEST_LATENCY_MS`     | Milliseconds | wall time of one POST /v1/predict                    |
| `REQUEST_COUNT`          | Count        | 1 per request to /v1/predict                         |
| `SERVER_ERROR_COUNT`     | Count        | 1 per response with status >= 500, else 0            |
| `INPUT_DRIFT_SCORE`      | None         | largest per-feature PSI over the recent window       |
| `PREDICTION_COUNT`       | Count        | rows scored by one request                           |
| `HEARTBEAT`              | Count        | 1 per `HEARTBEAT_SECONDS` per serving process        |
| `SCORING_RUN_FAILED`     | Count        | per `retail score` run: 1 failed, 0 succeeded        |
| `BASKETS_SCORED`         | Count        | per `retail score` run: baskets written (0 on failure)|
| `MONITOR_RUN_FAILED`     | Count        | per `retail monitor` run: 1 failed, 0 succeeded      |
| `MONITORED_BASKETS`      | Count        | per `retail monitor` run: the champion's labelled baskets of the week |
| `MONITORED_ACCURACY`     | None         | the champion's accuracy on the week's labelled baskets |
| `MONITORED_MACRO_F1`     | None         | the champion's macro-F1 on them                      |
| `MONITORED_MIN_CLASS_PRECISION` | None  | the champion's lowest per-class precision on them    |
| `MONITORED_DRIFT_PSI`    | None         | the champion's largest per-feature PSI over the week |
| `MONITORED_JOIN_COVERAGE` | None        | share of the week's predicted baskets found in its silver lines |
| `CHALLENGER_MARGIN`      | None         | challenger's macro-F1 less the champion's, same baskets |
| `RETRAIN_NEEDED`         | Count        | per `retail monitor` run: 1 when the policy says retrain |

The heartbeat is sent whether or not requests arrive, so "no data" means "no service":
its alarm treats missing data as breaching, while the request alarms treat it as
"no traffic". Every finished scoring run sends `SCORING_RUN_FAILED` (0 or 1), so its
sample count is the number of finished runs: no sample in a week means no run finished.
`retail monitor` (cli/monitor.py) publishes one datapoint per run the same way; a figure it
could not measure that week (no labelled basket, no challenger) is left out, never sent as 0. The
`MONITORED_*` figures are meant to be alarmed at the promotion gate's thresholds (ml/settings.py).
"""

NAMESPACE = "RetailMlops/Inference"
DIMENSION_ENVIRONMENT = "Environment"

REQUEST_LATENCY_MS = "RequestLatencyMs"
REQUEST_COUNT = "RequestCount"
SERVER_ERROR_COUNT = "ServerErrorCount"
INPUT_DRIFT_SCORE = "InputDriftScore"
PREDICTION_COUNT = "PredictionCount"
HEARTBEAT = "Heartbeat"
HEARTBEAT_SECONDS = 60
SCORING_RUN_FAILED = "ScoringRunFailed"
BASKETS_SCORED = "BasketsScored"
MONITOR_RUN_FAILED = "MonitorRunFailed"
MONITORED_BASKETS = "MonitoredBaskets"
MONITORED_ACCURACY = "MonitoredAccuracy"
MONITORED_MACRO_F1 = "MonitoredMacroF1"
MONITORED_MIN_CLASS_PRECISION = "MonitoredMinClassPrecision"
MONITORED_DRIFT_PSI = "MonitoredDriftPsi"
MONITORED_JOIN_COVERAGE = "MonitoredJoinCoverage"
CHALLENGER_MARGIN = "ChallengerMacroF1Margin"
RETRAIN_NEEDED = "RetrainNeeded"

LATENCY_PERCENTILE = "p95"
"""Extended statistic the latency alarm and dashboard read from `REQUEST_LATENCY_MS`."""
