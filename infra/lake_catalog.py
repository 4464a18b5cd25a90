"""The lake as tables on AWS: a Glue database, an Athena workgroup, the saved queries, and who may run them.

What is declared (children of `LakeCatalog`, named after it):

- a Glue database, `retail_<stack>` (`database_name`), holding the three tables of infra/lake_tables.py
  (silver_lines, gold_baskets, predictions: EXTERNAL_TABLE Parquet over the lake root batch scoring uses, with
  the lake run `run` as an injected partition projection; that module says why each is laid out as it is);
- an Athena workgroup `retail-<stack>-lake` on engine version 3 that enforces its configuration (a client cannot
  choose another result location or turn encryption off), writes results SSE-KMS with the platform's data key to
  its own results bucket, cancels a query past `bytesScannedCutoffPerQuery` and publishes CloudWatch metrics.
  The results bucket is a `SecureBucket` of its own rather than a prefix of the lake: a bucket has one lifecycle
  configuration, the lake's (SecureBucket) keeps current objects forever, and results should expire
  (`resultsExpiryDays`); and the query role writes nowhere in the lake;
- one Athena named query per saved query of `ml.lake_queries.LAKE_QUERIES`, in the workgroup and the database,
  its text the saved query's own (`retail lake query NAME` runs the same text over the local lake);
- an IAM managed policy (`query_statements`) and a role that carries it, assumable by principals of this account
  that are allowed to assume it (an operator's role, CI): run and read queries in this workgroup only (plus listing
  workgroups and data catalogs and browsing the catalog in the console), read the database and its three tables,
  list the lake's silver/, gold/ and predictions/ prefixes and read the tables' folders in them only
  (`table_objects`: not silver's quarantine of rejected raw rows, scoring's quarantines and manifests, gold's fitted
  featurizer, or the service's prediction log), read and write the results bucket, and use the data key only
  through S3 (kms:ViaService), which is what calls KMS for SSE-KMS objects, both the lake's and the results. Athena also
  requires GetDatabase (and CreateDatabase) on the account's `default` database and the catalog
  (https://docs.aws.amazon.com/athena/latest/ug/fine-grained-access-to-glue-resources.html, "Mandatory").
  A role, not only the policy: operators and CI then have one thing to assume, and the policy can still be
  attached to another principal.

Names come from the stack, so several stacks (ephemeral ones among them) share an account and region: the database
`retail_<stack>` (`database_name`), the workgroup `retail-<stack>-lake`; the rest is named by Pulumi.

Not declared: the account's Data Catalog encryption settings (`aws.glue.DataCatalogEncryptionSettings`), one per
account and region, which two stacks in one account would overwrite in turn; docs/aws.md states them as an
account-level prerequisite.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra.config import LakeCatalogConfig
from infra.iam import Statement, policy_document
from infra.lake_tables import PARQUET_INPUT, PARQUET_OUTPUT, PARQUET_SERDE, TABLES, LakeTable
from infra.s3_access import data_key_through_s3, join, s3_uri
from infra.secure_bucket import SecureBucket, SecureBucketArgs
from ml.lake_queries import LakeQuery

ENGINE_VERSION = "Athena engine version 3"
RESULTS_PREFIX = "results"
"""Where in the results bucket the workgroup writes."""
QUERY_ACTIONS = (
    "athena:StartQueryExecution",
    "athena:StopQueryExecution",
    "athena:GetQueryExecution",
    "athena:BatchGetQueryExecution",
    "athena:ListQueryExecutions",
    "athena:GetQueryResults",
    "athena:GetQueryResultsStream",
    "athena:GetQueryRuntimeStatistics",
    "athena:GetWorkGroup",
    "athena:GetNamedQuery",
    "athena:BatchGetNamedQuery",
    "athena:ListNamedQueries",
)
"""Running queries in the workgroup and reading them and its saved queries ("Example policy for running queries in
a specified workgroup", https://docs.aws.amazon.com/athena/latest/ug/example-policies-workgroup.html), without
creating, changing or deleting saved queries: those are the stack's."""
CATALOG_BROWSING = ("athena:GetDataCatalog", "athena:ListDatabases", "athena:GetDatabase",
                    "athena:ListTableMetadata", "athena:GetTableMetadata")
"""What the console's editor calls to list databases and tables (Athena's own actions on the data catalog; Glue
still decides which databases and tables they see)."""
UNSCOPED_LISTING = ("athena:ListWorkGroups", "athena:ListEngineVersions", "athena:ListDataCatalogs")
"""Athena's listings that name no resource, so are granted on `*`: the statement AWS's example policy for running
queries in a workgroup grants on `*` (with ListDatabases, GetDatabase, ListTableMetadata and GetTableMetadata, which
`CATALOG_BROWSING` grants on the AwsDataCatalog only)."""
GLUE_READ = ("glue:GetDatabase", "glue:GetDatabases", "glue:GetTable", "glue:GetTables",
             "glue:GetPartition", "glue:GetPartitions", "glue:BatchGetPartition")
"""Reading the database and its three tables, granted on their ARNs. GetTables is not granted on `table/<db>/*`:
Glue answers it with the tables the caller may GetTables, so the console lists the three ("Filter tables by
GetTables permission",
https://docs.aws.amazon.com/glue/latest/dg/security_iam_id-based-policy-examples.html#security_iam_id-based-policy-examples-filter-tables),
and `*` would also grant any table later added to the database outside the stack."""
RESULTS_ACTIONS = ("s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts")
"""What Athena does with the caller's credentials in the results location: the object actions of the query-results
statement of AmazonAthenaFullAccess (https://docs.aws.amazon.com/athena/latest/ug/security-iam-awsmanpol.html);
Athena acts on S3 with the caller's permissions (https://docs.aws.amazon.com/athena/latest/ug/s3-permissions.html)."""


# --------------------------------------------------------------------------- names


def database_name(environment: str) -> str:
    """`retail_<stack>` in the characters Athena's names take (lowercase letters, digits, `_`); a stack name with
    other characters (`ephemeral-pr-42`) gets them as `_` and a hash of the name, so two stacks never share one."""
    safe = re.sub(r"[^a-z0-9_]", "_", environment.lower())
    suffix = "" if safe == environment else "_" + hashlib.sha256(environment.encode()).hexdigest()[:8]
    return f"retail_{safe}{suffix}"


def workgroup_name(environment: str) -> str:
    """`retail-<stack>-lake`: Athena's workgroup names take letters, digits, `.`, `_` and `-`, as stack names do."""
    return f"retail-{environment}-lake"


# --------------------------------------------------------------------------- the component


@dataclass
class LakeCatalogArgs:
    environment: str
    """The stack's name: names the database and the workgroup, so stacks in one account and region never share one."""
    account_id: pulumi.Input[str]
    region: str
    lake_bucket: pulumi.Input[str]
    """Name of the bucket holding the lake root (`settings.lake_zone` of the platform's lake buckets)."""
    lake_bucket_arn: pulumi.Input[str]
    data_kms_key_arn: pulumi.Input[str]
    queries: Sequence[LakeQuery]
    """The saved queries to declare as named queries (the platform passes `ml.lake_queries.LAKE_QUERIES`)."""
    settings: LakeCatalogConfig = field(default_factory=LakeCatalogConfig)


class LakeCatalog(pulumi.ComponentResource):
    """The Glue database and tables over the lake, the Athena workgroup, its saved queries and the query role."""

    database_name: pulumi.Output[str]
    workgroup_name: pulumi.Output[str]
    results_location: pulumi.Output[str]
    query_policy_arn: pulumi.Output[str]
    query_role_arn: pulumi.Output[str]
    lake_root: pulumi.Output[str]

    def __init__(self, name: str, args: LakeCatalogArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("retail:infra:LakeCatalog", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        settings = args.settings
        self.lake_root = s3_uri(args.lake_bucket, settings.lake_prefix)
        self.results = SecureBucket(
            f"{name}-results",
            SecureBucketArgs(
                kms_key_arn=args.data_kms_key_arn,
                noncurrent_version_expiry_days=1,
                expiration_days=settings.results_expiry_days,
                force_destroy=settings.force_destroy,
            ),
            opts=child,
        )
        self.results_location = self.results.bucket_name.apply(lambda bucket: f"s3://{bucket}/{RESULTS_PREFIX}/")
        self.database = aws.glue.CatalogDatabase(
            f"{name}-database",
            name=database_name(args.environment),
            description=f"The retail lake's tables ({args.environment}): silver lines, gold baskets, predictions",
            opts=child,
        )
        self.tables = {table.name: self._table(name, table, child) for table in TABLES}
        self.workgroup = self._workgroup(name, args, child)
        self.named_queries = {
            query.name: aws.athena.NamedQuery(
                f"{name}-query-{query.name}",
                name=query.name,
                description=query.description,
                query=query.sql,
                database=self.database.name,
                workgroup=self.workgroup.name,
                opts=child,
            )
            for query in args.queries
        }
        self.query_policy, self.query_role = self._query_access(name, args, child)
        self.database_name = self.database.name
        self.workgroup_name = self.workgroup.name
        self.query_policy_arn = self.query_policy.arn
        self.query_role_arn = self.query_role.arn
        self.register_outputs(
            {
                "database_name": self.database_name,
                "workgroup_name": self.workgroup_name,
                "results_location": self.results_location,
                "query_policy_arn": self.query_policy_arn,
                "query_role_arn": self.query_role_arn,
                "lake_root": self.lake_root,
            }
        )

    def _workgroup(self, name: str, args: LakeCatalogArgs, opts: pulumi.ResourceOptions) -> aws.athena.Workgroup:
        """Engine v3, its settings enforced: SSE-KMS results with the data key in the results bucket, bounded scans."""
        settings = args.settings
        return aws.athena.Workgroup(
            f"{name}-workgroup",
            name=workgroup_name(args.environment),
            description=f"Queries over the retail lake ({args.environment}): encrypted results, bounded scans",
            configuration={
                "enforce_workgroup_configuration": True,
                "publish_cloudwatch_metrics_enabled": True,
                "bytes_scanned_cutoff_per_query": settings.bytes_scanned_cutoff_per_query,
                "engine_version": {"selected_engine_version": ENGINE_VERSION},
                "result_configuration": {
                    "output_location": self.results_location,
                    "encryption_configuration": {"encryption_option": "SSE_KMS", "kms_key_arn": args.data_kms_key_arn},
                },
            },
            force_destroy=settings.force_destroy,
            opts=opts,
        )

    def _query_access(self, name: str, args: LakeCatalogArgs,
                      opts: pulumi.ResourceOptions) -> tuple[aws.iam.Policy, aws.iam.Role]:
        """The managed policy of `query_statements`, and a role of this account that carries it."""
        policy = aws.iam.Policy(
            f"{name}-query-access",
            description=f"Run the retail lake's queries ({args.environment}): its workgroup, tables and prefixes only",
            policy=policy_document(query_statements(args, self.results.arn)),
            opts=opts,
        )
        role = aws.iam.Role(
            f"{name}-query",
            description="Operators querying the retail lake with Athena (assumed from this account)",
            assume_role_policy=account_trust_policy(args.account_id),
            max_session_duration=3600,
            opts=opts,
        )
        aws.iam.RolePolicyAttachment(
            f"{name}-query-access-attachment", role=role.name, policy_arn=policy.arn, opts=opts
        )
        return policy, role

    def _table(self, name: str, table: LakeTable, opts: pulumi.ResourceOptions) -> aws.glue.CatalogTable:
        return aws.glue.CatalogTable(
            f"{name}-{table.name.replace('_', '-')}",
            name=table.name,
            database_name=self.database.name,
            description=table.description,
            table_type="EXTERNAL_TABLE",
            parameters=self.lake_root.apply(table.parameters),
            partition_keys=table.partition_keys(),
            storage_descriptor={
                "location": self.lake_root.apply(table.location),
                "input_format": PARQUET_INPUT,
                "output_format": PARQUET_OUTPUT,
                "ser_de_info": {"serialization_library": PARQUET_SERDE, "parameters": {"serialization.format": "1"}},
                "columns": table.columns(),
            },
            opts=opts,
        )


def account_trust_policy(account_id: pulumi.Input[str]) -> pulumi.Output[str]:
    """Principals of this account may assume the role if their own policies let them (IAM delegates to the account)."""
    return policy_document(
        [
            {
                "Effect": "Allow",
                "Principal": {"AWS": pulumi.Output.concat("arn:aws:iam::", account_id, ":root")},
                "Action": "sts:AssumeRole",
            }
        ]
    )


def query_statements(args: LakeCatalogArgs, results_arn: pulumi.Input[str]) -> list[Statement]:
    """Run queries in the workgroup over the three tables, read their prefixes, write results; nothing else.

    The workgroup's, the catalog's, the database's and the tables' ARNs are built from their names, in the forms the
    Service Authorization Reference gives (athena `workgroup/<name>`, glue `catalog`, `database/<db>`,
    `table/<db>/<table>`)."""
    athena = pulumi.Output.concat("arn:aws:athena:", args.region, ":", args.account_id, ":")
    glue = pulumi.Output.concat("arn:aws:glue:", args.region, ":", args.account_id, ":")
    database = database_name(args.environment)
    prefix = args.settings.lake_prefix
    zones = sorted({table.zone for table in TABLES})
    return [
        {"Sid": "RunQueriesInTheWorkgroup", "Effect": "Allow", "Action": list(QUERY_ACTIONS),
         "Resource": pulumi.Output.concat(athena, "workgroup/", workgroup_name(args.environment))},
        {"Sid": "ListWorkgroupsAndCatalogs", "Effect": "Allow", "Action": list(UNSCOPED_LISTING), "Resource": "*"},
        {"Sid": "BrowseTheCatalog", "Effect": "Allow", "Action": list(CATALOG_BROWSING),
         "Resource": pulumi.Output.concat(athena, "datacatalog/AwsDataCatalog")},
        {"Sid": "ReadTheLakeCatalog", "Effect": "Allow", "Action": list(GLUE_READ),
         "Resource": [pulumi.Output.concat(glue, "catalog"), pulumi.Output.concat(glue, "database/", database),
                      *(pulumi.Output.concat(glue, "table/", database, "/", t.name) for t in TABLES)]},
        {"Sid": "AthenaDefaultDatabase", "Effect": "Allow", "Action": ["glue:GetDatabase", "glue:CreateDatabase"],
         "Resource": [pulumi.Output.concat(glue, "catalog"), pulumi.Output.concat(glue, "database/default")]},
        {"Sid": "FindTheBuckets", "Effect": "Allow", "Action": "s3:GetBucketLocation",
         "Resource": [args.lake_bucket_arn, results_arn]},
        {"Sid": "ListTheLakeZones", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": args.lake_bucket_arn,
         "Condition": {"StringLike": {"s3:prefix": [join(prefix, zone, "*") for zone in zones]}}},
        {"Sid": "ReadTheTablesFolders", "Effect": "Allow", "Action": "s3:GetObject",
         "Resource": [pulumi.Output.concat(args.lake_bucket_arn, "/", key) for key in table_objects(prefix)]},
        {"Sid": "ListResults", "Effect": "Allow", "Action": ["s3:ListBucket", "s3:ListBucketMultipartUploads"],
         "Resource": results_arn},
        {"Sid": "ReadWriteResults", "Effect": "Allow", "Action": list(RESULTS_ACTIONS),
         "Resource": pulumi.Output.concat(results_arn, f"/{RESULTS_PREFIX}/*")},
        data_key_through_s3(args.data_kms_key_arn, args.region),
    ]


def table_objects(prefix: str) -> list[str]:
    """The keys of the tables' files under the lake prefix, as S3 resource patterns: each table's folder in every run
    (`silver/*/lines/*`, `gold/*/baskets/*`, `predictions/*/baskets/*`), whatever lies below it (gold's partition
    folders, the predictions' weeks). A `*` in an S3 ARN matches across `/` too; no other file of a run has the
    table's folder name in its key."""
    return [join(prefix, table.zone, "*", table.folder, "*") for table in TABLES]
