"""The inference pods' prediction log on AWS: Parquet files the pods put under the lake's predictions zone.

The service writes its prediction log itself (api/prediction_log.py): a thread in each pod puts
one Parquet object per week of the rows it holds, every 5 minutes (RETAIL_PREDICTION_LOG_FLUSH_SECONDS),
when 50,000 rows wait and at shutdown, under `<lake root>/predictions/service/week=YYYYWW/`
(`ml.prediction_log.SERVICE_LOG`), beside batch scoring's `<lake root>/predictions/<run>/`. The
lake root is batch scoring's (`retail:batchScoring` lakeZone and lakePrefix), so one predictions
zone holds both writers' rows, in one schema (ml/prediction_log.py), and `retail monitor` reads
them the same way.

Why the pods write the objects, rather than a stream or the log path:
- the files on S3 are exactly the local ones (the same writer, the same Parquet schema). Through
  Firehose, Parquet needs a Glue table for the record format conversion, whose Hive-style column
  names are lower case (basket_key, probability_la): a second schema for the monitor to read.
  The log path (stdout, Fluent Bit, a CloudWatch Logs subscription filter, Firehose) adds the
  logs ingestion charge for every row on top of that;
- the image gains nothing: pyarrow's S3 filesystem already reads the served bundle (Firehose's
  PutRecordBatch needs boto3, which the inference image does not install);
- what a stream would add, buffering while S3 is unreachable, the pod's writer does within its
  memory limit, dropping and counting the rows beyond it (`retail_prediction_log_rows_total`).
The cost: up to 5 minutes of a pod's rows are lost when it is killed without its shutdown
(SIGKILL, OOM, node loss). That window is the price of fewer files: each flush is a file, so at
60 s a week held ~10,000 objects per replica for the weekly monitor to list and read, at 300 s
2,016 (ml/monitor.py reads them in one scan). A rolling update or scale-in writes the rows at
shutdown, within the pod's grace period (api/shutdown.py: requests get 10 s, the log's writes
10 s, a challenger's backlog 5 s; tests/infra/test_prediction_log.py checks the sum against the
Deployment's preStop sleep and terminationGracePeriodSeconds).

What the pods' role gains (`prediction_log_policy`): s3:PutObject under that prefix's week folders
(`week=*`) and nothing else of S3 (no list, read or delete), and kms:GenerateDataKey and kms:Decrypt
on the data key only through S3: the lake's buckets encrypt with it (SSE-KMS). Each file is
serialised in memory and put whole: with `allow_delayed_open` (ml.lake.filesystem)
a file under 10 MB, which the log's files are (50,000 rows at most, ~2 MB), is one PutObject
(GenerateDataKey); a larger one goes up in parts, whose completion needs Decrypt
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/mpuoverview.html#mpuAndPermissions).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.iam import policy_document
from ml.prediction_log import SERVICE_LOG, WEEK_FOLDER


@dataclass(frozen=True)
class PredictionLogTarget:
    """Where the pods write: a lake bucket and the lake root's prefix in it (e.g. `lake`)."""

    bucket: pulumi.Input[str]
    bucket_arn: pulumi.Input[str]
    lake_prefix: str

    @property
    def key_prefix(self) -> str:
        """The objects' key prefix, without a trailing slash."""
        return "/".join(part for part in (self.lake_prefix.strip("/"), *SERVICE_LOG) if part)

    @property
    def uri(self) -> pulumi.Output[str]:
        """RETAIL_PREDICTION_LOG_URI: `s3://<bucket>/<lake prefix>/predictions/service`."""
        return pulumi.Output.format("s3://{0}/{1}", self.bucket, self.key_prefix)


def prediction_log_policy(name: str, role_id: pulumi.Input[str], target: PredictionLogTarget,
                          data_kms_key_arn: pulumi.Input[str], region: str,
                          opts: pulumi.ResourceOptions) -> aws.iam.RolePolicy:
    """The role's permission to write the prediction log, and nothing more."""
    return aws.iam.RolePolicy(
        f"{name}-prediction-log",
        role=role_id,
        policy=policy_document(
            [
                {
                    "Sid": "WritePredictionLog",
                    "Effect": "Allow",
                    "Action": "s3:PutObject",
                    "Resource": pulumi.Output.format("{0}/{1}/{2}", target.bucket_arn, target.key_prefix,
                                                     WEEK_FOLDER.format("*")),
                },
                {
                    "Sid": "EncryptThroughS3",
                    "Effect": "Allow",
                    "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
                    "Resource": data_kms_key_arn,
                    "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}},
                },
            ]
        ),
        opts=opts,
    )
