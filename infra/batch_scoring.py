"""Batch scoring on EKS: `retail score` as a weekly CronJob on the spot batch nodes, with its own IRSA role.

What runs: once a week (`retail:batchScoring.schedule`, after the week has landed in the silver
zone) a Job runs, in the inference image the service deploys (the same digest), `retail score` as
the image ships it (`python -m cli.score`, the same command without the rest of the CLI):

    python -m cli.score --input s3://<lake>/<prefix>/silver/<inputPath>/ --bundle s3://<artifacts>/<serving>/<sha256>/

with RETAIL_LAKE_ROOT=s3://<lake>/<prefix> (ml/settings.py, prefix RETAIL_), so the predictions and
their manifest land under `<lake root>/predictions/<run id>/`. `inputPath` is a silver run folder
(default `latest`: the newest pipeline run under `<lake root>/silver/` holding lines, as
`retail pipeline run` writes them; see ml/score.py `input_at`). The bundle is the one the service serves (the
ServedModel's prefix), and RETAIL_MODEL_SHA256 carries its manifest hash.

How it runs (the CronJob's bounds, the batch nodes, pod security, the NetworkPolicy) is what every batch
job shares: infra/batch_job.py.

What it may do: its ServiceAccount's IRSA role allows only
- s3:ListBucket (with an `s3:prefix` condition) and s3:GetObject under `<lake prefix>/silver/` and
  under the serving bundle's prefix;
- s3:PutObject under `<lake prefix>/predictions/`;
- kms:Decrypt and kms:GenerateDataKey on the data key, only through S3 (`kms:ViaService`), as the
  other roles of the platform do. S3 needs both for SSE-KMS objects: Decrypt to read, GenerateDataKey
  to write, and Decrypt again to complete a multipart upload, which is how pyarrow writes
  (https://docs.aws.amazon.com/AmazonS3/latest/userguide/mpuoverview.html#mpuAndPermissions).
Its namespace (`restricted` Pod Security Standard) is the batch jobs' namespace: the monitoring
schedule (infra/monitoring_schedule.py) runs in it too.

The contract with `retail score` (cli/score.py, ml/score.py) this relies on:
- `--input <folder>` reads `<folder>/lines/part-0.parquet` of a silver run; `--bundle` with
  RETAIL_MODEL_SHA256 (its `--bundle-sha256` envvar) refuses any other bundle; RETAIL_MODEL_CACHE_DIR
  and RETAIL_WORK_DIR put the bundle copy and the week spill under /tmp;
- it writes only with s3:PutObject under predictions/: `ml.score.RunOutput` opens each file directly.
  pyarrow's `create_dir` on S3 (what `ml.lake.Lake.write_parquet`, `write_partitioned` and
  `write_json` call) first sends HeadBucket, which needs s3:ListBucket on the whole bucket, and writes
  an empty marker object for every parent "directory" (`lake/`, `lake/predictions/`, ...); this role
  grants neither, so the job would fail with AccessDenied on HeadBucket;
- it exits 2 when the input or the bundle cannot be used, which fails the Job without retries;
- with RETAIL_EMF_ENABLED=true and RETAIL_ENVIRONMENT=<environment> (both set here) every run ends with
  one CloudWatch EMF line on stdout (`ScoringRunFailed` 0/1, `BasketsScored`; cli/score.py). Fluent Bit
  (infra/addons.py `LogShipping`) tails this namespace and tolerates the batch nodes' taint, so the line
  reaches the platform's log group, where CloudWatch turns it into the metrics of the platform's
  scoring alarms (infra/observability.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs

from infra.batch_job import TMP, BatchJob, BatchJobSpec, BatchPlacement
from infra.config import BatchScoringConfig
from infra.iam import policy_document
from infra.s3_access import data_key_through_s3, join, read_prefix, s3_uri, write_prefix

APP = "retail-batch-scoring"
CONTAINER = "score"
COMMAND = ("python", "-m", "cli.score")
"""`retail score`, run as the inference image offers it: the image copies cli/score.py and runs it as a module
(Dockerfile), not the whole `retail` CLI, whose cli/main.py imports the Pulumi side the image does not install."""
BUNDLE_CACHE = f"{TMP}/retail-models"


@dataclass(kw_only=True)
class BatchScoringArgs(BatchPlacement):
    """Where the batch jobs run (`BatchPlacement`), and what the scorer reads, writes and scores with."""

    lake_bucket: pulumi.Input[str]
    """Name of the bucket holding the lake root (`sizing.lake_zone` of the platform's lakeBuckets)."""
    lake_bucket_arn: pulumi.Input[str]
    bundle_uri: pulumi.Input[str]
    """The served bundle's own folder, s3://.../ (the ServedModel's `model_uri`)."""
    bundle_bucket_arn: pulumi.Input[str]
    """The artifacts bucket the served bundles are published to."""
    bundle_prefix: str
    """The prefix in that bucket below which the served bundles' folders are (no trailing slash): what the jobs may
    read."""
    bundle_sha256: pulumi.Input[str]
    """SHA-256 of the served bundle's manifest (the ServedModel's output)."""
    data_kms_key_arn: pulumi.Input[str]
    sizing: BatchScoringConfig = field(default_factory=BatchScoringConfig)


class BatchScoring(pulumi.ComponentResource):
    """The weekly `retail score` CronJob, its namespace (the batch jobs'), ServiceAccount, IRSA role and
    NetworkPolicy."""

    namespace: pulumi.Output[str]
    role_arn: pulumi.Output[str]
    lake_root: pulumi.Output[str]
    bundle_uri: pulumi.Output[str]
    """The served bundle's folder (s3://.../), which the scorer and the monitoring job read."""
    predictions_uri: pulumi.Output[str]
    cron_job_name: pulumi.Output[str]

    def __init__(self, name: str, args: BatchScoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("retail:infra:BatchScoring", name, None, opts)
        self.args = args
        sizing = args.sizing
        self.lake_root = s3_uri(args.lake_bucket, sizing.lake_prefix)
        self.namespace_object = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=ObjectMetaArgs(
                name=sizing.namespace,
                labels={
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                },
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        silver = self.lake_root.apply(lambda root: join(f"{root}/silver", sizing.input_path) + "/")
        self.bundle_uri = pulumi.Output.from_input(args.bundle_uri)
        job = BatchJob(
            self,
            name,
            args,
            BatchJobSpec(
                app=APP,
                container=CONTAINER,
                command=COMMAND,
                args=["--input", silver, "--bundle", self.bundle_uri],
                lake_root=self.lake_root,
                env={"RETAIL_MODEL_SHA256": args.bundle_sha256, "RETAIL_MODEL_CACHE_DIR": BUNDLE_CACHE},
                role="scorer",
                role_description="Batch scoring pods: read the silver zone and the served bundle, write predictions",
                role_policy=scorer_policy(args),
                namespace=sizing.namespace,
                time_zone=args.time_zone,
                sizing=sizing,
            ),
            after=[self.namespace_object],
        )
        self.role = job.role
        self.namespace = self.namespace_object.metadata.name
        self.role_arn = job.role.arn
        self.predictions_uri = self.lake_root.apply(lambda root: f"{root}/predictions/")
        self.cron_job_name = job.cron_job.metadata.name
        self.register_outputs(
            {
                "namespace": self.namespace,
                "role_arn": self.role_arn,
                "lake_root": self.lake_root,
                "predictions_uri": self.predictions_uri,
                "cron_job_name": self.cron_job_name,
            }
        )


def scorer_policy(args: BatchScoringArgs) -> pulumi.Output[str]:
    """Read the silver zone and the served bundle, write predictions, use the data key through S3: nothing else."""
    lake_prefix = args.sizing.lake_prefix
    return policy_document(
        [
            *read_prefix("SilverZone", args.lake_bucket_arn, join(lake_prefix, "silver")),
            *read_prefix("ServedBundle", args.bundle_bucket_arn, args.bundle_prefix),
            write_prefix("WritePredictions", args.lake_bucket_arn, join(lake_prefix, "predictions")),
            data_key_through_s3(args.data_kms_key_arn, args.region),
        ]
    )
