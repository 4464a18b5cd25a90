"""Customer-managed KMS keys: one for data, one for logs, one for Kubernetes secrets."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.iam import Statement, policy_document


@dataclass
class EncryptionArgs:
    account_id: pulumi.Input[str]
    region: str
    deletion_window_days: int = 30
    trail_name: str | None = None
    """The stack's CloudTrail trail, for which an audit key is made; None: the stack has no trail."""


class Encryption(pulumi.ComponentResource):
    """Symmetric keys with yearly rotation, each with an alias.

    - data: S3 lake and artifact buckets, ECR images, SageMaker artifacts.
    - logs: CloudWatch log groups and the alerts SNS topic (the key policy lets those
      services use it, scoped to this account).
    - cluster: envelope encryption of Kubernetes secrets in EKS.
    - audit (with a trail): the trail's log files and their bucket. It is kept when the
      stack is destroyed (`retain_on_delete`), like the audit bucket: logs that outlive
      the stack must stay readable, and a deleted key makes its data unrecoverable.
    """

    data_key_arn: pulumi.Output[str]
    logs_key_arn: pulumi.Output[str]
    cluster_key_arn: pulumi.Output[str]
    audit_key_arn: pulumi.Output[str] | None

    def __init__(self, name: str, args: EncryptionArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("retail:infra:Encryption", name, None, opts)
        self._args = args
        root = pulumi.Output.concat("arn:aws:iam::", args.account_id, ":root")
        account_admin: Statement = {
            "Sid": "AccountAdministersKey",
            "Effect": "Allow",
            "Principal": {"AWS": root},
            "Action": "kms:*",
            "Resource": "*",
        }
        self.data_key = self._key(name, "data", "S3, ECR and SageMaker data", [account_admin])
        self.logs_key = self._key(
            name, "logs", "CloudWatch Logs and SNS", [account_admin, *self._log_services()]
        )
        self.cluster_key = self._key(name, "cluster", "EKS secrets", [account_admin])
        self.audit_key = None
        if args.trail_name:
            self.audit_key = self._key(
                name, "audit", "CloudTrail log files", [account_admin, *self._cloudtrail(args.trail_name)], retain=True
            )
        self.data_key_arn = self.data_key.arn
        self.logs_key_arn = self.logs_key.arn
        self.cluster_key_arn = self.cluster_key.arn
        self.audit_key_arn = self.audit_key.arn if self.audit_key else None
        self.register_outputs(
            {
                "data_key_arn": self.data_key_arn,
                "logs_key_arn": self.logs_key_arn,
                "cluster_key_arn": self.cluster_key_arn,
                "audit_key_arn": self.audit_key_arn,
            }
        )

    def _key(
        self, name: str, purpose: str, description: str, statements: list[Statement], retain: bool = False
    ) -> aws.kms.Key:
        key = aws.kms.Key(
            f"{name}-{purpose}-key",
            description=f"{name}: {description}",
            enable_key_rotation=True,
            rotation_period_in_days=365,
            deletion_window_in_days=self._args.deletion_window_days,
            policy=policy_document(statements),
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=retain),
        )
        aws.kms.Alias(
            f"{name}-{purpose}-alias",
            name=f"alias/{name}-{purpose}",
            target_key_id=key.key_id,
            opts=pulumi.ResourceOptions(parent=self),
        )
        return key

    def _log_services(self) -> list[Statement]:
        """Key policy statements for the services that encrypt with the logs key, as their docs state them.

        CloudWatch Logs: https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html
        SNS topics that CloudWatch alarms, EventBridge and Budgets publish to:
        https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html (EventBridge supports no source
        condition on this statement) and the Budgets guide's budgets-sns-policy page.
        """
        account, region = self._args.account_id, self._args.region
        statements: list[Statement] = [
            {
                "Sid": "CloudWatchLogsUseKey",
                "Effect": "Allow",
                "Principal": {"Service": f"logs.{region}.amazonaws.com"},
                "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
                "Resource": "*",
                "Condition": {
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": pulumi.Output.concat(
                            "arn:aws:logs:", region, ":", account, ":*"
                        )
                    }
                },
            },
            {
                "Sid": "AlarmsAndBudgetsPublishToEncryptedTopic",
                "Effect": "Allow",
                "Principal": {"Service": ["cloudwatch.amazonaws.com", "budgets.amazonaws.com"]},
                "Action": ["kms:GenerateDataKey*", "kms:Decrypt"],
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:SourceAccount": account}},
            },
            {
                "Sid": "EventBridgePublishesToEncryptedTopic",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": ["kms:GenerateDataKey*", "kms:Decrypt"],
                "Resource": "*",
            },
        ]
        return statements

    def _cloudtrail(self, trail_name: str) -> list[Statement]:
        """The audit key's statements for the trail, as CloudTrail documents them:
        https://docs.aws.amazon.com/awscloudtrail/latest/userguide/create-kms-key-policy-for-cloudtrail.html"""
        account, region = self._args.account_id, self._args.region
        trail_arn = pulumi.Output.concat("arn:aws:cloudtrail:", region, ":", account, ":trail/", trail_name)
        this_trail = {"aws:SourceArn": trail_arn}
        return [
            {
                "Sid": "CloudTrailEncryptsLogs",
                "Effect": "Allow",
                "Principal": {"Service": "cloudtrail.amazonaws.com"},
                "Action": "kms:GenerateDataKey*",
                "Resource": "*",
                "Condition": {
                    "StringLike": {
                        "kms:EncryptionContext:aws:cloudtrail:arn": pulumi.Output.concat(
                            "arn:aws:cloudtrail:*:", account, ":trail/*"
                        )
                    },
                    "StringEquals": this_trail,
                },
            },
            {
                "Sid": "CloudTrailDescribesKey",
                "Effect": "Allow",
                "Principal": {"Service": "cloudtrail.amazonaws.com"},
                "Action": "kms:DescribeKey",
                "Resource": "*",
                "Condition": {"StringEquals": this_trail},
            },
            {
                "Sid": "CloudTrailDecryptsWithBucketKey",
                "Effect": "Allow",
                "Principal": {"Service": "cloudtrail.amazonaws.com"},
                "Action": "kms:Decrypt",
                "Resource": "*",
                "Condition": {"StringEquals": this_trail},
            },
        ]
