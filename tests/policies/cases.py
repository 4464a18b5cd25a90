"""One compliant and one non-compliant example for every rule of the pack.

`CASES[rule] = (compliant, non_compliant)`: a `Resource` for resource rules, a list of
resources (a small stack) for stack rules. The non-compliant example breaks exactly the
setting the rule is about. `GENERATION_CASES` adds, for every S3 rule and the tag rule,
examples with the previous generation of S3 types pulumi-aws 7 still ships (`BucketV2`,
`...V2` settings) and with the two generations mixed.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from infra.providers.kinds import DYNAMIC_TYPE, MODEL_VERSION, TRAINING_JOB
from policies.model import Resource

KEY = "arn:aws:kms:ap-southeast-1:123456789012:key/mrk-1"
TAGS = {"project": "retail-mlops", "environment": "dev", "owner": "team", "cost-center": "cc"}


def res(type_: str, name: str = "subject", urn: str = "", deps: dict | None = None, **props: Any) -> Resource:
    return Resource(type=type_, name=name, props=props, urn=urn, dependencies=deps or {})


def changed(resource: Resource, *path: str, value: Any) -> Resource:
    """A copy of `resource` with the prop at `path` set to `value` (or removed when `value` is None)."""
    props = copy.deepcopy(dict(resource.props))
    target = props
    for key in path[:-1]:
        target = target[key] if isinstance(target, dict) else target[int(key)]
    if value is None:
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value
    return Resource(resource.type, resource.name, props, resource.urn, resource.provider_props, resource.dependencies)


# --- S3 ---------------------------------------------------------------------------------------------------------
BUCKET = res("aws:s3/bucket:Bucket", "lake-raw", urn="urn:bucket")
ON_BUCKET = {"bucket": ["urn:bucket"]}
SSE = res(
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "lake-raw-sse",
    deps=ON_BUCKET,
    rules=[{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": KEY}}],
)
SSE_AES = changed(SSE, "rules", "0", "applyServerSideEncryptionByDefault", "sseAlgorithm", value="AES256")
PAB = res(
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    "lake-raw-pab",
    deps=ON_BUCKET,
    blockPublicAcls=True,
    blockPublicPolicy=True,
    ignorePublicAcls=True,
    restrictPublicBuckets=True,
)
VERSIONING = res(
    "aws:s3/bucketVersioning:BucketVersioning",
    "lake-raw-versioning",
    deps=ON_BUCKET,
    versioningConfiguration={"status": "Enabled"},
)
TLS_STATEMENT = {
    "Effect": "Deny",
    "Principal": "*",
    "Action": "s3:*",
    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
}
BUCKET_POLICY = res(
    "aws:s3/bucketPolicy:BucketPolicy",
    "lake-raw-policy",
    deps=ON_BUCKET,
    policy=json.dumps({"Version": "2012-10-17", "Statement": [TLS_STATEMENT]}),
)

# --- S3, previous generation (aws:s3/bucketV2:BucketV2 and the V2 settings) --------------------------------------
BUCKET_V2 = res("aws:s3/bucketV2:BucketV2", "lake-raw-v2", urn="urn:bucket-v2")
ON_BUCKET_V2 = {"bucket": ["urn:bucket-v2"]}


def on(resource: Resource, type_: str | None = None, deps: dict | None = None) -> Resource:
    """`resource` as another type and/or pointing at another bucket."""
    return Resource(
        type_ or resource.type, resource.name, resource.props, resource.urn, {}, deps or resource.dependencies
    )


SSE_V2 = on(SSE, "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2")
SSE_V2_AES = on(SSE_AES, SSE_V2.type)
VERSIONING_V2 = on(VERSIONING, "aws:s3/bucketVersioningV2:BucketVersioningV2")
VERSIONING_V2_SUSPENDED = changed(VERSIONING_V2, "versioningConfiguration", value={"status": "Suspended"})

# --- KMS, CloudTrail --------------------------------------------------------------------------------------------
KMS_KEY = res("aws:kms/key:Key", enableKeyRotation=True)
TRAIL = res("aws:cloudtrail/trail:Trail", isMultiRegionTrail=True, enableLogFileValidation=True, kmsKeyId=KEY)

# --- EKS, ECR ---------------------------------------------------------------------------------------------------
EKS = res(
    "eks:index:Cluster",
    endpointPublicAccess=True,
    publicAccessCidrs=["203.0.113.0/24"],
    encryptionConfigKeyArn=KEY,
    enabledClusterLogTypes=["api", "audit", "authenticator", "controllerManager", "scheduler"],
)
ECR = res(
    "aws:ecr/repository:Repository",
    imageScanningConfiguration={"scanOnPush": True},
    imageTagMutability="IMMUTABLE",
    encryptionConfigurations=[{"encryptionType": "KMS", "kmsKey": KEY}],
)

# --- Security groups, IAM ---------------------------------------------------------------------------------------
SG = res(
    "aws:ec2/securityGroup:SecurityGroup",
    ingress=[{"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidrBlocks": ["10.40.0.0/16"]}],
)
SG_WORLD_SSH = changed(
    SG, "ingress", value=[{"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]}]
)
ROLE_POLICY = res(
    "aws:iam/rolePolicy:RolePolicy",
    policy=json.dumps({"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}),
)
ROLE_POLICY_ADMIN = changed(
    ROLE_POLICY, "policy", value=json.dumps({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
)

# --- Logs, SageMaker training, stack -----------------------------------------------------------------------------
LOG_GROUP = res("aws:cloudwatch/logGroup:LogGroup", retentionInDays=14, kmsKeyId=KEY)
TRAINING = res(
    DYNAMIC_TYPE,
    "train",
    kind=TRAINING_JOB,
    use_spot=True,
    checkpoint_uri="s3://artifacts/checkpoints/",
    volume_kms_key_id=KEY,
    output_kms_key_id=KEY,
    subnet_ids=["subnet-1"],
    security_group_ids=["sg-1"],
    enable_network_isolation=False,
)
BUDGET = res("aws:budgets/budget:Budget", "budget", notifications=[{"threshold": 80}])
ALARM = res("aws:cloudwatch/metricAlarm:MetricAlarm", "alarm", alarmActions=["arn:aws:sns:topic"])

# --- Kubernetes -------------------------------------------------------------------------------------------------
CONTAINER = {
    "name": "api",
    "image": "123456789012.dkr.ecr.ap-southeast-1.amazonaws.com/inference:0.1.0",
    "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
    "securityContext": {"runAsNonRoot": True, "readOnlyRootFilesystem": True},
    "readinessProbe": {"httpGet": {"path": "/health/ready", "port": "http"}},
    "livenessProbe": {"httpGet": {"path": "/health/live", "port": "http"}},
}
DEPLOYMENT = res("kubernetes:apps/v1:Deployment", spec={"template": {"spec": {"containers": [CONTAINER]}}})
IN_CONTAINER = ("spec", "template", "spec", "containers", "0")

BATCH_CONTAINER = {k: v for k, v in CONTAINER.items() if not k.endswith("Probe")}
CRON_JOB = res(
    "kubernetes:batch/v1:CronJob",
    spec={
        "schedule": "0 3 * * 1",
        "concurrencyPolicy": "Forbid",
        "startingDeadlineSeconds": 3600,
        "jobTemplate": {
            "spec": {
                "activeDeadlineSeconds": 7200,
                "backoffLimit": 2,
                "ttlSecondsAfterFinished": 86400,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "nodeSelector": {"retail.io/workload": "batch"},
                        "tolerations": [
                            {"key": "retail.io/workload", "operator": "Equal", "value": "batch", "effect": "NoSchedule"}
                        ],
                        "containers": [BATCH_CONTAINER],
                    }
                },
            }
        },
    },
)
IN_JOB = ("spec", "jobTemplate", "spec")
IN_JOB_POD = (*IN_JOB, "template", "spec")

INGRESS = res(
    "kubernetes:networking.k8s.io/v1:Ingress",
    metadata={
        "annotations": {"alb.ingress.kubernetes.io/certificate-arn": "arn:aws:acm:ap-southeast-1:1:certificate/x"}
    },
    spec={"ingressClassName": "alb", "rules": [{"host": "api.example.com"}]},
)

# --- Tags -------------------------------------------------------------------------------------------------------
TAGGED_BY_PROVIDER = Resource(
    "aws:s3/bucket:Bucket", "lake-raw", {}, provider_props={"defaultTags": json.dumps({"tags": TAGS})}
)

CASES: dict[str, tuple[Any, Any]] = {
    "s3-sse-kms": (SSE, SSE_AES),
    "s3-public-access-block-complete": (PAB, changed(PAB, "restrictPublicBuckets", value=False)),
    "s3-bucket-encrypted": ([BUCKET, SSE], [BUCKET, SSE_AES]),
    "s3-bucket-public-access-blocked": ([BUCKET, PAB], [BUCKET]),
    "s3-bucket-versioning": (
        [BUCKET, VERSIONING],
        [BUCKET, changed(VERSIONING, "versioningConfiguration", value={"status": "Suspended"})],
    ),
    "s3-tls-only": (
        [BUCKET, BUCKET_POLICY],
        [BUCKET, changed(BUCKET_POLICY, "policy", value=json.dumps({"Statement": []}))],
    ),
    "kms-key-rotation": (KMS_KEY, changed(KMS_KEY, "enableKeyRotation", value=False)),
    "cloudtrail-multi-region": (TRAIL, changed(TRAIL, "isMultiRegionTrail", value=False)),
    "cloudtrail-log-validation": (TRAIL, changed(TRAIL, "enableLogFileValidation", value=None)),
    "cloudtrail-kms": (TRAIL, changed(TRAIL, "kmsKeyId", value=None)),
    "eks-endpoint-not-public": (EKS, changed(EKS, "publicAccessCidrs", value=["0.0.0.0/0"])),
    "eks-secrets-encryption": (EKS, changed(EKS, "encryptionConfigKeyArn", value=None)),
    "eks-control-plane-logs": (EKS, changed(EKS, "enabledClusterLogTypes", value=["api"])),
    "ecr-scan-on-push": (ECR, changed(ECR, "imageScanningConfiguration", "scanOnPush", value=False)),
    "ecr-immutable-tags": (ECR, changed(ECR, "imageTagMutability", value="MUTABLE")),
    "ecr-kms-encryption": (ECR, changed(ECR, "encryptionConfigurations", value=[{"encryptionType": "AES256"}])),
    "sg-no-world-ingress": (SG, SG_WORLD_SSH),
    "iam-no-wildcard-admin": (ROLE_POLICY, ROLE_POLICY_ADMIN),
    "log-group-retention": (LOG_GROUP, changed(LOG_GROUP, "retentionInDays", value=None)),
    "log-group-kms": (LOG_GROUP, changed(LOG_GROUP, "kmsKeyId", value=None)),
    "sagemaker-training-spot": (TRAINING, changed(TRAINING, "use_spot", value=False)),
    "sagemaker-training-kms": (TRAINING, changed(TRAINING, "volume_kms_key_id", value=None)),
    "sagemaker-training-network": (TRAINING, changed(TRAINING, "subnet_ids", value=[])),
    "sagemaker-training-inter-container-encryption": (
        changed(changed(TRAINING, "instance_count", value=2), "inter_container_encryption", value=True),
        changed(TRAINING, "instance_count", value=2),
    ),
    "stack-has-budget": ([BUDGET, ALARM], [ALARM]),
    "stack-has-alarms": ([BUDGET, ALARM], [BUDGET, changed(ALARM, "alarmActions", value=[])]),
    "k8s-resource-limits": (DEPLOYMENT, changed(DEPLOYMENT, *IN_CONTAINER, "resources", value={})),
    "k8s-non-root": (DEPLOYMENT, changed(DEPLOYMENT, *IN_CONTAINER, "securityContext", "runAsNonRoot", value=False)),
    "k8s-read-only-root-filesystem": (
        DEPLOYMENT,
        changed(DEPLOYMENT, *IN_CONTAINER, "securityContext", "readOnlyRootFilesystem", value=None),
    ),
    "k8s-probes": (DEPLOYMENT, changed(DEPLOYMENT, *IN_CONTAINER, "livenessProbe", value=None)),
    "k8s-no-latest-image": (DEPLOYMENT, changed(DEPLOYMENT, *IN_CONTAINER, "image", value="inference:latest")),
    "aws-required-tags": (TAGGED_BY_PROVIDER, Resource("aws:s3/bucket:Bucket", "lake-raw", {}, provider_props={})),
    "ingress-tls": (INGRESS, changed(INGRESS, "metadata", "annotations", value={})),
    "k8s-batch-on-batch-nodes": (CRON_JOB, changed(CRON_JOB, *IN_JOB_POD, "tolerations", value=[])),
    "k8s-batch-bounded": (CRON_JOB, changed(CRON_JOB, *IN_JOB, "activeDeadlineSeconds", value=None)),
}
"""Rule name -> (compliant, non-compliant)."""

GENERATION_CASES: dict[str, list[tuple[str, Any, Any]]] = {
    "s3-sse-kms": [("V2 setting", SSE_V2, SSE_V2_AES)],
    "s3-public-access-block-complete": [
        (
            "on a BucketV2",
            on(PAB, deps=ON_BUCKET_V2),
            on(changed(PAB, "blockPublicAcls", value=False), deps=ON_BUCKET_V2),
        )
    ],
    "s3-bucket-encrypted": [
        ("BucketV2 with a V2 setting", [BUCKET_V2, on(SSE_V2, deps=ON_BUCKET_V2)], [BUCKET_V2]),
        ("Bucket with a V2 setting", [BUCKET, SSE_V2], [BUCKET, SSE_V2_AES]),
        (
            "BucketV2 with a current setting",
            [BUCKET_V2, on(SSE, deps=ON_BUCKET_V2)],
            [BUCKET_V2, on(SSE_AES, deps=ON_BUCKET_V2)],
        ),
    ],
    "s3-bucket-public-access-blocked": [("BucketV2", [BUCKET_V2, on(PAB, deps=ON_BUCKET_V2)], [BUCKET_V2, PAB])],
    "s3-bucket-versioning": [
        (
            "BucketV2 with a V2 setting",
            [BUCKET_V2, on(VERSIONING_V2, deps=ON_BUCKET_V2)],
            [BUCKET_V2, on(VERSIONING_V2_SUSPENDED, deps=ON_BUCKET_V2)],
        ),
        ("Bucket with a V2 setting", [BUCKET, VERSIONING_V2], [BUCKET, VERSIONING_V2_SUSPENDED]),
    ],
    "s3-tls-only": [("BucketV2", [BUCKET_V2, on(BUCKET_POLICY, deps=ON_BUCKET_V2)], [BUCKET_V2, BUCKET_POLICY])],
    "aws-required-tags": [
        (
            "BucketV2",
            Resource(BUCKET_V2.type, "lake-raw-v2", {}, provider_props=TAGGED_BY_PROVIDER.provider_props),
            Resource(BUCKET_V2.type, "lake-raw-v2", {}, provider_props={}),
        )
    ],
}
"""Rule name -> [(what differs, compliant, non-compliant)] for the S3 types of both generations."""

MODEL_VERSION_RESOURCE = res(DYNAMIC_TYPE, "version", kind=MODEL_VERSION)

# --- ML lifecycle (policies/rules/lifecycle.py) -------------------------------------------------------------------
from infra.providers.kinds import SERVED_MODEL  # noqa: E402 (appended section: cases.py is shared, append only)

SERVED_URN = "urn:pulumi:dev::retail-mlops-service::pulumi-python:dynamic:Resource::retail-dev-served-model"
GROUP_ARN = "arn:aws:sagemaker:ap-southeast-1:123456789012:model-package/retail-dev-price-sensitivity"
LAKE_RUN = "20250101T000000Z-0a1b2c3d"
LINEAGE = {"data_hash": "d" * 64, "code_version": "c0ffee0123456789", "validation_report": "s3://artifacts/v.json"}
PACKAGE = {
    "arn": f"{GROUP_ARN}/2",
    "version": 2,
    "approval_status": "Approved",
    "gate_passed": True,
    "holdout_run": LAKE_RUN,
    "macro_f1": 0.81,
    "champion": {"arn": f"{GROUP_ARN}/1", "holdout_run": LAKE_RUN, "macro_f1": 0.79},
    "served": {"arn": f"{GROUP_ARN}/1", "holdout_run": LAKE_RUN, "macro_f1": 0.78, "rollback": False},
    "lineage": LINEAGE,
    "report": {"uri": LINEAGE["validation_report"], "sha256": "5" * 64, "problems": []},
}
SERVED_MODEL_RESOURCE = res(
    DYNAMIC_TYPE,
    "retail-dev-served-model",
    urn=SERVED_URN,
    kind=SERVED_MODEL,
    model_package_arn=PACKAGE["arn"],
    package=PACKAGE,
    rollback_alarms=["retail-dev-obs-api-latency-p95", "retail-dev-obs-api-5xx-rate"],
)
MODEL_VERSION_WITH_LINEAGE = res(
    DYNAMIC_TYPE, "retail-dev-model", kind=MODEL_VERSION,
    lineage={**LINEAGE, "git_commit": "0123abcd", "training_job_arn": "arn:job"},
)
MONITOR = {"name": "monitor", "command": ["python", "-m", "cli.monitor"], "args": ["--bundle", "s3://a/serving/"]}
BATCH_NAMESPACE = res("kubernetes:core/v1:Namespace", "retail-dev-batch-namespace", metadata={"name": "retail-batch"})
MONITOR_CRON_JOB = res(
    "kubernetes:batch/v1:CronJob",
    "retail-dev-monitor",
    metadata={"name": "retail-monitoring", "namespace": "retail-batch"},
    spec={"schedule": "0 6 * * 1", "jobTemplate": {"spec": {"template": {"spec": {"containers": [MONITOR]}}}}},
)
PREDICTIONS = "arn:aws:s3:::lake-raw/lake/predictions/*"
PREDICTIONS_WRITE = {"Effect": "Allow", "Action": "s3:PutObject", "Resource": PREDICTIONS}
DATA_KEY_USE = {"Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": KEY}
SCORER_POLICY = res(
    "aws:iam/rolePolicy:RolePolicy",
    "retail-dev-batch-scoring-scorer-access",
    policy=json.dumps({"Version": "2012-10-17", "Statement": [PREDICTIONS_WRITE, DATA_KEY_USE]}),
)

CASES |= {
    "served-version-approved": (
        SERVED_MODEL_RESOURCE,
        changed(SERVED_MODEL_RESOURCE, "package", "approval_status", value="PendingManualApproval"),
    ),
    "served-version-gated": (
        SERVED_MODEL_RESOURCE,
        changed(SERVED_MODEL_RESOURCE, "package", "served", "macro_f1", value=0.80),
    ),
    "served-version-report-verified": (
        SERVED_MODEL_RESOURCE,
        changed(SERVED_MODEL_RESOURCE, "package", "report", "problems",
                value=["the metadata says gate_passed=true, the report says the gate failed"]),
    ),
    "model-version-lineage": (
        MODEL_VERSION_WITH_LINEAGE,
        changed(MODEL_VERSION_WITH_LINEAGE, "lineage", "validation_report", value=None),
    ),
    "served-model-rollback-alarms": (
        SERVED_MODEL_RESOURCE,
        changed(SERVED_MODEL_RESOURCE, "rollback_alarms", value=[]),
    ),
    "served-model-monitoring-schedule": (
        [SERVED_MODEL_RESOURCE, BATCH_NAMESPACE, MONITOR_CRON_JOB],
        [SERVED_MODEL_RESOURCE, BATCH_NAMESPACE,  # a token `monitor` among the arguments is not `retail monitor`
         changed(MONITOR_CRON_JOB, "spec", "jobTemplate", "spec", "template", "spec", "containers",
                 value=[{"name": "score", "command": ["python", "-m", "cli.score"], "args": ["--mode", "monitor"]}])],
    ),
    "served-model-monitoring-active": (
        [SERVED_MODEL_RESOURCE, BATCH_NAMESPACE, MONITOR_CRON_JOB],
        [SERVED_MODEL_RESOURCE, BATCH_NAMESPACE, changed(MONITOR_CRON_JOB, "spec", "suspend", value=True)],
    ),
    "predictions-encrypted": (
        SCORER_POLICY,
        changed(SCORER_POLICY, "policy", value=json.dumps({"Statement": [PREDICTIONS_WRITE]})),
    ),
}

# --- cost (stack-within-budget) ---------------------------------------------------------------------------------------
IN_SINGAPORE = {"region": "ap-southeast-1"}
MONTHLY_BUDGET = res(
    "aws:budgets/budget:Budget", "budget", timeUnit="MONTHLY", limitAmount="500", limitUnit="USD",
    notifications=[{"threshold": 80}],
)
NODE_GROUP = Resource(
    "eks:index:ManagedNodeGroup", "nodes",
    {"instanceTypes": ["t3.large"], "capacityType": "ON_DEMAND", "diskSize": 30,
     "scalingConfig": {"minSize": 1, "desiredSize": 2, "maxSize": 4}},
    provider_props=IN_SINGAPORE,
)
"""Two t3.large nodes on demand, about $160 a month: within the budget's $500."""
CASES["stack-within-budget"] = (
    [MONTHLY_BUDGET, NODE_GROUP],
    [MONTHLY_BUDGET, changed(NODE_GROUP, "scalingConfig", "desiredSize", value=8)],
)
CASES["stack-fully-priced"] = (
    [MONTHLY_BUDGET, NODE_GROUP],
    [MONTHLY_BUDGET, changed(NODE_GROUP, "instanceTypes", value=["u-24tb1.112xlarge"])],
)

# --- lake queries (policies/rules/lake.py) ----------------------------------------------------------------------------
DATA_KEY_ARN = "arn:aws:kms:ap-southeast-1:123456789012:key/data"
WORKGROUP = res(
    "aws:athena/workgroup:Workgroup",
    "retail-dev-lake-catalog-workgroup",
    configuration={
        "enforceWorkgroupConfiguration": True,
        "bytesScannedCutoffPerQuery": 1073741824,
        "resultConfiguration": {
            "outputLocation": "s3://results/results/",
            "encryptionConfiguration": {"encryptionOption": "SSE_KMS", "kmsKeyArn": DATA_KEY_ARN},
        },
    },
)
LAKE_ROOT = "s3://lake-raw/lake"
GLUE_TABLE = res(
    "aws:glue/catalogTable:CatalogTable",
    "retail-dev-lake-catalog-silver-lines",
    deps={"storageDescriptor": ["urn:bucket"], "parameters": ["urn:bucket"]},
    storageDescriptor={"location": f"{LAKE_ROOT}/silver/"},
    parameters={"storage.location.template": f"{LAKE_ROOT}/silver/${{run}}/lines/"},
)
CASES |= {
    "athena-results-kms-enforced": (
        WORKGROUP,
        changed(WORKGROUP, "configuration", "resultConfiguration", "encryptionConfiguration", "encryptionOption",
                value="SSE_S3"),
    ),
    "athena-scan-cutoff": (WORKGROUP, changed(WORKGROUP, "configuration", "bytesScannedCutoffPerQuery", value=None)),
    "glue-table-in-stack-lake": (
        [BUCKET, GLUE_TABLE],
        [BUCKET, Resource(GLUE_TABLE.type, GLUE_TABLE.name, GLUE_TABLE.props)],  # its location from no stack bucket
    ),
}

# --- the lake job on EMR Serverless ---------------------------------------------------------------------------------
EMR_APPLICATION = res(
    "aws:emrserverless/application:Application", "retail-dev-lake-spark", type="spark",
    networkConfiguration={"subnetIds": ["subnet-a", "subnet-b"], "securityGroupIds": ["sg-lake"]},
    maximumCapacity={"cpu": "16 vCPU", "memory": "64 GB"}, autoStopConfiguration={"enabled": True},
)
LAKE_JOB_ROLE = res(
    "aws:iam/role:Role", "retail-dev-lake-engine-job", urn="urn:lake-job-role",
    assumeRolePolicy=json.dumps({"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "emr-serverless.amazonaws.com"}}]}),
)
LAKE_WRITE = {"Sid": "WriteLakeRun", "Effect": "Allow", "Action": ["s3:PutObject", "s3:AbortMultipartUpload"],
              "Resource": ["arn:aws:s3:::lake-raw/lake/silver/*", "arn:aws:s3:::lake-raw/lake/manifests/*"]}
LAKE_JOB_POLICY = res(
    "aws:iam/rolePolicy:RolePolicy", "retail-dev-lake-engine-job-access", deps={"role": ["urn:lake-job-role"]},
    policy=json.dumps({"Statement": [LAKE_WRITE]}),
)
CASES |= {
    "emr-serverless-in-vpc": (EMR_APPLICATION, changed(EMR_APPLICATION, "networkConfiguration", value=None)),
    "emr-serverless-bounded": (EMR_APPLICATION, changed(EMR_APPLICATION, "maximumCapacity", value=None)),
    "emr-serverless-role-writes-lake-prefixes": (
        [BUCKET, LAKE_JOB_ROLE, LAKE_JOB_POLICY],
        [BUCKET, LAKE_JOB_ROLE, changed(LAKE_JOB_POLICY, "policy", value=json.dumps(
            {"Statement": [{**LAKE_WRITE, "Resource": "arn:aws:s3:::lake-raw/*"}]}))],
    ),
}
