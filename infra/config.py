"""The stack's configuration as one typed object, and the only place config is read.

`load_config()` reads the running stack's config through `pulumi.Config`, so the same
code serves `pulumi up` and the offline preview. `read_stack_file()` turns a
`Pulumi.<stack>.yaml` file into the flat `namespace:key -> string` map the Pulumi CLI
hands a program, so an offline run can install it with `pulumi.runtime.set_all_config`.

Structured values (`retail:network`, `retail:cluster`, ...) use camelCase keys in YAML;
every field has a secure, cost-aware default, so a stack only states what differs.
"""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml

NAMESPACE = "retail"
SECRET_KEYS = ("apiKeys",)
"""Config keys that must be set with `pulumi config set --secret` before a deploy."""


@dataclass(frozen=True)
class NetworkConfig:
    cidr: str = "10.40.0.0/16"
    az_count: int = 2
    nat_per_az: bool = False
    """False: one NAT gateway shared by all AZs (cheap); True: one per AZ (survives an AZ loss)."""


@dataclass(frozen=True)
class EncryptionConfig:
    key_deletion_window_days: int = 30


@dataclass(frozen=True)
class DataLakeConfig:
    intelligent_tiering_after_days: int = 0
    noncurrent_version_expiry_days: int = 90
    force_destroy: bool = False
    """True lets `pulumi destroy` empty the buckets; keep False wherever data matters."""


@dataclass(frozen=True)
class AuditConfig:
    retention_days: int = 365
    object_lock_days: int = 90


@dataclass(frozen=True)
class RegistryConfig:
    repositories: tuple[str, ...] = ("inference", "training")
    keep_tagged_images: int = 30
    untagged_expiry_days: int = 7


@dataclass(frozen=True)
class NodeGroupConfig:
    instance_types: tuple[str, ...] = ("m6i.large",)
    min_size: int = 1
    desired_size: int = 2
    max_size: int = 4
    spot: bool = False
    disk_size_gb: int = 50


@dataclass(frozen=True)
class ClusterConfig:
    version: str = "1.33"
    public_access_cidrs: tuple[str, ...] = ()
    """Empty: the API endpoint is private only (reach it through the VPC)."""
    service_nodes: NodeGroupConfig = field(default_factory=NodeGroupConfig)
    batch_nodes: NodeGroupConfig = field(default_factory=lambda: NodeGroupConfig(min_size=0, desired_size=0, spot=True))


@dataclass(frozen=True)
class InferenceConfig:
    image_tag: str = "latest"
    namespace: str = "retail-inference"
    min_replicas: int = 2
    max_replicas: int = 6
    cpu_request: str = "500m"
    cpu_limit: str = "1"
    memory_request: str = "512Mi"
    memory_limit: str = "1Gi"
    target_cpu_percent: int = 70
    target_memory_percent: int = 80
    hostname: str = ""
    certificate_arn: str = ""
    """Empty: the load balancer controller discovers the ACM certificate from `hostname`."""
    model_prefix: str = "models/price-sensitivity/champion"


@dataclass(frozen=True)
class ObservabilityConfig:
    log_retention_days: int = 30
    latency_p95_threshold_ms: int = 200
    error_rate_threshold_percent: float = 1.0
    drift_threshold: float = 0.2
    monthly_budget_usd: int = 500
    budget_alert_percents: tuple[int, ...] = (80, 100)
    alert_emails: tuple[str, ...] = ()


@dataclass(frozen=True)
class StackConfig:
    """Everything a stack decides; components receive slices of it through their Args."""

    project: str
    environment: str
    region: str
    owner: str
    cost_center: str
    api_keys: pulumi.Input[str]
    network: NetworkConfig = field(default_factory=NetworkConfig)
    encryption: EncryptionConfig = field(default_factory=EncryptionConfig)
    data_lake: DataLakeConfig = field(default_factory=DataLakeConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    observability: ObservabilityConfig = field(default_factory=ObservabilityConfig)

    @property
    def name_prefix(self) -> str:
        """Short prefix for every logical name, e.g. `retail-dev`."""
        return f"retail-{self.environment}"

    @property
    def cluster_name(self) -> str:
        return f"{self.name_prefix}-eks"

    @property
    def default_tags(self) -> dict[str, str]:
        return {
            "project": self.project,
            "environment": self.environment,
            "owner": self.owner,
            "cost-center": self.cost_center,
            "managed-by": "pulumi",
        }


_SECTIONS = {
    "network": NetworkConfig,
    "encryption": EncryptionConfig,
    "dataLake": DataLakeConfig,
    "audit": AuditConfig,
    "registry": RegistryConfig,
    "cluster": ClusterConfig,
    "inference": InferenceConfig,
    "observability": ObservabilityConfig,
}


def load_config() -> StackConfig:
    """Read the running stack's config (real engine or mock runtime) into a StackConfig."""
    retail = pulumi.Config(NAMESPACE)
    sections = {
        _snake(key): parse_section(cls, retail.get_object(key) or {}, f"{NAMESPACE}:{key}")
        for key, cls in _SECTIONS.items()
    }
    return StackConfig(
        project=pulumi.get_project(),
        environment=pulumi.get_stack(),
        region=pulumi.Config("aws").require("region"),
        owner=retail.require("owner"),
        cost_center=retail.require("costCenter"),
        api_keys=retail.require_secret("apiKeys"),
        **sections,
    )


def parse_section(cls: type, raw: dict[str, Any], where: str) -> Any:
    """Build config dataclass `cls` from a camelCase mapping, rejecting unknown keys."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be a mapping, got {type(raw).__name__}: {raw!r}")
    hints = typing.get_type_hints(cls)
    known = {_camel(f.name): f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(known)}")
    values = {}
    for camel, value in raw.items():
        name = known[camel]
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            value = parse_section(hint, value, f"{where}.{camel}")
        elif typing.get_origin(hint) is tuple:
            value = tuple(value)
        values[name] = value
    return cls(**values)


@dataclass(frozen=True)
class StackFile:
    """A `Pulumi.<stack>.yaml` file as the Pulumi CLI would pass it to the program."""

    project: str
    stack: str
    config: dict[str, str]
    secret_keys: tuple[str, ...]


def read_stack_file(project_dir: Path, stack: str) -> StackFile:
    """Read `Pulumi.yaml` and `Pulumi.<stack>.yaml` from `project_dir`.

    Keys without a namespace get the project's, structured values become JSON strings
    and scalars strings, as the CLI does. Encrypted (`secure:`) values cannot be read
    offline and are left out; `SECRET_KEYS` lists what a deploy must set.
    """
    project_file = project_dir / "Pulumi.yaml"
    stack_file = project_dir / f"Pulumi.{stack}.yaml"
    for path in (project_file, stack_file):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; is {project_dir} the Pulumi project?")
    project = yaml.safe_load(project_file.read_text())["name"]
    raw = yaml.safe_load(stack_file.read_text()) or {}
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in (raw.get("config") or {}).items():
        full_key = key if ":" in key else f"{project}:{key}"
        if isinstance(value, dict) and set(value) == {"secure"}:
            secret_keys.append(full_key)
            continue
        config[full_key] = _config_string(value)
    return StackFile(project, stack, config, tuple(secret_keys))


def _config_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value)


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part.title() for part in rest)


def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", camel).lower()
