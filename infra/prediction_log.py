"""The inference pods' prediction log on AWS: Parquet files the pods put under the lake's predictions zone.

The service writes its prediction log itself (api/prediction_log.py): a thread in each pod puts
one Parquet object per day and week of the rows it holds, every minute and at shutdown, under
`<lake root>/predictions/service/` (`ml.prediction_log.SERVICE_LOG`), beside batch scoring's
`<lake root>/predictions/<run>/`. The lake root is batch scoring's (`retail:batchScoring`
lakeZone and lakePrefix), so one predictions zone holds both writers' rows, in one schema
(ml/prediction_log.py), and `retail monitor` reads them the same way.

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
The cost: at most a minute of rows is lost when a pod is killed without its shutdown
(SIGKILL, OOM, node loss); a rolling update or scale-in shuts down cleanly and writes them.

What the pods' role gains (`prediction_log_policy`): s3:PutObject under that prefix and nothing
else of S3 (no list, read or delete), and kms:GenerateDataKey and kms:Decrypt on the data key
only through S3: the lake's buckets encrypt with it (SSE-KMS), and pyarrow may upload in parts,
whose completion needs Decrypt
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/mpuoverview.html#mpuAndPermissions).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.iam import policy_document
from ml.prediction_log import SERVICE_LOG


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
                    "Resource": pulumi.Output.format("{0}/{1}/*", target.bucket_arn, target.key_prefix),
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
