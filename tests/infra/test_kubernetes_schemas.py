"""Every Kubernetes object a stack declares is valid for its cluster's Kubernetes version."""

import copy

import kubernetes_validate
import pytest

from infra.offline import OfflineRun, RegisteredResource


def cluster_version(run: OfflineRun) -> str:
    """The Kubernetes version the stack asks EKS for."""
    (cluster,) = run.of_type("eks:index:Cluster")
    return cluster.inputs["version"]


def manifest(resource: RegisteredResource) -> dict:
    """The object as the provider sends it to the API server (JSON numbers as ints)."""

    def plain(value):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    return plain(resource.inputs)


def kubernetes_objects(run: OfflineRun) -> list[RegisteredResource]:
    """The objects the service stack sends to the API server (Helm releases are rendered by Helm, not here)."""
    return [r for r in run.resources if r.custom and r.type.startswith("kubernetes:") and "helm.sh" not in r.type]


@pytest.mark.parametrize("stack", ["dev", "prod", "ephemeral"])
def test_every_kubernetes_object_validates_strictly_against_the_cluster_version(stack, request):
    version = cluster_version(request.getfixturevalue(stack))
    objects = kubernetes_objects(request.getfixturevalue(f"{stack}_service"))
    assert len(objects) == 16  # 9 of the inference API, 4 of batch scoring, 3 of the monitoring schedule
    for resource in objects:
        kubernetes_validate.validate(manifest(resource), version, strict=True)


def test_the_schema_check_rejects_a_misspelt_field(dev, dev_service):
    deployment = next(r for r in kubernetes_objects(dev_service) if r.type.endswith(":Deployment"))
    broken = copy.deepcopy(manifest(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinessProbes"):
        kubernetes_validate.validate(broken, cluster_version(dev), strict=True)
