"""Stack config files are read as the Pulumi CLI passes them, into one typed object."""

import json

import pytest

from infra.config import ClusterConfig, NetworkConfig, StackConfig, parse_section, read_stack_file

from .conftest import PROJECT_DIR


def test_keys_keep_their_namespace_and_structured_values_become_json():
    stack = read_stack_file(PROJECT_DIR, "dev")
    assert stack.project == "retail-mlops"
    assert stack.config["aws:region"] == "ap-southeast-1"
    assert json.loads(stack.config["retail:network"])["azCount"] == 2


def test_keys_without_a_namespace_get_the_projects(tmp_path):
    (tmp_path / "Pulumi.yaml").write_text("name: demo\nruntime: python\n")
    (tmp_path / "Pulumi.s.yaml").write_text("config:\n  owner: me\n  flag: true\n")
    assert read_stack_file(tmp_path, "s").config == {"demo:owner": "me", "demo:flag": "true"}


def test_encrypted_values_are_listed_as_secrets_not_read(tmp_path):
    (tmp_path / "Pulumi.yaml").write_text("name: demo\n")
    (tmp_path / "Pulumi.s.yaml").write_text("config:\n  demo:apiKeys:\n    secure: v1:abc\n")
    stack = read_stack_file(tmp_path, "s")
    assert stack.config == {} and stack.secret_keys == ("demo:apiKeys",)


def test_a_missing_stack_file_names_the_path(tmp_path):
    (tmp_path / "Pulumi.yaml").write_text("name: demo\n")
    with pytest.raises(FileNotFoundError, match="Pulumi.nope.yaml"):
        read_stack_file(tmp_path, "nope")


def test_sections_read_camel_case_keys_into_typed_fields():
    cluster = parse_section(
        ClusterConfig,
        {"publicAccessCidrs": ["10.0.0.0/8"], "batchNodes": {"maxSize": 9, "spot": True}},
        "retail:cluster",
    )
    assert cluster.public_access_cidrs == ("10.0.0.0/8",)
    assert (cluster.batch_nodes.max_size, cluster.batch_nodes.spot) == (9, True)


def test_unknown_keys_are_rejected_with_their_location():
    with pytest.raises(ValueError, match=r"retail:network: unknown key\(s\) \['natPerZone'\]"):
        parse_section(NetworkConfig, {"natPerZone": True}, "retail:network")


def test_defaults_are_secure_and_cost_aware():
    cfg = StackConfig("p", "e", "ap-southeast-1", "o", "c", api_keys="k")
    assert cfg.cluster.public_access_cidrs == ()
    assert cfg.cluster.batch_nodes.spot is True
    assert cfg.network.nat_per_az is False
    assert cfg.data_lake.force_destroy is False
    assert cfg.observability.latency_p95_threshold_ms == 200
    assert cfg.observability.monthly_budget_usd == 500
