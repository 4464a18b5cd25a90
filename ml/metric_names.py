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

The heartbeat is sent whether or not requests arrive, so "no data" means "no service":
its alarm treats missing data as breaching, while the request alarms treat it as
"no traffic". Every finished scoring run sends `SCORING_RUN_FAILED` (0 or 1), so its
sample count is the number of finished runs: no sample in a week means no run finished.
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

LATENCY_PERCENTILE = "p95"
"""Extended statistic the latency alarm and dashboard read from `REQUEST_LATENCY_MS`."""
