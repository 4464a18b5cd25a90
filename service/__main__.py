"""The retail-mlops service Pulumi program: what runs on the platform stack's cluster."""

import pulumi

from infra.config import load_service_config
from infra.service import build_service

service = build_service(load_service_config())
for key, value in service.outputs().items():
    pulumi.export(key, value)
